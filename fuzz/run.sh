#!/bin/bash
# Runs one Jazzer.js fuzz target, or all of them one after another.
#
#   npm run fuzz -- TARGET [SECONDS]     (default 60 s)
#   npm run fuzz -- all [SECONDS]        (SECONDS per target, default 20 s)
#
# Each target is bundled into one CommonJS file with esbuild, because Jazzer.js
# 2.1 instruments only CommonJS modules for coverage. New corpus entries go to
# dist/fuzz-work/TARGET/corpus, crashing inputs to dist/fuzz-work/TARGET/
# (crash-*, timeout-*); the committed seeds in fuzz/corpus/TARGET are only read.
# Exits non-zero when a target crashes or hangs.
set -euo pipefail
cd "$(dirname "$0")/.."

all_targets=(apdu simple-tlv ber-tlv vscard-decoder libcacard-options cac-card ccid-device)
# Targets whose fuzz function returns a promise; the others run in Jazzer's faster --sync mode.
async_targets=" cac-card ccid-device "

target=${1:-}
if [ -z "$target" ]; then
    echo "usage: npm run fuzz -- TARGET|all [SECONDS]; targets: ${all_targets[*]}" >&2
    exit 2
fi

fuzz/build-jazzer-addon.sh

run_target() {
    local name=$1 seconds=$2
    if [ ! -f "fuzz/targets/$name.ts" ]; then
        echo "unknown fuzz target \"$name\"; targets: ${all_targets[*]}" >&2
        return 2
    fi
    local work=dist/fuzz-work/$name
    mkdir -p "$work/corpus" dist/fuzz
    npx esbuild "fuzz/targets/$name.ts" --bundle --platform=node --format=cjs --packages=external \
        --sourcemap=inline --outfile="dist/fuzz/$name.cjs" --log-level=warning
    local mode=--sync
    [[ "$async_targets" == *" $name "* ]] && mode=
    echo "== fuzzing $name for $seconds s"
    VIRTCARD_LOG_LEVEL=silent npx jazzer "dist/fuzz/$name.cjs" $mode -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$work/" "$work/corpus" "fuzz/corpus/$name"
}

if [ "$target" = all ]; then
    for name in "${all_targets[@]}"; do
        run_target "$name" "${2:-20}"
    done
else
    run_target "$target" "${2:-60}"
fi
