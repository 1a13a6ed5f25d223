#!/usr/bin/env bash
# Usage: .ci/sanitize.sh
# Builds fastpad with AddressSanitizer + UBSan (CMake option FASTPAD_SANITIZE) into its own build
# directory and site directory (never the editable build/cp3*), then runs the test suite and the
# fuzz smoke run against it with the ASan runtime preloaded into the (unsanitized) interpreter.
# Any sanitizer report aborts the run and fails the script. Needs the test extras and atheris in
# the active environment (as .ci/run sets up).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
site="$repo/build/asan-site"
rm -rf "$site" build/asan-dist
python -m pip wheel . --no-deps -q -w build/asan-dist \
  -Ccmake.define.FASTPAD_SANITIZE=ON -Ccmake.build-type=RelWithDebInfo \
  -Cbuild-dir="build/asan-{wheel_tag}"
python -m pip install -q --no-deps --target "$site" build/asan-dist/fastpad-*.whl
extension=$(ls "$site"/fastpad/_core*.so)
asan=$(ldd "$extension" | awk '/libasan/ {print $3}')
[[ -n "$asan" ]] || { echo "FAIL: $extension is not linked against libasan"; exit 1; }
# libstdc++ is preloaded too: python does not link it, and ASan's __cxa_throw interceptor must
# find the real one at start-up or the first C++ exception aborts ("CHECK failed ...
# real___cxa_throw").
stdcxx=$(ldd "$extension" | awk '/libstdc\+\+/ {print $3}')
preload="$asan${stdcxx:+ $stdcxx}"
echo "sanitized extension: $extension (preloading $preload)"

# The interpreter is not instrumented: leak checking would report Python's own allocations, and
# its allocator is not ASan-aware. UBSan reports are fatal (-fno-sanitize-recover in CMake).
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE_ASAN:-asan}"
export FASTPAD_SANITIZED=1  # tests/test_leaks.py: RSS is inflated by the ASan quarantine
run_sanitized() { LD_PRELOAD="$preload" PYTHONPATH="$site" "$@"; }

echo "-- the extension is instrumented and imports under the preloaded runtime"
# Read into a variable first: `nm | grep -q` fails under pipefail when grep stops reading early
# (nm then dies of SIGPIPE), which depends on where in the symbol list the match falls.
symbols=$(nm -D "$extension")
grep -q __asan_report_load <<<"$symbols" || { echo "FAIL: no ASan instrumentation"; exit 1; }
grep -q __ubsan_handle <<<"$symbols" || { echo "FAIL: no UBSan instrumentation"; exit 1; }
run_sanitized python -c "import fastpad, sys; assert fastpad.__file__.startswith('$site'), fastpad.__file__; print(fastpad.pad([[1, 2], [3]], pad_token_id=0, return_tensors='np'))"

echo "-- test suite under ASan + UBSan"
log=$(mktemp)
set +e
LD_PRELOAD="$preload" PYTHONPATH="$site" FASTPAD_EXPECT_LOCATION="$site" \
  bash .ci/pytest_outside.sh "$repo" -- -p no:cacheprovider -m "not slow" -x 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
if grep -qE "ERROR: AddressSanitizer|AddressSanitizer: CHECK failed|runtime error:" "$log"; then
  echo "FAIL: sanitizer report in the test run"; exit 1
fi
[[ $rc -eq 0 ]] || { echo "FAIL: tests under sanitizers exited $rc"; exit "$rc"; }

echo "-- fuzz smoke under ASan + UBSan"
FUZZ_RUNS="${FUZZ_RUNS_ASAN:-10000}" run_sanitized bash .ci/fuzz.sh smoke
