#!/usr/bin/env bash
# Starts, stops or reports PostgreSQL and NATS Streaming for the service,
# without Docker: PostgreSQL from the installed server binaries, and
# nats-streaming-server installed with `go install` into .tools/bin.
# Both keep their data under .data/ and listen on 127.0.0.1 only.
#
#   scripts/services.sh start|stop|status|install
#
# install only installs nats-streaming-server, for the tests.
# Running start twice leaves one of each. Settings (environment):
#   PGPORT        PostgreSQL port (5432)
#   NATS_PORT     NATS port (4222)
#   NATS_CLUSTER_ID  cluster id (test-cluster)
#   DATA_DIR      where data and logs go (.data in the repository)
#   PG_BIN        PostgreSQL server binaries (newest /usr/lib/postgresql/*/bin)
#
# The database, user and password are all "orders", as in docker-compose.yml.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
PGPORT=${PGPORT:-5432}
NATS_PORT=${NATS_PORT:-4222}
NATS_CLUSTER_ID=${NATS_CLUSTER_ID:-test-cluster}
DATA_DIR=${DATA_DIR:-$root/.data}
NSS_VERSION=v0.25.6
NSS=$root/.tools/bin/nats-streaming-server
mkdir -p "$DATA_DIR"

say() { echo "services: $*"; }
die() { echo "services: $*" >&2; exit 1; }

find_pg_bin() {
	if [[ -n ${PG_BIN:-} ]]; then echo "$PG_BIN"; return; fi
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[[ -n $d ]] || d=$(dirname "$(command -v pg_ctl 2>/dev/null || true)")
	[[ -x $d/pg_ctl ]] || die "no PostgreSQL server binaries found; install the postgresql package or set PG_BIN"
	echo "$d"
}

# PostgreSQL refuses to run as root, so as root it runs as the postgres
# user, on a data folder that user owns and can reach.
as_pg() {
	if [[ $(id -u) == 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

pg_data_dir() {
	local dir=$DATA_DIR/postgres
	if [[ $(id -u) == 0 ]] && ! runuser -u postgres -- test -x "$DATA_DIR" 2>/dev/null; then
		# The postgres user cannot reach into this checkout (a home
		# folder, say); keep its data where it can.
		dir=/var/tmp/orders-postgres-$(printf %s "$root" | md5sum | cut -c1-8)
	fi
	echo "$dir"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds
	local deadline=$((SECONDS + $2))
	until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

# pg_port prints the port of the server running on a data folder: the
# fourth line of its postmaster.pid.
pg_port() { sed -n 4p "$1/postmaster.pid"; }

start_pg() {
	local bin pgdata
	bin=$(find_pg_bin)
	pgdata=$(pg_data_dir)
	if ! as_pg "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1 && port_busy "$PGPORT"; then
		die "port $PGPORT is taken by another program; stop it, or choose another port: PGPORT=5433 $0 start (and set DATABASE_URL to match)"
	fi
	if [[ ! -f $pgdata/PG_VERSION ]]; then
		say "creating PostgreSQL cluster in $pgdata"
		mkdir -p "$pgdata"
		local pwfile=$pgdata.pw
		echo orders >"$pwfile"
		if [[ $(id -u) == 0 ]]; then chown postgres: "$pgdata" "$pwfile"; fi
		as_pg "$bin/initdb" -D "$pgdata" -U orders --pwfile="$pwfile" \
			--auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-instructions >"$DATA_DIR/initdb.log"
		rm -f "$pwfile"
	fi
	if as_pg "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
		local running
		running=$(pg_port "$pgdata")
		if [[ $running != "$PGPORT" ]]; then
			die "PostgreSQL of $pgdata already runs on port $running, not $PGPORT; use PGPORT=$running, or stop it first ($0 stop)"
		fi
		say "PostgreSQL already running on 127.0.0.1:$PGPORT ($pgdata)"
	else
		local log=$pgdata/server.log
		as_pg "$bin/pg_ctl" -D "$pgdata" -l "$log" -w -t 60 \
			-o "-p $PGPORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" start >/dev/null ||
			die "PostgreSQL did not start; see $log"
		say "PostgreSQL listening on 127.0.0.1:$PGPORT (log: $log)"
	fi
	if ! PGPASSWORD=orders "$bin/psql" -h 127.0.0.1 -p "$PGPORT" -U orders -d postgres -tAc \
		"SELECT 1 FROM pg_database WHERE datname = 'orders'" | grep -q 1; then
		PGPASSWORD=orders "$bin/createdb" -h 127.0.0.1 -p "$PGPORT" -U orders orders
		say "created database orders"
	fi
}

stop_pg() {
	local bin pgdata
	bin=$(find_pg_bin)
	pgdata=$(pg_data_dir)
	if [[ -f $pgdata/PG_VERSION ]] && as_pg "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
		as_pg "$bin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null
		say "PostgreSQL stopped"
	else
		say "PostgreSQL not running"
	fi
}

nats_pid() {
	local pid
	pid=$(cat "$DATA_DIR/nats.pid" 2>/dev/null) || return 1
	kill -0 "$pid" 2>/dev/null && grep -q nats-streaming "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
}

# nats_port prints the port a running streaming server was started with.
nats_port() { tr '\0' '\n' <"/proc/$1/cmdline" | sed -n '/^-p$/{n;p;q}'; }

install_nats() {
	[[ -x $NSS ]] && return
	say "installing nats-streaming-server $NSS_VERSION into .tools/bin (about a minute)"
	GOBIN=$root/.tools/bin go install "github.com/nats-io/nats-streaming-server@$NSS_VERSION"
}

start_nats() {
	install_nats
	mkdir -p "$DATA_DIR/nats"
	if pid=$(nats_pid); then
		local running
		running=$(nats_port "$pid")
		if [[ $running != "$NATS_PORT" ]]; then
			die "NATS Streaming of $DATA_DIR already runs on port $running, not $NATS_PORT; use NATS_PORT=$running, or stop it first ($0 stop)"
		fi
		say "NATS Streaming already running on 127.0.0.1:$NATS_PORT (pid $pid)"
		return
	fi
	if port_busy "$NATS_PORT"; then
		die "port $NATS_PORT is taken by another program; stop it, or choose another port: NATS_PORT=4223 $0 start (and set NATS_URL to match)"
	fi
	# A session of its own, so Ctrl-C in this terminal does not reach it.
	# No limit on a channel's messages, bytes or age: the server's defaults
	# (a million messages, 1 GB) drop the oldest messages, acknowledged or
	# not, when a backlog grows past them.
	# Heartbeats every 2 s notice a killed client within about 6 s, so its
	# unacknowledged messages go to the other instances of a queue group.
	setsid nohup "$NSS" -a 127.0.0.1 -p "$NATS_PORT" -cid "$NATS_CLUSTER_ID" \
		-store file -dir "$DATA_DIR/nats" -max_msgs 0 -max_bytes 0 -max_age 0s \
		-hbi 2s -hbt 2s -hbf 3 >"$DATA_DIR/nats.log" 2>&1 </dev/null &
	echo $! >"$DATA_DIR/nats.pid"
	wait_port "$NATS_PORT" 30 || die "NATS Streaming did not start; see $DATA_DIR/nats.log"
	say "NATS Streaming listening on 127.0.0.1:$NATS_PORT, cluster $NATS_CLUSTER_ID (log: $DATA_DIR/nats.log)"
}

stop_nats() {
	local pid
	if ! pid=$(nats_pid); then
		say "NATS Streaming not running"
		return
	fi
	kill "$pid"
	local deadline=$((SECONDS + 15))
	while kill -0 "$pid" 2>/dev/null; do
		((SECONDS < deadline)) || { kill -9 "$pid"; break; }
		sleep 0.1
	done
	rm -f "$DATA_DIR/nats.pid"
	say "NATS Streaming stopped"
}

# status reports both servers and exits non-zero unless both run.
status() {
	local bin pgdata down=0
	bin=$(find_pg_bin)
	pgdata=$(pg_data_dir)
	if [[ -f $pgdata/PG_VERSION ]] && as_pg "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
		say "PostgreSQL running on 127.0.0.1:$(pg_port "$pgdata") ($pgdata)"
	else
		say "PostgreSQL not running$(port_busy "$PGPORT" && echo "; port $PGPORT is taken by another program")"
		down=1
	fi
	if pid=$(nats_pid); then
		say "NATS Streaming running on 127.0.0.1:$(nats_port "$pid") (pid $pid)"
	else
		say "NATS Streaming not running$(port_busy "$NATS_PORT" && echo "; port $NATS_PORT is taken by another program")"
		down=1
	fi
	return $down
}

case ${1:-} in
start) start_pg; start_nats ;;
stop) stop_nats; stop_pg ;;
status) status ;;
install) install_nats ;;
*) die "usage: $0 start|stop|status|install" ;;
esac
