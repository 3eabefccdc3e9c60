package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/devbox-vm/devbox/internal/filenames"
)

// maxSocketPath is the longest unix socket path devbox makes: a socket
// address holds 104 bytes on macOS and 108 on Linux, the final NUL
// included; 100 leaves a margin.
const maxSocketPath = 100

// socketEnv is what SocketDir reads from the machine, for tests.
type socketEnv struct {
	goos    string
	uid     int
	getenv  func(string) string
	tempDir string // os.TempDir(): per user, and private, on macOS
	tmp     string // the short fallback when tempDir is long
}

// SocketDir is the folder for an instance's unix sockets (the agent's and
// the Docker forward's). It is the instance folder itself while their
// paths fit in a socket address; a deep folder gets a short private one
// named after it instead: $XDG_RUNTIME_DIR/devbox/<hash> on Linux,
// $TMPDIR/devbox-<uid>/<hash> (or /tmp/devbox-<uid>/<hash>) on macOS and
// when there is no runtime folder. That one is created 0700 and must be
// ours and not a symlink, or SocketDir fails naming it.
func SocketDir(instanceDir string) (string, error) {
	return socketDir(instanceDir, socketEnv{
		goos: runtime.GOOS, uid: os.Getuid(), getenv: os.Getenv, tempDir: os.TempDir(), tmp: "/tmp",
	})
}

func socketDir(instanceDir string, env socketEnv) (string, error) {
	instanceDir = filepath.Clean(instanceDir)
	longest := max(len(filenames.AgentSocket), len(filenames.DockerSocket))
	fits := func(dir string) bool { return len(dir)+1+longest <= maxSocketPath }
	if fits(instanceDir) {
		return instanceDir, nil
	}
	sum := sha256.Sum256([]byte(instanceDir))
	hash := hex.EncodeToString(sum[:])[:8]
	var bases []string
	if rt := env.getenv("XDG_RUNTIME_DIR"); env.goos != "darwin" && filepath.IsAbs(rt) {
		if fi, err := os.Stat(rt); err == nil && fi.IsDir() {
			bases = append(bases, filepath.Join(rt, "devbox"))
		}
	}
	user := fmt.Sprintf("devbox-%d", env.uid)
	bases = append(bases, filepath.Join(env.tempDir, user), filepath.Join(env.tmp, user))
	for _, base := range bases {
		if !fits(filepath.Join(base, hash)) {
			continue
		}
		for _, d := range []string{base, filepath.Join(base, hash)} {
			if err := privateDir(d, env.uid); err != nil {
				return "", fmt.Errorf("socket folder for %s: %w", instanceDir, err)
			}
		}
		return filepath.Join(base, hash), nil
	}
	return "", fmt.Errorf("socket folder for %s: no folder short enough for a unix socket among %s (hint: set TMPDIR to a short folder)",
		instanceDir, strings.Join(bases, ", "))
}

// privateDir makes dir a folder only we can use: it creates it 0700, or
// checks that the one there is ours and no symlink (in a shared /tmp
// someone else may have made it first), and takes group and other
// rights away.
func privateDir(dir string, uid int) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symlink (hint: remove it)", dir)
	case !fi.IsDir():
		return fmt.Errorf("%s is not a folder (hint: remove it)", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != uid {
		return fmt.Errorf("%s belongs to uid %d, not to you (uid %d) (hint: remove it as its owner or root)", dir, st.Uid, uid)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return os.Chmod(dir, 0o700)
	}
	return nil
}

// SocketPath is where the socket name of the instance folder dir lives.
func SocketPath(dir, name string) (string, error) {
	sd, err := SocketDir(dir)
	if err != nil {
		return "", err
	}
	return filepath.Join(sd, name), nil
}
