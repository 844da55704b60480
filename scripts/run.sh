#!/usr/bin/env bash
# Brings up PostgreSQL and NATS Streaming (scripts/services.sh start), then
# builds and runs the service in the foreground against them, as `go run .`
# would. Arguments go to the service. Ctrl-C stops the service and leaves
# the two servers running; scripts/services.sh stop stops them.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/services.sh" start

export DATABASE_URL=${DATABASE_URL:-postgres://orders:orders@localhost:${PGPORT:-5432}/orders?sslmode=disable}
export NATS_URL=${NATS_URL:-nats://localhost:${NATS_PORT:-4222}}
cd "$root"
# Built rather than `go run`, so that Ctrl-C ends with the service's own
# exit status (0 after a clean shutdown).
go build -o .tools/bin/orders .
exec .tools/bin/orders "$@"
