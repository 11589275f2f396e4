#!/bin/bash
# Measures APDUs per second through pcscd and vpcd with the echo card, once
# with TCP_QUICKACK and once without. Needs pcscd running with vpcd and a
# build (npm run build). Prints one line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-3}

rate_tool=$(mktemp)
card_pid=
# Stop the card on any exit, also when a reader of the output closes the pipe early.
trap 'if [ -n "$card_pid" ]; then kill "$card_pid" 2>/dev/null || true; fi; rm -f "$rate_tool"' EXIT
cc -O2 -o "$rate_tool" bench/pcsc-apdu-rate.c $(pkg-config --cflags --libs libpcsclite)

for mode in quickack --no-quickack; do
    flag=$([ "$mode" = quickack ] && echo "" || echo "$mode")
    VIRTCARD_LOG_LEVEL=warn node dist/bench/vpcd-echo-card.js $flag &
    card_pid=$!
    # pcscd finds the card only at its next presence poll of vpcd, so wait for it.
    for _ in $(seq 50); do
        opensc-tool -a >/dev/null 2>&1 && break
        sleep 0.2
    done
    echo -n "${mode#--}: "
    "$rate_tool" "Virtual PCD 00 00" "$SECONDS_PER_RUN"
    kill "$card_pid"
    wait "$card_pid" || true
    card_pid=
    sleep 1
done
