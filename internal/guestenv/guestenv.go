// Package guestenv carries the host's network settings into the VM: the
// proxy the host's environment names (HTTP_PROXY, HTTPS_PROXY, NO_PROXY)
// for the Docker engine and apt, and the CA certificates devbox.yaml's
// ca_certs names for the guest's trust store, so pulls, builds and
// package installs work behind a corporate proxy that inspects TLS.
//
// Apply runs on every up, before provisioning (which may need the
// proxy): it writes only what differs, removes what is no longer set,
// and restarts the engine only when its settings changed.
package guestenv

import (
	"bytes"
	"context"
	"crypto/x509"
	_ "embed"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"

	"github.com/devbox-vm/devbox/sshutil"
)

// Proxy is the host's proxy settings, as the guest must use them.
type Proxy struct {
	HTTP, HTTPS, No string
}

// Set reports whether any proxy is set.
func (p Proxy) Set() bool { return p.HTTP != "" || p.HTTPS != "" }

// ProxyFromEnv reads the host's proxy variables (the upper-case name
// first, as Docker does, then the lower-case one). A proxy on the host's
// loopback (a local cntlm or px) is named by hostAddr instead: the VM's
// 127.0.0.1 is its own.
func ProxyFromEnv(getenv func(string) string, hostAddr string) (Proxy, error) {
	get := func(name string) string {
		if v := getenv(strings.ToUpper(name)); v != "" {
			return v
		}
		return getenv(strings.ToLower(name))
	}
	var p Proxy
	var err error
	if p.HTTP, err = guestProxyURL("HTTP_PROXY", get("HTTP_PROXY"), hostAddr); err != nil {
		return Proxy{}, err
	}
	if p.HTTPS, err = guestProxyURL("HTTPS_PROXY", get("HTTPS_PROXY"), hostAddr); err != nil {
		return Proxy{}, err
	}
	if p.Set() {
		p.No = get("NO_PROXY")
	}
	return p, nil
}

// guestProxyURL checks a proxy URL and points one on the host's loopback
// at hostAddr.
func guestProxyURL(name, raw, hostAddr string) (string, error) {
	if raw == "" {
		return "", nil
	}
	withScheme := raw
	if !strings.Contains(raw, "://") {
		withScheme = "http://" + raw // curl and Docker take a bare host:port
	}
	u, err := url.Parse(withScheme)
	if err != nil || u.Hostname() == "" || strings.ContainsAny(raw, "\n\r\"'\\ ") {
		return "", fmt.Errorf("%s=%q on the host is not a proxy URL like http://proxy.example:3128 (hint: fix or unset it, then devbox up)", name, raw)
	}
	host := u.Hostname()
	if host == "localhost" || net.ParseIP(host) != nil && net.ParseIP(host).IsLoopback() {
		if port := u.Port(); port != "" {
			u.Host = net.JoinHostPort(hostAddr, port)
		} else {
			u.Host = hostAddr
		}
	}
	return u.String(), nil
}

// maxCertFile bounds a ca_certs file: a bundle of a few hundred
// certificates fits; a device or a huge file named by mistake does not.
const maxCertFile = 1 << 20

// ReadCerts reads PEM files that hold CA certificates and nothing else,
// and returns each certificate re-encoded, so that nothing but
// certificates (public data) leaves the host even when a path names
// another file. devbox.yaml, which the VM can write, names the paths.
func ReadCerts(paths []string) ([][]byte, error) {
	var certs [][]byte
	for _, path := range paths {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if !fi.Mode().IsRegular() || fi.Size() > maxCertFile {
			return nil, fmt.Errorf("%s: not a PEM certificate file (a regular file of at most 1 MiB)", path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		n := 0
		for {
			var b *pem.Block
			b, data = pem.Decode(data)
			if b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				return nil, fmt.Errorf("%s holds a %s block: only certificates go to the VM (hint: name a file with CA certificates only)", path, b.Type)
			}
			cert, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: certificate %d: %w", path, n+1, err)
			}
			if !cert.IsCA {
				return nil, fmt.Errorf("%s: certificate %d (%s) is not a CA certificate", path, n+1, cert.Subject)
			}
			certs = append(certs, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.Bytes}))
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("%s: no PEM certificate in it (hint: convert DER with openssl x509 -inform der -in FILE -out FILE.pem)", path)
		}
	}
	return certs, nil
}

// Files are the guest files that carry the settings, by path: the
// content each must have, or nil where it must not exist.
type Files map[string][]byte

// Guest paths devbox manages.
const (
	DockerProxyFile = "/etc/systemd/system/docker.service.d/devbox-proxy.conf"
	AptProxyFile    = "/etc/apt/apt.conf.d/90devbox-proxy"
	CertDir         = "/usr/local/share/ca-certificates/devbox"
)

// GuestFiles is what the guest's files must hold for p and certs.
func GuestFiles(p Proxy, certs [][]byte) Files {
	f := Files{DockerProxyFile: nil, AptProxyFile: nil}
	if p.Set() {
		var unit bytes.Buffer
		unit.WriteString("# Written by devbox from the host's proxy settings at devbox up.\n[Service]\n")
		for _, kv := range [][2]string{{"HTTP_PROXY", p.HTTP}, {"HTTPS_PROXY", p.HTTPS}, {"NO_PROXY", p.No}} {
			if kv[1] != "" {
				fmt.Fprintf(&unit, "Environment=\"%s=%s\"\n", kv[0], systemdEscape(kv[1]))
			}
		}
		f[DockerProxyFile] = unit.Bytes()
		var apt bytes.Buffer
		apt.WriteString("// Written by devbox from the host's proxy settings at devbox up.\n")
		if p.HTTP != "" {
			fmt.Fprintf(&apt, "Acquire::http::Proxy \"%s\";\n", p.HTTP)
		}
		if p.HTTPS != "" {
			fmt.Fprintf(&apt, "Acquire::https::Proxy \"%s\";\n", p.HTTPS)
		}
		f[AptProxyFile] = apt.Bytes()
	}
	for i, c := range certs {
		f[fmt.Sprintf("%s/devbox-%d.crt", CertDir, i+1)] = c
	}
	return f
}

// systemdEscape keeps % (a specifier) literal in a unit file.
func systemdEscape(s string) string { return strings.ReplaceAll(s, "%", "%%") }

//go:embed apply.sh
var applyScript string

// Script is the root shell script that makes the guest's files f: the
// managed files are passed base64-encoded in front of apply.sh.
func Script(f Files) string {
	var b strings.Builder
	paths := make([]string, 0, len(f))
	for p := range f {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	b.WriteString("want() {\n")
	for _, p := range paths {
		if f[p] == nil {
			fmt.Fprintf(&b, "  sync_file %s -\n", p)
		} else {
			fmt.Fprintf(&b, "  sync_file %s %s\n", p, base64.StdEncoding.EncodeToString(f[p]))
		}
	}
	b.WriteString("}\n")
	b.WriteString(applyScript)
	return b.String()
}

// Runner runs a command in the guest (sshutil.Client does).
type Runner interface {
	Run(ctx context.Context, cmd sshutil.Cmd) (int, error)
}

// Apply makes the guest's files f as root and returns what it changed,
// one line each (none when the guest already had them).
func Apply(ctx context.Context, r Runner, f Files) ([]string, error) {
	var out, errb bytes.Buffer
	// On stdin: certificate bundles can outgrow an SSH command line.
	code, err := r.Run(ctx, sshutil.Cmd{Args: []string{"bash", "-s"}, Root: true, Stdin: strings.NewReader(Script(f)), Stdout: &out, Stderr: &errb})
	if err != nil {
		return nil, fmt.Errorf("proxy and certificate settings: %w", err)
	}
	if code != 0 {
		return nil, fmt.Errorf("proxy and certificate settings: the guest script exited %d: %s", code, strings.TrimSpace(errb.String()+out.String()))
	}
	var changed []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if l != "" {
			changed = append(changed, l)
		}
	}
	return changed, nil
}
