package config

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse. It must never panic, and a
// config it accepts must be one it would accept again: Validate passes on
// it unchanged, and every mount is an absolute host path.
//
// Each input is parsed twice: as the devbox.yaml of a folder that does not
// exist (so the default mount is refused and only explicit ones can pass),
// and of a real, empty project folder (so defaults validate too).
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("../../devbox.yaml.example")
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(example),
		"",
		"box: debian.qcow2\n",
		"name: demo\nbox: file:///boxes/debian.qcow2\ncpus: 1\nmemory: 256MiB\ndisk: 1GiB\naccel: tcg\nboot_timeout: 10s\n",
		"box: https://example.org/debian.qcow2\nbox_sha256: sha256:" + "ab12" + "0000000000000000000000000000000000000000000000000000000000aa" + "\n",
		"box: b.qcow2\nuser: {name: dev, uid: 1000}\ndocker: {source: distro}\n",
		"box: b.qcow2\nmounts:\n  - host: .\n    mode: ro\n  - host: ../project/sub/..\n  - host: /\n",
		"box: b.qcow2\nforwards:\n  - host: 8080\n    guest: 80\n  - host: 127.0.0.1:8080\n    guest: 81\n    proto: udp\n",
		"box: b.qcow2\nprovision:\n  - name: tools\n    script: apt-get install -y make\n  - name: tools\n    run: always\n    privileged: false\n    script: \" \"\n",
		"name: Bad_Name\nbox: b\ncpus: -1\nmemory: 99999999999999999999T\ndisk: 1 lot\nmemroy: 1GiB\n",
		"box: [1, 2]\nmounts: {host: x}\n",
	} {
		f.Add([]byte(seed))
	}
	project := filepath.Join(f.TempDir(), "project")
	if err := os.Mkdir(project, 0o755); err != nil {
		f.Fatal(err)
	}
	// One the missing folder accepts too: its only mount exists.
	f.Add([]byte("box: b.qcow2\nmounts:\n  - host: " + project + "\n    mode: ro\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, file := range []string{"/tmp/fuzz/devbox.yaml", filepath.Join(project, FileName)} {
			c, err := Parse(bytes.NewReader(data), file)
			if err != nil {
				if c != nil {
					t.Fatalf("Parse(%s) returned a config with its error %v", file, err)
				}
				continue
			}
			if c == nil {
				t.Fatalf("Parse(%s) returned neither a config nor an error", file)
			}
			for i, m := range c.Mounts {
				if !filepath.IsAbs(m.Host) {
					t.Errorf("Parse(%s) accepted mounts[%d].host %q, which is not absolute", file, i, m.Host)
				}
			}
			before := append([]Mount(nil), c.Mounts...)
			if err := c.Validate(); err != nil {
				t.Fatalf("Parse(%s) accepted a config that does not validate again:\n%v\ninput:\n%s", file, err, data)
			}
			if !slices.Equal(before, c.Mounts) {
				t.Errorf("validating again changed the mounts:\n%+v\n→ %+v", before, c.Mounts)
			}
		}
	})
}
