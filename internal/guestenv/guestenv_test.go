package guestenv

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devbox-vm/devbox/internal/testutil"
	"github.com/devbox-vm/devbox/sshutil"
)

func TestProxyFromEnv(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want Proxy
	}{
		{map[string]string{}, Proxy{}},
		// NO_PROXY alone passes nothing.
		{map[string]string{"NO_PROXY": "corp.example"}, Proxy{}},
		{map[string]string{"HTTP_PROXY": "http://proxy.corp.example:3128", "https_proxy": "http://u:p%40ss@proxy.corp.example:3129", "no_proxy": "localhost,.corp.example"},
			Proxy{HTTP: "http://proxy.corp.example:3128", HTTPS: "http://u:p%40ss@proxy.corp.example:3129", No: "localhost,.corp.example"}},
		// Upper case wins, as with Docker.
		{map[string]string{"HTTP_PROXY": "http://upper:1", "http_proxy": "http://lower:2"}, Proxy{HTTP: "http://upper:1"}},
		// A proxy on the host's loopback is the host's address in the VM.
		{map[string]string{"HTTP_PROXY": "http://127.0.0.1:3128", "HTTPS_PROXY": "localhost:3128"},
			Proxy{HTTP: "http://10.0.2.2:3128", HTTPS: "http://10.0.2.2:3128"}},
		{map[string]string{"HTTPS_PROXY": "http://[::1]:8888"}, Proxy{HTTPS: "http://10.0.2.2:8888"}},
	} {
		got, err := ProxyFromEnv(func(k string) string { return tc.env[k] }, "10.0.2.2")
		if err != nil {
			t.Errorf("%v: %v", tc.env, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%v:\n got %+v\nwant %+v", tc.env, got, tc.want)
		}
	}
	for _, bad := range []string{"http://", "http://proxy:3128\nEnvironment=X=1", "http://pro xy:1"} {
		_, err := ProxyFromEnv(func(k string) string {
			if k == "HTTPS_PROXY" {
				return bad
			}
			return ""
		}, "10.0.2.2")
		if err == nil || !strings.Contains(err.Error(), "HTTPS_PROXY") {
			t.Errorf("%q: err = %v, want one naming HTTPS_PROXY", bad, err)
		}
	}
}

func TestReadCerts(t *testing.T) {
	dir := t.TempDir()
	ca1, key := testutil.SelfSignedCert(t, "devbox test CA", true)
	ca2, _ := testutil.SelfSignedCert(t, "devbox test CA", true)
	leaf, _ := testutil.SelfSignedCert(t, "devbox test server", false)
	write := func(name string, parts ...[]byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, bytes.Join(parts, []byte("\n")), 0o644)
		return p
	}
	bundle := write("bundle.pem", []byte("# corporate CAs\n"), ca1, ca2)
	got, err := ReadCerts([]string{bundle})
	if err != nil || len(got) != 2 || !bytes.Equal(got[0], ca1) || !bytes.Equal(got[1], ca2) {
		t.Fatalf("bundle: %d certs, %v", len(got), err)
	}
	for name, tc := range map[string]struct {
		path string
		want string
	}{
		"a key beside the certificate": {write("withkey.pem", ca1, key), "holds a EC PRIVATE KEY block"},
		"a key alone":                  {write("key.pem", key), "holds a EC PRIVATE KEY block"},
		"a server certificate":         {write("leaf.pem", leaf), "is not a CA certificate"},
		"no PEM at all":                {write("ssh_config", []byte("Host *\n")), "no PEM certificate"},
		"a folder":                     {dir, "not a PEM certificate file"},
		"missing":                      {filepath.Join(dir, "nope.pem"), "no such file"},
	} {
		_, err := ReadCerts([]string{bundle, tc.path})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s: err = %v, want %q naming %s", name, err, tc.want, tc.path)
		}
	}
}

// shell runs scripts locally, as the guest would, with stand-ins for
// systemctl and update-ca-certificates that log their calls.
type shell struct {
	t        *testing.T
	env      []string
	callsLog string
}

func (s shell) Run(ctx context.Context, cmd sshutil.Cmd) (int, error) {
	if !cmd.Root || strings.Join(cmd.Args, " ") != "bash -s" {
		s.t.Fatalf("command %q as root %v, want bash -s as root", cmd.Args, cmd.Root)
	}
	c := exec.CommandContext(ctx, "bash", "-s")
	c.Stdin, c.Stdout, c.Stderr, c.Env = cmd.Stdin, cmd.Stdout, cmd.Stderr, s.env
	err := c.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), nil
	}
	return 0, err
}

func (s shell) calls() string {
	b, _ := os.ReadFile(s.callsLog)
	os.Remove(s.callsLog)
	return string(b)
}

func TestApply(t *testing.T) {
	root := t.TempDir()
	bin := filepath.Join(root, "bin")
	os.Mkdir(bin, 0o755)
	sh := shell{t: t, callsLog: filepath.Join(root, "calls")}
	for _, tool := range []string{"systemctl", "update-ca-certificates"} {
		os.WriteFile(filepath.Join(bin, tool), []byte("#!/bin/sh\necho \""+tool+" $*\" >> "+sh.callsLog+"\n"), 0o755)
	}
	certDir := filepath.Join(root, "certs")
	sh.env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "DEVBOX_CERT_DIR="+certDir)
	// The guest's paths, moved under root.
	files := func(f Files) Files {
		out := Files{}
		for p, c := range f {
			if strings.HasPrefix(p, CertDir) {
				out[certDir+strings.TrimPrefix(p, CertDir)] = c
			} else {
				out[root+p] = c
			}
		}
		return out
	}
	ctx := context.Background()
	ca, _ := testutil.SelfSignedCert(t, "devbox test CA", true)
	proxy := Proxy{HTTP: "http://proxy:3128", HTTPS: "http://u:100%25@proxy:3128", No: ".corp"}

	changed, err := Apply(ctx, sh, files(GuestFiles(proxy, [][]byte{ca})))
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 4 || !strings.Contains(strings.Join(changed, "\n"), "restarted docker") {
		t.Errorf("first apply changed %q", changed)
	}
	unit, _ := os.ReadFile(root + DockerProxyFile)
	if want := "Environment=\"HTTPS_PROXY=http://u:100%%25@proxy:3128\"\n"; !strings.Contains(string(unit), want) {
		t.Errorf("docker unit:\n%s\nlacks %q", unit, want)
	}
	if fi, _ := os.Stat(root + AptProxyFile); fi == nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("apt proxy file: %v", fi)
	}
	if got, _ := os.ReadFile(filepath.Join(certDir, "devbox-1.crt")); !bytes.Equal(got, ca) {
		t.Errorf("certificate not written")
	}
	if calls := sh.calls(); !strings.Contains(calls, "update-ca-certificates") || !strings.Contains(calls, "systemctl restart docker") {
		t.Errorf("calls: %s", calls)
	}

	// Again, the same: nothing changes, nothing restarts.
	if changed, err := Apply(ctx, sh, files(GuestFiles(proxy, [][]byte{ca}))); err != nil || len(changed) != 0 {
		t.Errorf("second apply changed %q (%v)", changed, err)
	}
	if calls := sh.calls(); calls != "" {
		t.Errorf("second apply called %s", calls)
	}

	// Nothing set any more: all of it goes, and the engine restarts.
	changed, err = Apply(ctx, sh, files(GuestFiles(Proxy{}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{root + DockerProxyFile, root + AptProxyFile, filepath.Join(certDir, "devbox-1.crt")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
	if len(changed) != 4 {
		t.Errorf("unset: changed %q", changed)
	}
	if calls := sh.calls(); !strings.Contains(calls, "update-ca-certificates") || !strings.Contains(calls, "systemctl daemon-reload") || !strings.Contains(calls, "systemctl restart docker") {
		t.Errorf("unset: calls %s", calls)
	}
}
