#!/usr/bin/env bash
# The crash drill: publish orders with the producer, kill -9 the service
# twice while it ingests them, restart it, and count what was stored.
# Every valid order must be stored exactly once.
#
#   scripts/crash-drill.sh [orders]      (default 10000)
#
# It runs its own PostgreSQL and NATS Streaming on free ports with data in
# a temporary folder, so it leaves a developer's servers and data alone,
# and stops everything it started when it ends.
set -euo pipefail

total=${1:-10000}
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/scratch-servers.sh" drill
http_port=$(free_port)
export HTTP_ADDR="127.0.0.1:$http_port"
base="http://$HTTP_ADDR"

svc_pid=
cleanup() {
	if [[ -n $svc_pid ]]; then
		kill -9 "$svc_pid" 2>/dev/null || true
		wait "$svc_pid" 2>/dev/null || true
	fi
	"$root/scripts/services.sh" stop >/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

psql_count() {
	PGPASSWORD=orders psql -h 127.0.0.1 -p "$PGPORT" -U orders -d orders -tAc "SELECT count(*) FROM $1"
}

start_service() {
	"$work/orders" >>"$work/service.log" 2>&1 &
	svc_pid=$!
	local deadline=$((SECONDS + 60))
	until curl -sf "$base/readyz" >/dev/null; do
		((SECONDS < deadline)) || { echo "service not ready; see $work/service.log" >&2; exit 1; }
		sleep 0.1
	done
}

wait_rows() { # at-least
	local deadline=$((SECONDS + 120))
	until (($(psql_count orders) >= $1)); do
		((SECONDS < deadline)) || { echo "stuck below $1 rows" >&2; exit 1; }
		sleep 0.05
	done
}

"$root/scripts/services.sh" start >/dev/null
(cd "$root" && go build -o "$work/orders" . && go build -o "$work/producer" ./producer)

start_service
echo "drill: publishing $total orders"
"$work/producer" -n "$total" -rate 2500 -q >"$work/producer.log" 2>&1 &
producer_pid=$!

for at in $((total / 5)) $((total * 3 / 5)); do
	wait_rows "$at"
	kill -9 "$svc_pid"
	wait "$svc_pid" 2>/dev/null || true
	echo "drill: killed the service (kill -9) with $(psql_count orders) orders stored"
	start_service
	echo "drill: restarted"
done

wait "$producer_pid" || { cat "$work/producer.log"; exit 1; }
cat "$work/producer.log"
wait_rows "$total"

rows=$(psql_count orders)
rejected=$(psql_count rejected)
cached=$(curl -s "$base/readyz" | sed -E 's/.*"orders":([0-9]+).*/\1/')
vars=$(curl -s "$base/debug/vars")
echo "drill: rows=$rows cache=$cached rejected=$rejected (want $total, $total, 0)"
counter() { printf %s "$vars" | grep -o "\"$1\": *[0-9]*" | grep -o '[0-9]*$'; }
echo "drill: since the last restart the service ingested $(counter ingested), recognised $(counter duplicates) duplicates and saw $(counter redelivered) redeliveries"
if [[ $rows != "$total" || $cached != "$total" || $rejected != 0 ]]; then
	echo "drill: FAILED" >&2
	exit 1
fi
echo "drill: passed"
