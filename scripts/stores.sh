#!/usr/bin/env bash
# Starts or stops a local Redis or PostgreSQL for cmd/devstack (go tool task up/stores/down/test),
# installing the Debian packages first when they are missing. Only what suits a shell lives here:
# apt-get, redis-server, initdb, pg_ctl and pg_ctlcluster, psql as the superuser. Deciding whether
# a store already answers, URL parsing and waiting are cmd/devstack's (Go).
#
#   scripts/stores.sh redis HOST PORT               start redis-server (REDIS_PASSWORD: requirepass)
#   scripts/stores.sh postgres HOST PORT USER PASS  start the Debian cluster on PORT, else our own
#   scripts/stores.sh postgres-role PORT USER PASS  create USER with PASS through the local socket
#   scripts/stores.sh postgres-stop                 stop the PostgreSQL this script started
#   scripts/stores.sh chromium                      install Debian's chromium (the dashboard's browser tests)
#
# State lives in $AGENTMONITOR_DATA (default .data): run/ holds the markers of what was started.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${AGENTMONITOR_DATA:-$ROOT/.data}
RUN=$DATA/run
LOGS=$DATA/logs

log() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# tail_log FILE prints the end of a log to explain a failure.
tail_log() {
	if [[ -s $1 ]]; then
		printf -- '--- last lines of %s ---\n' "$1" >&2
		tail -n 40 "$1" >&2
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

# ---------------------------------------------------------------------------------------------
# Redis

redis_start() {
	local host=$1 port=$2 pass=${REDIS_PASSWORD:-} conf
	if ! have redis-server; then
		apt_install redis-server
		if redis-cli -h "$host" -p "$port" ping >/dev/null 2>&1; then
			log "Redis: the redis-server package started its service at $host:$port; using it"
			return 0
		fi
	fi
	mkdir -p "$DATA/redis" "$RUN" "$LOGS"
	conf=$DATA/redis/redis.conf
	(
		umask 077
		{
			printf 'bind %s\nport %s\ndaemonize yes\n' "$host" "$port"
			printf 'dir "%s"\npidfile "%s"\nlogfile "%s"\n' "$DATA/redis" "$RUN/redis.pid" "$LOGS/redis.log"
			# AOF fsynced before Redis answers: a crashed and restarted Redis keeps every
			# acknowledged point (everysec can lose up to ~2 s of them; see README).
			printf 'appendonly yes\nappendfsync always\n'
			# Never evict: an evicted stream entry is a lost point (the binaries refuse other policies).
			printf 'maxmemory-policy noeviction\n'
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
	cat >>"$dir/postgresql.conf" <<CONF

# written by scripts/stores.sh
listen_addresses = '$host'
port = $port
unix_socket_directories = '$(pg_sockdir "$dir")'
CONF
}

# postgres_start HOST PORT USER PASSWORD starts a PostgreSQL on this machine: the Debian cluster
# configured on PORT if there is one, else our own cluster under .data (initdb'd once).
postgres_start() {
	local host=$1 port=$2 user=$3 pass=$4 cluster dir bindir owner
	if ! cluster=$(debian_cluster "$port") && ! pg_bindir >/dev/null && [[ ! -f $(private_pgdata)/PG_VERSION ]]; then
		apt_install postgresql
		if pg_isready -q -h "$host" -p "$port" 2>/dev/null; then
			log "PostgreSQL: the postgresql package started its cluster on port $port; using it"
			return 0
		fi
		cluster=$(debian_cluster "$port") || true
	fi
	mkdir -p "$RUN" "$LOGS"
	if [[ -n $cluster ]]; then
		log "PostgreSQL: starting the Debian cluster $cluster (pg_ctlcluster)"
		# shellcheck disable=SC2086 # "version name"
		as_root pg_ctlcluster --skip-systemctl-redirect $cluster start
		printf '%s\n' "$cluster" >"$RUN/postgres-cluster"
		return 0
	fi
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
	printf '%s\n' "$dir" >"$RUN/postgres-private"
	ln -sfn "$dir/postgres.log" "$LOGS/postgres.log" 2>/dev/null || true
}

# postgres_role PORT USER PASSWORD creates USER (or sets its password) as the superuser over the
# local socket, when we know how: for a Debian cluster as OS user postgres (peer auth), for ours as
# its owner (trust).
postgres_role() {
	local port=$1 user=$2 pass=$3 dir
	have psql || apt_install postgresql-client
	local -a psql=(psql -X -q -v ON_ERROR_STOP=1 -p "$port" -U postgres -d postgres -v role="$user" -v pass="$pass")
	local sql="SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \\gexec
SELECT format('ALTER ROLE %I WITH LOGIN CREATEDB PASSWORD %L', :'role', :'pass') \\gexec"
	log "PostgreSQL: giving role $user the password from DATABASE_URL"
	if [[ -n $(debian_cluster "$port") ]] && id postgres >/dev/null 2>&1; then
		as_user postgres "${psql[@]}" -h /var/run/postgresql <<<"$sql"
	elif dir=$(private_pgdata) && [[ -f $dir/PG_VERSION ]]; then
		as_user "$(pg_owner "$dir")" "${psql[@]}" -h "$(pg_sockdir "$dir")" <<<"$sql"
	else
		die "PostgreSQL on port $port refuses $user over TCP and we cannot administer it locally: check DATABASE_URL"
	fi
}

postgres_stop() {
	local dir cluster
	if [[ -s $RUN/postgres-private ]]; then
		dir=$(<"$RUN/postgres-private")
		if [[ -f $dir/postmaster.pid ]]; then
			log "stopping PostgreSQL in $dir"
			as_user "$(pg_owner "$dir")" "$(pg_bindir)/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || log "pg_ctl stop failed"
		fi
		rm -f "$RUN/postgres-private"
	fi
	if [[ -s $RUN/postgres-cluster ]]; then
		cluster=$(<"$RUN/postgres-cluster")
		log "stopping the Debian PostgreSQL cluster $cluster (started by go tool task up)"
		# shellcheck disable=SC2086 # "version name"
		as_root pg_ctlcluster --skip-systemctl-redirect $cluster stop || log "pg_ctlcluster stop failed"
		rm -f "$RUN/postgres-cluster"
	fi
}

cmd=${1:-}
shift || true
# ---------------------------------------------------------------------------------------------
# Chromium, the browser e2e/dashboard_test.go drives (CHROMIUM_BIN overrides /usr/bin/chromium)

chromium_ensure() {
	local bin=${CHROMIUM_BIN:-/usr/bin/chromium}
	if [[ -x $bin ]]; then
		return 0
	fi
	apt_install chromium
	[[ -x $bin ]] || die "apt-get install chromium did not produce $bin"
}

case $cmd in
chromium) chromium_ensure ;;
redis) redis_start "$@" ;;
postgres) postgres_start "$@" ;;
postgres-role) postgres_role "$@" ;;
postgres-stop) postgres_stop ;;
*) die "usage: $0 chromium | redis HOST PORT | postgres HOST PORT USER PASS | postgres-role PORT USER PASS | postgres-stop" ;;
esac
