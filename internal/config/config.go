// Package config reads a binary's Config from the environment: `env`, `envDefault` and `help`
// struct tags, --help listing every variable, errors naming the variable, and the effective
// configuration with secrets masked for the start-up log.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/caarlos0/env/v11"
)

// ErrHelp is returned by Load when the arguments asked for help; the usage has been printed.
var ErrHelp = errors.New("help requested")

// Validator is implemented by configs that can check themselves after parsing. Validate only
// reports what is wrong; it never changes the config.
type Validator interface {
	Validate() error
}

// Problems collects what is wrong with a config, for a Validate that reports every problem at
// once, each naming its variable. The zero value is ready to use.
type Problems struct {
	errs []error
}

// Add records err, unless it is nil (a sub-config's Validate, say).
func (p *Problems) Add(err error) {
	if err != nil {
		p.errs = append(p.errs, err)
	}
}

// Want records the problem that format and args describe, unless ok.
func (p *Problems) Want(ok bool, format string, args ...any) {
	if !ok {
		p.errs = append(p.errs, fmt.Errorf(format, args...))
	}
}

// Err returns the problems joined (errors.Join), or nil when there are none.
func (p *Problems) Err() error {
	return errors.Join(p.errs...)
}

// Preparer is implemented by configs that derive settings the environment does not give
// directly (a consumer group, a default consumer name, a shared key prefix). Load calls Prepare
// after parsing and before Validate.
type Preparer interface {
	Prepare() error
}

// Defaults fills every zero field of the struct cfg points to (nested structs included) with the
// value of its envDefault tag, ignoring the environment: the tags are the one place a default is
// written, for configs read from the environment and for configs built in code alike. It fails
// only on a tag that does not parse as its field's type.
func Defaults(cfg any) error {
	err := env.ParseWithOptions(cfg, env.Options{Environment: map[string]string{}, SetDefaultsForZeroValuesOnly: true})
	if err != nil {
		return fmt.Errorf("applying defaults: %w", err)
	}
	return nil
}

// Load fills cfg, a pointer to a struct whose fields carry `env`, `envDefault` and `help`
// tags, from the process environment, then calls its Prepare method and then its Validate method,
// each if it has one. With -h or
// --help among args it prints the variables the binary reads to out and returns ErrHelp. Any other
// argument is an error: configuration comes only from the environment.
func Load(name string, args []string, cfg any, out io.Writer) error {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help", "help":
			PrintUsage(name, cfg, out)
			return ErrHelp
		default:
			return fmt.Errorf("unexpected argument %q: %s is configured by environment variables only (see --help)", a, name)
		}
	}
	if err := env.Parse(cfg); err != nil {
		return explainParseError(cfg, err)
	}
	if p, ok := cfg.(Preparer); ok {
		if err := p.Prepare(); err != nil {
			return fmt.Errorf("invalid configuration: %w", err)
		}
	}
	if v, ok := cfg.(Validator); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("invalid configuration: %w", err)
		}
	}
	return nil
}

// explainParseError names the environment variable behind each field that failed to parse: the
// library names the Go field, the operator knows the variable.
func explainParseError(cfg any, err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return fmt.Errorf("reading environment: %w", err)
	}
	byField := map[string]string{}
	walkFields(reflect.TypeOf(cfg), func(f reflect.StructField, name string) { byField[f.Name] = name })
	msgs := make([]string, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) && byField[pe.Name] != "" {
			name := byField[pe.Name]
			msgs = append(msgs, fmt.Sprintf("%s=%q is not a valid %s", name, os.Getenv(name), pe.Type))
			continue
		}
		msgs = append(msgs, e.Error())
	}
	return fmt.Errorf("reading environment: %s", strings.Join(msgs, "; "))
}

// Var describes one environment variable a Config reads.
type Var struct {
	Name, Default, Help string
	Secret              bool
}

// Vars lists the environment variables cfg reads, sorted by name, each once.
func Vars(cfg any) []Var {
	seen := map[string]Var{}
	collectVars(reflect.TypeOf(cfg), seen)
	vars := make([]Var, 0, len(seen))
	for _, v := range seen {
		vars = append(vars, v)
	}
	sort.Slice(vars, func(i, j int) bool { return vars[i].Name < vars[j].Name })
	return vars
}

func collectVars(t reflect.Type, seen map[string]Var) {
	walkFields(t, func(f reflect.StructField, name string) {
		v := Var{Name: name, Default: f.Tag.Get("envDefault"), Help: f.Tag.Get("help"), Secret: isSecret(name)}
		if old, ok := seen[name]; ok && old.Help != "" {
			v.Help = old.Help
		}
		seen[name] = v
	})
}

// walkFields calls fn for every field with an env tag in t, descending into nested structs.
func walkFields(t reflect.Type, fn func(f reflect.StructField, name string)) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name == "" {
			walkFields(f.Type, fn)
			continue
		}
		fn(f, name)
	}
}

func isSecret(name string) bool {
	for _, s := range []string{"PASSWORD", "TOKEN", "SECRET"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// PrintUsage writes the binary's environment variables, defaults and help to out.
func PrintUsage(name string, cfg any, out io.Writer) {
	fmt.Fprintf(out, "Usage: %s\n\n%s is configured by these environment variables:\n\n", name, name)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tDESCRIPTION")
	for _, v := range Vars(cfg) {
		def := v.Default
		if def == "" {
			def = "(empty)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, def, v.Help)
	}
	tw.Flush()
}

// Effective returns the configuration's variables with their current values for logging at start,
// with secrets and URL passwords masked.
func Effective(cfg any) []any {
	vars := Vars(cfg)
	attrs := make([]any, 0, len(vars))
	for _, v := range vars {
		val, _ := os.LookupEnv(v.Name)
		if val == "" {
			val = v.Default
		}
		switch {
		case v.Secret && val != "":
			val = "*****"
		case strings.Contains(val, "://") && strings.Contains(val, "@"):
			val = maskURLPassword(val)
		}
		attrs = append(attrs, slog.String(v.Name, val))
	}
	return attrs
}

func maskURLPassword(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	userinfo, host, ok := strings.Cut(rest, "@")
	if !ok {
		return u
	}
	user, _, hasPass := strings.Cut(userinfo, ":")
	if !hasPass {
		return u
	}
	return scheme + "://" + user + ":*****@" + host
}
