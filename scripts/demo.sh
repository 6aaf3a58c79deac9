#!/usr/bin/env bash
# The main job: make sure the real llama-server and the tiny model exist (built once, cached),
# start the demo instances under their keepers and the daemon with its proxy (one OpenAI-compatible
# endpoint for both, on 127.0.0.1:18180), and open the dashboard.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/node-runtime.sh --env)"   # Node 22 or newer (fetched once where the machine's is older)
[ -f dist/src/entry.js ] || npm run build
bash scripts/setup-llama-server.sh --backend cpu >/dev/null   # the demo's instances are CPU ones
node bin/llama-orch.cjs config lint
for name in demo-a demo-b; do
  node bin/llama-orch.cjs up "$name" --wait 60 || [ $? -eq 3 ]   # 3 = already running: fine
done
# The daemon serves the proxy; a daemon already running is fine, and so is a taken port (said, not fatal).
if ! node bin/llama-orch.cjs daemon status >/dev/null; then
  node bin/llama-orch.cjs daemon start --listen 127.0.0.1:18180 || echo "demo: the daemon did not start (see above); the instances run without it"
fi
if [ -t 0 ] && [ -t 1 ]; then
  exec node bin/llama-orch.cjs
else
  exec node bin/llama-orch.cjs --once
fi
