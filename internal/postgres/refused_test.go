package postgres_test

import (
	"context"
	"errors"
	"testing"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/silence"
)

// refusal is one change a store must refuse: do makes it, want is the sentinel its error must
// wrap, and field, when set, is the field the error's ValidationError must name.
type refusal struct {
	name  string
	do    func() error
	want  error
	field string
}

// invalidField returns the Field of the *alert.ValidationError or *silence.ValidationError in
// err's chain, and whether there is one.
func invalidField(err error) (string, bool) {
	var a *alert.ValidationError
	if errors.As(err, &a) {
		return a.Field, true
	}
	var s *silence.ValidationError
	if errors.As(err, &s) {
		return s.Field, true
	}
	return "", false
}

// updating returns a refusal's change: bob updates a copy of base altered by alter.
func updating[T any](ctx context.Context, update func(context.Context, T, string) (T, error), base T, alter func(*T)) func() error {
	return func() error {
		v := base
		alter(&v)
		_, err := update(ctx, v, "bob")
		return err
	}
}

// checkRefused runs each change as a subtest and checks that it fails as wanted.
func checkRefused(t *testing.T, changes []refusal) {
	t.Helper()
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			err := c.do()
			if !errors.Is(err, c.want) {
				t.Fatalf("%s = %v, want %v", c.name, err, c.want)
			}
			if c.field == "" {
				return
			}
			if field, ok := invalidField(err); !ok || field != c.field {
				t.Errorf("%s = %v, want a validation error for field %q", c.name, err, c.field)
			}
		})
	}
}

// checkAuditLen checks that the audit log holds want rows, as it did before the refused changes.
func checkAuditLen(t *testing.T, audit *postgres.AuditStore, want int) {
	t.Helper()
	if n := len(auditRows(t, audit)); n != want {
		t.Errorf("audit log has %d rows after refused changes, want %d", n, want)
	}
}
