package textcheck

import (
	"errors"
	"testing"
)

func TestStorable(t *testing.T) {
	f := func(in string, want error) {
		t.Helper()
		if err := Storable(in); !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Errorf("Storable(%q) = %v, want %v", in, err, want)
		}
	}
	f("", nil)
	f("alice", nil)
	f("zoë ☃ 日本", nil)
	f("tab\there\nnewline", nil) // storable; Name refuses them
	f("a\x00b", ErrNUL)
	f("\x00", ErrNUL)
	f("a\xffb", ErrInvalidUTF8)
	f("\xed\xa0\x80", ErrInvalidUTF8) // an encoded surrogate
	f("\xc3", ErrInvalidUTF8)         // truncated sequence
}

func TestName(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		{"web-01", nil},
		{"Zoë's laptop ☃", nil},
		{"日本のサーバー", nil},
		{"\u202Egnp.exe", ErrInvisible}, // RIGHT-TO-LEFT OVERRIDE
		{"a\u202Ab", ErrInvisible},      // LEFT-TO-RIGHT EMBEDDING
		{"a\u202Bb", ErrInvisible},
		{"a\u202Cb", ErrInvisible},
		{"a\u202Db", ErrInvisible},
		{"a\u2066b", ErrInvisible}, // LEFT-TO-RIGHT ISOLATE
		{"a\u2067b", ErrInvisible},
		{"a\u2068b", ErrInvisible},
		{"a\u2069b", ErrInvisible}, // POP DIRECTIONAL ISOLATE
		{"a\u200Bb", ErrInvisible}, // ZERO WIDTH SPACE
		{"a\u200Cb", ErrInvisible},
		{"a\u200Db", ErrInvisible},
		{"a\u200Eb", ErrInvisible}, // LEFT-TO-RIGHT MARK
		{"a\u200Fb", ErrInvisible},
		{"\uFEFFweb", ErrInvisible}, // BYTE ORDER MARK
		{"a\u00ADb", ErrInvisible},  // SOFT HYPHEN
		{"a\u061Cb", ErrInvisible},  // ARABIC LETTER MARK
		{"a\u2028b", ErrInvisible},  // LINE SEPARATOR
		{"a\tb", ErrInvisible},
		{"a\nb", ErrInvisible},
		{"a\x1bb", ErrInvisible}, // ESC, as in terminal escape sequences
		{"a\u0085b", ErrInvisible},
		{"a\x00b", ErrNUL},
		{"a\xffb", ErrInvalidUTF8},
	}
	for _, tt := range tests {
		err := Name(tt.in)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("Name(%q) = %v, want %v", tt.in, err, tt.want)
		}
	}
}

func TestNameSaysWhichCharacter(t *testing.T) {
	err := Name("ab\u202Ec")
	want := "must not contain control characters or invisible format characters (bidirectional, zero-width): found U+202E (a bidirectional control) at character 3"
	if err == nil || err.Error() != want {
		t.Errorf("Name(%q) = %v, want %q", "ab\u202Ec", err, want)
	}
}

func TestBounded(t *testing.T) {
	f := func(in string, limit int, want string) {
		t.Helper()
		err := Bounded(in, limit)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("Bounded(%q, %d) = %q, want %q", in, limit, got, want)
		}
	}
	f("", 0, "")
	f("zoë ☃", 8, "")
	f("zoë ☃", 7, "must be at most 7 bytes, got 8")
	f("a\xffb", 10, "must be valid UTF-8")
	f("a\x00b", 10, "must not contain control characters")
	f("two\nlines", 10, "must not contain control characters")
	f("\u202Ebidi", 10, "") // free text: only control characters are refused, not format ones
}
