#!/usr/bin/env bash
# Where an ingested order's time goes. N copies of the sample order go
# through the stream twice, on servers of their own:
#
#   1. unprofiled: the rate, and the CPU each process spent per order
#      (the service, PostgreSQL's processes, nats-streaming-server and the
#      producer), read from /proc before and after;
#   2. with the service's CPU profile (PPROF) taken while it ingests, and
#      the profile's samples put into a few groups by the functions they
#      pass through.
#
#   bench/profile.sh [-n orders] [-o results.md]
set -euo pipefail

n=200000
out=
while getopts "n:o:" opt; do
	case $opt in
	n) n=$OPTARG ;;
	o) out=$OPTARG ;;
	*) exit 2 ;;
	esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/scratch-servers.sh" profile
export HTTP_ADDR=127.0.0.1:$(free_port) PPROF=true API_TOKEN=
base="http://$HTTP_ADDR"

svc_pid=
cleanup() {
	[[ -n $svc_pid ]] && { kill "$svc_pid" 2>/dev/null && wait "$svc_pid" 2>/dev/null || true; }
	"$root/scripts/services.sh" stop >/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

log() { echo "profile: $*" >&2; }
now() { date +%s.%N; }
metric() { curl -s "$base/debug/vars" | grep -o "\"$1\": *[0-9]*" | grep -o '[0-9]*$'; }

# ticks PID... prints the CPU clock ticks the processes have used, with
# those of their children already reaped.
ticks() {
	local pid sum=0 f
	for pid in "$@"; do
		f=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
		# After the command: utime stime cutime cstime are fields 12-15.
		sum=$((sum + $(echo "$f" | awk '{print $12 + $13 + $14 + $15}')))
	done
	echo "$sum"
}
postgres_pids() {
	local dir=$DATA_DIR/postgres master
	# services.sh keeps the data elsewhere when the postgres user cannot
	# reach this folder.
	[[ -f $dir/postmaster.pid ]] || dir=/var/tmp/orders-postgres-$(printf %s "$root" | md5sum | cut -c1-8)
	master=$(head -1 "$dir/postmaster.pid")
	echo "$master"
	ps -o pid= --ppid "$master"
}

"$root/scripts/services.sh" start >/dev/null
(cd "$root" && go build -o "$work/orders" . && go build -o "$work/producer" ./producer)
"$work/orders" >>"$work/service.log" 2>&1 &
svc_pid=$!
until curl -sf "$base/readyz" >/dev/null; do
	kill -0 "$svc_pid" 2>/dev/null || { cat "$work/service.log" >&2; exit 1; }
	sleep 0.01
done
nats=$(cat "$DATA_DIR/nats.pid")

# publish PREFIX: n sample orders through the stream; sets secs and the
# producer's CPU seconds in producer_cpu.
publish() {
	local before t0 TIMEFORMAT='%U %S'
	before=$(metric ingested)
	t0=$(now)
	producer_cpu=$({ time "$work/producer" -n "$n" -id-prefix "$1-" -q >/dev/null 2>&1; } 2>&1 | awk '{print $1 + $2}')
	until (($(metric ingested) >= before + n)); do sleep 0.01; done
	secs=$(echo "$(now) - $t0" | bc -l)
}

log "warming up"
n_saved=$n n=$((n / 10))
publish warm
n=$n_saved

log "publishing $n sample orders"
hz=$(getconf CLK_TCK)
pg=$(postgres_pids)
read -r s0 p0 n0 < <(echo "$(ticks "$svc_pid") $(ticks $pg) $(ticks "$nats")")
publish plain
read -r s1 p1 n1 < <(echo "$(ticks "$svc_pid") $(ticks $pg) $(ticks "$nats")")
per() { echo "scale=1; $1 * 1000000 / $n" | bc -l; }
us() { per "($2 - $1) / $hz"; }
wall=$(per "$secs")
svc_us=$(us "$s0" "$s1") pg_us=$(us "$p0" "$p1") nats_us=$(us "$n0" "$n1") prod_us=$(per "$producer_cpu")
total_us=$(echo "$svc_us + $pg_us + $nats_us + $prod_us" | bc -l)
rate=$(echo "$n / $secs" | bc -l)
log "$(printf '%.0f orders/s' "$rate")"

log "publishing $n more while profiling"
seconds=$(printf %.0f "$(echo "$secs * 0.9" | bc -l)")
((seconds >= 1)) || seconds=1
curl -s -o "$work/cpu.pprof" "$base/debug/pprof/profile?seconds=$seconds" &
curl_pid=$!
publish profiled
wait "$curl_pid"

# share FOCUS [IGNORE]: the percentage of the profile's samples whose
# stack passes through a function matching FOCUS and none matching IGNORE.
pp() { go tool pprof "$@" "$work/orders" "$work/cpu.pprof" 2>/dev/null; }
total=$(pp -top -nodecount=1 | awk '/^Showing nodes/ {print $(NF-1); exit}')
share() {
	pp -top -nodefraction=0 -nodecount=100000 -focus="$1" ${2:+-ignore="$2"} |
		awk '/^Showing nodes accounting for/ {gsub(/[%,]/, "", $6); print $6; found=1; exit} END {if (!found) print 0}'
}

{
	echo "## Where an ingested order's time goes"
	echo
	echo "\`bench/profile.sh -n $n\`: $n copies of the sample order (one item each) through the"
	echo "stream, $(printf '%.0f' "$rate") orders/s, that is $wall µs of wall time per order on $(nproc) cores."
	echo "CPU time per order, by process:"
	echo
	echo "| process | CPU µs per order |"
	echo "| --- | --- |"
	echo "| the service | $svc_us |"
	echo "| PostgreSQL (all its processes) | $pg_us |"
	echo "| nats-streaming-server | $nats_us |"
	echo "| the producer | $prod_us |"
	echo "| all | $total_us |"
	echo
	echo "The service's CPU profile, taken over $seconds s of a second such run ($total of samples),"
	echo "by the first of these parts that each sample's stack passes through:"
	echo
	echo "| part | share of the service's CPU |"
	echo "| --- | --- |"
	seen= sum=0
	while IFS='|' read -r name regex; do
		pct=$(share "$regex" "$seen")
		echo "| $name | $pct % |"
		seen=${seen:+$seen|}$regex sum=$(echo "$sum + $pct" | bc -l)
	done <<-'EOF'
		decoding, validating and re-encoding the JSON|main\.decodeOrder
		putting orders in the cache|main\.\(\*Cache\)\.
		writing and committing batches (database/sql, lib/pq)|main\.\(\*Tx\)\.|database/sql|lib/pq
		acknowledging messages|\(\*Msg\)\.Ack
		receiving messages (stan.go, nats.go, protobuf)|nats-io|gogo/protobuf
		garbage collection|runtime\.gcBgMarkWorker|runtime\.gcAssist|runtime\.bgsweep|runtime\.bgscavenge
	EOF
	echo "| everything else | $(echo "100 - $sum" | bc -l) % |"
	echo
	echo "The functions with most samples of their own:"
	echo
	echo '```'
	pp -top -nodecount=15 | sed -n '/flat%/,$p'
	echo '```'
} >"$work/profile.md"
cat "$work/profile.md"
if [[ -n $out ]]; then cp "$work/profile.md" "$out"; log "wrote $out"; fi
