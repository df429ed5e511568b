// Package textcheck decides whether client text can be stored and shown safely: Storable for
// anything that reaches PostgreSQL (which refuses NUL bytes and invalid UTF-8), Name for names
// people read (which must not hide or reorder what they show with control, bidirectional or
// zero-width characters).
package textcheck

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Sentinel errors, wrapped by the errors of Storable and Name so callers can branch on them.
var (
	// ErrInvalidUTF8 is a string that is not valid UTF-8.
	ErrInvalidUTF8 = errors.New("is not valid UTF-8")
	// ErrNUL is a string holding the NUL character (U+0000), which PostgreSQL text cannot store.
	ErrNUL = errors.New("contains the NUL character (U+0000), which cannot be stored")
	// ErrInvisible is a name holding a control, format (bidirectional, zero-width) or other
	// invisible character.
	ErrInvisible = errors.New("must not contain control characters or invisible format characters (bidirectional, zero-width)")
)

// Storable returns nil when s is valid UTF-8 without NUL, the text PostgreSQL stores; otherwise an
// error wrapping ErrInvalidUTF8 (naming the byte offset) or ErrNUL.
func Storable(s string) error {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return fmt.Errorf("%w (byte 0x%02x at offset %d)", ErrInvalidUTF8, s[i], i)
		case r == 0:
			return ErrNUL
		}
		i += size
	}
	return nil
}

// Name returns nil when s is storable (see Storable) and holds no character that changes how the
// rest is displayed or that cannot be seen: control characters (Cc, tab and newline included),
// format characters (Cf: the bidirectional embeddings, overrides and isolates U+202A–U+202E and
// U+2066–U+2069, the marks U+200E/U+200F, the zero-width U+200B–U+200D, the byte order mark
// U+FEFF, the soft hyphen and the like), and the line and paragraph separators (Zl, Zp). The error names
// the first such character by code point and position.
func Name(s string) error {
	if err := Storable(s); err != nil {
		return err
	}
	pos := 0
	for _, r := range s {
		pos++
		if invisible(r) {
			return fmt.Errorf("%w: found U+%04X (%s) at character %d", ErrInvisible, r, kind(r), pos)
		}
	}
	return nil
}

// Bounded returns nil when s is at most limit bytes of valid UTF-8 without control characters, the
// free text (a comment, a summary, a header value) that alert rules, channels and silences keep;
// otherwise an error whose text is the reason, phrased to follow the field's name.
func Bounded(s string, limit int) error {
	switch {
	case len(s) > limit:
		return fmt.Errorf("must be at most %d bytes, got %d", limit, len(s))
	case !utf8.ValidString(s):
		return errors.New("must be valid UTF-8")
	case strings.ContainsFunc(s, unicode.IsControl):
		return errors.New("must not contain control characters")
	}
	return nil
}

func invisible(r rune) bool {
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp)
}

// kind says in words what sort of character r is, for error messages.
func kind(r rune) string {
	switch {
	case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069, r == 0x200E, r == 0x200F, r == 0x061C:
		return "a bidirectional control"
	case r >= 0x200B && r <= 0x200D, r == 0x2060, r == 0xFEFF:
		return "a zero-width character"
	case unicode.Is(unicode.Cc, r):
		return "a control character"
	case unicode.Is(unicode.Cf, r):
		return "a format character"
	}
	return "a line or paragraph separator"
}
