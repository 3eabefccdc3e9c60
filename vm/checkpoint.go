package vm

import "os"

// KillAtEnv names the step at which Checkpoint kills the process.
const KillAtEnv = "DEVBOX_TEST_KILL_AT"

// Checkpoint is a test hook for "nothing left behind": when the
// DEVBOX_TEST_KILL_AT environment variable names step, the process kills
// itself at once with SIGKILL, exactly as a user's kill -9 there would,
// so tests can check that up resumes and destroy cleans from every step.
// Otherwise it does nothing.
func Checkpoint(step string) {
	if os.Getenv(KillAtEnv) != step {
		return
	}
	if p, err := os.FindProcess(os.Getpid()); err == nil {
		p.Kill()
		select {} // SIGKILL cannot be caught: never return past the step
	}
}
