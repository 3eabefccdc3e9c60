package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devbox-vm/devbox/internal/cli"
	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/filenames"
	"github.com/devbox-vm/devbox/internal/instance"
	"github.com/devbox-vm/devbox/sshutil"
	"github.com/devbox-vm/devbox/vm"
	"github.com/devbox-vm/devbox/vm/fake"
)

func TestDockerEnvPerShell(t *testing.T) {
	sock := "/home/u/.local/share/devbox/instances/demo/docker.sock"
	for shell, want := range map[string]string{
		"bash":       "export DOCKER_HOST=unix://" + sock + "\n",
		"zsh":        "export DOCKER_HOST=unix://" + sock + "\n",
		"fish":       "set -gx DOCKER_HOST unix://" + sock + ";\n",
		"powershell": "$Env:DOCKER_HOST = \"unix://" + sock + "\"\n",
	} {
		got, err := dockerEnvLine(shell, sock)
		if err != nil || !strings.HasPrefix(got, want) {
			t.Errorf("%s: got %q, %v; want prefix %q", shell, got, err, want)
		}
	}
	// A home with a space is quoted for the shell.
	if got, _ := dockerEnvLine("bash", "/tmp/my home/instances/demo/docker.sock"); !strings.HasPrefix(got, "export DOCKER_HOST='unix:///tmp/my home/instances/demo/docker.sock'\n") {
		t.Errorf("not quoted: %q", got)
	}
	if _, err := dockerEnvLine("tcsh", sock); err == nil || !strings.Contains(err.Error(), "tcsh") {
		t.Errorf("unknown shell: %v", err)
	}
}

func TestSSHConfigBlock(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Parse(strings.NewReader("name: demo\nbox: /x.qcow2\n"), filepath.Join(dir, "devbox.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	d := fake.New()
	in := instance.New(cfg, instance.Home{State: filepath.Join(dir, "home")}, cli.NewStatus(io.Discard),
		func(context.Context, string) (vm.Driver, error) { return d, nil })
	host, _ := sshutil.NewEd25519("host")
	os.MkdirAll(in.Dir(), 0o700)
	if err := sshutil.WriteKeyPair(in.HostKeyFile(), host); err != nil {
		t.Fatal(err)
	}
	d.Instances[in.Domain()] = &vm.Info{Name: in.Domain(), State: vm.StateRunning, SSHPort: 40123, User: "dev"}
	block, err := sshConfigBlock(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Host devbox-demo\n", "Port 40123\n", "User dev\n", "IdentityFile " + in.KeyFile() + "\n",
		"HostKeyAlias devbox-demo\n", "StrictHostKeyChecking yes\n", "UserKnownHostsFile " + filepath.Join(in.Dir(), filenames.KnownHosts)} {
		if !strings.Contains(block, want) {
			t.Errorf("block lacks %q:\n%s", want, block)
		}
	}
	if strings.Contains(block, "StrictHostKeyChecking no") {
		t.Error("host key checking switched off")
	}
	known, _ := os.ReadFile(filepath.Join(in.Dir(), filenames.KnownHosts))
	fields := strings.Fields(host.Public)
	if string(known) != "devbox-demo "+fields[0]+" "+fields[1]+"\n" {
		t.Errorf("known_hosts = %q", known)
	}
}
