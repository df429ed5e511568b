// Package schema holds the PostgreSQL migrations, numbered NNNNN_name.sql in goose's format, embedded
// so that every binary applies the same set at start (see internal/postgres.Migrate).
package schema

import "embed"

// FS holds every migration file. Later migrations are added as 00002_....sql and so on; an applied
// file is never edited.
//
//go:embed *.sql
var FS embed.FS
