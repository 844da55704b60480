# Sourced by the scripts that need PostgreSQL and NATS Streaming of their
# own (the crash drill and the benchmarks): it makes a temporary folder
# for them, picks free ports, and exports the settings that point
# scripts/services.sh, the service and the producer there.
#
#   source scripts/scratch-servers.sh NAME    # sets $work, exports the rest

# free_port prints a loopback port nothing listens on.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 20000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}

work=$(mktemp -d "/tmp/orders-$1.XXXXXX")
chmod 755 "$work" # the postgres user must reach its data inside
export DATA_DIR=$work/data PGPORT=$(free_port) NATS_PORT=$(free_port)
export DATABASE_URL="postgres://orders:orders@127.0.0.1:$PGPORT/orders?sslmode=disable"
export NATS_URL="nats://127.0.0.1:$NATS_PORT"
export PGPASSWORD=orders
