#!/usr/bin/env bash
# npm's prepare step (after `npm install` and `npm ci`): on llama-orch's Node (scripts/node-runtime.sh,
# Node 22 or newer, fetched from the npm registry where the machine's is older), make sure the SQLite
# addon is built for that Node, then build dist/. dist/runtime-node records which Node that is, so
# that bin/llama-orch.cjs started by an older `node` runs itself on it.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/node-runtime.sh --env)"
addon_loads() { node -e "new (require('better-sqlite3'))(':memory:').close()" 2>/dev/null; }
if ! addon_loads; then
  echo "prepare: building the SQLite addon (better-sqlite3) for Node $(node --version) ..." >&2
  npm rebuild better-sqlite3 --foreground-scripts=false >/dev/null
  if ! addon_loads; then
    echo "prepare: better-sqlite3 still does not load on Node $(node --version):" >&2
    node -e "require('better-sqlite3')" 2>&1 | grep -m3 -E 'Error|was compiled' >&2 || true
    exit 1
  fi
fi
npm run build
node -e 'process.stdout.write(process.execPath + "\n")' >dist/runtime-node
