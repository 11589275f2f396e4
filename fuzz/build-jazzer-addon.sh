#!/bin/bash
# Builds the native part of Jazzer.js (@jazzer.js/fuzzer) on this machine.
#
# The npm package of @jazzer.js/fuzzer 2.1.0 downloads a prebuilt addon from
# GitHub or builds one against a patched LLVM fetched from GitHub, and the
# 4.0.0 prebuilds need glibc 2.38 (Debian 12 has 2.36). This script compiles
# the C++ sources that the 2.1.0 package ships against Debian's libFuzzer
# (libclang-rt-14-dev) instead, and puts the result where the package's
# `bindings` loader looks for it. Needs g++, Node's headers (/usr/include/node)
# and libclang-rt-*-dev.
#
#   fuzz/build-jazzer-addon.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."

package=node_modules/@jazzer.js/fuzzer
output=$package/build/Release/jazzerjs.node
if [ -f "$output" ] && [ "${1:-}" != --force ]; then
    exit 0
fi
if [ ! -f "$package/addon.cpp" ]; then
    echo "missing $package/addon.cpp: run npm install first" >&2
    exit 1
fi

libfuzzer=$(ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$libfuzzer" ]; then
    echo "libFuzzer not found: apt-get install libclang-rt-14-dev" >&2
    exit 1
fi
node_include=$(dirname "$(dirname "$(command -v node)")")/include/node
[ -f "$node_include/node_api.h" ] || node_include=/usr/include/node
if [ ! -f "$node_include/node_api.h" ]; then
    echo "Node's headers (node_api.h) not found next to node or in /usr/include/node" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/include/fuzzer"

# The two libFuzzer entry points the addon calls, as libFuzzer declares them.
cat >"$work/include/fuzzer/FuzzerDefs.h" <<'HEADER'
#pragma once
#include <cstddef>
#include <cstdint>
namespace fuzzer {
typedef int (*UserCallback)(const uint8_t *Data, size_t Size);
int FuzzerDriver(int *argc, char ***argv, UserCallback Callback);
}
HEADER

# Upstream libFuzzer registers its "dump the crashing input" routine through
# __sanitizer_set_death_callback; Jazzer's patched libFuzzer uses
# __jazzer_set_death_callback. Forward the upstream hook to Jazzer's.
# The patched libFuzzer also has comparison hooks that take the caller's PC
# as an argument (Jazzer passes a per-site id). Upstream's hooks take the PC
# from their return address, so every JS comparison shares one PC: operands
# still reach the table of recent compares that feeds the mutator, but
# -use_value_profile=1 sees a single site.
cat >"$work/libfuzzer-shims.cpp" <<'SOURCE'
#include <cstdint>
extern "C" {
void __jazzer_set_death_callback(void (*callback)());
void __sanitizer_cov_trace_const_cmp8(uint64_t arg1, uint64_t arg2);
void __sanitizer_cov_trace_pc_indir(uintptr_t callee);

void __sanitizer_set_death_callback(void (*callback)()) {
  __jazzer_set_death_callback(callback);
}
void __sanitizer_cov_trace_const_cmp8_with_pc(uintptr_t, uint64_t arg1, uint64_t arg2) {
  __sanitizer_cov_trace_const_cmp8(arg1, arg2);
}
void __sanitizer_cov_trace_pc_indir_with_pc(void *, uintptr_t callee) {
  __sanitizer_cov_trace_pc_indir(callee);
}
}
SOURCE

mkdir -p "$(dirname "$output")"
g++ -std=c++17 -O2 -fPIC -shared -DNAPI_VERSION=4 -DNAPI_CPP_EXCEPTIONS \
    -I"$work/include" -I"$node_include" -Inode_modules/node-addon-api -I"$package" \
    "$package"/*.cpp "$package"/shared/*.cpp "$work/libfuzzer-shims.cpp" \
    -Wl,--whole-archive "$libfuzzer" -Wl,--no-whole-archive -lpthread \
    -o "$output"
echo "built $output against $libfuzzer"
