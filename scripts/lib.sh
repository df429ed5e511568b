# shellcheck shell=bash
# shellcheck disable=SC2034 # the settings and parse results here are read by the sourcing scripts
# Helpers shared by scripts/services.sh and scripts/test-services.sh: source it, do not run it.
#
# Rule for the three stores: a server that already answers at the configured URL is used as it is
# and never stopped by us. Otherwise, for a local URL, we start one (installing the Debian package or
# the Go module first when it is missing) and leave a marker in .data/run so that `down` stops
# exactly what we started.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${AGENTMONITOR_DATA:-$ROOT/.data}
RUN=$DATA/run
LOGS=$DATA/logs
BIN=$DATA/bin

DEFAULT_DATABASE_URL='postgres://postgres:postgres@127.0.0.1:5432/agentmonitor?sslmode=disable'
DEFAULT_REDIS_URL='redis://127.0.0.1:6379/0'
DEFAULT_INFLUXDB_URL='http://127.0.0.1:8086'
INFLUXD_MODULE=github.com/influxdata/influxdb
INFLUXD_VERSION=v1.8.10

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# tail_log FILE [N] prints the last N lines of a log written since its last "==== ... start"
# marker (scripts/services.sh writes one before each start), to explain a failure.
tail_log() {
	if [[ -s $1 ]]; then
		printf -- '--- last lines of %s ---\n' "$1" >&2
		tac "$1" | sed '/^==== .* start /q' | tac | tail -n "${2:-40}" >&2
		printf -- '---\n' >&2
	fi
}

# as_root runs a command as root: directly when we are root, else through sudo.
as_root() {
	if [[ $EUID -eq 0 ]]; then
		"$@"
	elif have sudo; then
		sudo "$@"
	else
		die "root is needed for: $* (run as root, or install sudo)"
	fi
}

# as_user USER runs a command as USER (root: runuser; others: sudo -u; same user: directly).
as_user() {
	local user=$1
	shift
	if [[ $user == "$(id -un)" ]]; then
		"$@"
	elif [[ $EUID -eq 0 ]]; then
		runuser -u "$user" -- "$@"
	elif have sudo; then
		sudo -u "$user" -- "$@"
	else
		die "cannot run as $user: install sudo or run as root"
	fi
}

APT_UPDATED=
# apt_install PKG... installs Debian packages, running apt-get update once first.
apt_install() {
	have apt-get || die "$* not found and apt-get is missing: install $* yourself (only Debian/Ubuntu is automated)"
	if [[ -z $APT_UPDATED ]]; then
		log "apt-get update"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
		APT_UPDATED=1
	fi
	log "apt-get install $*"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# urldecode decodes %XX escapes (URL user info may carry them).
urldecode() {
	local s=${1//\\/\\\\}
	printf '%b' "${s//%/\\x}"
}

# parse_url URL sets U_SCHEME U_USER U_PASS U_HOST U_PORT U_PATH U_QUERY.
parse_url() {
	local rest=$1 auth
	U_SCHEME=${rest%%://*}
	rest=${rest#*://}
	U_QUERY=
	if [[ $rest == *\?* ]]; then
		U_QUERY=${rest#*\?}
		rest=${rest%%\?*}
	fi
	U_PATH=
	if [[ $rest == */* ]]; then
		U_PATH=/${rest#*/}
		rest=${rest%%/*}
	fi
	U_USER='' U_PASS=''
	if [[ $rest == *@* ]]; then
		auth=${rest%@*}
		rest=${rest##*@}
		U_USER=$(urldecode "${auth%%:*}")
		if [[ $auth == *:* ]]; then U_PASS=$(urldecode "${auth#*:}"); fi
	fi
	if [[ $rest == \[* ]]; then # [::1]:port
		U_HOST=${rest%%]*}
		U_HOST=${U_HOST#[}
		U_PORT=${rest##*]}
		U_PORT=${U_PORT#:}
	else
		U_HOST=${rest%%:*}
		U_PORT=
		if [[ $rest == *:* ]]; then U_PORT=${rest##*:}; fi
	fi
}

# query_param QUERY NAME prints the value of NAME in a URL query string.
query_param() {
	local kv
	local -a pairs
	IFS='&' read -ra pairs <<<"$1"
	for kv in "${pairs[@]}"; do
		if [[ ${kv%%=*} == "$2" ]]; then
			printf '%s' "${kv#*=}"
			return 0
		fi
	done
	return 1
}

# is_local HOST: whether HOST is this machine's loopback, where we may start a server ourselves.
is_local() {
	case $1 in
	'' | 127.0.0.1 | localhost | ::1 | 0.0.0.0) return 0 ;;
	*) return 1 ;;
	esac
}

# bind_ip HOST maps a local host name to an address a server can bind.
bind_ip() {
	case $1 in
	'' | localhost | 0.0.0.0) printf '127.0.0.1' ;;
	*) printf '%s' "$1" ;;
	esac
}

# tcp_open HOST PORT: whether something accepts TCP connections there (bash /dev/tcp: no tools needed).
tcp_open() {
	# shellcheck disable=SC2016 # $1 $2 are the inner shell's arguments
	timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$(bind_ip "$1")" "$2" 2>/dev/null
}

# http_status URL prints the HTTP status of a GET, or 000 when nothing answers. curl when present
# (https), else a bare HTTP/1.0 request over /dev/tcp so that a fresh machine needs no extra tool.
http_status() {
	local url=$1 host port path rest
	if have curl; then
		curl -s -o /dev/null -m 5 -w '%{http_code}' "$url" 2>/dev/null || true
		return 0
	fi
	[[ $url == http://* ]] || die "curl is needed for $url (apt-get install curl)"
	rest=${url#http://}
	path=/${rest#*/}
	[[ $rest == */* ]] || path=/
	rest=${rest%%/*}
	host=${rest%%:*}
	port=80
	if [[ $rest == *:* ]]; then port=${rest##*:}; fi
	# shellcheck disable=SC2016 # $1 $2 $3 are the inner shell's arguments
	timeout 5 bash -c '
		exec 3<>"/dev/tcp/$1/$2" || exit 1
		printf "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$3" "$1" >&3
		IFS=" " read -r _ code _ <&3 && printf "%s" "$code"' _ "$(bind_ip "$host")" "$port" "$path" 2>/dev/null || printf '000'
}

# wait_for SECONDS CMD... retries CMD every half second until it succeeds or time runs out.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.5
	done
}

# pid_of FILE prints the pid recorded in FILE when that process still runs and its command line
# contains NAME (guards against a recycled pid).
pid_of() {
	local file=$1 name=$2 pid
	[[ -s $file ]] || return 1
	pid=$(<"$file")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ -r /proc/$pid/cmdline ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$name" || return 1
	printf '%s' "$pid"
}

# stop_pid FILE NAME [SECONDS]: SIGTERM the recorded process, SIGKILL it after SECONDS, remove FILE.
stop_pid() {
	local file=$1 name=$2 grace=${3:-30} pid deadline
	if pid=$(pid_of "$file" "$name"); then
		log "stopping $name (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		deadline=$((SECONDS + grace))
		while kill -0 "$pid" 2>/dev/null; do
			if ((SECONDS >= deadline)); then
				warn "$name did not stop within ${grace}s: SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.2
		done
	fi
	rm -f "$file"
}

# ours PIDFILE NAME prints a note when the store answering is the one we started earlier.
ours() {
	if pid_of "$1" "$2" >/dev/null; then printf ' (started by this script)'; fi
}

# ---------------------------------------------------------------------------------------------
# Redis

# ensure_redis URL makes sure a Redis answers at URL (starting a local redis-server if needed).
ensure_redis() {
	local url=$1 host port pass conf
	parse_url "$url"
	host=${U_HOST:-127.0.0.1} port=${U_PORT:-6379} pass=${U_PASS:-${REDIS_PASSWORD:-}}
	if tcp_open "$host" "$port"; then
		log "Redis: using the server answering at $host:$port$(ours "$RUN/redis.pid" redis-server)"
		return 0
	fi
	is_local "$host" || die "Redis does not answer at $host:$port (REDIS_URL) and that host is not this machine: start it or fix REDIS_URL"
	if ! have redis-server; then
		apt_install redis-server
		if tcp_open "$host" "$port"; then
			log "Redis: the redis-server package started its service at $host:$port; using it"
			return 0
		fi
	fi
	mkdir -p "$DATA/redis" "$RUN" "$LOGS"
	conf=$DATA/redis/redis.conf
	(
		umask 077
		{
			printf 'bind %s\nport %s\ndaemonize yes\n' "$(bind_ip "$host")" "$port"
			printf 'dir "%s"\npidfile "%s"\nlogfile "%s"\n' "$DATA/redis" "$RUN/redis.pid" "$LOGS/redis.log"
			# AOF: a restarted Redis keeps the streams; everysec may lose ~1 s on a host crash.
			printf 'appendonly yes\nappendfsync everysec\n'
			if [[ -n $pass ]]; then
				pass=${pass//\\/\\\\}
				printf 'requirepass "%s"\n' "${pass//\"/\\\"}"
			fi
		} >"$conf"
	)
	log "Redis: starting redis-server on $host:$port (data in $DATA/redis, AOF on)"
	redis-server "$conf" || {
		tail_log "$LOGS/redis.log"
		die "redis-server failed to start"
	}
	wait_for 30 tcp_open "$host" "$port" || {
		tail_log "$LOGS/redis.log"
		die "Redis did not start listening on $host:$port"
	}
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

# pg_bindir prints the directory of the newest installed PostgreSQL server binaries.
pg_bindir() {
	local d
	d=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
	if [[ -n $d && -x $d/initdb ]]; then
		printf '%s' "$d"
	elif have initdb && have pg_ctl; then
		dirname "$(command -v initdb)"
	else
		return 1
	fi
}

# debian_cluster PORT prints "version name" of the Debian cluster configured on PORT.
debian_cluster() {
	have pg_lsclusters || return 1
	pg_lsclusters --no-header 2>/dev/null | awk -v p="$1" '$3 == p { print $1, $2; found = 1; exit } END { exit !found }'
}

# private_pgdata prints where our own cluster lives (see init_private_postgres).
private_pgdata() {
	if [[ -s $DATA/postgres.location ]]; then
		cat "$DATA/postgres.location"
	else
		printf '%s' "$DATA/postgres"
	fi
}

# pg_owner DIR prints the OS user that owns a cluster's data directory.
pg_owner() { stat -c %U "$1"; }

# pg_sockdir DIR: our cluster's Unix socket directory. Socket paths are limited to ~107 bytes.
pg_sockdir() {
	if ((${#1} < 90)); then printf '%s' "$1"; else printf '/tmp'; fi
}

# init_private_postgres DIR HOST PORT USER PASSWORD creates a cluster of our own with initdb.
# PostgreSQL refuses to run as root, so root uses the OS user postgres (created by the Debian
# package); that user must be able to reach DIR, else the cluster goes under its home directory.
init_private_postgres() {
	local dir=$1 host=$2 port=$3 user=$4 pass=$5 bindir owner pwfile auth_host=trust
	bindir=$(pg_bindir) || die "PostgreSQL server binaries not found"
	owner=$(id -un)
	if [[ $EUID -eq 0 ]]; then
		id postgres >/dev/null 2>&1 || die "running as root: PostgreSQL needs the OS user postgres (apt-get install postgresql creates it)"
		owner=postgres
		mkdir -p "$dir"
		chown postgres: "$dir"
		if ! runuser -u postgres -- test -w "$dir"; then
			rmdir "$dir" 2>/dev/null || true
			dir=/var/lib/postgresql/agentmonitor-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)
			log "PostgreSQL: user postgres cannot reach $DATA; the cluster goes to $dir"
			mkdir -p "$dir"
			chown postgres: "$dir"
			printf '%s' "$dir" >"$DATA/postgres.location"
		fi
	else
		mkdir -p "$dir"
	fi
	chmod 700 "$dir"
	pwfile=$(mktemp)
	# The superuser is always "postgres"; it gets the URL's password when the URL logs in as it.
	if [[ $user == postgres && -n $pass ]]; then
		printf '%s\n' "$pass" >"$pwfile"
		auth_host=scram-sha-256
	elif [[ -n $pass ]]; then
		auth_host=scram-sha-256
	fi
	[[ $owner == "$(id -un)" ]] || chown "$owner" "$pwfile"
	local -a pwopt=()
	if [[ -s $pwfile ]]; then pwopt=(--pwfile="$pwfile"); fi
	log "PostgreSQL: initdb $dir (owner $owner, superuser postgres, $auth_host on loopback)"
	as_user "$owner" "$bindir/initdb" -D "$dir" -U postgres -E UTF8 --locale=C \
		--auth-local=trust --auth-host="$auth_host" "${pwopt[@]}" >"$DATA/postgres-initdb.log" 2>&1 || {
		rm -f "$pwfile"
		tail_log "$DATA/postgres-initdb.log"
		die "initdb failed"
	}
	rm -f "$pwfile"
	cat >>"$dir/postgresql.conf" <<EOF

# written by scripts/lib.sh
listen_addresses = '$(bind_ip "$host")'
port = $port
unix_socket_directories = '$(pg_sockdir "$dir")'
EOF
}

# start_local_postgres HOST PORT USER PASSWORD starts a PostgreSQL on this machine: the Debian
# cluster configured on PORT if there is one, else our own cluster under .data (initdb'd once).
start_local_postgres() {
	local host=$1 port=$2 user=$3 pass=$4 cluster dir bindir owner
	if ! cluster=$(debian_cluster "$port") && ! pg_bindir >/dev/null && [[ ! -f $(private_pgdata)/PG_VERSION ]]; then
		apt_install postgresql
		if tcp_open "$host" "$port"; then
			log "PostgreSQL: the postgresql package started its cluster on port $port; using it"
			return 0
		fi
		cluster=$(debian_cluster "$port") || true
	fi
	if [[ -n $cluster ]]; then
		log "PostgreSQL: starting the Debian cluster $cluster (pg_ctlcluster)"
		# shellcheck disable=SC2086 # "version name"
		as_root pg_ctlcluster --skip-systemctl-redirect $cluster start
		mkdir -p "$RUN"
		printf '%s\n' "$cluster" >"$RUN/postgres-cluster"
	else
		dir=$(private_pgdata)
		if [[ ! -f $dir/PG_VERSION ]]; then
			init_private_postgres "$dir" "$host" "$port" "$user" "$pass"
			dir=$(private_pgdata)
		fi
		bindir=$(pg_bindir) || die "PostgreSQL server binaries not found"
		owner=$(pg_owner "$dir")
		log "PostgreSQL: starting the cluster in $dir on port $port"
		as_user "$owner" "$bindir/pg_ctl" -D "$dir" -l "$dir/postgres.log" -w -t 60 start >/dev/null || {
			tail_log "$dir/postgres.log"
			die "PostgreSQL failed to start"
		}
		mkdir -p "$RUN" "$LOGS"
		printf '%s\n' "$dir" >"$RUN/postgres-private"
		ln -sfn "$dir/postgres.log" "$LOGS/postgres.log" 2>/dev/null || true
	fi
	wait_for 30 tcp_open "$host" "$port" || die "PostgreSQL did not start listening on $host:$port"
}

# pg_admin_psql runs psql as the superuser over the local socket (no password), when we know how:
# for a Debian cluster as OS user postgres (peer auth), for ours as its owner (trust).
pg_admin_psql() {
	local port=$1 dir
	shift
	if [[ -n $(debian_cluster "$port") ]] && id postgres >/dev/null 2>&1; then
		as_user postgres psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -p "$port" -U postgres -d postgres "$@"
	elif dir=$(private_pgdata) && [[ -f $dir/PG_VERSION ]]; then
		as_user "$(pg_owner "$dir")" psql -X -q -v ON_ERROR_STOP=1 -h "$(pg_sockdir "$dir")" -p "$port" -U postgres -d postgres "$@"
	else
		return 1
	fi
}

# pg_tcp_psql runs psql over TCP with the URL's credentials against database postgres.
pg_tcp_psql() {
	PGHOST=$(bind_ip "$PG_HOST") PGPORT=$PG_PORT PGUSER=$PG_USER PGPASSWORD=$PG_PASS PGDATABASE=postgres \
		PGSSLMODE=$PG_SSLMODE PGCONNECT_TIMEOUT=5 psql -X -q -v ON_ERROR_STOP=1 "$@"
}

# ensure_postgres URL makes sure PostgreSQL answers at URL, the URL's user logs in over TCP with its
# password, and the URL's database exists.
ensure_postgres() {
	parse_url "$1"
	PG_HOST=${U_HOST:-127.0.0.1} PG_PORT=${U_PORT:-5432} PG_USER=${U_USER:-postgres} PG_PASS=$U_PASS
	PG_DB=${U_PATH#/}
	PG_DB=${PG_DB:-agentmonitor}
	PG_SSLMODE=$(query_param "$U_QUERY" sslmode) || PG_SSLMODE=prefer
	if tcp_open "$PG_HOST" "$PG_PORT"; then
		log "PostgreSQL: using the server answering at $PG_HOST:$PG_PORT$(
			if [[ -s $RUN/postgres-private || -s $RUN/postgres-cluster ]]; then printf ' (started by this script)'; fi
		)"
	else
		is_local "$PG_HOST" || die "PostgreSQL does not answer at $PG_HOST:$PG_PORT (DATABASE_URL) and that host is not this machine: start it or fix DATABASE_URL"
		start_local_postgres "$PG_HOST" "$PG_PORT" "$PG_USER" "$PG_PASS"
	fi
	have psql || apt_install postgresql-client

	if ! pg_tcp_psql -c 'SELECT 1' >/dev/null 2>&1; then
		is_local "$PG_HOST" || die "PostgreSQL at $PG_HOST:$PG_PORT refuses user $PG_USER: check DATABASE_URL"
		log "PostgreSQL: giving role $PG_USER the password from DATABASE_URL"
		pg_admin_psql "$PG_PORT" -v role="$PG_USER" -v pass="$PG_PASS" <<'SQL' || die "PostgreSQL at $PG_HOST:$PG_PORT refuses user $PG_USER over TCP and we cannot administer it locally: check DATABASE_URL"
SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN CREATEDB PASSWORD %L', :'role', :'pass') \gexec
SQL
		pg_tcp_psql -c 'SELECT 1' >/dev/null || die "PostgreSQL still refuses $PG_USER over TCP at $PG_HOST:$PG_PORT: check pg_hba.conf (password auth on loopback)"
	fi
	pg_tcp_psql -v db="$PG_DB" -v role="$PG_USER" <<'SQL' || die "creating database $PG_DB failed"
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
	log "PostgreSQL: database $PG_DB is ready for $PG_USER at $PG_HOST:$PG_PORT"
}

# ---------------------------------------------------------------------------------------------
# InfluxDB 1.8 (local runs and tests; production runs 2.x, see compose.yaml)

# is_influxd_18 BIN [stamped]: whether BIN was built from the InfluxDB v1.8.10 module (its Go build
# info says), and with "stamped" also whether it reports that version (see install_influxd).
is_influxd_18() {
	[[ -x $1 ]] && go version -m "$1" 2>/dev/null |
		awk -v m="$INFLUXD_MODULE" -v v="$INFLUXD_VERSION" '$1 == "mod" && $2 == m && $3 == v { ok = 1 } END { exit !ok }' || return 1
	[[ ${2:-} != stamped ]] || "$1" version 2>/dev/null | grep -qF "InfluxDB $INFLUXD_VERSION "
}

# find_influxd [stamped] prints the first influxd 1.8.10 among $INFLUXD_BIN, .data/bin,
# GOPATH/bin and PATH.
find_influxd() {
	local c
	for c in "${INFLUXD_BIN:-}" "$BIN/influxd" "$(go env GOPATH)/bin/influxd" "$(command -v influxd || true)"; do
		if [[ -n $c ]] && is_influxd_18 "$c" "${1:-}"; then
			printf '%s' "$c"
			return 0
		fi
	done
	return 1
}

# install_influxd GOBIN builds influxd from its Go module into GOBIN (about two minutes).
install_influxd() {
	mkdir -p "$1"
	log "InfluxDB: go install $INFLUXD_MODULE/cmd/influxd@$INFLUXD_VERSION into $1 (takes a few minutes, once)"
	# -X main.version: as in InfluxData's release builds, so that /ping's X-Influxdb-Version header says
	# 1.8.10 instead of "unknown" (clients tell 1.x from 2.x by it).
	GOBIN=$1 GOFLAGS=-buildvcs=false go install -ldflags="-X main.version=${INFLUXD_VERSION#v}" \
		"$INFLUXD_MODULE/cmd/influxd@$INFLUXD_VERSION"
}

influx_ping() { [[ $(http_status "$1/ping") == 204 ]]; }

# ensure_influxdb URL makes sure an InfluxDB answers at URL, else runs influxd 1.8 under .data.
ensure_influxdb() {
	local url=${1%/} host port rpc conf influxd pid
	if influx_ping "$url"; then
		log "InfluxDB: using the server answering at $url$(ours "$RUN/influxd.pid" influxd)"
		return 0
	fi
	parse_url "$url"
	host=$(bind_ip "${U_HOST:-127.0.0.1}") port=${U_PORT:-8086}
	is_local "$U_HOST" || die "InfluxDB does not answer at $url (INFLUXDB_URL) and that host is not this machine: start it or fix INFLUXDB_URL"
	if tcp_open "$host" "$port"; then
		die "something listens on $host:$port but does not answer $url/ping as InfluxDB: fix INFLUXDB_URL or free the port"
	fi
	# A copy that reports its version, so that version detection by /ping sees 1.8.10; building one
	# from the module cache takes seconds when another copy was built here before.
	influxd=$(find_influxd stamped) || {
		install_influxd "$BIN"
		influxd=$BIN/influxd
	}
	rpc=$((port + 2)) # 8086 -> 8088, influxd's usual backup/restore port
	mkdir -p "$DATA/influxdb" "$RUN" "$LOGS"
	conf=$DATA/influxdb/influxdb.conf
	cat >"$conf" <<EOF
# written by scripts/lib.sh: InfluxDB 1.8 for local runs
reporting-disabled = true
bind-address = "$host:$rpc"

[meta]
  dir = "$DATA/influxdb/meta"

[data]
  dir = "$DATA/influxdb/data"
  wal-dir = "$DATA/influxdb/wal"
  query-log-enabled = false

[http]
  bind-address = "$host:$port"
  flux-enabled = true
  # one log line per request would dominate the log under agent traffic
  log-enabled = false

[monitor]
  store-enabled = false
EOF
	log "InfluxDB: starting $influxd on $host:$port (data in $DATA/influxdb)"
	setsid "$influxd" run -config "$conf" >>"$LOGS/influxd.log" 2>&1 </dev/null &
	pid=$!
	printf '%s\n' "$pid" >"$RUN/influxd.pid"
	# influxd 1.8 spends a long time initialising Flux at start on a busy machine (48 s seen here).
	if ! wait_for "${INFLUXD_START_TIMEOUT:-180}" influx_ping "$url"; then
		tail_log "$LOGS/influxd.log"
		stop_pid "$RUN/influxd.pid" influxd 10
		die "influxd did not answer $url/ping"
	fi
}
