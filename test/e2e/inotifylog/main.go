//go:build linux

// Command inotifylog prints the inotify events of the folders named on
// its command line, one line each ("CREATE dir/name"), after a line
// "ready" once every watch is set: the end-to-end tests' watcher, run in
// the VM and in a container (as inotifywait -m would be).
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

var names = []struct {
	mask uint32
	name string
}{
	{unix.IN_CREATE, "CREATE"}, {unix.IN_MODIFY, "MODIFY"}, {unix.IN_CLOSE_WRITE, "CLOSE_WRITE"},
	{unix.IN_DELETE, "DELETE"}, {unix.IN_MOVED_FROM, "MOVED_FROM"}, {unix.IN_MOVED_TO, "MOVED_TO"},
	{unix.IN_ATTRIB, "ATTRIB"},
}

func main() {
	fd, err := unix.InotifyInit1(0)
	if err != nil {
		fatal(err)
	}
	var mask uint32
	for _, n := range names {
		mask |= n.mask
	}
	dirs := map[int32]string{}
	for _, dir := range os.Args[1:] {
		wd, err := unix.InotifyAddWatch(fd, dir, mask)
		if err != nil {
			fatal(fmt.Errorf("watch %s: %w", dir, err))
		}
		dirs[int32(wd)] = dir
	}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "ready")
	out.Flush()
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			fatal(err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
			for _, nm := range names {
				if ev.Mask&nm.mask != 0 {
					fmt.Fprintf(out, "%s %s\n", nm.name, filepath.Join(dirs[ev.Wd], name))
				}
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
		out.Flush()
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "inotifylog:", err)
	os.Exit(1)
}
