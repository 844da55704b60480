#!/usr/bin/env bash
# Ingestion through the stream with one instance (the default, no queue
# group, no change log) and with three sharing a queue group, on one
# machine, against one PostgreSQL and one NATS Streaming server started as
# scripts/services.sh starts them.
#
#   bench/instances.sh [-n orders]
set -euo pipefail

n=100000
while getopts "n:" opt; do
	case $opt in
	n) n=$OPTARG ;;
	*) exit 2 ;;
	esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/scratch-servers.sh" instances
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
	"$root/scripts/services.sh" stop >/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
count() { psql -h 127.0.0.1 -p "$PGPORT" -U orders -d orders -tAc "SELECT count(*) FROM orders"; }

"$root/scripts/services.sh" start >/dev/null
(cd "$root" && go build -o "$work/orders" . && go build -o "$work/producer" ./producer)

for k in 1 3; do
	psql -h 127.0.0.1 -p "$PGPORT" -U orders -d orders -qc "DROP TABLE IF EXISTS orders, rejected, changes" 2>/dev/null
	channel=orders-$k
	pids=()
	group=
	((k > 1)) && group=bench
	for i in $(seq 1 "$k"); do
		port=$(free_port)
		HTTP_ADDR=127.0.0.1:$port NATS_CHANNEL=$channel NATS_QUEUE_GROUP=$group NATS_CLIENT_ID=bench-$k-$i \
			"$work/orders" >>"$work/service-$k-$i.log" 2>&1 &
		pids+=($!)
		until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.05; done
	done
	t0=$(now)
	NATS_CHANNEL=$channel "$work/producer" -n "$n" -max-items 5 -q >/dev/null 2>&1
	until (($(count) >= n)); do sleep 0.05; done
	secs=$(echo "$(now) - $t0" | bc -l)
	printf "instances=%d%s: %d orders in %.2f s, %.0f orders/s\n" "$k" "${group:+ (queue group)}" "$n" "$secs" "$(echo "$n / $secs" | bc -l)"
	for pid in "${pids[@]}"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done
	pids=()
done
