#!/usr/bin/env bash
# Measures the ingest path against DESIGN.md's performance budget, on this machine, as ratios
# against baselines measured by the same script in the same minutes:
#
#   direct   agent batches (6 points, 30 values) posted straight to InfluxDB's /api/v2/write
#   gateway  the same batches through the gateway (POST /api/v1/agents/{id}/metrics), as fast as
#            32 senders go
#   gateway-half  the same paced at half the rate the gateway run reached, latency counted from
#            when each request was due: the p99 of a gateway that is not saturated
#   e2e      the same through the gateway, then waiting until InfluxDB holds every acknowledged
#            point (end-to-end values persisted per second; points lost must be 0)
#   e2e-big  the same with Telegraf-sized requests (1000 points): the pipeline behind the gateway
#            (stream, influx-writer, InfluxDB) without the per-request cost in front
#   ceiling  InfluxDB's own ceiling: 5000-point batches through the official client
#
# The four kinds of run alternate in rounds (the machine is noisy), and the summary gives medians,
# the per-round ratios against the budget, and the cores each process used during each kind of run.
#
# Everything runs on loopback from a temporary directory: a private influxd 1.8.10 (Flux on) on
# free ports, and the gateway, influx-writer and pg-sync built from this tree. Redis and
# PostgreSQL are the ones answering at REDIS_URL and DATABASE_URL's server (started under .data
# when nothing answers, as `go tool task stores` does), used with a key prefix and a database of
# their own, both removed at the end with everything else this script started.
#
#   scripts/bench.sh [--rounds N] [--duration 10s] [--writers N] [--no-gotest] [--keep] [--strict]
# shellcheck disable=SC2317 # cleanup and drained run from a trap and from wait_for
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=3
DURATION=10s
WRITERS=2 # influx-writer copies: one copy has one write in flight; the ceiling uses 4
AGENTS=50
CONCURRENCY=32
CEILING_CONCURRENCY=4
BIG_POINTS=1000
BIG_CONCURRENCY=8
GOTEST=1
KEEP=0
STRICT=0

usage() {
	sed -n '2,/^# shellcheck disable/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
	cat <<EOF
Options (defaults): --rounds $ROUNDS  --duration $DURATION  --writers $WRITERS  --agents $AGENTS
  --concurrency $CONCURRENCY (gateway and direct runs)  --ceiling-concurrency $CEILING_CONCURRENCY
  --no-gotest   skip the go test -bench of internal/metric and internal/stream at the end
  --keep        keep the temporary directory (logs, reports, InfluxDB data)
  --strict      exit 4 when a budget is missed (always exit 3 when a point was lost)
EOF
}

while (($#)); do
	case $1 in
	--rounds) ROUNDS=$2; shift ;;
	--duration) DURATION=$2; shift ;;
	--writers) WRITERS=$2; shift ;;
	--agents) AGENTS=$2; shift ;;
	--concurrency) CONCURRENCY=$2; shift ;;
	--ceiling-concurrency) CEILING_CONCURRENCY=$2; shift ;;
	--no-gotest) GOTEST=0 ;;
	--keep) KEEP=1 ;;
	--strict) STRICT=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*) die "unknown option $1 (see --help)" ;;
	esac
	shift
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $WRITERS =~ ^[1-9][0-9]*$ ]] || die "--rounds and --writers want a positive number"

REDIS_URL=${REDIS_URL:-$DEFAULT_REDIS_URL}
PG_SERVER_URL=${DATABASE_URL:-$DEFAULT_DATABASE_URL}
SHARDS=4
HZ=$(getconf CLK_TCK)
RUN_ID=$(date +%s)-$$
PREFIX="bench-$RUN_ID:"
PG_BENCH_DB="agentmonitor_bench_${RUN_ID//-/_}"
INFLUX_DB=bench

WORK=$(mktemp -d "${TMPDIR:-/tmp}/agentmonitor-bench.XXXXXX")
RESULTS=$WORK/results
mkdir -p "$WORK/bin" "$WORK/logs" "$RESULTS"

# ---------------------------------------------------------------------------------------------
# What this script started, stopped in reverse order on exit (Ctrl-C included).

declare -a PIDS=() PNAMES=()
declare -A PID_OF=()
PG_CREATED=0

stop_started() {
	local i pid name deadline
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		pid=${PIDS[i]} name=${PNAMES[i]}
		kill -0 "$pid" 2>/dev/null || continue
		kill -TERM "$pid" 2>/dev/null || true
		deadline=$((SECONDS + 20))
		while kill -0 "$pid" 2>/dev/null; do
			if ((SECONDS >= deadline)); then
				warn "$name (pid $pid) did not stop within 20s: SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.1
		done
		wait "$pid" 2>/dev/null || true
	done
	PIDS=() PNAMES=()
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_started
	if ((PG_CREATED)); then
		pg_tcp_psql -c "DROP DATABASE IF EXISTS \"$PG_BENCH_DB\" WITH (FORCE)" >/dev/null 2>&1 ||
			warn "could not drop database $PG_BENCH_DB"
	fi
	if have redis-cli; then
		redis-cli -u "$REDIS_URL" --no-auth-warning --scan --pattern "$PREFIX*" 2>/dev/null |
			xargs -r -n 500 redis-cli -u "$REDIS_URL" --no-auth-warning UNLINK >/dev/null 2>&1 ||
			warn "could not delete the Redis keys $PREFIX*"
	fi
	if ((rc != 0 && rc != 3 && rc != 4)); then
		local f
		for f in "$WORK"/logs/*.log; do [[ -s $f ]] && tail_log "$f" 15; done
	fi
	if ((KEEP)); then
		log "kept $WORK (logs/, results/)"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_proc NAME CMD... starts CMD in the background with a clean environment plus the
# variables given as NAME=VALUE words before the command (as env(1) takes them).
start_proc() {
	local name=$1
	shift
	env -i PATH="$PATH" HOME="$HOME" "$@" >"$WORK/logs/$name.log" 2>&1 </dev/null &
	PIDS+=("$!")
	PNAMES+=("$name")
	PID_OF[$name]=$!
}

# free_port prints a loopback port nobody listens on, below Linux's ephemeral range so that tests
# running beside us (which bind :0) do not take it meanwhile.
free_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 12000))
		if ! tcp_open 127.0.0.1 "$p"; then
			printf '%s' "$p"
			return 0
		fi
	done
	die "no free port found"
}

wait_http() { # URL STATUS SECONDS NAME
	local url=$1 want=$2 secs=$3 name=$4
	# shellcheck disable=SC2016 # $1 $2 are the inner shell's arguments
	if ! wait_for "$secs" bash -c '[[ $(curl -s -o /dev/null -m 2 -w "%{http_code}" "$1") == "$2" ]]' _ "$url" "$want"; then
		die "$name did not answer $url with $want within ${secs}s"
	fi
	kill -0 "${PID_OF[$name]}" 2>/dev/null || die "$name exited"
}

# ---------------------------------------------------------------------------------------------
# Set-up

have curl || apt_install curl
ensure_redis "$REDIS_URL"
# The server of DATABASE_URL with a database of our own.
pg_base=${PG_SERVER_URL%%\?*}
pg_query=${PG_SERVER_URL#"$pg_base"}
pg_rest=${pg_base#*://}
[[ $pg_rest != */* ]] || pg_base=${pg_base%/*}
DATABASE_URL="$pg_base/$PG_BENCH_DB$pg_query"
ensure_postgres "$DATABASE_URL" # creates $PG_BENCH_DB
PG_CREATED=1

log "building gateway, influx-writer, pg-sync and loadgen"
(cd "$ROOT" && go build -o "$WORK/bin/" ./cmd/gateway ./cmd/influx-writer ./cmd/pg-sync ./cmd/loadgen)
LOADGEN=$WORK/bin/loadgen

INFLUXD=$(find_influxd) || {
	install_influxd "$BIN"
	INFLUXD=$BIN/influxd
}
INFLUX_PORT=$(free_port)
INFLUX_RPC=$(free_port)
INFLUX_URL=http://127.0.0.1:$INFLUX_PORT
mkdir -p "$WORK/influxdb"
cat >"$WORK/influxdb/influxdb.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:$INFLUX_RPC"
[meta]
  dir = "$WORK/influxdb/meta"
  logging-enabled = false
[data]
  dir = "$WORK/influxdb/data"
  wal-dir = "$WORK/influxdb/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[http]
  bind-address = "127.0.0.1:$INFLUX_PORT"
  flux-enabled = true
  log-enabled = false
  suppress-write-log = true
  pprof-enabled = false
[logging]
  level = "warn"
  suppress-logo = true
EOF
log "InfluxDB: $INFLUXD on $INFLUX_URL (Flux on; starting takes a while on a busy machine)"
start_proc influxd "$INFLUXD" run -config "$WORK/influxdb/influxdb.conf"
wait_http "$INFLUX_URL/ping" 204 180 influxd

ADMIN_PASSWORD=$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n' | head -c 24)
GATEWAY_PORT=$(free_port)
GATEWAY_URL=http://127.0.0.1:$GATEWAY_PORT
COMMON_ENV=(
	"REDIS_URL=$REDIS_URL"
	"REDIS_KEY_PREFIX=$PREFIX"
	"DATABASE_URL=$DATABASE_URL"
	"INFLUXDB_URL=$INFLUX_URL"
	"INFLUXDB_BUCKET=$INFLUX_DB"
	"STREAM_SHARDS=$SHARDS"
	"LOG_FORMAT=json"
	"LOG_LEVEL=info"
)
[[ -z ${REDIS_PASSWORD:-} ]] || COMMON_ENV+=("REDIS_PASSWORD=$REDIS_PASSWORD")
log "gateway on $GATEWAY_URL, $WRITERS influx-writer copies, pg-sync (Redis keys $PREFIX*, database $PG_BENCH_DB)"
start_proc gateway "${COMMON_ENV[@]}" "GATEWAY_ADDR=127.0.0.1:$GATEWAY_PORT" "ADMIN_PASSWORD=$ADMIN_PASSWORD" "$WORK/bin/gateway"
wait_http "$GATEWAY_URL/readyz" 200 60 gateway
WORKERS=()
for ((i = 0; i < WRITERS; i++)); do WORKERS+=("influx-writer-$i"); done
WORKERS+=(pg-sync)
for w in "${WORKERS[@]}"; do
	port=$(free_port)
	start_proc "$w" "${COMMON_ENV[@]}" "OPS_ADDR=127.0.0.1:$port" "CONSUMER_NAME=bench-$w" "$WORK/bin/${w%-[0-9]*}"
	wait_http "http://127.0.0.1:$port/readyz" 200 60 "$w"
done

# ---------------------------------------------------------------------------------------------
# Measuring

# proc_cpu NAME prints the CPU seconds a started process has used (utime + stime).
proc_cpu() {
	awk -v hz="$HZ" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/${PID_OF[$1]}/stat" 2>/dev/null || printf 0
}

# redis_cpu prints Redis's CPU seconds (the server may be shared with other work).
redis_cpu() {
	redis-cli -u "$REDIS_URL" --no-auth-warning INFO cpu 2>/dev/null |
		awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { printf "%.3f", s }'
}

# machine_cpu prints the CPU seconds every process of the machine used (from /proc/stat).
machine_cpu() {
	awk -v hz="$HZ" '/^cpu / { printf "%.3f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat
}

# children_cpu prints the CPU seconds of this shell's waited-for children (the loadgen runs). The
# builtin times must run in this shell, not in a $(...) subshell, which has no such children.
children_cpu() {
	times >"$WORK/times"
	awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.3f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$WORK/times"
}

# cpu_snapshot sets SNAPSHOT to "name=cpu_seconds ..." for every process measured.
cpu_snapshot() {
	local n
	SNAPSHOT=
	for n in influxd gateway "${WORKERS[@]}"; do SNAPSHOT+="$n=$(proc_cpu "$n") "; done
	children_cpu >"$WORK/children"
	SNAPSHOT+="redis=$(redis_cpu) loadgen=$(<"$WORK/children") machine=$(machine_cpu)"
}

# record_cpu ROUND LABEL BEFORE AFTER WALL appends "round label process cpu wall" lines, with the
# influx-writer copies summed, and "others": the machine's CPU not used by the processes measured
# (other work on a shared machine; Redis may serve others too).
record_cpu() {
	awk -v r="$1" -v l="$2" -v b="$3" -v a="$4" -v wall="$5" 'BEGIN {
		n = split(b, bs, " "); for (i = 1; i <= n; i++) { split(bs[i], kv, "="); before[kv[1]] = kv[2] }
		n = split(a, as, " "); for (i = 1; i <= n; i++) {
			split(as[i], kv, "="); name = kv[1]; d = kv[2] - before[name]
			sub(/-[0-9]+$/, "", name); used[name] += d
			if (name != "machine") ours += d
		}
		used["others"] = used["machine"] - ours
		for (name in used) printf "%s %s %s %.3f %.3f\n", r, l, name, used[name], wall
	}' >>"$RESULTS/cpu.tsv"
}

# drained: every group has acked every entry of every shard.
drained() {
	local s key last
	for ((s = 0; s < SHARDS; s++)); do
		key="${PREFIX}metrics:{$s}"
		last=$(redis-cli -u "$REDIS_URL" --no-auth-warning XINFO STREAM "$key" 2>/dev/null | awk 'p { print; exit } $0 == "last-generated-id" { p = 1 }')
		[[ -n $last ]] || continue # no stream yet
		redis-cli -u "$REDIS_URL" --no-auth-warning XINFO GROUPS "$key" 2>/dev/null | awk -v last="$last" '
			prev == "pending" && $0 != "0" { bad = 1 }
			prev == "last-delivered-id" && $0 != last { bad = 1 }
			{ prev = $0; groups += ($0 == "name") }
			END { exit bad || groups < 2 }' || return 1
	done
}

wait_drained() {
	have redis-cli || {
		sleep 10
		return 0
	}
	wait_for 120 drained || warn "the streams were not drained within 120s; the next run starts anyway"
}

# measure ROUND LABEL LOADGEN-ARGS... runs one loadgen, keeps its report, prints its line.
measure() {
	local round=$1 label=$2 before after t0 rc=0 SNAPSHOT
	shift 2
	cpu_snapshot
	before=$SNAPSHOT
	t0=$(date +%s.%N)
	"$LOADGEN" --round "$round" --label "$label" --quiet --duration "$DURATION" --agents "$AGENTS" "$@" \
		>"$RESULTS/r$round-$label.json" 2>"$WORK/logs/loadgen-r$round-$label.log" || rc=$?
	cpu_snapshot
	after=$SNAPSHOT
	record_cpu "$round" "$label" "$before" "$after" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')"
	printf '  round %d  %s\n' "$round" "$(tail -n 1 "$WORK/logs/loadgen-r$round-$label.log")"
	if ((rc != 0 && rc != 3)); then
		rm -f "$RESULTS/r$round-$label.json"
		die "loadgen $label failed (exit $rc); its log: $(cat "$WORK/logs/loadgen-r$round-$label.log")"
	fi
}

log "$ROUNDS rounds of: direct, gateway, gateway-half, e2e, e2e-big ($BIG_POINTS-point requests), ceiling; $DURATION each, $AGENTS agents"
for ((r = 1; r <= ROUNDS; r++)); do
	measure "$r" direct --target influx --influx-url "$INFLUX_URL" --influx-db direct --concurrency "$CONCURRENCY"
	measure "$r" gateway --target gateway --gateway "$GATEWAY_URL" --admin-password "$ADMIN_PASSWORD" --concurrency "$CONCURRENCY"
	wait_drained
	half=$(awk -F'[:,]' '/"requests_per_s"/ { printf "%.0f", $2 / 2; exit }' "$RESULTS/r$r-gateway.json")
	measure "$r" gateway-half --target gateway --gateway "$GATEWAY_URL" --admin-password "$ADMIN_PASSWORD" --concurrency "$CONCURRENCY" \
		--rate "${half:-100}"
	wait_drained
	measure "$r" e2e --target gateway --gateway "$GATEWAY_URL" --admin-password "$ADMIN_PASSWORD" --concurrency "$CONCURRENCY" \
		--verify --influx-url "$INFLUX_URL" --influx-db "$INFLUX_DB"
	wait_drained
	measure "$r" e2e-big --target gateway --gateway "$GATEWAY_URL" --admin-password "$ADMIN_PASSWORD" --concurrency "$BIG_CONCURRENCY" \
		--batch-points "$BIG_POINTS" --verify --influx-url "$INFLUX_URL" --influx-db "$INFLUX_DB"
	wait_drained
	measure "$r" ceiling --mode ceiling --influx-url "$INFLUX_URL" --influx-db ceiling --concurrency "$CEILING_CONCURRENCY"
done

printf '\n'
summary_rc=0
summary_args=(--mode summary --results "$RESULTS")
((STRICT)) && summary_args+=(--strict)
"$LOADGEN" "${summary_args[@]}" || summary_rc=$?
stop_started

if ((GOTEST)); then
	printf '\nMicro-benchmarks (go test -bench, per request of 6 points):\n'
	for pkg in ./internal/metric/ ./internal/stream/; do # one at a time: a package that does not build hides no other
		(cd "$ROOT" && TEST_REDIS_URL=$REDIS_URL go test -run '^$' -bench . -benchtime 2000x -benchmem "$pkg") ||
			warn "go test -bench $pkg failed"
	done
fi
exit "$summary_rc"
