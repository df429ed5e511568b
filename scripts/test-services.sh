#!/usr/bin/env bash
# Runs every check and test: makes sure Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432)
# answer, starting or installing them like scripts/services.sh does, makes sure influxd 1.8.10 is
# installed (tests start their own copies of it on free ports), then go vet, gofmt and go test.
#
#   scripts/test-services.sh [packages...]   default ./...; GO_TEST_FLAGS adds go test flags
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

mkdir -p "$DATA" "$RUN" "$LOGS"
# Tests use these addresses (internal/testenv: TEST_REDIS_URL and TEST_DATABASE_URL override the
# defaults); each test isolates itself by key prefix and database.
ensure_redis "${TEST_REDIS_URL:-$DEFAULT_REDIS_URL}"
ensure_postgres "${TEST_DATABASE_URL:-$DEFAULT_DATABASE_URL}"

if ! INFLUXD_BIN=$(find_influxd); then
	install_influxd "$(go env GOPATH)/bin"
	INFLUXD_BIN=$(go env GOPATH)/bin/influxd
	is_influxd_18 "$INFLUXD_BIN" || die "go install did not produce influxd $INFLUXD_VERSION at $INFLUXD_BIN"
fi
export INFLUXD_BIN
log "InfluxDB: tests use $INFLUXD_BIN"

bash "$ROOT/scripts/lint.sh"

packages=("$@")
((${#packages[@]})) || packages=(./...)
# -p 2: this class of machine has two cores, and integration tests start real servers.
read -ra extra <<<"${GO_TEST_FLAGS:-}"
log "go test -count=1 -race -p 2 -timeout 30m ${extra[*]} ${packages[*]}"
go test -count=1 -race -p 2 -timeout 30m "${extra[@]}" "${packages[@]}"
