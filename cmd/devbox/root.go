package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/devbox-vm/devbox/internal/cli"
	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/instance"
	"github.com/devbox-vm/devbox/vm"
	"github.com/devbox-vm/devbox/vm/libvirt"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// app holds what every command shares.
type app struct {
	ctx        context.Context
	stdin      *os.File
	stdout     io.Writer
	stderr     io.Writer
	configFile string
	boxURI     string // devbox box --libvirt-uri
	// exitCode, when set by a command, is devbox's exit status.
	exitCode int
}

// exitError carries an exit status without a message (e.g. ssh's).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Run runs devbox with args and returns its exit status.
func Run(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) int {
	a := &app{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "devbox",
		Short:         "A Linux VM with a Docker engine for your project, from its devbox.yaml",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVarP(&a.configFile, "config", "c", "", "config file (default: devbox.yaml in this folder or a parent)")
	root.AddCommand(a.upCommand(), a.sshCommand(), a.runCommand(), a.dockerCommand(), a.haltCommand(), a.destroyCommand(),
		a.statusCommand(), a.provisionCommand(), a.dockerEnvCommand(), a.sshConfigCommand(), a.agentCommand(), a.doctorCommand(), a.boxCommand())

	err := root.ExecuteContext(ctx)
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "devbox: interrupted")
		return 130
	}
	fmt.Fprintf(stderr, "devbox: %v\n", err)
	return 1
}

// loadConfig finds and loads devbox.yaml (or -c FILE).
func (a *app) loadConfig() (*config.Config, error) {
	path, err := a.configPath()
	if err != nil {
		return nil, err
	}
	return config.Load(path)
}

// configPath is -c, else the devbox.yaml of this folder or a parent.
func (a *app) configPath() (string, error) {
	if a.configFile != "" {
		return a.configFile, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return config.Find(wd)
}

// instance loads the config and prepares the instance it describes.
func (a *app) instance() (*instance.Instance, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, err
	}
	return a.instanceOf(cfg)
}

func (a *app) instanceOf(cfg *config.Config) (*instance.Instance, error) {
	home, err := instance.DefaultHome()
	if err != nil {
		return nil, err
	}
	return instance.New(cfg, home, cli.NewStatus(a.stderr), connect), nil
}

// connect opens the VM driver; tests swap in a fake.
var connect instance.Connector = connectLibvirt

func connectLibvirt(ctx context.Context, uri string) (vm.Driver, error) {
	return libvirt.Connect(ctx, uri)
}

// withInstance runs fn on the configured instance and closes it after.
func (a *app) withInstance(fn func(*instance.Instance) error) error {
	in, err := a.instance()
	if err != nil {
		return err
	}
	defer in.Close()
	return fn(in)
}

// withInstanceToRemove is withInstance for destroy: a config that has
// become invalid but still names the instance is enough to remove it
// (see config.LoadToRemove), with a warning.
func (a *app) withInstanceToRemove(fn func(*instance.Instance) error) error {
	path, err := a.configPath()
	if err != nil {
		return err
	}
	cfg, invalid, err := config.LoadToRemove(path)
	if err != nil {
		return err
	}
	if invalid != nil {
		fmt.Fprintf(a.stderr, "devbox: warning: %v\n(it still names instance %q, which is all destroy needs)\n", invalid, cfg.Name)
	}
	in, err := a.instanceOf(cfg)
	if err != nil {
		return err
	}
	defer in.Close()
	return fn(in)
}

// onTerminal reports whether a person can answer a question on stdin.
func (a *app) onTerminal() bool {
	return a.stdin != nil && term.IsTerminal(int(a.stdin.Fd()))
}

// confirm asks a yes/no question on stderr; only y or yes is yes.
func (a *app) confirm(question string) bool {
	fmt.Fprintf(a.stderr, "%s [y/N] ", question)
	answer, _ := bufio.NewReader(a.stdin).ReadString('\n')
	answer = strings.ToLower(strings.TrimSpace(answer))
	return answer == "y" || answer == "yes"
}
