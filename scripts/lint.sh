#!/usr/bin/env bash
# go vet, a gofmt check over every Go file of the module's packages (testdata excluded), and
# golangci-lint (.golangci.yml: the usual linters and depguard's import direction). golangci-lint is
# a Go tool of the separate module tools/golangci-lint, so it needs only Go and stays out of go.mod.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "==> go vet ./..." >&2
go vet ./...

echo "==> gofmt -l" >&2
# shellcheck disable=SC2016 # a go list template, not shell
mapfile -t files < <(go list -f '{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .CgoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .TestGoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .XTestGoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .IgnoredGoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}' ./...)
if ((${#files[@]})); then
	unformatted=$(gofmt -l "${files[@]}")
	if [[ -n $unformatted ]]; then
		printf 'gofmt: these files need formatting (gofmt -w):\n%s\n' "${unformatted//"$PWD/"/}" >&2
		exit 1
	fi
fi

echo "==> golangci-lint run" >&2
go tool -modfile=tools/golangci-lint/go.mod golangci-lint run ./...
