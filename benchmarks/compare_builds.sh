#!/usr/bin/env bash
# Usage: benchmarks/compare_builds.sh RELEASE_WHEEL [ROUNDS]
# The release wheel (.ci/build_release_wheel.sh: zig's clang, static libc++) against a build of
# the same source with this machine's compiler (`pip wheel .`: gcc and libstdc++ here), side by
# side, for the Python that runs it ($PYTHON, default python3; it needs torch and numpy, and
# fastpad must not be installed in it, so that PYTHONPATH picks each build):
#   1. instructions per call (valgrind --tool=callgrind) on benchmarks/icount_workload.py's fixed
#      workloads: the same on every run, whatever else the machine is doing;
#   2. `python -m fastpad bench --quick` on the fastpad paths, ROUNDS (default 3) runs of each
#      build, interleaved; per row the best median of each build and their ratio (noisy on a
#      shared machine; the instruction counts are not).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
release=$(realpath "$1")
rounds="${2:-3}"
python="${PYTHON:-python3}"
work=$(mktemp -d "${TMPDIR:-/tmp}/fastpad-compare.XXXXXX")
trap 'rm -rf "$work"' EXIT
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONHASHSEED=0 HF_HUB_OFFLINE=1

echo "-- system-compiler wheel (pip wheel .)"
"$python" -m pip wheel --no-deps -q -w "$work/system-wheel" "$repo" 2> >(grep -v "^WARNING: Location 'file:" >&2)
for build in system release; do
  wheel=$release
  [[ $build == system ]] && wheel=$(ls "$work"/system-wheel/fastpad-*.whl)
  mkdir -p "$work/$build"
  "$python" -m zipfile -e "$wheel" "$work/$build"
  location=$(PYTHONPATH="$work/$build" "$python" -c 'import fastpad; print(fastpad.__file__)')
  [[ "$location" == "$work/$build/"* ]] || { echo "FAIL: fastpad came from $location"; exit 1; }
  echo "$build: $(basename "$wheel")"
done

echo "-- instructions per call (callgrind; (Ir(N=20) - Ir(0)) / 20)"
interpreter=$("$python" -c 'import os, sys; print(os.path.realpath(sys.executable))')
instructions() {  # BUILD PATH CALLS
  PYTHONPATH="$work/$1" valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    "$interpreter" "$repo/benchmarks/icount_workload.py" "$3" "$2" 2>&1 | awk '/Collected/ {print $4}'
}
printf '%-8s %14s %14s %8s\n' path system release ratio
for path in lists ragged fields; do
  declare -A per_call=()
  for build in system release; do
    base=$(instructions "$build" "$path" 0)
    full=$(instructions "$build" "$path" 20)
    per_call[$build]=$(((full - base) / 20))
  done
  printf '%-8s %14d %14d %8s\n' "$path" "${per_call[system]}" "${per_call[release]}" \
    "$(awk -v r="${per_call[release]}" -v s="${per_call[system]}" 'BEGIN {printf "%.3f", r / s}')"
  unset per_call
done

echo "-- python -m fastpad bench --quick, fastpad paths, $rounds rounds interleaved"
for ((round = 1; round <= rounds; round++)); do
  for build in system release; do
    PYTHONPATH="$work/$build" "$python" -m fastpad bench --quick --no-progress --no-memory --no-plot \
      --paths fastpad-lists,fastpad-ragged --out "$work/bench-$build-$round" >/dev/null
  done
done
"$python" - "$work" <<'PY'
import collections, glob, json, statistics, sys

best = collections.defaultdict(lambda: float("inf"))
for path in glob.glob(f"{sys.argv[1]}/bench-*/bench.json"):
    build = path.split("/")[-2].split("-")[1]
    for row in json.load(open(path))["results"]:
        key = (row["workload"], row["path"], row["batch_size"], build)
        best[key] = min(best[key], row["median_s"])
rows = sorted({key[:3] for key in best})
print(f"{'workload':10} {'path':15} {'B':>5} {'system':>10} {'release':>10} {'ratio':>6}")
ratios = []
for workload, path, size in rows:
    system, release = best[workload, path, size, "system"], best[workload, path, size, "release"]
    ratios.append(release / system)
    print(f"{workload:10} {path:15} {size:5} {system * 1e6:8.1f}us {release * 1e6:8.1f}us "
          f"{release / system:6.2f}")
print(f"geometric mean release/system: {statistics.geometric_mean(ratios):.3f} "
      f"(min {min(ratios):.2f}, max {max(ratios):.2f})")
PY
