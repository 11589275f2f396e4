#!/bin/bash
# Runs every compiled test file, one file at a time (`npm test` builds first).
#
# TAP goes to standard output; its summary (# tests, # pass, # fail) is what
# CI reads. When a test fails, a short digest of the failures follows that
# summary (scripts/failure-digest-reporter.mjs), so the reason is at the end
# of the log and not thousands of lines above it.
set -uo pipefail
cd "$(dirname "$0")/.."

mapfile -t files < <(find dist/test -name '*.test.js' | sort)
if [ ${#files[@]} -eq 0 ]; then
    echo "no compiled tests under dist/test; run 'npm test', which builds them first" >&2
    exit 1
fi

digest=$(mktemp)
trap 'rm -f "$digest"' EXIT

node --test --test-concurrency=1 \
    --test-reporter=tap --test-reporter-destination=stdout \
    --test-reporter=./scripts/failure-digest-reporter.mjs --test-reporter-destination="$digest" \
    "${files[@]}"
status=$?

cat "$digest"
exit $status
