#!/usr/bin/env bash
# go vet and a gofmt check over every Go file of the module's packages (testdata excluded).
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
