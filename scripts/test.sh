#!/usr/bin/env bash
# Runs every test: unit, integration and browser tests. The integration
# tests start their own PostgreSQL (from the installed server binaries)
# and nats-streaming-server on free loopback ports, so they run beside
# servers a developer already has. The browser tests drive headless
# Chromium with Playwright.
#
# First it installs what the tests need and the machine lacks:
# nats-streaming-server into .tools/bin (go install), Playwright into
# browser/node_modules (npm ci), and, when run as root on Debian, the
# chromium and nodejs packages. A missing piece fails the run rather than
# skipping tests.
#
#   scripts/test.sh [go test flags]     e.g. scripts/test.sh -v -run Restart
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

apt_updated=
apt_install() {
	if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
		echo "test: the browser tests need $* ($(printf 'apt-get install %s' "$*") as root)" >&2
		exit 1
	fi
	if [[ -z $apt_updated ]]; then
		apt-get update -qq
		apt_updated=1
	fi
	echo "test: installing $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

scripts/services.sh install
command -v node >/dev/null || apt_install nodejs npm
[[ -x ${CHROMIUM:-/usr/bin/chromium} ]] || apt_install chromium
if [[ ! -d browser/node_modules/playwright-core ]]; then
	npm ci --prefix browser --no-audit --no-fund --loglevel=error
fi

export NATS_STREAMING_SERVER=$root/.tools/bin/nats-streaming-server
export ORDERS_REQUIRE_INTEGRATION=1
echo "test: go test -race ./... (about a minute and a half; -v shows each test)"
go test -race -count=1 "$@" ./...
