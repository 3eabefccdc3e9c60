// Package shell quotes words for a POSIX shell: the one quoting function
// for every command line devbox builds to run in the guest.
package shell

import "strings"

// safe are the characters no POSIX shell treats specially in a word.
const safe = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%"

// Quote returns s as one shell word: as it is when it holds only safe
// characters, else in single quotes (a quote inside becomes '\”).
func Quote(s string) string {
	if s != "" && strings.Trim(s, safe) == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Join quotes each of args and joins them with spaces: one command line
// that runs what was typed (devbox ssh -- sh -c 'a | b').
func Join(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = Quote(a)
	}
	return strings.Join(quoted, " ")
}
