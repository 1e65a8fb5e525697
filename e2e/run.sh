#!/usr/bin/env bash
# End-to-end test of the lobby in headless Chromium against `coven demo`.
# Installs Debian's chromium when /usr/bin/chromium is missing, installs playwright-core
# from the committed lock, and runs the test with node's built-in runner.
# Usage: run.sh [test file, default lobby.test.mjs] (webcams.test.mjs also needs coturn,
# webcams-hubs.test.mjs redis-server).
# Env: COVEN_BIN (default target/debug/coven, built by the test when unset),
#      CHROMIUM_BIN (default /usr/bin/chromium), REDIS_SERVER_BIN (default redis-server),
#      E2E_SKIP_BUILD=1, LOG_LEVEL.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if [ -z "${CHROMIUM_BIN:-}" ] && [ ! -x /usr/bin/chromium ]; then
  echo "e2e: installing chromium (apt-get)" >&2
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y chromium
fi

if [ "${1:-}" = "webcams.test.mjs" ] && [ -z "${TURNSERVER_BIN:-}" ] && [ ! -x /usr/bin/turnserver ]; then
  echo "e2e: installing coturn (apt-get)" >&2
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y coturn
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "e2e: node and npm are needed (e.g. apt-get install -y nodejs npm)" >&2
  exit 1
fi

npm ci --no-audit --no-fund --loglevel=error
exec node --test --test-reporter=spec "${1:-lobby.test.mjs}"
