package rollback

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestUnwindRunsEveryUndoLastFirst(t *testing.T) {
	var s Stack
	var ran []string
	push := func(what string, err error) {
		s.Push(what, func(context.Context) error { ran = append(ran, what); return err })
	}
	push("remove the disk", nil)
	push("remove the seed", errors.New("seed busy"))
	push("stop the VM", nil)
	if want := []string{"stop the VM", "remove the seed", "remove the disk"}; !reflect.DeepEqual(s.Pending(), want) {
		t.Errorf("pending %q, want %q", s.Pending(), want)
	}
	err := s.Unwind(context.Background())
	if want := []string{"stop the VM", "remove the seed", "remove the disk"}; !reflect.DeepEqual(ran, want) {
		t.Errorf("ran %q, want %q", ran, want)
	}
	if err == nil || !strings.Contains(err.Error(), "remove the seed: seed busy") {
		t.Errorf("error %v, want the failed undo named", err)
	}
	if len(s.Pending()) != 0 || s.Unwind(context.Background()) != nil || len(ran) != 3 {
		t.Errorf("a second unwind ran again: %q", ran)
	}
}

// TestOnError: nothing is undone on success; on failure every undo runs,
// with a live context even when the step's was cancelled, and an undo's
// own failure is added to the step's error.
func TestOnError(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name     string
		ctx      context.Context
		stepErr  error
		undoErr  error
		want     string
		wantUndo bool
	}{
		{"success", context.Background(), nil, nil, "", false},
		{"failure", context.Background(), errors.New("boot failed"), nil, "boot failed", true},
		{"cancelled", cancelled, context.Canceled, nil, "context canceled", true},
		{"the undo fails too", context.Background(), errors.New("boot failed"), errors.New("volume busy"), "undo: 1 error occurred:\n\t* remove the disk: volume busy", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			undone := false
			err := func() (err error) {
				var s Stack
				defer s.OnError(tc.ctx, &err)
				s.Push("remove the disk", func(ctx context.Context) error {
					undone = ctx.Err() == nil
					return tc.undoErr
				})
				return tc.stepErr
			}()
			if undone != tc.wantUndo {
				t.Errorf("undone with a live context: %v, want %v", undone, tc.wantUndo)
			}
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
			if tc.stepErr != nil && !errors.Is(err, tc.stepErr) {
				t.Errorf("error %v does not wrap the step's %v", err, tc.stepErr)
			}
		})
	}
}
