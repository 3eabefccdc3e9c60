package instance

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
	"github.com/devbox-vm/devbox/internal/lockfile"
	"github.com/devbox-vm/devbox/sshutil"
	"github.com/devbox-vm/devbox/vm"
	"github.com/devbox-vm/devbox/vm/fake"
)

func testInstance(t *testing.T, yaml string) (*Instance, *fake.Driver) {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse(strings.NewReader(yaml), filepath.Join(dir, "devbox.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	d := fake.New()
	in := New(cfg, Home{State: filepath.Join(t.TempDir(), "home")}, cli.NewStatus(io.Discard),
		func(context.Context, string) (vm.Driver, error) { return d, nil })
	return in, d
}

func TestDockerEnvPerShell(t *testing.T) {
	in, _ := testInstance(t, "name: demo\nbox: /x.qcow2\n")
	sock := in.DockerSocket()
	for shell, want := range map[string]string{
		"bash":       "export DOCKER_HOST=unix://" + sock + "\n",
		"zsh":        "export DOCKER_HOST=unix://" + sock + "\n",
		"fish":       "set -gx DOCKER_HOST unix://" + sock + ";\n",
		"powershell": "$Env:DOCKER_HOST = \"unix://" + sock + "\"\n",
	} {
		got, err := in.DockerEnv(shell)
		if err != nil || !strings.HasPrefix(got, want) {
			t.Errorf("%s: got %q, %v; want prefix %q", shell, got, err, want)
		}
	}
	// A home with a space is quoted for the shell.
	in.Home.State = "/tmp/my home"
	if got, _ := in.DockerEnv("bash"); !strings.HasPrefix(got, "export DOCKER_HOST='unix:///tmp/my home/instances/demo/docker.sock'\n") {
		t.Errorf("not quoted: %q", got)
	}
	if _, err := in.DockerEnv("tcsh"); err == nil || !strings.Contains(err.Error(), "tcsh") {
		t.Errorf("unknown shell: %v", err)
	}
}

func TestSSHConfigBlock(t *testing.T) {
	in, d := testInstance(t, "name: demo\nbox: /x.qcow2\n")
	host, _ := sshutil.NewEd25519("host")
	if err := sshutil.WriteKeyPair(in.hostKeyFile(), host); err != nil {
		t.Fatal(err)
	}
	d.Instances[in.Domain()] = &vm.Info{Name: in.Domain(), State: vm.StateRunning, SSHPort: 40123, User: "dev"}
	block, err := in.SSHConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Host devbox-demo\n", "Port 40123\n", "User dev\n", "IdentityFile " + in.keyFile() + "\n",
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

func TestRunOutsideSharedFolder(t *testing.T) {
	in, _ := testInstance(t, "name: demo\nbox: /x.qcow2\n")
	os.MkdirAll(in.Dir(), 0o700)
	if err := in.recordShares(in.wantedShares()); err != nil {
		t.Fatal(err)
	}
	code, err := in.Run(context.Background(), []string{"true"}, RunOptions{Dir: t.TempDir(), Stderr: io.Discard})
	if code != 1 || err == nil || !strings.Contains(err.Error(), "is not shared with the VM") || !strings.Contains(err.Error(), in.Cfg.Dir) {
		t.Errorf("code %d, err %v", code, err)
	}
}

func TestAgentStateFromLiveFacts(t *testing.T) {
	in, _ := testInstance(t, "name: demo\nbox: /x.qcow2\n")
	if st := in.Agent(context.Background()); st.Running || !strings.Contains(st.Reason, "never started") {
		t.Errorf("no pid file: %+v", st)
	}
	os.MkdirAll(in.Dir(), 0o700)
	// A pid that cannot exist.
	os.WriteFile(in.agentPIDFile(), []byte("2147483646\n"), 0o600)
	if st := in.Agent(context.Background()); st.Running || !strings.Contains(st.Reason, "is gone") {
		t.Errorf("dead pid: %+v", st)
	}
	// A live process (this test, holding the pid file's lock as the
	// agent does) that does not answer on the socket.
	lk, err := lockfile.TryLock(in.agentPIDFile(), "devbox agent of demo")
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Unlock()
	if st := in.Agent(context.Background()); st.Running || !strings.Contains(st.Reason, "does not answer") {
		t.Errorf("silent process: %+v", st)
	}
}
