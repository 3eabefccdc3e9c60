package libvirt

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"strconv"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/devbox-vm/devbox/templates"
	"github.com/devbox-vm/devbox/vm"
)

// virtio-fs shares are attached to the running domain (not its
// definition): the agent serves them, starting each virtiofsd itself, and
// a share lasts as long as the VM's process, like the virtiofsd behind it.

// affectLive is VIR_DOMAIN_AFFECT_LIVE: the running domain only.
const affectLive = 1

// liveDesc is what the share methods read from the running domain's XML.
type liveDesc struct {
	Filesystems []struct {
		Driver struct {
			Type string `xml:"type,attr"`
		} `xml:"driver"`
		Source struct {
			Socket string `xml:"socket,attr"`
		} `xml:"source"`
		Target struct {
			Dir string `xml:"dir,attr"`
		} `xml:"target"`
	} `xml:"devices>filesystem"`
	SecLabels []struct {
		Model string `xml:"model,attr"`
		Label string `xml:"label"`
	} `xml:"seclabel"`
}

func (d *Driver) live(name string) (golibvirt.Domain, liveDesc, error) {
	var desc liveDesc
	dom, err := d.lookup(name)
	if err != nil {
		return dom, desc, err
	}
	raw, err := d.l.DomainGetXMLDesc(dom, 0)
	if err != nil {
		return dom, desc, fmt.Errorf("read domain %s: %w", name, err)
	}
	if err := xml.Unmarshal([]byte(raw), &desc); err != nil {
		return dom, desc, fmt.Errorf("parse domain %s: %w", name, err)
	}
	return dom, desc, nil
}

// Shares implements vm.Driver.
func (d *Driver) Shares(ctx context.Context, name string) ([]vm.Share, error) {
	_, desc, err := d.live(name)
	if err != nil {
		return nil, err
	}
	var shares []vm.Share
	for _, fs := range desc.Filesystems {
		if fs.Driver.Type == "virtiofs" {
			shares = append(shares, vm.Share{Tag: fs.Target.Dir, Socket: fs.Source.Socket})
		}
	}
	return shares, nil
}

// shareDevice is the domain name and the device XML of share s.
func (d *Driver) shareDevice(name string, s vm.Share) (golibvirt.Domain, string, error) {
	dom, err := d.lookup(name)
	if err != nil {
		return dom, "", err
	}
	dev, err := templates.Render("share.xml.tmpl", s)
	return dom, string(dev), err
}

// AttachShare implements vm.Driver.
func (d *Driver) AttachShare(ctx context.Context, name string, s vm.Share) error {
	dom, dev, err := d.shareDevice(name, s)
	if err != nil {
		return err
	}
	if err := d.l.DomainAttachDeviceFlags(dom, dev, affectLive); err != nil {
		if strings.Contains(err.Error(), "requires shared memory") {
			return fmt.Errorf("domain %s: share %s: %w", name, s.Tag, vm.ErrNoSharedMemory)
		}
		return fmt.Errorf("domain %s: attach share %s: %w", name, s.Tag, err)
	}
	return nil
}

// DetachShare implements vm.Driver.
func (d *Driver) DetachShare(ctx context.Context, name, tag string) error {
	shares, err := d.Shares(ctx, name)
	if err != nil {
		return err
	}
	for _, s := range shares {
		if s.Tag != tag {
			continue
		}
		dom, dev, err := d.shareDevice(name, s)
		if err != nil {
			return err
		}
		if err := d.l.DomainDetachDeviceFlags(dom, dev, affectLive); err != nil {
			return fmt.Errorf("domain %s: detach share %s: %w", name, tag, err)
		}
	}
	return nil
}

// QEMUUser implements vm.Driver, from the live domain's DAC label
// ("+64055:+107"); libvirt's session daemon labels nothing, and runs
// QEMU as the user.
func (d *Driver) QEMUUser(ctx context.Context, name string) (uid, gid int, err error) {
	_, desc, err := d.live(name)
	if err != nil {
		return 0, 0, err
	}
	for _, l := range desc.SecLabels {
		if l.Model != "dac" {
			continue
		}
		if uid, gid, ok := parseDACLabel(l.Label); ok {
			return uid, gid, nil
		}
		return 0, 0, fmt.Errorf("domain %s: unexpected DAC label %q", name, l.Label)
	}
	if d.uri != nil && d.uri.Path == "/session" && d.uri.Host == "" {
		// The session daemon runs QEMU as itself: the user who connects.
		return os.Getuid(), os.Getgid(), nil
	}
	return 0, 0, fmt.Errorf("domain %s: no DAC label: which user QEMU runs as is unknown", name)
}

// parseDACLabel reads "+uid:+gid".
func parseDACLabel(label string) (uid, gid int, ok bool) {
	u, g, found := strings.Cut(strings.TrimSpace(label), ":")
	if !found {
		return 0, 0, false
	}
	uid, err1 := strconv.Atoi(strings.TrimPrefix(u, "+"))
	gid, err2 := strconv.Atoi(strings.TrimPrefix(g, "+"))
	return uid, gid, err1 == nil && err2 == nil
}
