#!/usr/bin/env bash
# The package's tests (docs/clients.md): installs the locked dev dependencies,
# regenerates src/contract.ts from schema/, builds dist/ (ESM + .d.ts) and runs
# `node --test` against a real `coven demo` (COVEN_BIN, default target/debug/coven).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "clients/js: node and npm are needed (e.g. apt-get install -y nodejs npm)" >&2
  exit 1
fi
npm ci --no-audit --no-fund --loglevel=error
npm test
