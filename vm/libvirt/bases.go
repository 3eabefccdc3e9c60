package libvirt

import (
	"context"
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/devbox-vm/devbox/vm"
)

const basePrefix = "devbox-base-"

// Bases implements vm.Driver: the pool's base volumes, each with the
// number of volumes in the pool whose backing store it is.
func (d *Driver) Bases(ctx context.Context) ([]vm.Base, error) {
	pool, err := d.l.StoragePoolLookupByName(PoolName)
	if isCode(err, golibvirt.ErrNoStoragePool) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up storage pool %s: %w", PoolName, err)
	}
	d.refreshPool(pool)
	vols, _, err := d.l.StoragePoolListAllVolumes(pool, 1, 0)
	if err != nil {
		return nil, fmt.Errorf("list storage pool %s: %w", PoolName, err)
	}
	var bases []vm.Base
	byPath := map[string]int{} // base volume path → index in bases
	var others []golibvirt.StorageVol
	for _, v := range vols {
		if !strings.HasPrefix(v.Name, basePrefix) {
			others = append(others, v)
			continue
		}
		path, err := d.l.StorageVolGetPath(v)
		if err != nil {
			continue // deleted meanwhile
		}
		_, _, physical, err := d.l.StorageVolGetInfoFlags(v, uint32(golibvirt.StorageVolGetPhysical))
		if err != nil {
			continue
		}
		byPath[path] = len(bases)
		bases = append(bases, vm.Base{BoxSHA256Prefix: strings.TrimPrefix(v.Name, basePrefix), Size: int64(physical), Modified: d.volModified(v)})
	}
	for _, v := range others {
		desc, err := d.l.StorageVolGetXMLDesc(v, 0)
		if err != nil {
			continue // deleted meanwhile
		}
		var vol struct {
			Backing struct {
				Path string `xml:"path"`
			} `xml:"backingStore"`
		}
		if xml.Unmarshal([]byte(desc), &vol) != nil {
			continue
		}
		if i, ok := byPath[vol.Backing.Path]; ok {
			bases[i].Users++
		}
	}
	return bases, nil
}

// volModified is when a volume's file was last written, from its XML
// (<target><timestamps><mtime>SECONDS.NANOS</mtime>), or zero.
func (d *Driver) volModified(v golibvirt.StorageVol) time.Time {
	desc, err := d.l.StorageVolGetXMLDesc(v, 0)
	if err != nil {
		return time.Time{}
	}
	var vol struct {
		MTime string `xml:"target>timestamps>mtime"`
	}
	if xml.Unmarshal([]byte(desc), &vol) != nil || vol.MTime == "" {
		return time.Time{}
	}
	secs, nanos, _ := strings.Cut(vol.MTime, ".")
	s, err := strconv.ParseInt(secs, 10, 64)
	if err != nil {
		return time.Time{}
	}
	n, _ := strconv.ParseInt((nanos + "000000000")[:9], 10, 64)
	return time.Unix(s, n)
}

// DeleteBase implements vm.Driver.
func (d *Driver) DeleteBase(ctx context.Context, boxSHA256 string) error {
	if len(boxSHA256) < 16 {
		return fmt.Errorf("box digest %q is too short", boxSHA256)
	}
	bases, err := d.Bases(ctx)
	if err != nil {
		return err
	}
	for _, b := range bases {
		if b.BoxSHA256Prefix != boxSHA256[:16] {
			continue
		}
		name := baseVolume(boxSHA256)
		if b.Users > 0 {
			return fmt.Errorf("base volume %s: %w by %d volume(s)", name, vm.ErrInUse, b.Users)
		}
		pool, err := d.l.StoragePoolLookupByName(PoolName)
		if err != nil {
			return fmt.Errorf("look up storage pool %s: %w", PoolName, err)
		}
		vol, err := d.l.StorageVolLookupByName(pool, name)
		if isCode(err, golibvirt.ErrNoStorageVol) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("look up base volume %s: %w", name, err)
		}
		if err := d.l.StorageVolDelete(vol, 0); err != nil && !isCode(err, golibvirt.ErrNoStorageVol) {
			return fmt.Errorf("delete base volume %s: %w", name, err)
		}
	}
	return nil
}
