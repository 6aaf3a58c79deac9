#!/usr/bin/env bash
# The Node that llama-orch runs on: Node 22 LTS or newer. The machine's own `node` when it is new
# enough; otherwise Node $PIN from the npm registry (the node-<os>-<arch> package ships the binary
# and its headers, which native addons build against), cached under
# ${XDG_CACHE_HOME:-~/.cache}/llama-orch/node/ and fetched once.
#
#   bash scripts/node-runtime.sh          prints the path of that node binary (fetching it if needed)
#   bash scripts/node-runtime.sh --env    prints shell lines for eval: PATH (and npm_config_nodedir
#                                         for a fetched Node) so that node, npm and node-gyp use it
#   bash scripts/node-runtime.sh --check  exit 0 when the machine's node is new enough, 1 when not
#
# LLAMA_ORCH_NODE=/path/to/node overrides the choice (it must be Node 22 or newer).
set -euo pipefail
MIN_MAJOR=22
PIN=22.23.5

say() { echo "node-runtime: $*" >&2; }
major_of() { "$1" -e 'process.stdout.write(process.versions.node.split(".")[0])' 2>/dev/null || echo 0; }

mode=${1:-}
case "$mode" in
  '' | --env | --check) ;;
  *)
    say "unknown option $mode (use --env or --check)"
    exit 2
    ;;
esac

system_node=$(command -v node || true)
if [ "$mode" = --check ]; then
  [ -n "$system_node" ] && [ "$(major_of "$system_node")" -ge "$MIN_MAJOR" ]
  exit
fi

chosen=''
fetched=0
if [ -n "${LLAMA_ORCH_NODE:-}" ]; then
  if [ ! -x "$LLAMA_ORCH_NODE" ] || [ "$(major_of "$LLAMA_ORCH_NODE")" -lt "$MIN_MAJOR" ]; then
    say "LLAMA_ORCH_NODE=$LLAMA_ORCH_NODE is not a Node $MIN_MAJOR or newer"
    exit 1
  fi
  chosen=$LLAMA_ORCH_NODE
elif [ -n "$system_node" ] && [ "$(major_of "$system_node")" -ge "$MIN_MAJOR" ]; then
  chosen=$system_node
else
  case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    *)
      say "no Node $MIN_MAJOR package for $(uname -s): install Node $MIN_MAJOR or newer and put it on PATH"
      exit 1
      ;;
  esac
  case "$(uname -m)" in
    x86_64 | amd64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *)
      say "no Node $MIN_MAJOR package for $(uname -m): install Node $MIN_MAJOR or newer and put it on PATH"
      exit 1
      ;;
  esac
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/llama-orch/node"
  dest="$cache/v$PIN-$os-$arch"
  if [ ! -x "$dest/bin/node" ]; then
    have=${system_node:+$("$system_node" --version 2>/dev/null)}
    say "the machine's Node is ${have:-missing}; llama-orch needs $MIN_MAJOR or newer: fetching node-$os-$arch@$PIN from the npm registry (once, into $dest)"
    if ! command -v npm >/dev/null; then
      say "npm is not on PATH: install Node $MIN_MAJOR or newer (with npm) and put it on PATH"
      exit 1
    fi
    mkdir -p "$cache"
    tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    if ! (cd "$tmp" && npm pack --silent "node-$os-$arch@$PIN" >/dev/null); then
      say "npm could not fetch node-$os-$arch@$PIN (is the npm registry reachable?)"
      exit 1
    fi
    tar xzf "$tmp"/node-*.tgz -C "$tmp"
    if [ "$(major_of "$tmp/package/bin/node")" -lt "$MIN_MAJOR" ]; then
      say "the fetched node does not run here: $("$tmp/package/bin/node" --version 2>&1 | head -1)"
      exit 1
    fi
    # Another run may have finished first: keep the one that is there.
    mv -T "$tmp/package" "$dest" 2>/dev/null || [ -x "$dest/bin/node" ]
  fi
  chosen="$dest/bin/node"
  fetched=1
fi

if [ "$mode" = --env ]; then
  bin_dir=$(dirname "$chosen")
  printf 'export PATH=%q:"$PATH"\n' "$bin_dir"
  # node-gyp builds addons against the headers of the Node that runs them.
  [ "$fetched" = 1 ] && printf 'export npm_config_nodedir=%q\n' "$(dirname "$bin_dir")"
  exit 0
fi
echo "$chosen"
