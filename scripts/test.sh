#!/usr/bin/env bash
# Runs every test, the integration tests included: they start their own
# PostgreSQL (from the installed server binaries) and nats-streaming-server
# on free loopback ports, so they run beside services a developer already
# has. A missing server binary fails the run instead of skipping.
#
#   scripts/test.sh [go test flags]     e.g. scripts/test.sh -v -run Restart
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/services.sh install
export NATS_STREAMING_SERVER=$root/.tools/bin/nats-streaming-server
export ORDERS_REQUIRE_INTEGRATION=1
go test -race -count=1 "$@" ./...
