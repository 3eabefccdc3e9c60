package seed

import (
	"bytes"
	"strings"
	"testing"

	"github.com/kdomanski/iso9660"
	"gopkg.in/yaml.v3"

	"github.com/devbox-vm/devbox/internal/golden"
)

var data = Data{
	Instance: "demo", InstanceID: "devbox-demo-0123", Hostname: "demo", User: "dev", UID: 1000,
	AuthorizedKey:  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUser devbox-demo",
	HostKeyPrivate: "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\nBBBB\n-----END OPENSSH PRIVATE KEY-----\n",
	HostKeyPublic:  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHost devbox-host-demo",
}

func TestFilesGolden(t *testing.T) {
	files, err := Files(data)
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "user-data", files["user-data"])
	golden.Check(t, "meta-data", files["meta-data"])
}

func TestUserDataIsYAMLWithKeys(t *testing.T) {
	d := data
	d.User = `odd"name: x`
	files, err := Files(d)
	if err != nil {
		t.Fatal(err)
	}
	var ud struct {
		Users []struct {
			Name string   `yaml:"name"`
			Keys []string `yaml:"ssh_authorized_keys"`
		} `yaml:"users"`
		SSHKeys map[string]string `yaml:"ssh_keys"`
	}
	if err := yaml.Unmarshal(files["user-data"], &ud); err != nil {
		t.Fatalf("user-data is not YAML: %v\n%s", err, files["user-data"])
	}
	if len(ud.Users) != 1 || ud.Users[0].Name != d.User || ud.Users[0].Keys[0] != d.AuthorizedKey {
		t.Errorf("users: %+v", ud.Users)
	}
	if ud.SSHKeys["ed25519_private"] != d.HostKeyPrivate || ud.SSHKeys["ed25519_public"] != d.HostKeyPublic {
		t.Errorf("host key did not survive: %q", ud.SSHKeys)
	}
	if !bytes.HasPrefix(files["user-data"], []byte("#cloud-config\n")) {
		t.Error("user-data must start with #cloud-config")
	}
}

func TestISOHasLabelAndFiles(t *testing.T) {
	b, err := ISO(data)
	if err != nil {
		t.Fatal(err)
	}
	img, err := iso9660.OpenImage(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	label, err := img.Label()
	if err != nil || !strings.EqualFold(label, "cidata") {
		t.Errorf("label = %q, %v", label, err)
	}
	root, err := img.RootDir()
	if err != nil {
		t.Fatal(err)
	}
	children, err := root.GetChildren()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := Files(data)
	found := map[string]bool{}
	for _, c := range children {
		found[c.Name()] = true
		if want, ok := files[c.Name()]; ok {
			var got bytes.Buffer
			got.ReadFrom(c.Reader())
			if got.String() != string(want) {
				t.Errorf("%s content differs", c.Name())
			}
		}
	}
	if !found["user-data"] || !found["meta-data"] {
		t.Errorf("files on the image: %v", found)
	}
}
