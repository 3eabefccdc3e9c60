// Package doctor tells whether devbox up can work on this host: a list of
// named checks, each ok, warn or fail, with what it found and, for a
// problem, the command that fixes it here. The checks are small functions
// over an Env, so tests can play any host without libvirt.
package doctor

import (
	"context"
	"strings"

	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/instance"
	"github.com/devbox-vm/devbox/vm"
	"github.com/devbox-vm/devbox/vm/libvirt"
)

// Status is a check's outcome.
type Status string

// Outcomes: Fail means devbox up would fail; Warn that it works, with a
// caveat worth reading.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Result is one check's outcome.
type Result struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Found  string `json:"found"`
	Fix    string `json:"fix"`
}

// Failed lists the names of the checks that failed.
func Failed(rs []Result) []string {
	var names []string
	for _, r := range rs {
		if r.Status == Fail {
			names = append(names, r.Name)
		}
	}
	return names
}

// Libvirt is the connection doctor asks; *libvirt.Driver is one.
type Libvirt interface {
	Probe(ctx context.Context, arch string) (libvirt.Probe, error)
	Close() error
}

var _ Libvirt = (*libvirt.Driver)(nil)

// Env is everything doctor reads from the host.
type Env struct {
	GOOS string
	// HostArch is this machine's architecture in libvirt's words.
	HostArch string
	// Root: fixes need no sudo.
	Root bool
	// OSRelease holds /etc/os-release's fields (ID, ID_LIKE, VERSION_ID).
	OSRelease map[string]string
	// CPUInfo is /proc/cpuinfo on Linux.
	CPUInfo string
	Getenv  func(string) string
	// DefaultURI is the libvirt URI without a config.
	DefaultURI func() string
	LookPath   func(string) (string, error)
	// Connect opens libvirt at uri; Socket names the local socket it
	// dials ("" for a remote URI).
	Connect func(ctx context.Context, uri string) (Libvirt, error)
	Socket  func(uri string) string
	// KVM reports whether /dev/kvm exists and whether we may open it.
	KVM func() (exists, usable bool)
	// HVSupport reads macOS's kern.hv_support.
	HVSupport func() (bool, error)
	// Exists, Writable and FreeSpace look at folders (FreeSpace: bytes
	// free to us on the filesystem holding the path).
	Exists    func(path string) bool
	Writable  func(dir string) bool
	FreeSpace func(path string) (uint64, error)
}

// Input is what the command found before the host checks.
type Input struct {
	// ConfigFile is the devbox.yaml looked at; "" when none was found.
	ConfigFile string
	// Config is nil when ConfigErr says why.
	Config    *config.Config
	ConfigErr error
	Home      instance.Home
	HomeErr   error
}

// Settings are what up would use: from the config, else the defaults.
type Settings struct {
	URI  string
	Arch string
	// Accel is auto, kvm, hvf or tcg; AccelFrom names who chose it.
	Accel, AccelFrom string
}

// SettingsFor reads the settings from cfg, or the defaults when it is nil.
func SettingsFor(env Env, cfg *config.Config) Settings {
	s := Settings{URI: env.DefaultURI(), Arch: env.HostArch, Accel: "auto", AccelFrom: "default"}
	if cfg != nil {
		s.URI, s.Arch, s.Accel, s.AccelFrom = cfg.LibvirtURI, cfg.Arch, cfg.Accel, "devbox.yaml"
	}
	if a := env.Getenv("DEVBOX_ACCEL"); a != "" {
		s.Accel, s.AccelFrom = a, "DEVBOX_ACCEL"
	}
	return s
}

// libvirtFacts is what connecting and probing libvirt gave.
type libvirtFacts struct {
	Socket     string
	ConnectErr error
	Probe      *libvirt.Probe
	ProbeErr   error
}

// Run runs every check, in the order a person fixes them.
func Run(ctx context.Context, env Env, in Input) []Result {
	s := SettingsFor(env, in.Config)
	var lf libvirtFacts
	lv, err := env.Connect(ctx, s.URI)
	// After connecting: a session daemon Connect started may listen
	// elsewhere than where one was looked for before.
	lf.Socket = env.Socket(s.URI)
	if err != nil {
		lf.ConnectErr = err
	} else {
		p, err := lv.Probe(ctx, s.Arch)
		lv.Close()
		if err != nil {
			lf.ProbeErr = err
		} else {
			lf.Probe = &p
		}
	}
	rs := []Result{
		checkConfig(in, s),
		checkLibvirt(s, lf),
		checkEmulator(env, s, lf),
	}
	if s.Arch == "aarch64" {
		rs = append(rs, checkFirmware(env, s, lf))
	}
	return append(rs,
		checkAccel(env, s, lf.Probe),
		checkPool(env, lf),
		checkHome(env, in),
		checkDocker(env),
	)
}

// libvirtMessage splits an error of vm/libvirt into what happened and
// its hint, dropping the sentinel's words.
func libvirtMessage(err error) (found, hint string) {
	msg := strings.TrimPrefix(err.Error(), vm.ErrUnavailable.Error()+": ")
	if i := strings.LastIndex(msg, " (hint: "); i >= 0 && strings.HasSuffix(msg, ")") {
		return msg[:i], msg[i+len(" (hint: ") : len(msg)-1]
	}
	return msg, ""
}
