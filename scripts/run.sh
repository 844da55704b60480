#!/usr/bin/env bash
# Brings up PostgreSQL and NATS Streaming (scripts/services.sh start) and
# runs the service in the foreground against them. Arguments go to the
# service; Ctrl-C stops the service and leaves the two servers running
# (scripts/services.sh stop stops them).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/services.sh" start

export DATABASE_URL=${DATABASE_URL:-postgres://orders:orders@localhost:${PGPORT:-5432}/orders?sslmode=disable}
export NATS_URL=${NATS_URL:-nats://localhost:${NATS_PORT:-4222}}
cd "$root"
exec go run . "$@"
