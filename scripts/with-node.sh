#!/usr/bin/env bash
# Runs a command on llama-orch's Node (scripts/node-runtime.sh: the machine's Node when it is 22 or
# newer, else Node 22 from the npm registry): node, npm, npx and node-gyp all resolve to it.
#   bash scripts/with-node.sh npm run test:all
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
eval "$(bash "$here/node-runtime.sh" --env)"
exec "$@"
