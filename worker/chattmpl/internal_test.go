package chattmpl

import (
	"errors"
	"testing"
)

// TestEnginePanicIsTemplateError guards the worker against a template that makes the
// engine panic: it becomes ErrTemplate, and the caller falls back.
func TestEnginePanicIsTemplateError(t *testing.T) {
	err := func() (err error) {
		defer recoverAsTemplateError(&err)
		panic("index out of range")
	}()
	if !errors.Is(err, ErrTemplate) {
		t.Fatalf("got %v, want ErrTemplate", err)
	}
}
