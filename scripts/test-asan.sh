#!/usr/bin/env bash
# npm run test:asan: the native engines' tests with the addon built under AddressSanitizer and
# UndefinedBehaviorSanitizer, warnings as errors. Node itself is not instrumented, so the ASan
# runtime is preloaded; leak checking is off, since V8 keeps memory until exit by design.
# Runs in a copy of the checkout, so this checkout's own build is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/echoplex-asan-XXXXXX")
trap 'rm -rf "$work"' EXIT
[ -n "${ASAN_KEEP:-}" ] && trap - EXIT && echo "keeping $work" >&2

asan=$(gcc -print-file-name=libasan.so)
ubsan=$(gcc -print-file-name=libubsan.so)
if [ ! -e "$asan" ] || [ ! -e "$ubsan" ]; then
  echo "test:asan needs gcc's sanitizer runtimes (apt-get install gcc)" >&2
  exit 1
fi

cp -r package.json tsconfig.json tsconfig.test.json binding.gyp native src test examples bench "$work/"
ln -s "$root/node_modules" "$work/node_modules"
ln -s "$root/../shared" "$work/../shared" 2>/dev/null || true
cd "$work"
npm run build >/dev/null
sanitize='-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -Werror'
# npm's own node-gyp, with npm's configuration (nodedir: the headers this machine has).
node_gyp="$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js"
nodedir=$(npm config get nodedir)
CFLAGS="$sanitize" LDFLAGS='-fsanitize=address,undefined' node "$node_gyp" rebuild ${nodedir:+--nodedir="$nodedir"} >/dev/null 2>&1
symbols=$(nm -D build/Release/echoplex.node)
[[ "$symbols" == *__asan_init* ]] || { echo "the addon was not built with ASan" >&2; exit 1; }

export LD_PRELOAD="$asan $ubsan"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Timing bars (the bench's accuracy to a fraction of a millisecond) do not hold under the sanitizers.
export ECHOPLEX_SANITIZERS=1
# Memory-bound tests (backpressure, soak) are left out: the sanitizers change what memory is used.
status=0
# Each file on its own, not under --test: a sanitizer's report goes to stderr, which the test
# runner would not show for a child that died. ASAN_TESTS narrows the set when chasing one.
for file in ${ASAN_TESTS:-test/server.test.ts test/tls.test.ts test/websocket.test.ts test/udp-unix.test.ts test/udp-held.test.ts test/selectors.test.ts test/selectors-properties.test.ts test/bench.test.ts test/bench-truth.test.ts test/bench-transports.test.ts test/workers.test.ts}; do
  echo "# $file under ASan and UBSan"
  node --import tsx --test-reporter=dot "$file" || { status=$?; echo "# $file failed (status $status)"; }
done
exit "$status"
