// Package boxstore is what devbox box list, remove and prune work on: the
// boxes cached in a devbox home, the base volumes made from boxes in the
// hypervisor's pool, and the instances of the home made from each.
package boxstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/devbox-vm/devbox/boxes"
	"github.com/devbox-vm/devbox/internal/instance"
	"github.com/devbox-vm/devbox/vm"
)

// Box is one box as box list shows it.
type Box struct {
	SHA256    string    `json:"sha256"` // full when cached, else the base volume's 16-digit prefix
	Source    string    `json:"source,omitempty"`
	Names     []string  `json:"names,omitempty"` // what box build named it ("NAME (ARCH)")
	Size      int64     `json:"size"`
	Added     time.Time `json:"added,omitzero"`
	Cached    bool      `json:"cached"`     // an image in this home's cache
	InPool    bool      `json:"in_pool"`    // a base volume on the hypervisor
	PoolUsers int       `json:"pool_users"` // volumes backed by it, any home
	Instances []string  `json:"instances"`  // this home's instances made from it
	Path      string    `json:"path,omitempty"`
	Modified  time.Time `json:"-"` // the base volume's last write
}

// InUse reports whether removing b would break an instance.
func (b Box) InUse() bool { return b.PoolUsers > 0 || len(b.Instances) > 0 }

// List is every box cached in home or based in d's pool.
func List(ctx context.Context, home instance.Home, d vm.Driver) ([]Box, error) {
	cached, err := boxes.List(home.BoxCache())
	if err != nil {
		return nil, err
	}
	bases, err := d.Bases(ctx)
	if err != nil {
		return nil, err
	}
	users := instance.BoxUsers(home)
	byPrefix := map[string]*Box{}
	var out []*Box
	for _, c := range cached {
		b := &Box{SHA256: c.SHA256, Source: c.Source, Names: c.Names, Size: c.Size, Added: c.Added, Cached: true, Path: c.Path}
		byPrefix[c.SHA256[:16]] = b
		out = append(out, b)
	}
	for _, base := range bases {
		b := byPrefix[base.BoxSHA256Prefix]
		if b == nil {
			b = &Box{SHA256: base.BoxSHA256Prefix, Size: base.Size}
			byPrefix[base.BoxSHA256Prefix] = b
			out = append(out, b)
		}
		b.InPool, b.PoolUsers, b.Modified = true, base.Users, base.Modified
	}
	for sha, names := range users {
		if len(sha) < 16 {
			continue
		}
		b := byPrefix[sha[:16]]
		if b == nil { // a local image used in place, its base gone
			b = &Box{SHA256: sha}
			byPrefix[sha[:16]] = b
			out = append(out, b)
		}
		sort.Strings(names)
		b.Instances = names
	}
	res := make([]Box, len(out))
	for i, b := range out {
		res[i] = *b
	}
	return res, nil
}

// Find is the box box build named name, else the one whose sha256 starts
// with prefix (at least 8 digits).
func Find(list []Box, prefix string) (Box, error) {
	var named []Box
	for _, b := range list {
		for _, n := range b.Names {
			if name, _, _ := strings.Cut(n, " "); name == prefix {
				named = append(named, b)
				break
			}
		}
	}
	if len(named) == 1 {
		return named[0], nil
	} else if len(named) > 1 {
		return Box{}, fmt.Errorf("box %s: built for more than one arch (give the sha256, see devbox box list)", prefix)
	}
	prefix = strings.ToLower(strings.TrimPrefix(prefix, "sha256:"))
	if len(prefix) < 8 {
		return Box{}, fmt.Errorf("box %q: give at least 8 digits of its sha256 (see devbox box list)", prefix)
	}
	var found []Box
	for _, b := range list {
		if strings.HasPrefix(b.SHA256, prefix) || strings.HasPrefix(prefix, b.SHA256) {
			found = append(found, b)
		}
	}
	switch len(found) {
	case 0:
		return Box{}, fmt.Errorf("box %s: no such box in the cache or the pool (see devbox box list)", prefix)
	case 1:
		return found[0], nil
	}
	return Box{}, fmt.Errorf("box %s: more than one box matches (give more digits)", prefix)
}

// ErrInUse is wrapped by Remove's error for a box an instance uses.
var ErrInUse = vm.ErrInUse

// Remove deletes b's cached image and its base volume; refused while an
// instance (of this home, or any volume in the pool) uses it.
func Remove(ctx context.Context, home instance.Home, d vm.Driver, b Box) error {
	if b.InUse() {
		who := fmt.Sprintf("%d volume(s) in the pool", b.PoolUsers)
		if len(b.Instances) > 0 {
			who = "instance(s) " + strings.Join(b.Instances, ", ")
		}
		return fmt.Errorf("box %s: %w by %s (hint: devbox destroy them first)", short(b.SHA256), ErrInUse, who)
	}
	var errs *multierror.Error
	if b.InPool {
		sha := b.SHA256
		if err := d.DeleteBase(ctx, sha); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	if b.Cached {
		if err := boxes.Remove(home.BoxCache(), b.SHA256); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	return errs.ErrorOrNil()
}

// Prune removes what no instance uses, at each level: a cached image no
// instance of this home was made from (except the boxes box build named:
// like tagged images, they go only with box remove), and a base volume no volume in the
// pool backs onto (an instance of another home may use a base this home
// no longer needs) unless it was written within keepRecent (another
// devbox may be uploading it). It reports each box it removed something
// of, or would with dryRun.
func Prune(ctx context.Context, home instance.Home, d vm.Driver, keepRecent time.Duration, dryRun bool, report func(Box)) error {
	list, err := List(ctx, home, d)
	if err != nil {
		return err
	}
	var errs *multierror.Error
	for _, b := range list {
		cache := b.Cached && len(b.Instances) == 0 && len(b.Names) == 0
		base := b.InPool && b.PoolUsers == 0 && time.Since(b.Modified) >= keepRecent
		if !cache && !base {
			continue
		}
		if !dryRun {
			if base {
				if err := d.DeleteBase(ctx, b.SHA256); err != nil {
					if !errors.Is(err, vm.ErrInUse) { // a new user since List
						errs = multierror.Append(errs, err)
					}
					continue
				}
			}
			if cache {
				if err := boxes.Remove(home.BoxCache(), b.SHA256); err != nil {
					errs = multierror.Append(errs, err)
					continue
				}
			}
		}
		report(b)
	}
	return errs.ErrorOrNil()
}

// PrunePartials removes the downloads cut short in home's cache that no
// download is resuming now, returning the bytes freed (with dryRun, the
// bytes there).
func PrunePartials(home instance.Home, dryRun bool) int64 {
	if dryRun {
		return boxes.Partials(home.BoxCache())
	}
	return boxes.RemovePartials(home.BoxCache())
}

func short(sha string) string { return sha[:min(16, len(sha))] }
