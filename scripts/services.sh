#!/usr/bin/env bash
# Brings Agent Monitor up on this machine, or down again.
#
#   scripts/services.sh up        stores (Redis, PostgreSQL, InfluxDB) + build + start the binaries
#   scripts/services.sh stores    only make sure the three stores answer
#   scripts/services.sh build     build the binaries into .data/bin
#   scripts/services.sh down      stop the binaries and the stores this script started
#   scripts/services.sh status    what runs, from the pid files
#   scripts/services.sh logs [N]  the last N lines of every log (follows them on a terminal)
#
# Stores already answering at DATABASE_URL, REDIS_URL and INFLUXDB_URL are used as they are and
# never stopped. State lives in .data/ (gitignored): bin/, logs/, run/ (pid files), the stores' data.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# APPS in start order; stopped in reverse (the gateway, the intake, first).
APPS=(influx-writer pg-sync alerter gateway)

# ops_addr APP: a worker's /healthz /readyz /metrics address (OPS_ADDR), one port per binary so that
# all of them run side by side; override with INFLUX_WRITER_OPS_ADDR, PG_SYNC_OPS_ADDR, ALERTER_OPS_ADDR.
ops_addr() {
	case $1 in
	influx-writer) printf '%s' "${INFLUX_WRITER_OPS_ADDR:-:9101}" ;;
	pg-sync) printf '%s' "${PG_SYNC_OPS_ADDR:-:9102}" ;;
	alerter) printf '%s' "${ALERTER_OPS_ADDR:-:9103}" ;;
	esac
}

# present_apps prints the binaries whose cmd/<name> package exists (alerter arrives later).
present_apps() {
	local app
	for app in "${APPS[@]}"; do
		if compgen -G "$ROOT/cmd/$app/*.go" >/dev/null; then printf '%s\n' "$app"; fi
	done
}

# local_url ADDR turns a listen address (":8080", "0.0.0.0:8080", "host:8080") into a URL to call.
local_url() {
	local host=${1%:*} port=${1##*:}
	printf 'http://%s:%s' "$(bind_ip "$host")" "$port"
}

cmd_stores() {
	mkdir -p "$DATA" "$RUN" "$LOGS" "$BIN"
	export DATABASE_URL=${DATABASE_URL:-$DEFAULT_DATABASE_URL}
	export REDIS_URL=${REDIS_URL:-$DEFAULT_REDIS_URL}
	export INFLUXDB_URL=${INFLUXDB_URL:-$DEFAULT_INFLUXDB_URL}
	ensure_redis "$REDIS_URL"
	ensure_postgres "$DATABASE_URL"
	ensure_influxdb "$INFLUXDB_URL"
}

cmd_build() {
	local -a apps pkgs=()
	mapfile -t apps < <(present_apps)
	[[ " ${apps[*]} " == *" gateway "* ]] || die "cmd/gateway has no Go files yet: nothing to run"
	local app
	for app in "${apps[@]}"; do pkgs+=("./cmd/$app"); done
	mkdir -p "$BIN"
	log "building ${apps[*]} into $BIN"
	(cd "$ROOT" && go build -o "$BIN/" "${pkgs[@]}")
}

# admin_password exports ADMIN_PASSWORD: the caller's, else one generated once into .data.
admin_password() {
	if [[ -n ${ADMIN_PASSWORD:-} ]]; then
		ADMIN_PASSWORD_SHOWN="the ADMIN_PASSWORD in your environment"
		export ADMIN_PASSWORD
		return 0
	fi
	local f=$DATA/admin-password
	if [[ ! -s $f ]]; then
		(
			umask 077
			head -c 24 /dev/urandom | base64 | tr -d '/+=\n' | head -c 24 >"$f"
		)
	fi
	ADMIN_PASSWORD=$(<"$f")
	ADMIN_PASSWORD_SHOWN="$ADMIN_PASSWORD   (kept in $f)"
	export ADMIN_PASSWORD
}

start_app() {
	local app=$1 pid
	stop_pid "$RUN/$app.pid" "$BIN/$app" 30
	(
		if [[ $app != gateway ]]; then export OPS_ADDR; OPS_ADDR=$(ops_addr "$app"); fi
		printf '\n==== %s start %s ====\n' "$app" "$(date -Is)" >>"$LOGS/$app.log"
		# setsid: the binary leaves this script's process group, so a Ctrl-C here does not stop it.
		setsid "$BIN/$app" >>"$LOGS/$app.log" 2>&1 </dev/null &
		printf '%s\n' "$!" >"$RUN/$app.pid"
	)
	pid=$(<"$RUN/$app.pid")
	log "started $app (pid $pid, log $LOGS/$app.log)"
}

gateway_ready() {
	pid_of "$RUN/gateway.pid" "$BIN/gateway" >/dev/null || return 2
	[[ $(http_status "$GATEWAY_URL/readyz") == 200 ]]
}

cmd_up() {
	cmd_stores
	cmd_build
	admin_password
	GATEWAY_URL=$(local_url "${GATEWAY_ADDR:-:8080}")

	local -a apps
	mapfile -t apps < <(present_apps)
	local app
	for app in "${apps[@]}"; do start_app "$app"; done

	local timeout=${READY_TIMEOUT:-90} deadline rc
	log "waiting up to ${timeout}s for $GATEWAY_URL/readyz"
	deadline=$((SECONDS + timeout))
	while true; do
		rc=0
		gateway_ready || rc=$?
		((rc == 0)) && break
		if ((rc == 2)); then
			tail_log "$LOGS/gateway.log"
			die "the gateway exited; its log is above (stop the rest with: go tool task down)"
		fi
		if ((SECONDS >= deadline)); then
			tail_log "$LOGS/gateway.log"
			die "the gateway was not ready within ${timeout}s; its log is above (stop everything with: go tool task down)"
		fi
		sleep 0.5
	done
	sleep 1 # let a worker that is about to fail on its config do so before we report
	local failed=0
	for app in "${apps[@]}"; do
		if ! pid_of "$RUN/$app.pid" "$BIN/$app" >/dev/null; then
			tail_log "$LOGS/$app.log"
			warn "$app is not running; its log is above"
			failed=1
		fi
	done

	local dashboard=$GATEWAY_URL/
	case $(http_status "$dashboard") in
	2?? | 3??) ;;
	*) dashboard="$dashboard  (not served by this version yet)" ;;
	esac
	local state="Agent Monitor is up."
	((failed == 0)) || state="Agent Monitor is up, but not every worker runs (see above)."
	cat <<EOF

$state
  Dashboard   $dashboard
  API         $GATEWAY_URL/api/v1/   (described at $GATEWAY_URL/api/v1/openapi.yaml)
  Log in      user admin, password: $ADMIN_PASSWORD_SHOWN
              (the password admin is given when the gateway first creates that user)
  Logs        $LOGS/   (go tool task logs)
EOF
	for app in "${apps[@]}"; do
		[[ $app == gateway ]] || printf '  %-11s %s/healthz /readyz /metrics\n' "$app" "$(local_url "$(ops_addr "$app")")"
	done
	printf '  Stop        go tool task down\n'
	return "$failed"
}

cmd_down() {
	local i app cluster dir
	for ((i = ${#APPS[@]} - 1; i >= 0; i--)); do
		app=${APPS[i]}
		stop_pid "$RUN/$app.pid" "$BIN/$app" 60
	done
	stop_pid "$RUN/influxd.pid" influxd 30
	stop_pid "$RUN/redis.pid" redis-server 30
	if [[ -s $RUN/postgres-private ]]; then
		dir=$(<"$RUN/postgres-private")
		if [[ -f $dir/postmaster.pid ]]; then
			log "stopping PostgreSQL in $dir"
			as_user "$(pg_owner "$dir")" "$(pg_bindir)/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || warn "pg_ctl stop failed"
		fi
		rm -f "$RUN/postgres-private"
	fi
	if [[ -s $RUN/postgres-cluster ]]; then
		cluster=$(<"$RUN/postgres-cluster")
		log "stopping the Debian PostgreSQL cluster $cluster (this script started it)"
		# shellcheck disable=SC2086 # "version name"
		as_root pg_ctlcluster --skip-systemctl-redirect $cluster stop || warn "pg_ctlcluster stop failed"
		rm -f "$RUN/postgres-cluster"
	fi
	log "down (stores that were already running were left alone)"
}

cmd_status() {
	local f name pid
	shopt -s nullglob
	for f in "$RUN"/*.pid; do
		name=$(basename "$f" .pid)
		if pid=$(pid_of "$f" "$name"); then
			printf '%-14s running (pid %s)\n' "$name" "$pid"
		else
			printf '%-14s not running\n' "$name"
		fi
	done
	[[ -s $RUN/postgres-private ]] && printf '%-14s our cluster in %s\n' postgres "$(<"$RUN/postgres-private")"
	[[ -s $RUN/postgres-cluster ]] && printf '%-14s Debian cluster %s (started by us)\n' postgres "$(<"$RUN/postgres-cluster")"
	return 0
}

cmd_logs() {
	local n=${1:-50}
	local -a files
	shopt -s nullglob
	files=("$LOGS"/*.log)
	((${#files[@]})) || die "no logs yet in $LOGS (run: go tool task up)"
	if [[ -t 1 ]]; then
		exec tail -n "$n" -F "${files[@]}"
	fi
	tail -n "$n" "${files[@]}"
}

main() {
	local cmd=${1:-up}
	shift || true
	case $cmd in
	up) cmd_up ;;
	stores) cmd_stores ;;
	build) cmd_build ;;
	down) cmd_down ;;
	status) cmd_status ;;
	logs) cmd_logs "$@" ;;
	*) die "usage: $0 up|stores|build|down|status|logs [lines]" ;;
	esac
}

main "$@"
