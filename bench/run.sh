#!/usr/bin/env bash
# The service's benchmark, with its references measured in the same run on
# the same machine:
#
#   1. PostgreSQL and NATS Streaming start as scripts/services.sh starts
#      them (on free ports, data in a temporary folder); the service, the
#      producer and the reference server are built with go build.
#   2. N orders (unique ids, 1 to 5 items) go through the stream with the
#      producer; ingestion is timed from the first publish to the last
#      order committed, and set against a plain COPY of the same rows.
#   3. wrk drives the cache route, the database route and cache paging at
#      -c5 and -c64, interleaved with the references: a bare net/http
#      server holding the same bytes (bench/bare), pgbench -M prepared
#      running the database route's key lookup, and the same lookup from
#      Go through database/sql and lib/pq (bench/golookup).
#   4. The service restarts on the loaded database: time to ready, set
#      against psql reading the same rows out, and its resident memory once
#      warm, set against the size of the orders' JSON.
#      Then how far its memory rises while one response lists every order.
#   5. With -c, create/delete churn at a constant number of orders for that
#      many seconds, sampling the resident memory as it goes.
#   6. Before the churn, N copies of the sample order itself through the
#      stream, timed as in 2.
#
#   bench/run.sh [-n orders] [-d seconds per wrk run] [-c churn seconds] [-o results.md]
#
# Prints one table; with -o also writes it, with the machine's details, to
# a file (bench/RESULTS.md keeps the last full run). A run whose wrk or
# pgbench saw any error or non-2xx answer is marked FAILED, not counted.
# Needs wrk and pgbench (Debian: apt-get install wrk postgresql-client).
set -euo pipefail

n=100000
dur=10
churn=0
out=
while getopts "n:d:c:o:" opt; do
	case $opt in
	n) n=$OPTARG ;;
	d) dur=$OPTARG ;;
	c) churn=$OPTARG ;;
	o) out=$OPTARG ;;
	*) exit 2 ;;
	esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
for tool in wrk pgbench psql curl; do
	command -v $tool >/dev/null || { echo "bench: $tool is not installed" >&2; exit 1; }
done

source "$root/scripts/scratch-servers.sh" bench
http_port=$(free_port)
bare_port=$(free_port)
export HTTP_ADDR="127.0.0.1:$http_port"
base="http://$HTTP_ADDR"
bare="http://127.0.0.1:$bare_port"

svc_pid= bare_pid=
cleanup() {
	for pid in $svc_pid $bare_pid; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	done
	"$root/scripts/services.sh" stop >/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

log() { echo "bench: $*" >&2; }
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }
sql() { psql -h 127.0.0.1 -p "$PGPORT" -U orders -d orders -tAq -c "$1"; }
metric() { curl -s "$base/debug/vars" | grep -o "\"$1\": *[0-9]*" | grep -o '[0-9]*$'; }

start_service() {
	"$work/orders" >>"$work/service.log" 2>&1 &
	svc_pid=$!
	until curl -sf "$base/readyz" >/dev/null; do
		kill -0 "$svc_pid" 2>/dev/null || { cat "$work/service.log" >&2; exit 1; }
		sleep 0.01
	done
}

started=$(now)
log "building; data in $work"
"$root/scripts/services.sh" start >/dev/null
(cd "$root" && go build -o "$work/orders" . && go build -o "$work/producer" ./producer &&
	go build -o "$work/bare" ./bench/bare && go build -o "$work/golookup" ./bench/golookup)
start_service

# 2. Ingestion through the stream, acknowledged after commit.
log "publishing $n orders"
t0=$(now)
"$work/producer" -n "$n" -max-items 5 -id-prefix bench- -q >"$work/producer.log"
until [[ $(metric ingested) -ge $n ]]; do sleep 0.01; done
ingest_secs=$(since "$t0")
ingest_rate=$(echo "$n / $ingest_secs" | bc -l)
json_bytes=$(sql "SELECT sum(octet_length(body::text)) FROM orders")

sql "\\copy (SELECT order_uid, body FROM orders) TO '$work/orders.tsv'"
sql "CREATE TABLE copy_ref (order_uid text COLLATE \"C\" PRIMARY KEY, body json NOT NULL)"
t0=$(now)
sql "\\copy copy_ref FROM '$work/orders.tsv'"
copy_secs=$(since "$t0")
copy_rate=$(echo "$n / $copy_secs" | bc -l)
sql "DROP TABLE copy_ref"

"$work/bare" -addr "127.0.0.1:$bare_port" -from "$base" 2>>"$work/bare.log" &
bare_pid=$!
until curl -sf "$bare/api/models/cache/bench-00000001" >/dev/null; do sleep 0.05; done

# results: name|rate|p50|p99|errors|non2xx
results=()

# wrk_run name conns url-template
wrk_run() {
	local name=$1 conns=$2 path=$3 host=$4 f=$work/wrk.out
	BENCH_PATH=$path BENCH_N=$n wrk -t2 -c"$conns" -d"${dur}s" --latency -s "$root/bench/ids.lua" "$host" >"$f" 2>&1
	local rate p50 p99 errs non2xx
	rate=$(awk '/^Requests\/sec/ {print $2}' "$f")
	p50=$(awk '$1 == "50%" {print $2}' "$f")
	p99=$(awk '$1 == "99%" {print $2}' "$f")
	errs=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$f")
	non2xx=$(awk '/Non-2xx/ {print $5}' "$f")
	results+=("$name|${rate:-0}|$p50|$p99|${errs:-0}|${non2xx:-0}")
	log "$name: ${rate:-?} req/s, p50 $p50, p99 $p99, errors ${errs:-0}, non-2xx ${non2xx:-0}"
	if [[ ${errs:-0} != 0 ]]; then log "$name: $(grep 'Socket errors' "$f")"; fi
}

pgbench_run() {
	local name=$1 conns=$2 f=$work/pgbench.out
	pgbench -h 127.0.0.1 -p "$PGPORT" -U orders -n -M prepared -c "$conns" -j 2 -T "$dur" \
		-D orders="$n" -f "$root/bench/lookup.sql" orders >"$f" 2>&1 || true
	local rate lat failed
	rate=$(awk '/^tps/ {print $3}' "$f")
	lat=$(awk '/^latency average/ {print $4 $5}' "$f")
	failed=$(awk '/failed transactions/ {print $5}' "$f")
	results+=("$name|${rate:-0}|avg $lat|-|${failed:-0}|0")
	log "$name: ${rate:-?} tps, latency average $lat, failed ${failed:-?}"
}

# The same lookup from Go through database/sql and lib/pq, the driver the
# service must use: what the driver alone allows, without HTTP.
golookup_run() {
	local name=$1 conns=$2 f=$work/golookup.out
	"$work/golookup" -url "$DATABASE_URL" -c "$conns" -d "${dur}s" -n "$n" >"$f" 2>&1 || true
	local rate failed
	rate=$(awk '/^lookups/ {print $2}' "$f")
	failed=$(awk '/^lookups/ {print $4}' "$f")
	results+=("$name|${rate:-0}|-|-|${failed:-1}|0")
	log "$name: ${rate:-?} lookups/s, failed ${failed:-?}"
}

for c in 5 64; do
	wrk_run "bare net/http -c$c" $c "/api/models/cache/%s" "$bare"
	wrk_run "cache route -c$c" $c "/api/models/cache/%s" "$base"
	pgbench_run "pgbench lookup -c$c" $c
	golookup_run "database/sql lookup -c$c" $c
	wrk_run "database route -c$c" $c "/api/models/%s" "$base"
	wrk_run "cache page of 100 -c$c" $c "/api/models/cache?limit=100&after=%s" "$base"
done

# 4. Restart on the loaded database, against psql reading the rows out.
kill "$svc_pid"
wait "$svc_pid" || true
t0=$(now)
sql "\\copy (SELECT order_uid, body FROM orders) TO '/dev/null'"
copyout_secs=$(since "$t0")
t0=$(now)
start_service
startup_secs=$(since "$t0")
BENCH_PATH=/api/models/cache/%s BENCH_N=$n wrk -t2 -c5 -d2s -s "$root/bench/ids.lua" "$base" >/dev/null
rss() { awk '/^VmRSS/ {print $2}' "/proc/$svc_pid/status"; }
rss_kb=$(rss)

# Lists: how far the resident memory rises above where it stood while one
# client reads every order in one response, from the database and from
# the cache. (Writing 5 to clear_refs resets the peak to the present.)
list_growth() {
	local before bytes
	echo 5 >"/proc/$svc_pid/clear_refs"
	before=$(rss)
	bytes=$(curl -sf -o /dev/null -w '%{size_download}' "$base$1")
	((bytes >= json_bytes)) || { log "GET $1 returned $bytes bytes, fewer than the orders' $json_bytes"; exit 1; }
	echo $(($(awk '/^VmHWM/ {print $2}' "/proc/$svc_pid/status") - before))
}
list_db_kb=$(list_growth /api/models)
list_cache_kb=$(list_growth /api/models/cache)
log "whole lists: resident memory rose $list_db_kb KiB (database), $list_cache_kb KiB (cache)"

# 6 (before the churn, on the restarted service). Ingestion of the sample
# order itself: N copies of task/model.json, one item each.
log "publishing $n copies of the sample order"
before=$(metric ingested)
t0=$(now)
"$work/producer" -n "$n" -id-prefix sample- -q >>"$work/producer.log"
until [[ $(metric ingested) -ge $((before + n)) ]]; do sleep 0.01; done
sample_secs=$(since "$t0")
sample_rate=$(echo "$n / $sample_secs" | bc -l)

# 5. Churn at constant size.
if ((churn > 0)); then
	log "churning for $churn s"
	curl -s "$base/api/models/cache/bench-00000001" | sed 's/bench-00000001/@UID@/g' >"$work/order.tmpl"
	BENCH_ORDER=$work/order.tmpl BENCH_KEEP=100 wrk -t2 -c2 -d"${churn}s" -s "$root/bench/churn.lua" "$base" >"$work/churn.out" 2>&1 &
	wrk_pid=$!
	samples=()
	step=$(((churn + 9) / 10))
	while kill -0 "$wrk_pid" 2>/dev/null; do
		samples+=("$(rss)")
		sleep "$step"
	done
	wait "$wrk_pid"
	samples+=("$(rss)")
	churn_rate=$(awk '/^Requests\/sec/ {print $2}' "$work/churn.out")
	churn_non2xx=$(awk '/Non-2xx/ {print $5}' "$work/churn.out")
	churn_first=${samples[0]} churn_last=${samples[-1]} churn_max=0
	for x in "${samples[@]}"; do ((x > churn_max)) && churn_max=$x; done
	log "churn: ${churn_rate} req/s, non-2xx ${churn_non2xx:-0}, RSS samples (KiB): ${samples[*]}"
fi

# The table.
field() { echo "$1" | cut -d'|' -f"$2"; }
find_rate() {
	local r
	for r in "${results[@]}"; do
		[[ $(field "$r" 1) == "$1" ]] && { field "$r" 2; return; }
	done
}
failed() {
	local r
	for r in "${results[@]}"; do
		if [[ $(field "$r" 1) == "$1" ]]; then
			[[ $(field "$r" 5) != 0 || $(field "$r" 6) != 0 ]]
			return
		fi
	done
}
ratio() { echo "scale=2; $1 / $2" | bc -l; }

{
	echo "| figure | service | reference | ratio | p50 | p99 | errors | non-2xx |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
	printf "| ingestion through the stream, 1 to 5 items, orders/s | %.0f | COPY %.0f | %s | | | | |\n" \
		"$ingest_rate" "$copy_rate" "$(ratio "$ingest_rate" "$copy_rate")"
	printf "| ingestion of the sample order (1 item), orders/s | %.0f | target 25000 | %s | | | | |\n" \
		"$sample_rate" "$(ratio "$sample_rate" 25000)"
	for c in 5 64; do
		for r in "${results[@]}"; do
			name=$(field "$r" 1)
			[[ $name == *"-c$c" ]] || continue
			rate=$(field "$r" 2)
			ref= rratio=
			case $name in
			"cache route"*)
				ref=$(find_rate "bare net/http -c$c")
				rratio=$(ratio "$rate" "$ref")
				ref="bare $(printf %.0f "$ref")"
				;;
			"database route"*)
				b=$(find_rate "bare net/http -c$c")
				p=$(find_rate "pgbench lookup -c$c")
				limit=$(echo "1 / (1 / $b + 1 / $p)" | bc -l)
				rratio=$(ratio "$rate" "$limit")
				ref="serial limit $(printf %.0f "$limit")"
				g=$(find_rate "database/sql lookup -c$c")
				glimit=$(echo "1 / (1 / $b + 1 / $g)" | bc -l)
				rratio="$rratio ($(ratio "$rate" "$glimit") of $(printf %.0f "$glimit") with database/sql)"
				;;
			esac
			shown=$(printf %.0f "$rate")
			if failed "$name"; then shown="FAILED ($shown)"; rratio=; fi
			echo "| $name, req/s | $shown | $ref | $rratio | $(field "$r" 3) | $(field "$r" 4) | $(field "$r" 5) | $(field "$r" 6) |"
		done
	done
	printf "| start-up with %d orders until ready, s | %.2f | psql reading them out %.2f | %s | | | | |\n" \
		"$n" "$startup_secs" "$copyout_secs" "$(ratio "$startup_secs" "$copyout_secs")"
	printf "| resident memory once warm, MiB | %.0f | orders' JSON %.0f | %s | | | | |\n" \
		"$(echo "$rss_kb / 1024" | bc -l)" "$(echo "$json_bytes / 1048576" | bc -l)" "$(ratio "$rss_kb * 1024" "$json_bytes")"
	for l in "database $list_db_kb" "cache $list_cache_kb"; do
		set -- $l
		printf "| rise in resident memory while one response lists all %d orders from the %s, MiB | %.1f | orders' JSON %.0f | %s | | | | |\n" \
			"$n" "$1" "$(echo "$2 / 1024" | bc -l)" "$(echo "$json_bytes / 1048576" | bc -l)" "$(echo "scale=3; $2 * 1024 / $json_bytes" | bc -l)"
	done
	if ((churn > 0)); then
		printf "| resident memory after %d s of create/delete churn (%.0f req/s), MiB | %.0f (most %.0f) | at its start %.0f | %s | | | | %s |\n" \
			"$churn" "$churn_rate" "$(echo "$churn_last / 1024" | bc -l)" "$(echo "$churn_max / 1024" | bc -l)" \
			"$(echo "$churn_first / 1024" | bc -l)" "$(ratio "$churn_last" "$churn_first")" "${churn_non2xx:-0}"
	fi
} >"$work/table.md"

cat "$work/table.md"
total_secs=$(since "$started")
log "done in $(printf %.0f "$total_secs") s"

if [[ -n $out ]]; then
	{
		echo "# Benchmark results"
		echo
		echo "\`bench/run.sh -n $n -d $dur -c $churn\` on $(date -u +%Y-%m-%d): $(nproc) cores,"
		echo "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(free -g | awk '/Mem:/ {print $2}') GiB;"
		echo "$(go version | cut -d' ' -f3), PostgreSQL $(psql --version | awk '{print $3}'), wrk and the service sharing the cores."
		echo "The run took $(printf %.0f "$total_secs") s."
		echo
		cat "$work/table.md"
	} >"$out"
	log "wrote $out"
fi
