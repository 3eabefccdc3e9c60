package sshutil

import (
	"errors"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/devbox-vm/devbox/internal/shell"
)

// Cmd is one command in the guest: what runs, in which folder, as whom,
// with which stdio, terminal and signals. It is the only way devbox runs
// anything in a guest (Client.Run, Output and Pipe take it), so quoting,
// sudo and the folder change are written once, in Line.
type Cmd struct {
	// Args is the program and its arguments, each passed as one word.
	// With Script they are the script's $1, $2, ...
	Args []string
	// Script is a POSIX sh script to run instead of a program: sh runs it,
	// or, when it has no Args, Dir or Root, the user's login shell, as
	// sshd runs any command line.
	Script string
	// Dir is the folder the command runs in; "" is the user's home.
	Dir string
	// Root runs the command as root, through non-interactive sudo.
	Root bool

	// Stdin may be nil (empty input); its EOF closes the remote stdin.
	// Stdout and Stderr may be nil (discarded).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// PTY gives the command a remote terminal; nil, none. TerminalPTY
	// decides it from the caller's stdin.
	PTY *PTY
	// Signals received here while the command runs are sent to it (see
	// Client.Run); nil, none.
	Signals <-chan os.Signal
}

// errNoCommand is a Cmd with neither Args nor Script that asks for a
// folder or root: only a program or script can be given those.
var errNoCommand = errors.New("a login shell cannot be given a folder or root: set Args or Script")

// Line is the command line the guest's sshd hands to the user's login
// shell; "" asks for the login shell itself.
func (cmd Cmd) Line() (string, error) {
	line := shell.Join(cmd.Args)
	switch {
	case cmd.Script != "" && len(cmd.Args) == 0 && cmd.Dir == "" && !cmd.Root:
		// As it stands: the login shell runs it, as sshd does any line.
		line = cmd.Script
	case cmd.Script != "":
		line = "sh -c " + shell.Quote(cmd.Script)
		if len(cmd.Args) > 0 {
			line += " sh " + shell.Join(cmd.Args)
		}
	}
	if line == "" {
		if cmd.Dir != "" || cmd.Root {
			return "", errNoCommand
		}
		return "", nil
	}
	switch {
	case cmd.Dir != "" && cmd.Root:
		line = "sudo -n sh -c " + shell.Quote("cd "+shell.Quote(cmd.Dir)+" && exec "+line)
	case cmd.Dir != "":
		line = "cd " + shell.Quote(cmd.Dir) + " && exec " + line
	case cmd.Root:
		line = "sudo -n " + line
	}
	return line, nil
}

// String is the command for error messages: its line, shortened.
func (cmd Cmd) String() string {
	line, err := cmd.Line()
	if err != nil {
		return err.Error()
	}
	return shorten(line)
}

// PTY asks for a pseudo-terminal on the remote side.
type PTY struct {
	Term string // TERM for the remote side; "" means $TERM, or xterm-256color if unset

	// Width and Height are the size in columns and rows; zero means the size
	// of the local terminal, or else 80x24.
	Width, Height int

	// local is the caller's terminal (TerminalPTY): raw while the command
	// runs, its size followed.
	local *os.File
}

// TerminalPTY is the one place devbox decides whether a command gets a
// terminal: a PTY that mirrors stdin's terminal when stdin is one, else
// nil (pipes and files get plain stdio).
func TerminalPTY(stdin *os.File) *PTY {
	if stdin == nil || !term.IsTerminal(int(stdin.Fd())) {
		return nil
	}
	return &PTY{local: stdin}
}
