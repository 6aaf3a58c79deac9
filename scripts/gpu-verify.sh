#!/usr/bin/env bash
# The real-GPU verification run: one script, one run of at most 10 minutes, the build included.
#   scripts/gpu-verify.sh --prepare   (here, with the CLI built) packs what the GPU machine lacks into
#                                     .gpu/: a Node binary, the built CLI with its SQLite addon, and a
#                                     trimmed llama.cpp source (the same commit the set-up builds)
#   scripts/gpu-verify.sh             (on the GPU machine) builds llama-server for the card with the
#                                     set-up (--backend auto), writes a ~1B random-weight model with
#                                     the project's GGUF writer, runs three instances through
#                                     llama-orch (fully offloaded and pinned, partially offloaded, too
#                                     large for the card), and records what the driver, the servers
#                                     and llama-orch said into $OUT/gpu-verify.tgz
#   scripts/gpu-verify.sh --dry-run   (here) the same run on the CPU build, with a small model and the
#                                     fake nvidia-smi of tests/fixtures/gpu: every part but the GPU
# Env: OUT (output folder [./gpu-verify-out]), GPU_VERIFY_DEADLINE (seconds the run may take [570]),
#      GPU_VERIFY_SKIP_DIRECT=1 (skip the runs of llama-server outside llama-orch: ~70 s),
#      GPU_VERIFY_WORK (scratch folder [/tmp/gpu-verify]), LLAMA_ORCH_CACHE (the build cache).
# The recorded outputs become fixtures (tests/fixtures/real/h200/) and figures in bench/BENCHMARKS.md.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=run
case "${1:-}" in
  --prepare) MODE=prepare ;;
  --dry-run) MODE=dry ;;
  '') ;;
  -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "gpu-verify: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac
NLC_VERSION="${LLAMA_ORCH_NLC_VERSION:-3.22.1}"
CARRY="$REPO/.gpu"

# --- --prepare: what travels to the GPU machine (64 MiB in all) ----------------------------------
if [ "$MODE" = prepare ]; then
  set -e
  cd "$REPO"
  [ -f dist/bundle/main.mjs ] || npm run build
  mkdir -p "$CARRY"
  node_bin="$(readlink -f "$(command -v node)")"
  # Node and the llama.cpp source change rarely: packed again only when missing or older than them.
  if [ ! -f "$CARRY/node.xz" ] || [ "$node_bin" -nt "$CARRY/node.xz" ]; then
    echo "gpu-verify: packing Node $(node --version) from $node_bin"
    xz -T0 -6 -c "$node_bin" >"$CARRY/node.xz.tmp" && mv "$CARRY/node.xz.tmp" "$CARRY/node.xz"
  fi
  addon="node_modules/better-sqlite3/build/Release/better_sqlite3.node"
  [ -f "$addon" ] || { echo "gpu-verify: $addon is missing (npm ci first)" >&2; exit 1; }
  tar czf "$CARRY/app.tgz" --exclude='*.map' dist/bundle bin node_modules/better-sqlite3/package.json "$addon"
  if [ -f "$CARRY/llama.cpp.tgz" ] && [ "$(cat "$CARRY/nlc-version" 2>/dev/null)" = "$NLC_VERSION" ]; then
    du -ch "$CARRY"/* | sed 's/^/  /'
    echo "gpu-verify: ready; carry .gpu to the GPU machine and run scripts/gpu-verify.sh there"
    exit 0
  fi
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack "node-llama-cpp@$NLC_VERSION" --silent >/dev/null)
  tar xzf "$work/node-llama-cpp-$NLC_VERSION.tgz" -C "$work" package/llama/gitRelease.bundle
  git clone -q "$work/package/llama/gitRelease.bundle" "$work/llama.cpp"
  commit="$(git -C "$work/llama.cpp" rev-parse --short=12 HEAD)"
  # The tree without what no build target needs (docs, vocab models, media, Python, examples).
  git -C "$work/llama.cpp" archive --format=tar --prefix=llama.cpp/ HEAD -- . ':!docs' ':!models' ':!media' \
    ':!benches' ':!gguf-py' ':!examples' ':!conversion' ':!pocs' ':!skills' >"$work/src.tar"
  mkdir -p "$work/c/llama.cpp" && echo "$commit" >"$work/c/llama.cpp/LLAMA_ORCH_COMMIT"
  tar rf "$work/src.tar" -C "$work/c" llama.cpp/LLAMA_ORCH_COMMIT
  gzip -6 -c "$work/src.tar" >"$CARRY/llama.cpp.tgz"
  echo "$NLC_VERSION" >"$CARRY/nlc-version"
  du -ch "$CARRY"/* | sed 's/^/  /'
  echo "gpu-verify: ready (llama.cpp $commit); carry .gpu to the GPU machine and run scripts/gpu-verify.sh there"
  exit 0
fi

# --- The run ------------------------------------------------------------------------------------
T0=$SECONDS
DEADLINE="${GPU_VERIFY_DEADLINE:-570}"
OUTDIR="${OUT:-$REPO/gpu-verify-out}"
W="${GPU_VERIFY_WORK:-/tmp/gpu-verify}"
R="$W/rec"
H="$W/home"
M="$W/models"
rm -rf "$R" "$H" && mkdir -p "$R" "$H/instances" "$M" "$OUTDIR"
export LLAMA_ORCH_CACHE="${LLAMA_ORCH_CACHE:-/tmp/llama-orch-cache}"
PORT_BASE=18301
PROXY_PORT=18380

say() { printf '[gpu-verify %4ss] %s\n' "$((SECONDS - T0))" "$*" | tee -a "$R/timeline.txt"; }
left() { echo $((DEADLINE - (SECONDS - T0))); }
pack() { tar czf "$OUTDIR/gpu-verify.tgz.tmp" -C "$W" rec && mv "$OUTDIR/gpu-verify.tgz.tmp" "$OUTDIR/gpu-verify.tgz"; }
# rec NAME [-t SECONDS] CMD...: stdout, stderr and exit code of one command, into rec/NAME.{out,err,rc}.
rec() {
  local name="$1"; shift
  local t=60
  [ "${1:-}" = -t ] && { t="$2"; shift 2; }
  [ "$(left)" -gt 5 ] || { echo "skipped: past the deadline" >"$R/$name.err"; return 0; }
  [ "$t" -lt "$(left)" ] || t="$(left)"
  [ "$t" -ge 5 ] || t=5
  timeout -k 5 "$t" "$@" >"$R/$name.out" 2>"$R/$name.err"
  local rc=$?
  echo "$rc" >"$R/$name.rc"
  [ -s "$R/$name.err" ] || rm -f "$R/$name.err"
  return 0
}
# llama-orch on this home, as a program (timeout runs programs, not shell functions).
mkdir -p "$W/bin"
printf '#!/bin/sh\nexec node "%s/bin/llama-orch.cjs" --home "%s" "$@"\n' "$REPO" "$H" >"$W/bin/orch"
chmod +x "$W/bin/orch"
orch() { "$W/bin/orch" "$@"; }
trap 'say "stopping"; "$W/bin/orch" down --all >/dev/null 2>&1; "$W/bin/orch" daemon stop >/dev/null 2>&1; pack' EXIT

if [ "$MODE" = dry ]; then
  BACKEND=cpu
  export PATH="$REPO/tests/fixtures/gpu:$PATH" # the fake nvidia-smi (real formats), no driver here
  DIMS='{"vocab":4096,"embd":512,"ff":1536,"layers":8,"heads":8,"headsKv":4,"ctx":4096}'
  HUGE='{"vocab":4096,"embd":8192,"ff":28672,"layers":96,"heads":64,"headsKv":8,"ctx":4096}'
  NGL_FULL=99; NGL_PART=4
else
  BACKEND=auto
  # ~1.1B parameters in F16 (2.2 GB): big enough for the GPU to matter, written in seconds.
  DIMS='{"vocab":32000,"embd":2048,"ff":8192,"layers":16,"heads":32,"headsKv":8,"ctx":8192}'
  # ~82B parameters in F16 (164 GB, sparse on disk): more than an H200's 141 GB.
  HUGE='{"vocab":32000,"embd":8192,"ff":28672,"layers":96,"heads":64,"headsKv":8,"ctx":8192}'
  NGL_FULL=99; NGL_PART=8
fi
say "mode $MODE, deadline ${DEADLINE}s, output $OUTDIR"

# 1. The machine and the driver, as they print (the corpus).
NV_GPU="index,uuid,name,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw,power.limit"
NV_APP="pid,process_name,used_memory,gpu_uuid"
nvsmi_all() { # PREFIX: every nvidia-smi view llama-orch reads, plus the full ones
  rec "$1-query-gpu" nvidia-smi --query-gpu=$NV_GPU --format=csv,noheader,nounits
  rec "$1-query-gpu-header" nvidia-smi --query-gpu=$NV_GPU --format=csv
  rec "$1-query-apps" nvidia-smi --query-compute-apps=$NV_APP --format=csv,noheader,nounits
  rec "$1-query-apps-header" nvidia-smi --query-compute-apps=$NV_APP --format=csv
  rec "$1-plain" nvidia-smi
  rec "$1-q-x" nvidia-smi -q -x
}
{
  date -u +%Y-%m-%dT%H:%M:%SZ; uname -a; nproc; free -m; df -h /tmp "$REPO" 2>/dev/null
  cat /etc/os-release 2>/dev/null | head -3
} >"$R/machine.txt" 2>&1
rec nvidia-smi-L nvidia-smi -L
rec nvidia-smi-extra nvidia-smi --query-gpu=index,name,driver_version,compute_cap,pci.bus_id,mig.mode.current,memory.total,memory.reserved,fan.speed,power.draw,clocks.sm --format=csv
nvsmi_all idle
rec nvidia-smi-q nvidia-smi -q
rec nvidia-smi-loop -t 3 nvidia-smi --query-gpu=$NV_GPU --format=csv,noheader,nounits -lms 500
rec nvidia-smi-bad-index nvidia-smi -i 7 --query-gpu=$NV_GPU --format=csv,noheader,nounits
rec nvidia-smi-bad-field nvidia-smi --query-gpu=index,no.such.field --format=csv,noheader,nounits
rec toolchain bash -c 'for t in nvcc cmake ninja gcc python3 git xz; do printf "%s: " $t; command -v $t || echo missing; done; nvcc --version; cmake --version | head -1; ninja --version'
rec cuda-libs bash -c 'ls /usr/local/cuda/lib64 2>&1; ldconfig -p | grep -E "libcuda|cublas|nvidia-ml"; find / -xdev \( -name "libcublas.so*" -o -name cublas_v2.h \) 2>/dev/null | head -20; python3 -c "import nvidia, sys; print(sys.executable, list(nvidia.__path__))"'
pack

# 2. Node and the built CLI (carried: the machine guarantees neither).
if ! command -v node >/dev/null 2>&1 || [ "$MODE" = run ] && [ -f "$CARRY/node.xz" ]; then
  mkdir -p "$W/node/bin"
  if command -v xz >/dev/null 2>&1; then xz -dc "$CARRY/node.xz" >"$W/node/bin/node"
  else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$CARRY/node.xz" "$W/node/bin/node"
  fi
  chmod +x "$W/node/bin/node"
  export PATH="$W/node/bin:$PATH"
fi
if [ ! -f "$REPO/dist/bundle/main.mjs" ] && [ -f "$CARRY/app.tgz" ]; then tar xzf "$CARRY/app.tgz" -C "$REPO"; fi
say "node $(node --version 2>&1), llama-orch $(orch --version 2>&1 | head -1)"

# 3. The model files (the project's GGUF writer), while llama-server builds.
node --input-type=module -e "
  import { llamaModel, writeGguf } from '$REPO/tests/fixtures/gguf-writer.mjs';
  const dims = $DIMS, huge = $HUGE;
  const t = Date.now();
  const a = llamaModel({ ...dims, type: 'F16', name: 'rand-1b', byteTokens: true });
  const ra = writeGguf('$M/rand-small.gguf', a.metadata, a.tensors, { fill: 'random' });
  const b = llamaModel({ ...huge, type: 'F16', name: 'rand-82b' });
  const rb = writeGguf('$M/rand-huge.gguf', b.metadata, b.tensors);
  console.log(JSON.stringify({ small: ra.bytes, huge: rb.bytes, ms: Date.now() - t }));
" >"$R/models-written.json" 2>"$R/models-written.err" &
MODEL_PID=$!

# 4. llama-server for this machine's GPU, through the set-up (auto: driver + toolkit -> CUDA).
say "building llama-server (backend $BACKEND)"
rec setup-detect bash "$REPO/scripts/setup-llama-server.sh" --detect
SETUP_ARGS=(--backend "$BACKEND" --models-dir "$W/demo-models")
[ "$MODE" = run ] && [ -f "$CARRY/llama.cpp.tgz" ] && SETUP_ARGS+=(--source "$CARRY/llama.cpp.tgz")
BUILD_T0=$SECONDS
# What comes after the build needs ~150 s (~90 s without the direct runs): the build gets the rest.
POST=150; [ "${GPU_VERIFY_SKIP_DIRECT:-0}" = 1 ] && POST=90
rec setup -t "$(($(left) - POST))" env LLAMA_ORCH_BUILD_JOBS="$(nproc)" bash "$REPO/scripts/setup-llama-server.sh" "${SETUP_ARGS[@]}"
BUILD_S=$((SECONDS - BUILD_T0))
SERVER="$(tail -n 1 "$R/setup.out" 2>/dev/null)"
say "set-up exit $(cat "$R/setup.rc") after ${BUILD_S}s: $SERVER"
echo "$BUILD_S" >"$R/build-seconds.txt"
for f in "$LLAMA_ORCH_CACHE"/work-*/build.log; do [ -f "$f" ] && tail -n 60 "$f" >"$R/build-log-tail.txt"; done
pack
wait "$MODEL_PID"
say "models: $(cat "$R/models-written.json" 2>/dev/null) $(cat "$R/models-written.err" 2>/dev/null | head -3)"
if [ ! -x "$SERVER" ]; then say "no llama-server: stopping here"; exit 1; fi
BIN_DIR="$(dirname "$SERVER")"
rec server-version "$SERVER" --version
rec server-list-devices "$SERVER" --list-devices
rec server-help "$SERVER" --help
rec fit-params-small -t 60 "$BIN_DIR/llama-fit-params" -m "$M/rand-small.gguf" -c 8192
rec fit-params-huge -t 60 "$BIN_DIR/llama-fit-params" -m "$M/rand-huge.gguf"
pack

# 5. Three instances through llama-orch, and the daemon's proxy.
GPU_BACKEND=cuda; [ "$MODE" = dry ] && GPU_BACKEND=cpu
DEVICES='[0]'; [ "$MODE" = dry ] && DEVICES='[]'
inst() { # NAME PORT MODEL ALIAS NGL CTX EXTRA_JSON
  mkdir -p "$H/instances/$1"
  cat >"$H/instances/$1/config.json" <<JSON
{
  "model": { "path": "$M/$3", "alias": "$4", "n_gpu_layers": $5, "context_size": $6 },
  "server": { "port": $2, "parallel": 2, "binary": "$SERVER", "extra_args": $7 },
  "gpu": { "backend": "$GPU_BACKEND", "devices": $DEVICES },
  "healthcheck": { "interval": 1, "start_period": 120 },
  "restart": { "max_retries": 1, "initial_delay": 1 }
}
JSON
}
inst gpu-full $PORT_BASE rand-small.gguf rand-1b $NGL_FULL 8192 '[]'
inst gpu-partial $((PORT_BASE + 1)) rand-small.gguf rand-1b-partial $NGL_PART 4096 '[]'
inst gpu-oom $((PORT_BASE + 2)) rand-huge.gguf rand-82b 99 4096 '["--fit", "off"]'
[ "$MODE" = dry ] && sed -i 's/"--fit", "off"/"--fit", "off", "--load-mode", "none"/' "$H/instances/gpu-oom/config.json"
rec config-lint "$W/bin/orch" config lint
rec models-info-small "$W/bin/orch" models info "$M/rand-small.gguf" --json
rec models-info-huge "$W/bin/orch" models info "$M/rand-huge.gguf" --json
rec daemon-start "$W/bin/orch" daemon start --listen "127.0.0.1:$PROXY_PORT"
say "starting gpu-full and gpu-partial"
rec up-gpu -t 200 "$W/bin/orch" up gpu-full gpu-partial --wait 180 --json
say "up: exit $(cat "$R/up-gpu.rc")"
sleep 2
nvsmi_all loaded
rec ps-loaded "$W/bin/orch" ps --json
rec gpus-loaded "$W/bin/orch" gpus --json
rec describe-gpu-full "$W/bin/orch" describe gpu-full --json
rec describe-gpu-partial "$W/bin/orch" describe gpu-partial --json
rec once-loaded "$W/bin/orch" --once
pack

say "starting gpu-oom (too large for the card)"
rec up-oom -t 120 "$W/bin/orch" up gpu-oom --force --wait 90 --json
say "up gpu-oom: exit $(cat "$R/up-oom.rc")"
sleep 1
rec ps-oom "$W/bin/orch" ps --json
rec describe-gpu-oom "$W/bin/orch" describe gpu-oom --json
rec events "$W/bin/orch" events --json
pack

# 6. Speed: llama-orch bench (straight to the server) and streamed tok/s direct against proxied.
say "bench"
rec bench-full-c1 -t 120 "$W/bin/orch" bench gpu-full --requests 12 --concurrency 1 --max-tokens 128 --json
rec bench-full-c8 -t 120 "$W/bin/orch" bench gpu-full --requests 32 --concurrency 8 --max-tokens 128 --json
rec bench-partial-c1 -t 120 "$W/bin/orch" bench gpu-partial --requests 6 --concurrency 1 --max-tokens 128 --json
rec tps-full -t 120 node "$REPO/scripts/gpu-verify-tps.mjs" --model rand-1b --direct "http://127.0.0.1:$PORT_BASE" \
  --proxy "http://127.0.0.1:$PROXY_PORT" --runs 5 --max-tokens 256
nvsmi_all busy
rec gpus-after-bench "$W/bin/orch" gpus --json
rec describe-full-after-bench "$W/bin/orch" describe gpu-full --json
rec describe-partial-after-bench "$W/bin/orch" describe gpu-partial --json
rec events-after-bench "$W/bin/orch" events --json
pack

# 7. What llama-server prints beside llama-orch: a KV cache too large for the card, --fit's own
#    lines, and the log with colours and timestamps.
[ "${GPU_VERIFY_SKIP_DIRECT:-0}" = 1 ] && say "direct llama-server runs skipped (GPU_VERIFY_SKIP_DIRECT=1)"
[ "${GPU_VERIFY_SKIP_DIRECT:-0}" = 1 ] || say "direct llama-server runs"
direct() { # NAME SECONDS ARGS...: run llama-server until it listens, exits, or SECONDS pass
  local name="$1" t="$2"; shift 2
  [ "$(left)" -gt $((t + 20)) ] || { echo "skipped: past the deadline" >"$R/$name.err"; return 0; }
  LLAMA_ARG_LOG_VERBOSITY=4 "$SERVER" "$@" >"$R/$name.out" 2>"$R/$name.err" &
  local pid=$! i
  for ((i = 0; i < 4 * t; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    grep -q 'server is listening\|main: model loaded' "$R/$name.err" "$R/$name.out" 2>/dev/null && { sleep 1; break; }
    sleep 0.25
  done
  if kill -0 "$pid" 2>/dev/null; then kill "$pid"; wait "$pid"; echo "stopped after it listened or ${t}s (exit $?)" >"$R/$name.rc"
  else wait "$pid"; echo "$?" >"$R/$name.rc"; fi
}
[ "${GPU_VERIFY_SKIP_DIRECT:-0}" = 1 ] || direct kv-oom 30 -m "$M/rand-small.gguf" -ngl 99 -c 8388608 -np 1 --fit off --port $((PORT_BASE + 10))
[ "${GPU_VERIFY_SKIP_DIRECT:-0}" = 1 ] || direct fit-on 45 -m "$M/rand-small.gguf" -c 8388608 -np 1 --fit on --port $((PORT_BASE + 11))
[ "${GPU_VERIFY_SKIP_DIRECT:-0}" = 1 ] || direct colours 20 -m "$M/rand-small.gguf" -ngl 99 -c 2048 --log-colors on --log-prefix --log-timestamps --port $((PORT_BASE + 12))
pack

# 8. Down, and what was left.
rec down "$W/bin/orch" down --all --json
rec daemon-stop "$W/bin/orch" daemon stop
rec ps-after "$W/bin/orch" ps --json
nvsmi_all after
mkdir -p "$R/logs" && cp -r "$H/logs/." "$R/logs/" 2>/dev/null
cp -r "$H/instances" "$R/instances" 2>/dev/null
[ -f "$REPO/scripts/gpu-verify-summary.mjs" ] && rec summary node "$REPO/scripts/gpu-verify-summary.mjs" "$R"
say "done in $((SECONDS - T0))s"
trap - EXIT
pack
[ -f "$R/summary.out" ] && cp "$R/summary.out" "$OUTDIR/summary.txt"
cp "$R/timeline.txt" "$OUTDIR/timeline.txt"
exit 0
