// Package config loads devbox.yaml: a strict decode, then defaults, then one
// validation pass that reports every problem with its field path.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/devbox-vm/devbox/internal/guestenv"

	"github.com/devbox-vm/devbox/boxes"
	"gopkg.in/yaml.v3"
)

// FileName is the name searched for in the current folder and its parents.
const FileName = "devbox.yaml"

// Config is the whole of devbox.yaml after defaults.
type Config struct {
	Name            string     `yaml:"name"`
	Box             string     `yaml:"box"`
	BoxSHA256       string     `yaml:"box_sha256"`
	CPUs            int        `yaml:"cpus"`
	MemoryText      string     `yaml:"memory"`
	DiskText        string     `yaml:"disk"`
	Arch            string     `yaml:"arch"`
	Accel           string     `yaml:"accel"`
	CPUModel        string     `yaml:"cpu_model"`
	Offline         bool       `yaml:"offline"`
	HostNamesFlag   *bool      `yaml:"host_names"`
	LibvirtURI      string     `yaml:"libvirt_uri"`
	BootTimeoutText string     `yaml:"boot_timeout"`
	User            User       `yaml:"user"`
	Docker          Docker     `yaml:"docker"`
	Provision       []Step     `yaml:"provision"`
	Mounts          []Mount    `yaml:"mounts"`
	MountType       string     `yaml:"mount_type"`
	Forwards        []Forward  `yaml:"forwards"`
	CACerts         []string   `yaml:"ca_certs"`
	FileEvents      FileEvents `yaml:"file_events"`
	// Parsed forms of the text fields above, set by Parse once they are valid.
	Memory      Size          `yaml:"-"`
	Disk        Size          `yaml:"-"`
	BootTimeout time.Duration `yaml:"-"`
	// Dir is the folder holding the config file (not a YAML field).
	Dir string `yaml:"-"`
	// File is the config file's path (not a YAML field).
	File string `yaml:"-"`
}

// HostNames reports whether the guest and its containers find the host
// as host.devbox.internal and host.docker.internal (the default). An
// offline VM cannot reach the host, so it gets no names.
func (c *Config) HostNames() bool {
	return !c.Offline && (c.HostNamesFlag == nil || *c.HostNamesFlag)
}

// FileEvents says whether changes made on the host in shared folders
// are replayed in the VM, so that inotify watchers there (hot reload,
// test runners) see them, and what is left out.
type FileEvents struct {
	EnabledFlag *bool    `yaml:"enabled"`
	Ignore      []string `yaml:"ignore"` // names or paths relative to a shared folder; DefaultEventIgnore when absent
}

// Enabled reports whether file events are replayed (the default).
func (f FileEvents) Enabled() bool { return f.EnabledFlag == nil || *f.EnabledFlag }

// DefaultEventIgnore is left out unless file_events.ignore says
// otherwise: git's store and installed packages change by the thousand,
// and watchers in the VM ignore them anyway.
var DefaultEventIgnore = []string{".git", "node_modules"}

// User is the docker-group user created inside the VM.
type User struct {
	Name string `yaml:"name"`
	UID  int    `yaml:"uid"`
}

// Docker says where the engine's packages come from.
type Docker struct {
	// Source is auto (Docker's own apt repository when the guest can reach
	// it, else the distribution's), docker, or distro.
	Source string `yaml:"source"`
	// Platforms are the image platforms (linux/amd64, ...) the engine must
	// run besides the guest's own; foreign ones are emulated with QEMU's
	// user-mode emulators, registered in the guest by provisioning.
	Platforms []string `yaml:"platforms"`
}

// Step is one of the user's own provisioning steps.
type Step struct {
	Name       string `yaml:"name"`
	Run        string `yaml:"run"`
	Script     string `yaml:"script"`
	Privileged *bool  `yaml:"privileged"`
}

// AsRoot reports whether the step runs as root (the default).
func (s Step) AsRoot() bool { return s.Privileged == nil || *s.Privileged }

// Mount shares a host folder into the VM at the same path.
type Mount struct {
	Host string `yaml:"host"` // absolute after defaults (relative to the config's folder)
	Mode string `yaml:"mode"` // rw (default) or ro
}

// How shared folders reach the guest (mount_type).
const (
	MountSSHFS    = "sshfs"    // reverse SSHFS: the agent serves SFTP through the SSH connection
	MountVirtioFS = "virtiofs" // a virtio-fs device, served by a boxed-in virtiofsd (Linux hosts)
)

// ReadOnly reports whether the VM may only read the folder.
func (m Mount) ReadOnly() bool { return m.Mode == "ro" }

// Forward makes a guest port reachable on the host.
type Forward struct {
	Host  string `yaml:"host"`  // "127.0.0.1:8080" or "8080" (loopback)
	Guest int    `yaml:"guest"` // port in the guest: tcp on its 127.0.0.1, udp on its network address
	Proto string `yaml:"proto"` // tcp (the default) or udp
}

// Accelerators accepted by the accel field and DEVBOX_ACCEL.
var Accelerators = []string{"auto", "kvm", "hvf", "tcg"}

// Arches are the guest architectures devbox runs, in libvirt's words.
var Arches = []string{"x86_64", "aarch64"}

// archAliases are Go's (and Debian's) names for them, accepted and
// normalised so a box called debian-12-genericcloud-arm64 reads naturally.
var archAliases = map[string]string{"amd64": "x86_64", "arm64": "aarch64"}

// HostArch is this machine's architecture in libvirt's words (Go's name
// when devbox has none for it, which Validate then refuses).
func HostArch() string {
	if a, ok := archAliases[runtime.GOARCH]; ok {
		return a
	}
	return runtime.GOARCH
}

// Find looks for devbox.yaml in dir and its parents.
func Find(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(d, FileName)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no %s in %s or any parent folder (hint: create one from devbox.yaml.example, or pass -c FILE)", FileName, dir)
		}
		d = parent
	}
}

// Load reads, defaults and validates the config file at path.
func Load(path string) (*Config, error) {
	f, abs, err := open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f, abs)
}

// open opens the config file at path and makes its path absolute.
func open(path string) (*os.File, string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, "", err
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, "", fmt.Errorf("read config: %w", err)
	}
	return f, abs, nil
}

// Parse decodes r strictly (unknown fields are errors), applies defaults
// and validates. file names the source in errors and sets Dir.
func Parse(r io.Reader, file string) (*Config, error) {
	c, err := decode(r, file)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s is invalid:\n%w", file, err)
	}
	c.parseTexts()
	c.resolveMounts()
	return c, nil
}

// LoadToRemove reads the config at path for destroy, which must work
// whatever else has gone wrong in the file since the instance was made (a
// shared folder deleted, a value a newer devbox refuses), as long as the
// file still names the instance: it must decode, and its name and
// libvirt_uri be valid. Any other problem comes back as invalid, for a
// warning; such a config serves only to find the instance and remove it.
func LoadToRemove(path string) (c *Config, invalid error, err error) {
	f, abs, err := open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if c, err = decode(f, abs); err != nil {
		return nil, nil, err
	}
	if err := c.Validate(); err != nil {
		err = fmt.Errorf("%s is invalid:\n%w", abs, err)
		if !nameRE.MatchString(c.Name) || !isLibvirtURI(c.LibvirtURI) {
			return nil, nil, err
		}
		return c, err, nil
	}
	c.parseTexts()
	c.resolveMounts()
	return c, nil, nil
}

// decode reads r strictly and applies the defaults.
func decode(r io.Reader, file string) (*Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", file, cleanYAMLError(err))
	}
	c.File = file
	c.Dir = filepath.Dir(file)
	c.applyDefaults()
	return &c, nil
}

func isLibvirtURI(s string) bool { return strings.Contains(s, "://") }

// parseTexts sets the parsed forms of the text fields (memory, disk,
// boot_timeout), which Validate has found readable.
func (c *Config) parseTexts() {
	c.Memory, _ = ParseSize(c.MemoryText)
	c.Disk, _ = ParseSize(c.DiskText)
	c.BootTimeout, _ = time.ParseDuration(c.BootTimeoutText)
}

// cleanYAMLError turns yaml.v3's "field x not found in type config.Config"
// into words that name the field for the user.
func cleanYAMLError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	var msgs []string
	re := regexp.MustCompile(`line (\d+): field (\S+) not found in type \S+`)
	for _, m := range te.Errors {
		if s := re.FindStringSubmatch(m); s != nil {
			m = fmt.Sprintf("line %s: unknown field %q (hint: check its spelling against devbox.yaml.example)", s[1], s[2])
		}
		msgs = append(msgs, m)
	}
	return errors.New(strings.Join(msgs, "\n"))
}

func (c *Config) applyDefaults() {
	if c.Name == "" {
		c.Name = SafeName(filepath.Base(c.Dir))
	}
	if c.CPUs == 0 {
		c.CPUs = 2
	}
	if c.MemoryText == "" {
		c.MemoryText = "2GiB"
	}
	if c.DiskText == "" {
		c.DiskText = "20GiB"
	}
	if c.Arch == "" {
		c.Arch = HostArch()
	}
	if a, ok := archAliases[c.Arch]; ok {
		c.Arch = a
	}
	if c.Accel == "" {
		c.Accel = "auto"
	}
	if env := os.Getenv("DEVBOX_ACCEL"); env != "" {
		c.Accel = env
	}
	if c.LibvirtURI == "" {
		c.LibvirtURI = DefaultLibvirtURI()
	}
	if c.BootTimeoutText == "" {
		c.BootTimeoutText = "5m"
	}
	if c.User.Name == "" {
		c.User.Name, c.User.UID = defaultUser()
	}
	if c.Docker.Source == "" {
		c.Docker.Source = "auto"
	}
	if c.MountType == "" {
		c.MountType = MountSSHFS
	}
	if c.FileEvents.Ignore == nil {
		c.FileEvents.Ignore = DefaultEventIgnore
	}
	for i, p := range c.CACerts {
		if p != "" && !filepath.IsAbs(p) {
			c.CACerts[i] = filepath.Join(c.Dir, p)
		}
	}
	for i := range c.Provision {
		if c.Provision[i].Run == "" {
			c.Provision[i].Run = "once"
		}
	}
	if c.Mounts == nil {
		// The project folder, writable: paths mean the same on both sides.
		c.Mounts = []Mount{{Host: c.Dir}}
	}
	for i := range c.Mounts {
		m := &c.Mounts[i]
		if m.Mode == "" {
			m.Mode = "rw"
		}
		// Not filepath.Join: it would clean "link/.." lexically before
		// validation resolves symlinks (see ResolvePath).
		if m.Host != "" && !filepath.IsAbs(m.Host) {
			m.Host = c.Dir + string(filepath.Separator) + m.Host
		}
	}
	for i := range c.Forwards {
		f := &c.Forwards[i]
		if f.Proto == "" {
			f.Proto = "tcp"
		}
		if f.Host != "" && !strings.Contains(f.Host, ":") {
			f.Host = "127.0.0.1:" + f.Host
		}
	}
	// A relative path is relative to the config's folder; a box name
	// (debian-12) stays a name unless such a file is there.
	if c.Box != "" && !strings.Contains(c.Box, "://") && !filepath.IsAbs(c.Box) && !c.BoxIsName() {
		c.Box = filepath.Join(c.Dir, c.Box)
	}
}

// DefaultLibvirtURI is LIBVIRT_DEFAULT_URI, else qemu:///system for root and
// qemu:///session for everyone else.
func DefaultLibvirtURI() string {
	if u := os.Getenv("LIBVIRT_DEFAULT_URI"); u != "" {
		return u
	}
	if os.Geteuid() == 0 {
		return "qemu:///system"
	}
	return "qemu:///session"
}

// defaultUser is the host user's name and uid, or devbox when that is root
// (root in the guest is not a docker-group user).
func defaultUser() (string, int) {
	u, err := user.Current()
	if err != nil || u.Uid == "0" {
		return "devbox", 0
	}
	name := SafeName(u.Username)
	if !userNameRE.MatchString(name) || reservedUsers[name] {
		return "devbox", 0
	}
	uid, _ := strconv.Atoi(u.Uid)
	if uid < 1000 {
		uid = 0
	}
	return name, uid
}

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$`)
	userNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	stepNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}$`)
	cpuModelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	// Names a guest already uses for its own accounts.
	reservedUsers = map[string]bool{"root": true, "daemon": true, "bin": true, "sys": true, "nobody": true, "docker": true, "sshd": true}
)

// SafeName lower-cases s and keeps letters, digits and dashes, so a folder
// name becomes a valid instance (and hostname) name.
func SafeName(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		ok := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')
		if ok {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > 40 {
		out = strings.Trim(out[:40], "-")
	}
	if out == "" {
		out = "devbox"
	}
	return out
}

// Validate reports every problem at once, each with its field path. It
// changes nothing: defaults come before it (applyDefaults), parsed values
// and resolved paths after (parseTexts, resolveMounts).
func (c *Config) Validate() error {
	var errs *multierror.Error
	bad := func(field, format string, a ...any) {
		errs = multierror.Append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if !nameRE.MatchString(c.Name) {
		bad("name", "%q must be 1-40 lower-case letters, digits or dashes, not starting or ending with a dash", c.Name)
	}
	for _, p := range boxes.CheckSource(c.Box, c.BoxSHA256, c.BoxIsName()) {
		bad(p.Field, "%s", p.Msg)
	}
	if c.CPUs < 1 || c.CPUs > 64 {
		bad("cpus", "%d must be between 1 and 64", c.CPUs)
	}
	if memory, err := ParseSize(c.MemoryText); err != nil {
		bad("memory", "%v", err)
	} else if memory < 256*MiB {
		bad("memory", "%s is too small (at least 256MiB)", memory)
	}
	if disk, err := ParseSize(c.DiskText); err != nil {
		bad("disk", "%v", err)
	} else if disk < 1*GiB {
		bad("disk", "%s is too small (at least 1GiB)", disk)
	}
	if !contains(Arches, c.Arch) {
		bad("arch", "%q must be x86_64 or aarch64 (or amd64, arm64), matching the box; the default is this host's", c.Arch)
	}
	if c.CPUModel != "" && !cpuModelRE.MatchString(c.CPUModel) {
		bad("cpu_model", "%q is not a CPU model name (host, max, or one of QEMU's, such as cortex-a72 or Haswell)", c.CPUModel)
	}
	if !contains(Accelerators, c.Accel) {
		bad("accel", "%q must be one of %s (DEVBOX_ACCEL overrides it)", c.Accel, strings.Join(Accelerators, ", "))
	}
	if !isLibvirtURI(c.LibvirtURI) {
		bad("libvirt_uri", "%q is not a libvirt URI such as qemu:///system", c.LibvirtURI)
	}
	if timeout, err := time.ParseDuration(c.BootTimeoutText); err != nil {
		bad("boot_timeout", "%q is not a duration (write it like 90s or 5m)", c.BootTimeoutText)
	} else if timeout < 10*time.Second {
		bad("boot_timeout", "%s is too short (at least 10s)", timeout)
	}
	if !userNameRE.MatchString(c.User.Name) {
		bad("user.name", "%q is not a valid Linux user name", c.User.Name)
	} else if reservedUsers[c.User.Name] {
		bad("user.name", "%q is a system account name; pick another", c.User.Name)
	}
	if c.User.UID != 0 && (c.User.UID < 1000 || c.User.UID > 60000) {
		bad("user.uid", "%d must be between 1000 and 60000", c.User.UID)
	}
	if !contains([]string{MountSSHFS, MountVirtioFS}, c.MountType) {
		bad("mount_type", "%q must be sshfs or virtiofs", c.MountType)
	}
	if !contains([]string{"auto", "docker", "distro"}, c.Docker.Source) {
		bad("docker.source", "%q must be auto, docker or distro", c.Docker.Source)
	}
	for i, p := range c.Docker.Platforms {
		if _, ok := platforms[p]; !ok {
			bad(fmt.Sprintf("docker.platforms[%d]", i), "%q is not a platform devbox can run; known: %s", p, strings.Join(knownPlatforms(), ", "))
		}
	}
	seen := map[string]bool{}
	for i, s := range c.Provision {
		p := fmt.Sprintf("provision[%d]", i)
		if !stepNameRE.MatchString(s.Name) {
			bad(p+".name", "%q must be 1-63 letters, digits, spaces, dots, dashes or underscores", s.Name)
		} else if seen[s.Name] {
			bad(p+".name", "%q is used by another step", s.Name)
		}
		seen[s.Name] = true
		if s.Run != "once" && s.Run != "always" {
			bad(p+".run", "%q must be once or always", s.Run)
		}
		if strings.TrimSpace(s.Script) == "" {
			bad(p+".script", "is required")
		}
	}
	c.validateMounts(bad)
	c.validateForwards(bad)
	for i, ig := range c.FileEvents.Ignore {
		if ig == "" || filepath.IsAbs(ig) || slices.Contains(strings.Split(filepath.ToSlash(ig), "/"), "..") {
			bad(fmt.Sprintf("file_events.ignore[%d]", i), "%q must be a name (node_modules) or a path inside the shared folder (build/cache)", ig)
		}
	}
	for i, path := range c.CACerts {
		if _, err := guestenv.ReadCerts([]string{path}); err != nil {
			bad(fmt.Sprintf("ca_certs[%d]", i), "%v", err)
		}
	}
	if errs != nil {
		errs.ErrorFormat = listErrors
	}
	return errs.ErrorOrNil()
}

func listErrors(es []error) string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = "  - " + e.Error()
	}
	return strings.Join(lines, "\n")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// BoxIsName reports whether box names a catalog box (debian-12) rather
// than a file: it has a name's form and no such file is in the config's
// folder.
func (c *Config) BoxIsName() bool {
	if !boxes.IsName(c.Box) {
		return false
	}
	_, err := os.Stat(filepath.Join(c.Dir, c.Box))
	return err != nil
}
