// Package sshutil is devbox's SSH client: key generation, pinned-host-key
// connections to guests, and remote command execution. It is the only package
// that imports golang.org/x/crypto/ssh; its API deals in paths, strings and
// bytes only.
package sshutil

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// KeyPair is an SSH key pair in the formats OpenSSH reads and writes.
type KeyPair struct {
	Private []byte // OpenSSH PEM ("-----BEGIN OPENSSH PRIVATE KEY-----"), usable by ssh -i
	Public  string // authorized_keys form: "ssh-ed25519 AAAA... comment", no trailing newline
}

// NewEd25519 generates an unencrypted ed25519 key pair. comment (may be empty)
// is stored in both halves.
func NewEd25519(comment string) (KeyPair, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return KeyPair{}, fmt.Errorf("generate ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return KeyPair{}, fmt.Errorf("marshal ed25519 private key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return KeyPair{}, fmt.Errorf("marshal ed25519 public key: %w", err)
	}
	return KeyPair{Private: pem.EncodeToMemory(block), Public: authorizedLine(sshPub, comment)}, nil
}

// authorizedLine formats key in authorized_keys form, without a newline.
func authorizedLine(key ssh.PublicKey, comment string) string {
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	if comment = strings.TrimSpace(comment); comment != "" {
		line += " " + comment
	}
	return line
}

// WriteKeyPair writes kp.Private to path (0600) and kp.Public plus a newline
// to path+".pub" (0644), creating the parent directory (0700) if needed. Each
// file is replaced atomically, so a reader never sees a partial key.
func WriteKeyPair(path string, kp KeyPair) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write key pair %s: %w", path, err)
	}
	if err := writeFileAtomic(path, kp.Private, 0o600); err != nil {
		return fmt.Errorf("write key pair %s: %w", path, err)
	}
	if err := writeFileAtomic(path+".pub", []byte(kp.Public+"\n"), 0o644); err != nil {
		return fmt.Errorf("write key pair %s: %w", path, err)
	}
	return nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after a successful rename
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err1 := f.Close(); err == nil {
		err = err1
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// ReadKeyPair reads a key pair written by WriteKeyPair (or ssh-keygen). The
// private key must be unencrypted. If path+".pub" is missing the public half
// is derived from the private key (without a comment); if present it must
// match the private key.
func ReadKeyPair(path string) (KeyPair, error) {
	priv, err := os.ReadFile(path)
	if err != nil {
		return KeyPair{}, fmt.Errorf("read key pair %s: %w", path, err)
	}
	signer, err := ssh.ParsePrivateKey(priv)
	if err != nil {
		return KeyPair{}, fmt.Errorf("read key pair %s: %w", path, err)
	}
	pubBytes, err := os.ReadFile(path + ".pub")
	if os.IsNotExist(err) {
		return KeyPair{Private: priv, Public: authorizedLine(signer.PublicKey(), "")}, nil
	}
	if err != nil {
		return KeyPair{}, fmt.Errorf("read key pair %s: %w", path, err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(pubBytes)
	if err != nil {
		return KeyPair{}, fmt.Errorf("read key pair %s: parse %s.pub: %w", path, path, err)
	}
	if !bytes.Equal(pub.Marshal(), signer.PublicKey().Marshal()) {
		return KeyPair{}, fmt.Errorf("read key pair %s: %s.pub does not match the private key", path, path)
	}
	return KeyPair{Private: priv, Public: strings.TrimSpace(string(pubBytes))}, nil
}

// HostKeyLine returns an OpenSSH known_hosts line for a host key pub
// (authorized_keys form) served at addrPort, e.g.
// "[127.0.0.1]:2222 ssh-ed25519 AAAA...". Any comment in pub is dropped; port
// 22 is written as the bare host, as OpenSSH does.
func HostKeyLine(addrPort string, pub string) string {
	fields := strings.Fields(pub)
	if len(fields) > 2 {
		fields = fields[:2]
	}
	return knownhosts.Normalize(addrPort) + " " + strings.Join(fields, " ")
}

// Fingerprint is the SHA256 fingerprint of a public key in authorized_keys
// form, as OpenSSH prints it ("SHA256:...").
func Fingerprint(pub string) (string, error) {
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pub))
	if err != nil {
		return "", fmt.Errorf("fingerprint of %q: %w", pub, err)
	}
	return ssh.FingerprintSHA256(key), nil
}
