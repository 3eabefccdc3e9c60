//go:build !linux

package build

import "context"

// Stamp: see the Linux version; other hosts cannot build boxes.
func Stamp(ctx context.Context, o Options) (string, error) { return "", o.Check() }

// Run: see the Linux version; other hosts cannot build boxes.
func Run(ctx context.Context, o Options) (Manifest, error) { return Manifest{}, o.Check() }
