#!/usr/bin/env bash
# Regenerates every generated contract artifact (docs/clients.md): the JSON Schemas
# and openapi.json in schema/ (from the Rust types, by coven-hub's `openapi` test),
# the package's TypeScript types (clients/js/src/contract.ts) and the lobby bundle
# (crates/hub/lobby/app.js, built from crates/hub/lobby/src/ with esbuild).
# Run it after changing a contract type or the lobby's sources, and commit the result;
# CI (.ci/run) runs it and fails when it changes anything.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
COVEN_REGENERATE=1 cargo test --quiet --locked -p coven-hub --test openapi
cd clients/js
[ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error
npm run --silent gen
if [ -f ../../crates/hub/lobby/src/app.js ]; then npm run --silent bundle-lobby; fi
