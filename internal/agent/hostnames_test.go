package agent

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func query(t *testing.T, name string, typ dnsmessage.Type) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 4242, RecursionDesired: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET})
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestAnswerHostName(t *testing.T) {
	forwarded := 0
	forward := func(q []byte) ([]byte, error) { forwarded++; return []byte("upstream"), nil }
	for _, name := range []string{"host.docker.internal.", "HOST.Devbox.Internal."} {
		raw, err := answerHostName(query(t, name, dnsmessage.TypeA), forward)
		if err != nil {
			t.Fatal(err)
		}
		var m dnsmessage.Message
		if err := m.Unpack(raw); err != nil {
			t.Fatal(err)
		}
		if m.ID != 4242 || !m.Response || m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 1 {
			t.Fatalf("%s: %+v", name, m)
		}
		a, ok := m.Answers[0].Body.(*dnsmessage.AResource)
		if !ok || net.IP(a.A[:]).String() != GuestHostAddress {
			t.Errorf("%s: answer %v, want A %s", name, m.Answers[0].Body, GuestHostAddress)
		}
	}
	// AAAA: the name exists, without an IPv6 address (NOERROR, no
	// records), so resolvers do not give up on the A answer.
	raw, err := answerHostName(query(t, "host.docker.internal.", dnsmessage.TypeAAAA), forward)
	if err != nil {
		t.Fatal(err)
	}
	var m dnsmessage.Message
	if err := m.Unpack(raw); err != nil || m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 0 {
		t.Errorf("AAAA: %+v %v", m, err)
	}
	if forwarded != 0 {
		t.Errorf("a host name was forwarded")
	}
	// Anything else goes to the host's resolver, untouched.
	for _, name := range []string{"example.org.", "host.docker.internal.example.org.", "docker.internal."} {
		out, err := answerHostName(query(t, name, dnsmessage.TypeA), forward)
		if err != nil || string(out) != "upstream" {
			t.Errorf("%s: %q %v, want it forwarded", name, out, err)
		}
	}
	if _, err := answerHostName([]byte{1, 2, 3}, forward); err == nil {
		t.Error("garbage answered")
	}
	failing := func([]byte) ([]byte, error) { return nil, errors.New("no resolver") }
	if _, err := answerHostName(query(t, "example.org.", dnsmessage.TypeA), failing); err == nil {
		t.Error("a failed forward answered")
	}
}

func TestResolvers(t *testing.T) {
	f := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(f, []byte("# generated\nsearch lan\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nnameserver 2001:db8::53\noptions edns0\n"), 0o644)
	if got := strings.Join(resolvers(f), " "); got != "192.0.2.53 2001:db8::53" {
		t.Errorf("resolvers = %q", got)
	}
	if got := resolvers(filepath.Join(t.TempDir(), "none")); got != nil {
		t.Errorf("missing file: %v", got)
	}
}

// The guest script, run against a stand-in iptables that logs its
// arguments: the hosts line is replaced, not added twice, and the DNAT
// rules match each name as DNS labels.
func TestHostNamesScript(t *testing.T) {
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	os.WriteFile(hosts, []byte("127.0.0.1 localhost\n10.0.2.2 host.devbox.internal host.docker.internal # devbox host names\n"), 0o644)
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	log := filepath.Join(dir, "iptables.log")
	os.WriteFile(filepath.Join(bin, "iptables"), []byte("#!/bin/sh\necho \"$*\" >> "+log+"\ncase \"$*\" in *-C*) exit 1;; esac\n"), 0o755)
	for run := 0; run < 2; run++ {
		cmd := exec.Command("sh", "-s", GuestHostAddress, "40053")
		cmd.Stdin = strings.NewReader(hostNamesScript)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "DEVBOX_HOSTS_FILE="+hosts)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("script: %v\n%s", err, out)
		}
	}
	data, _ := os.ReadFile(hosts)
	if want := "127.0.0.1 localhost\n10.0.2.2 host.devbox.internal host.docker.internal # devbox host names\n"; string(data) != want {
		t.Errorf("hosts file:\n%s\nwant:\n%s", data, want)
	}
	calls, _ := os.ReadFile(log)
	for _, want := range []string{
		"-t nat -A DEVBOX_HOST_NAMES -p udp --dport 53 -m string --algo bm --hex-string |04|host|06|docker|08|internal|00| -j DNAT --to-destination 10.0.2.2:40053",
		"-t nat -A DEVBOX_HOST_NAMES -p udp --dport 53 -m string --algo bm --hex-string |04|host|06|devbox|08|internal|00| -j DNAT --to-destination 10.0.2.2:40053",
		"-t nat -I OUTPUT -j DEVBOX_HOST_NAMES",
		"-t nat -I PREROUTING -j DEVBOX_HOST_NAMES",
	} {
		if !strings.Contains(string(calls), want+"\n") {
			t.Errorf("iptables never called with %q:\n%s", want, calls)
		}
	}
}
