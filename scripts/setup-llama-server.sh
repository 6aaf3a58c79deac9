#!/usr/bin/env bash
# Builds a real llama-server, llama-fit-params (llama.cpp's own memory projection, used by
# `models info` and `config lint`) and the tiny random test model from the llama.cpp source that the
# node-llama-cpp npm tarball ships, caching the binaries outside the repo keyed by llama.cpp commit
# and backend.
# Usage: scripts/setup-llama-server.sh [--backend auto|cpu|cuda|vulkan|rocm] [--source PATH]
#          [--cuda-arch LIST] [--models-dir DIR] [--detect] [--print-config] [--configure-only]
#   --backend         auto (default): the rig's GPU backend when its driver and toolkit are both
#                     there, else the CPU server (and it says which piece is missing)
#   --source PATH     build this llama.cpp source (a git bundle, a .tar.* of the tree, or a folder)
#                     instead of fetching node-llama-cpp's from the npm registry
#   --cuda-arch LIST  CUDA architectures, e.g. 89 or 86;90 [the cards' compute_cap per nvidia-smi]
#   --detect          print the backend auto would pick (and, on stderr, why), then exit
#   --print-config    print the backend, the cache key's suffix and the CMake flags for it (one a
#                     line: backend=..., suffix=..., then the flags), then exit; builds nothing
#   --configure-only  run CMake's configure step for the backend and stop (no build, nothing cached)
# Prints, as its last line, the absolute path of the llama-server binary.
# Auto picks cuda when `nvidia-smi -L` lists a GPU and nvcc is found (on PATH, else in
# $CUDA_HOME/bin, which defaults to /usr/local/cuda: a CUDA_HOME that is set is the only other place
# looked); rocm when $LLAMA_ORCH_KFD (default /dev/kfd) exists and hipcc is on PATH or in
# $ROCM_PATH/bin (default /opt/rocm); vulkan when `ldconfig -p` lists libvulkan.so.1 and glslc and
# $LLAMA_ORCH_VULKAN_HEADER (default /usr/include/vulkan/vulkan.h) are there; else cpu.
# Cache: the CPU build's pointer is $CACHE/by-package/node-llama-cpp@VERSION, another backend's is
# that name plus -BACKEND (node-llama-cpp@3.22.1-cuda); each holds the key (commit plus suffix, e.g.
# de3ff815ea7d-cuda-sm90) of $CACHE/llama.cpp/KEY/bin/llama-server (src/config/binary.ts reads them).
set -euo pipefail

NLC_VERSION="${LLAMA_ORCH_NLC_VERSION:-3.22.1}"
CACHE_ROOT="${LLAMA_ORCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llama-orch}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS_DIR="$REPO_ROOT/models"
JOBS="${LLAMA_ORCH_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"
BACKEND="${LLAMA_ORCH_BACKEND:-auto}"
SOURCE="${LLAMA_ORCH_LLAMA_SRC:-}"
CUDA_ARCH="${LLAMA_ORCH_CUDA_ARCH:-}"
DETECT_ONLY=0
PRINT_CONFIG=0
CONFIGURE_ONLY=0

step() { printf '[llama-server setup] %s\n' "$*" >&2; }
die() { printf '[llama-server setup] error: %s\n' "$1" >&2; [ -n "${2:-}" ] && printf '  hint: %s\n' "$2" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --models-dir) MODELS_DIR="${2:?--models-dir needs a folder}"; shift 2 ;;
    --backend) BACKEND="${2:?--backend needs one of auto, cpu, cuda, vulkan, rocm}"; shift 2 ;;
    --backend=*) BACKEND="${1#*=}"; shift ;;
    --source) SOURCE="${2:?--source needs a path}"; shift 2 ;;
    --cuda-arch) CUDA_ARCH="${2:?--cuda-arch needs a list such as 89 or 86;90}"; shift 2 ;;
    --detect) DETECT_ONLY=1; shift ;;
    --print-config) PRINT_CONFIG=1; shift ;;
    --configure-only) CONFIGURE_ONLY=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument '$1'" "see --help" ;;
  esac
done
case "$BACKEND" in
  auto|cpu|cuda|vulkan|rocm) ;;
  *) die "unknown backend '$BACKEND'" "use one of auto, cpu, cuda, vulkan, rocm" ;;
esac

need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed (needed to build llama-server)" "$2"
}

# --- Which backend: a working driver plus its toolkit -------------------------------------------
find_tool() { # NAME [extra dirs...]: the first executable NAME on PATH or in the dirs
  local name="$1"; shift
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  local d; for d in "$@"; do [ -x "$d/$name" ] && { echo "$d/$name"; return 0; }; done
  return 1
}
# A CUDA_HOME or ROCM_PATH that is set replaces the default folder (it is not looked in as well).
NVCC="$(find_tool nvcc "${CUDA_HOME:-/usr/local/cuda}/bin" || true)"
HIPCC="$(find_tool hipcc "${ROCM_PATH:-/opt/rocm}/bin" || true)"
KFD="${LLAMA_ORCH_KFD:-/dev/kfd}"
VULKAN_HEADER="${LLAMA_ORCH_VULKAN_HEADER:-/usr/include/vulkan/vulkan.h}"

nvidia_driver() { # 0 when nvidia-smi answers and lists a GPU
  command -v nvidia-smi >/dev/null 2>&1 || return 1
  local out; out="$(timeout 20 nvidia-smi -L 2>/dev/null)" || return 1
  printf '%s\n' "$out" | grep -q '^GPU [0-9]'
}
vulkan_loader() {
  local ld; ld="$(command -v ldconfig || echo /sbin/ldconfig)"
  [ -x "$ld" ] && "$ld" -p 2>/dev/null | grep -q 'libvulkan\.so\.1'
}

# nvcc may be a wrapper script elsewhere (/usr/local/bin/nvcc -> exec /usr/local/cuda-13.0/bin/nvcc): CMake
# would then look for the toolkit beside the wrapper. nvcc's dry run names its real root (TOP=...).
CUDA_FLAGS=()
cuda_setup() {
  local probe top root
  probe="$(mktemp -d)"; : >"$probe/x.cu"
  top="$(cd "$probe" && { "$NVCC" --dryrun -c x.cu 2>&1 || true; } | sed -n 's/^#\$ TOP=//p' | head -n 1)"
  rm -rf "$probe"
  root="$( [ -n "$top" ] && cd "$top" 2>/dev/null && pwd || true)"
  [ -n "$root" ] && [ -x "$root/bin/nvcc" ] || root="$(cd "$(dirname "$NVCC")/.." && pwd)"
  CUDA_FLAGS+=("-DCMAKE_CUDA_COMPILER=$root/bin/nvcc" "-DCUDAToolkit_ROOT=$root")
  # The driver library: the toolkit's stub, else the driver's own (containers mount only libcuda.so.1).
  local d drv=""
  for d in "$root/lib64/stubs" "$root"/targets/*/lib/stubs "$root/lib64" /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib/aarch64-linux-gnu; do
    [ -e "$d/libcuda.so" ] && { drv=found; break; }
  done
  if [ -z "$drv" ]; then
    drv="${LLAMA_ORCH_LIBCUDA:-$( { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null || true; } | sed -n 's/.*libcuda\.so\.1 .*=> //p' | head -n 1)}"
    [ -z "$drv" ] && for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/wsl/lib; do
      [ -e "$d/libcuda.so.1" ] && { drv="$d/libcuda.so.1"; break; }
    done
    [ -n "$drv" ] || die "found neither the CUDA driver library (libcuda.so.1) nor the toolkit's stub ($root/lib64/stubs/libcuda.so)" \
      "install the NVIDIA driver (or the toolkit's stubs), or set LLAMA_ORCH_LIBCUDA to the library"
    step "CUDA driver library: $drv"
    CUDA_FLAGS+=("-DCUDA_cuda_driver_LIBRARY=$drv")
  fi
  # cuBLAS: the toolkit's own, else the one pip installs for PyTorch (nvidia-cublas: lib/ + include/).
  for d in "$root/lib64" "$root/lib" "$root"/targets/*/lib /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu; do
    [ -e "$d/libcublas.so" ] && { step "cuBLAS: $d/libcublas.so"; return 0; }
  done
  local py sp lib lt inc
  for py in python3 python; do
    command -v "$py" >/dev/null 2>&1 || continue
    for sp in $("$py" -c 'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null); do
      for d in "$sp"/nvidia/cu*/lib "$sp"/nvidia/cublas/lib; do
        lib="$(ls "$d"/libcublas.so* 2>/dev/null | head -n 1 || true)"; lt="$(ls "$d"/libcublasLt.so* 2>/dev/null | head -n 1 || true)"
        inc="$(cd "$d/../include" 2>/dev/null && pwd || true)"
        if [ -n "$lib" ] && [ -n "$lt" ] && [ -f "$inc/cublas_v2.h" ]; then
          step "cuBLAS: the toolkit at $root has none; using pip's $lib"
          CUDA_FLAGS+=("-DCUDA_cublas_LIBRARY=$lib" "-DCUDA_cublasLt_LIBRARY=$lt" "-DCMAKE_CUDA_FLAGS=-I$inc" "-DCMAKE_CXX_FLAGS=-I$inc")
          return 0
        fi
      done
    done
  done
  # Any other python environment's copy (a venv under /opt, say).
  for lib in $(find /opt /usr/local /usr/lib /root -xdev -maxdepth 9 -name 'libcublas.so.*' -path '*nvidia*' 2>/dev/null | sort); do
    d="$(dirname "$lib")"; lt="$(ls "$d"/libcublasLt.so* 2>/dev/null | head -n 1 || true)"
    inc="$(cd "$d/../include" 2>/dev/null && pwd || true)"
    if [ -n "$lt" ] && [ -f "$inc/cublas_v2.h" ]; then
      step "cuBLAS: the toolkit at $root has none; using $lib"
      CUDA_FLAGS+=("-DCUDA_cublas_LIBRARY=$lib" "-DCUDA_cublasLt_LIBRARY=$lt" "-DCMAKE_CUDA_FLAGS=-I$inc" "-DCMAKE_CXX_FLAGS=-I$inc")
      return 0
    fi
  done
  die "the CUDA toolkit at $root has no cuBLAS (libcublas.so), which llama.cpp's CUDA backend needs" \
    "install it (Debian/Ubuntu with NVIDIA's repository: apt-get install libcublas-dev-13-0 or cuda-libraries-dev; pip: nvidia-cublas), or use --backend cpu"
}

REASON=""
detect_backend() {
  local missing=()
  if nvidia_driver; then
    if [ -n "$NVCC" ]; then REASON="nvidia-smi lists a GPU and nvcc is at $NVCC"; echo cuda; return; fi
    missing+=("an NVIDIA driver answers but the CUDA toolkit (nvcc) is missing: install it (Debian: apt-get install nvidia-cuda-toolkit; or NVIDIA's cuda-toolkit package) or set CUDA_HOME")
  fi
  if [ -e "$KFD" ]; then
    if [ -n "$HIPCC" ]; then REASON="$KFD exists and hipcc is at $HIPCC"; echo rocm; return; fi
    missing+=("$KFD exists (an AMD GPU driver) but ROCm's hipcc is missing: install ROCm's hip-dev packages or set ROCM_PATH")
  fi
  if vulkan_loader; then
    if command -v glslc >/dev/null 2>&1 && [ -f "$VULKAN_HEADER" ]; then
      REASON="a Vulkan loader, glslc and the Vulkan headers are installed"; echo vulkan; return
    fi
    missing+=("a Vulkan loader is installed but glslc or the Vulkan headers are missing: apt-get install glslc libvulkan-dev")
  fi
  if [ ${#missing[@]} -eq 0 ]; then
    REASON="no GPU driver answered (nvidia-smi, $KFD, a Vulkan loader): the CPU server"
  else
    REASON="building the CPU server: ${missing[*]}"
  fi
  echo cpu
}

if [ "$BACKEND" = auto ]; then
  detect_backend >"${TMPDIR:-/tmp}/llama-orch-backend.$$"
  BACKEND="$(cat "${TMPDIR:-/tmp}/llama-orch-backend.$$")"; rm -f "${TMPDIR:-/tmp}/llama-orch-backend.$$"
  step "backend: $BACKEND ($REASON)"
  # shellcheck disable=SC2030
  [ "$DETECT_ONLY" = 1 ] && { echo "$BACKEND"; exit 0; }
elif [ "$DETECT_ONLY" = 1 ]; then
  echo "$BACKEND"; exit 0
fi

BACKEND_FLAGS=()
KEY_SUFFIX=""
case "$BACKEND" in
  cpu) ;;
  cuda)
    [ -n "$NVCC" ] || die "the CUDA toolkit (nvcc) is not installed" "install it, set CUDA_HOME, or use --backend cpu"
    if [ -z "$CUDA_ARCH" ] && command -v nvidia-smi >/dev/null 2>&1; then
      # "8.9" -> "89", one entry per distinct card: only the cards present are compiled for.
      CUDA_ARCH="$(timeout 20 nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null \
        | tr -d ' .\r' | grep -E '^[0-9]+$' | sort -u | paste -sd';' || true)"
    fi
    if [ -z "$CUDA_ARCH" ]; then
      step "warning: nvidia-smi gave no compute capability; building for CMake's default architectures (much slower)"
      BACKEND_FLAGS+=(-DGGML_CUDA=ON)
      KEY_SUFFIX="-cuda"
    else
      BACKEND_FLAGS+=(-DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH")
      KEY_SUFFIX="-cuda-sm${CUDA_ARCH//;/-}"
    fi
    ;;
  rocm)
    [ -n "$HIPCC" ] || die "ROCm's hipcc is not installed" "install ROCm, set ROCM_PATH, or use --backend cpu"
    GFX="$(timeout 20 "$(dirname "$HIPCC")/rocminfo" 2>/dev/null | grep -oE 'gfx[0-9a-f]+' | sort -u | paste -sd';' || true)"
    # llama.cpp's HIP build compiles with ROCm's clang (docs/build.md): HIPCXX and HIP_PATH from hipconfig.
    if [ -x "$(dirname "$HIPCC")/hipconfig" ]; then
      export HIPCXX; HIPCXX="$("$(dirname "$HIPCC")/hipconfig" -l)/clang"
      export HIP_PATH; HIP_PATH="$("$(dirname "$HIPCC")/hipconfig" -R)"
    fi
    BACKEND_FLAGS+=(-DGGML_HIP=ON)
    [ -n "$GFX" ] && BACKEND_FLAGS+=("-DAMDGPU_TARGETS=$GFX")
    KEY_SUFFIX="-rocm${GFX:+-${GFX//;/-}}"
    ;;
  vulkan)
    BACKEND_FLAGS+=(-DGGML_VULKAN=ON)
    KEY_SUFFIX="-vulkan"
    ;;
esac

# The toolkit's own paths (its real root, cuBLAS, the driver library): only for a configure, so that a
# cached build is used even where the toolkit has gone since.
toolkit_flags() {
  if [ "$BACKEND" = cuda ]; then
    cuda_setup
    BACKEND_FLAGS+=("${CUDA_FLAGS[@]}")
  fi
}

if [ "$PRINT_CONFIG" = 1 ]; then
  toolkit_flags
  printf 'backend=%s\nsuffix=%s\n' "$BACKEND" "$KEY_SUFFIX"
  [ ${#BACKEND_FLAGS[@]} -eq 0 ] || printf '%s\n' "${BACKEND_FLAGS[@]}"
  exit 0
fi

# The CPU build keeps the cache layout it always had (CI's cache stays valid).
POINTER="$CACHE_ROOT/by-package/node-llama-cpp@$NLC_VERSION"
[ "$BACKEND" = cpu ] || POINTER="$POINTER-$BACKEND"

ensure_model() {
  local archs="$1"
  mkdir -p "$MODELS_DIR"
  if [ -s "$MODELS_DIR/llama-dense.gguf" ]; then return 0; fi
  step "generating the tiny random model into $MODELS_DIR"
  local tmp; tmp="$(mktemp -d)"
  ( cd "$tmp" && "$archs" -a '^llama$' -o "$tmp/" >"$tmp/archs.log" 2>&1 ) \
    || { tail -n 20 "$tmp/archs.log" >&2; die "test-llama-archs failed to write the model" "see the log above"; }
  local f; f="$(find "$tmp" -name 'llama-dense*.gguf' | head -n 1)"
  [ -n "$f" ] || die "test-llama-archs wrote no llama-dense.gguf in $tmp" "run it by hand: $archs -a '^llama\$' -o DIR"
  mv "$f" "$MODELS_DIR/llama-dense.gguf.tmp" && mv "$MODELS_DIR/llama-dense.gguf.tmp" "$MODELS_DIR/llama-dense.gguf"
  rm -rf "$tmp"
}

complete() { [ -x "$1/llama-server" ] && [ -x "$1/test-llama-archs" ] && [ -x "$1/llama-fit-params" ]; }

# Fast path: the cache already holds a build for this package version and backend.
if [ "$CONFIGURE_ONLY" = 0 ] && [ -z "$SOURCE" ] && [ -f "$POINTER" ]; then
  KEY="$(cat "$POINTER")"
  BIN_DIR="$CACHE_ROOT/llama.cpp/$KEY/bin"
  # Built for these cards (a key ends with its architectures: -cuda-sm89-90): another set rebuilds.
  if complete "$BIN_DIR" && [[ "$KEY" == *"$KEY_SUFFIX" ]]; then
    step "using cached llama-server (llama.cpp $KEY) from $BIN_DIR"
    ensure_model "$BIN_DIR/test-llama-archs"
    echo "$BIN_DIR/llama-server"
    exit 0
  fi
fi

need cmake "apt-get update && apt-get install cmake"
need tar "apt-get install tar"
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || die "no C++ compiler found" "apt-get update && apt-get install build-essential"

mkdir -p "$CACHE_ROOT" || die "cannot create cache directory $CACHE_ROOT" "set LLAMA_ORCH_CACHE to a writable directory"
AVAIL_KB="$(df -Pk "$CACHE_ROOT" | awk 'NR==2 {print $4}')"
if [ -n "$AVAIL_KB" ] && [ "$AVAIL_KB" -lt 2000000 ]; then
  die "only $((AVAIL_KB / 1024)) MB free under $CACHE_ROOT; the build needs about 2 GB" "free some space or set LLAMA_ORCH_CACHE elsewhere"
fi

WORK="$CACHE_ROOT/work-$NLC_VERSION-$BACKEND-$$"
rm -rf "$WORK"; mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT

# --- The source: node-llama-cpp's bundle from the npm registry, or --source -----------------------
SRC="$WORK/llama.cpp"
if [ -z "$SOURCE" ]; then
  need npm "install Node.js and npm"
  need git "apt-get install git"
  step "fetching node-llama-cpp@$NLC_VERSION tarball (source only, not installed)"
  ( cd "$WORK" && npm pack "node-llama-cpp@$NLC_VERSION" --silent >/dev/null 2>"$WORK/pack.log" ) \
    || { cat "$WORK/pack.log" >&2; die "npm pack node-llama-cpp@$NLC_VERSION failed" "check that the npm registry is reachable"; }
  tar xzf "$WORK/node-llama-cpp-$NLC_VERSION.tgz" -C "$WORK" package/llama/gitRelease.bundle \
    || die "the tarball has no package/llama/gitRelease.bundle" "pick another version with LLAMA_ORCH_NLC_VERSION"
  SOURCE="$WORK/package/llama/gitRelease.bundle"
fi
[ -e "$SOURCE" ] || die "the llama.cpp source '$SOURCE' does not exist" "--source takes a git bundle, a .tar.* of the tree or a folder"
if [ -d "$SOURCE" ]; then
  SRC="$(cd "$SOURCE" && pwd)"
elif tar tf "$SOURCE" >/dev/null 2>&1; then
  mkdir -p "$SRC" && tar xf "$SOURCE" -C "$SRC" --strip-components=1 \
    || die "cannot unpack the llama.cpp source '$SOURCE'"
else
  need git "apt-get install git"
  git clone -q "$SOURCE" "$SRC" 2>"$WORK/clone.log" \
    || { cat "$WORK/clone.log" >&2; die "git clone of the llama.cpp bundle '$SOURCE' failed"; }
fi
[ -f "$SRC/CMakeLists.txt" ] && [ -d "$SRC/ggml" ] || die "'$SOURCE' does not hold a llama.cpp source tree"
# A tree without .git names its commit in LLAMA_ORCH_COMMIT (scripts/gpu-verify.sh packs it so).
if [ -f "$SRC/LLAMA_ORCH_COMMIT" ]; then
  COMMIT="$(tr -d ' \n' <"$SRC/LLAMA_ORCH_COMMIT")"
else
  COMMIT="$(git -C "$SRC" rev-parse --short=12 HEAD 2>/dev/null)" \
    || die "cannot tell the llama.cpp commit of '$SOURCE'" "a tree without .git needs a LLAMA_ORCH_COMMIT file"
fi
KEY="$COMMIT$KEY_SUFFIX"
BIN_DIR="$CACHE_ROOT/llama.cpp/$KEY/bin"

GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
configure() {
  toolkit_flags
  step "configuring llama.cpp $COMMIT for $BACKEND (cmake${GEN[*]:+, ninja})"
  # ${a[@]+"${a[@]}"}: an empty array under set -u (bash before 4.4, macOS's 3.2).
  cmake -S "$SRC" -B "$WORK/build" ${GEN[@]+"${GEN[@]}"} -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=ON \
    -DLLAMA_BUILD_EXAMPLES=OFF ${BACKEND_FLAGS[@]+"${BACKEND_FLAGS[@]}"} >"$WORK/cmake.log" 2>&1 \
    || { tail -n 30 "$WORK/cmake.log" >&2; trap - EXIT; die "cmake configure failed for $BACKEND" "full log: $WORK/cmake.log (left in place)"; }
}

if [ "$CONFIGURE_ONLY" = 1 ]; then
  configure
  grep -E 'CUDA|HIP|Vulkan|ggml version|Including' "$WORK/cmake.log" | sed 's/^/  /' >&2 || true
  step "configure succeeded for $BACKEND (llama.cpp $COMMIT${CUDA_ARCH:+, CUDA architectures $CUDA_ARCH}); nothing built"
  echo "$BACKEND"
  trap - EXIT
  rm -rf "$WORK"
  exit 0
fi

if ! complete "$BIN_DIR"; then
  configure
  step "building llama-server, llama-fit-params and test-llama-archs ($BACKEND) with $JOBS jobs (about 7 minutes on 2 cores for the CPU build, once)"
  LOG="$WORK/build.log"
  cmake --build "$WORK/build" --target llama-server llama-fit-params test-llama-archs -j"$JOBS" >"$LOG" 2>&1 &
  BUILD_PID=$!
  best=0
  while kill -0 "$BUILD_PID" 2>/dev/null; do
    sleep 10
    # make prints "[ 42%]", ninja "[123/456]"; parallel jobs print out of order, so show the most yet.
    pct="$(grep -oE '^\[ *[0-9]+%\]' "$LOG" | tr -d '[]% ' | sort -n | tail -n 1 || true)"
    if [ -z "$pct" ]; then
      pct="$(grep -oE '^\[[0-9]+/[0-9]+\]' "$LOG" | tr -d '[]' | awk -F/ '$2 > 0 { p = int(100 * $1 / $2); if (p > m) m = p } END { print m + 0 }' || true)"
    fi
    [ -n "$pct" ] && [ "$pct" -gt "$best" ] && best="$pct"
    step "  ... ${best}% (elapsed ${SECONDS}s)"
  done
  if ! wait "$BUILD_PID"; then
    tail -n 30 "$LOG" >&2
    trap - EXIT
    die "the llama.cpp build failed" "full log: $LOG (left in place)"
  fi
  mkdir -p "$BIN_DIR.tmp"
  cp "$WORK/build/bin/llama-server" "$WORK/build/bin/llama-fit-params" "$WORK/build/bin/test-llama-archs" "$BIN_DIR.tmp/"
  rm -rf "$BIN_DIR"; mkdir -p "$(dirname "$BIN_DIR")"; mv "$BIN_DIR.tmp" "$BIN_DIR"
fi

mkdir -p "$(dirname "$POINTER")"
echo "$KEY" > "$POINTER.tmp" && mv "$POINTER.tmp" "$POINTER"
step "llama-server ($BACKEND) ready: $BIN_DIR/llama-server (took ${SECONDS}s)"
ensure_model "$BIN_DIR/test-llama-archs"
echo "$BIN_DIR/llama-server"
