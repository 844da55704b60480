#!/usr/bin/env bash
# Drives the database route hard and checks that what cannot be answered
# in time is answered with 503 and Retry-After, never another 5xx, and
# that PostgreSQL never runs out of connections: wrk with 256 connections
# for 30 s against GET /api/models/{id}, the service at its defaults (10
# database connections, DB_TIMEOUT 2s) unless DB_MAX_CONNS or DB_TIMEOUT
# are set, PostgreSQL at its own (max_connections 100). At the defaults
# the route keeps up on two cores; DB_TIMEOUT=10ms makes it miss.
#
#   [DB_TIMEOUT=10ms] bench/overload.sh [-d seconds] [-c connections]
set -euo pipefail

dur=30
conns=256
while getopts "d:c:" opt; do
	case $opt in
	d) dur=$OPTARG ;;
	c) conns=$OPTARG ;;
	*) exit 2 ;;
	esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/scratch-servers.sh" overload
export HTTP_ADDR=127.0.0.1:$(free_port)
svc_pid=
cleanup() {
	[[ -n $svc_pid ]] && kill "$svc_pid" 2>/dev/null && wait "$svc_pid" 2>/dev/null || true
	"$root/scripts/services.sh" stop >/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

"$root/scripts/services.sh" start >/dev/null
echo "overload: service settings: DB_MAX_CONNS=${DB_MAX_CONNS:-10} DB_TIMEOUT=${DB_TIMEOUT:-2s}"
(cd "$root" && go build -o "$work/orders" . && go build -o "$work/producer" ./producer)
"$work/orders" >"$work/service.log" 2>&1 &
svc_pid=$!
until curl -sf "http://$HTTP_ADDR/readyz" >/dev/null; do sleep 0.05; done
"$work/producer" -n 10000 -id-prefix bench- -q >/dev/null 2>&1
until [[ $(curl -s "http://$HTTP_ADDR/readyz" | grep -o '"orders":[0-9]*' | cut -d: -f2) -ge 10000 ]]; do sleep 0.05; done

echo "overload: wrk -t2 -c$conns -d${dur}s on GET /api/models/{id}"
BENCH_PATH=/api/models/%s BENCH_N=10000 wrk -t2 -c"$conns" -d"${dur}s" --timeout 10s --latency \
	-s "$root/bench/statuses.lua" "http://$HTTP_ADDR" | tee "$work/wrk.out"
pglog=$DATA_DIR/postgres/server.log
[[ -f $pglog ]] || pglog=$(ls /var/tmp/orders-postgres-*/server.log | head -1)
too_many=$(grep -c "too many clients" "$pglog" || true)
echo "overload: \"too many clients\" in the PostgreSQL log: $too_many"
other5xx=$(awk '/^status 5[0-9][0-9]:/ && $2 != "503:" {n += $3} END {print n + 0}' "$work/wrk.out")
echo "overload: 5xx other than 503: $other5xx"
[[ $too_many == 0 && $other5xx == 0 ]]
