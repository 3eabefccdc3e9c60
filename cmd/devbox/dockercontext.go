package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// The Docker context devbox keeps per instance, through the docker CLI
// when it is on the host: presentation for the user's docker, not part of
// the instance's lifecycle.

// contextName is the Docker context of the instance name.
func contextName(name string) string { return "devbox-" + name }

// updateDockerContext creates or updates the instance's Docker context
// when a docker CLI is on the host; it reports whether it did.
func updateDockerContext(ctx context.Context, name, socket string) (bool, error) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		return false, nil
	}
	endpoint := "host=unix://" + socket
	verb := "create"
	if exec.CommandContext(ctx, docker, "context", "inspect", contextName(name)).Run() == nil {
		verb = "update"
	}
	out, err := exec.CommandContext(ctx, docker, "context", verb, contextName(name),
		"--description", "devbox instance "+name, "--docker", endpoint).CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("docker context %s %s: %v: %s", verb, contextName(name), err, strings.TrimSpace(string(out)))
	}
	return true, nil
}

// removeDockerContext removes the instance's Docker context, if any.
func removeDockerContext(ctx context.Context, name string) {
	if docker, err := exec.LookPath("docker"); err == nil {
		exec.CommandContext(ctx, docker, "context", "rm", "-f", contextName(name)).Run()
	}
}
