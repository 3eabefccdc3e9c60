// Command devbox gives a project a Linux VM with a Docker engine, created
// through libvirt/QEMU and provisioned over SSH, from its devbox.yaml.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/devbox-vm/devbox/internal/virtiofs"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == virtiofs.HelperArg {
		// The step between the agent and virtiofsd, in its namespace.
		err := virtiofs.Helper(os.Args[2:])
		fmt.Fprintln(os.Stderr, "devbox:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
