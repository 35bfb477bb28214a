package solstice_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/solsticehq/solstice"
)

func TestErrorKindsAndMessages(t *testing.T) {
	cause := io.ErrUnexpectedEOF
	tests := []struct {
		name    string
		err     error
		kind    solstice.Kind
		text    string
		message string // what a client may see
	}{
		{"nil", nil, "", "", ""},
		{"plain error is internal", cause, solstice.KindInternal, "unexpected EOF", "internal error"},
		{"errorf wraps once", solstice.Errorf(solstice.KindNotFound, "flag %q: %w", "x", cause), solstice.KindNotFound, `flag "x": unexpected EOF`, `flag "x": unexpected EOF`},
		{"wrapped by fmt", fmt.Errorf("op: %w", solstice.Errorf(solstice.KindConflict, "exists")), solstice.KindConflict, "op: exists", "exists"},
		{"internal hides detail", &solstice.Error{Kind: solstice.KindInternal, Message: "open db", Err: cause}, solstice.KindInternal, "open db: unexpected EOF", "internal error"},
		{"fields", solstice.Invalid("bad", solstice.FieldError{Pointer: "/a", Message: "no"}, solstice.FieldError{Pointer: "/b", Message: "no"}), solstice.KindInvalid, "bad (/a: no; and 1 more)", "bad (/a: no; and 1 more)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := solstice.ErrorKind(tc.err); got != tc.kind {
				t.Errorf("kind = %q, want %q", got, tc.kind)
			}
			if tc.err == nil {
				return
			}
			if got := tc.err.Error(); got != tc.text {
				t.Errorf("Error() = %q, want %q", got, tc.text)
			}
			if got := solstice.ErrorMessage(tc.err); got != tc.message {
				t.Errorf("ErrorMessage = %q, want %q", got, tc.message)
			}
		})
	}
	if err := solstice.Errorf(solstice.KindNotFound, "x: %w", cause); !errors.Is(err, cause) {
		t.Error("Errorf does not wrap its %w operand")
	}
}
