// Package rollback undoes what the steps of a long operation made when a
// later step fails. Each step registers its undo as soon as it has made
// something (as packer's steps and kind's actions do); the caller decides
// when to unwind: on any error, or only when interrupted.
package rollback

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-multierror"
)

// Stack holds the undos of the steps done so far. The zero Stack is empty
// and ready.
type Stack struct {
	undos []undo
}

type undo struct {
	what string
	fn   func(ctx context.Context) error
}

// Push registers the undo of a step that has just made something. what
// says what the undo does ("remove the instance this run created").
func (s *Stack) Push(what string, fn func(ctx context.Context) error) {
	s.undos = append(s.undos, undo{what, fn})
}

// Pending is what Unwind would do, in its order.
func (s *Stack) Pending() []string {
	var whats []string
	for i := len(s.undos) - 1; i >= 0; i-- {
		whats = append(whats, s.undos[i].what)
	}
	return whats
}

// Unwind runs every undo, last pushed first, and empties the stack. One
// that fails does not stop the others; the error names each that failed.
func (s *Stack) Unwind(ctx context.Context) error {
	var errs *multierror.Error
	for i := len(s.undos) - 1; i >= 0; i-- {
		if err := s.undos[i].fn(ctx); err != nil {
			errs = multierror.Append(errs, fmt.Errorf("%s: %w", s.undos[i].what, err))
		}
	}
	s.undos = nil
	return errs.ErrorOrNil()
}

// OnError unwinds when *errp holds an error, for a scope that undoes
// everything on any failure: defer s.OnError(ctx, &err). An undo's own
// failure is joined to *errp. The undos get a context that is not
// cancelled with ctx: an interrupted step must still be undone.
func (s *Stack) OnError(ctx context.Context, errp *error) {
	if *errp == nil {
		return
	}
	if uerr := s.Unwind(context.WithoutCancel(ctx)); uerr != nil {
		*errp = multierror.Append(*errp, fmt.Errorf("undo: %w", uerr))
	}
}
