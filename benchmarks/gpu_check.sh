#!/usr/bin/env bash
# One prepared check of fastpad's GPU path on a machine with a CUDA GPU (issues 15 and 20):
#   1. build and install fastpad from this working tree (no network: --no-index, no build
#      isolation, a fresh build directory so no stale build/ is reused),
#   2. the CUDA tests (tests/test_packer_cuda.py), then the tests that behave differently with a
#      GPU present or back the GPU path (test_packer.py, test_packer_lean.py, test_prefetch.py,
#      test_scalars.py, test_pad.py, test_collator.py),
#   3. the end-to-end benchmark (benchmarks/bench_e2e_gpu.py: all-MiniLM-L6-v2 encode of 10k
#      sentences unpatched / patched / fastpad.encode_overlapped at batch 32 and 128, and the
#      Packer against fastpad.pad(pin) + .to host time at 8, 64 and 512 rows),
#   4. the GPU benchmark (benchmarks/bench_gpu.py: paths incl. side-stream and ragged rows,
#      bandwidth, overlap, crossover, pinned vs pageable fastpad.pad),
# and writes into OUTDIR (flat, 9 files): env.txt, build.log, tests_cuda.log, tests_other.log,
# bench_e2e_gpu.json, bench_e2e_gpu.txt, bench_gpu.json, bench_gpu.txt, summary.txt (the GPU's
# name, step results, key figures).
#
# Usage: bash benchmarks/gpu_check.sh OUTDIR [--dry-run]
#   PYTHON=...            interpreter to build, test and benchmark with (default: python3)
#   GPU_CHECK_BUDGET=480  seconds for the whole run; each step's timeout is cut to fit it
#   --dry-run             no GPU needed: everything runs, the benchmark on the CPU (--device cpu
#                         --quick); for checking this script (point PYTHON at a throwaway venv:
#                         the install step replaces the fastpad installed there)
# Without a CUDA device (and without --dry-run) it says so in one line and exits 0. Every step
# is time-bounded and a failing step does not stop the others; the exit status is 1 when any
# step failed. Expected: ~5-6 minutes on a 16-core machine with one GPU (build ~1 min, tests
# ~1.5 min, end-to-end benchmark ~1.5 min, GPU benchmark ~1 min).
set -uo pipefail

if [[ $# -lt 1 || $# -gt 2 || ( $# -eq 2 && "$2" != "--dry-run" ) ]]; then
  echo "usage: bash benchmarks/gpu_check.sh OUTDIR [--dry-run]" >&2
  exit 2
fi
dry_run=0
[[ "${2:-}" == "--dry-run" ]] && dry_run=1
py="${PYTHON:-python3}"
budget="${GPU_CHECK_BUDGET:-480}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
start=$SECONDS

if [[ $dry_run -eq 0 ]] && ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
  echo "gpu_check: no CUDA device visible to torch ($py); nothing was run"
  exit 0
fi

mkdir -p "$1" || exit 2
out="$(cd "$1" && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1 PYTHONFAULTHANDLER=1
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
status_lines=()
failed=0

remaining() { echo $((budget - (SECONDS - start))); }

# run_step NAME CAP LOG COMMAND...: runs COMMAND from the repository root with a timeout of
# min(CAP, time left - RESERVE) seconds (RESERVE: kept for the steps after it), output to LOG.
run_step() {
  local name="$1" cap="$2" reserve="$3" log="$4"
  shift 4
  local left limit began rc
  left=$(($(remaining) - reserve))
  limit=$((cap < left ? cap : left))
  if ((limit < 15)); then
    status_lines+=("$name: SKIPPED (no time left in the ${budget}s budget)")
    echo "== $name: skipped, no time left" | tee -a "$log"
    failed=1
    return
  fi
  echo "== $name (timeout ${limit}s)"
  began=$SECONDS
  (cd "$repo" && timeout --kill-after=10 "$limit" "$@") >>"$log" 2>&1
  rc=$?
  if ((rc == 0)); then
    status_lines+=("$name: ok ($((SECONDS - began))s)")
  else
    [[ $rc -eq 124 || $rc -eq 137 ]] && rc="$rc (timed out after ${limit}s)"
    status_lines+=("$name: FAILED, exit $rc ($((SECONDS - began))s)")
    failed=1
  fi
  echo "   -> ${status_lines[-1]}"
}

# -- environment ---------------------------------------------------------------------------------
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -a)"
  echo "cores: $(nproc)"
  echo "python: $("$py" -c 'import sys; print(sys.version.split()[0], sys.executable)' 2>&1)"
  echo "repo: $repo ($(git -C "$repo" rev-parse HEAD 2>/dev/null || echo 'no git'))"
  echo "dry run: $dry_run"
  "$py" - <<'EOF' 2>&1
import importlib
for name in ("torch", "numpy", "transformers", "hypothesis", "pytest", "scikit_build_core", "pybind11"):
    try:
        print(f"{name}: {importlib.import_module(name).__version__}")
    except Exception as error:
        print(f"{name}: not importable ({type(error).__name__})")
import torch
print(f"torch CUDA: {torch.version.cuda}, available: {torch.cuda.is_available()}")
for index in range(torch.cuda.device_count()):
    props = torch.cuda.get_device_properties(index)
    print(f"cuda:{index}: {props.name}, {props.total_memory / 2**30:.1f} GiB, sm_{props.major}{props.minor}")
EOF
  if command -v nvidia-smi >/dev/null; then
    timeout 20 nvidia-smi --query-gpu=name,driver_version,pcie.link.gen.max,pcie.link.width.max,clocks.max.sm --format=csv 2>&1
  fi
} >"$out/env.txt" 2>&1

# -- 1. build and install ------------------------------------------------------------------------
: >"$out/build.log"
run_step "build+install" 200 330 "$out/build.log" \
  "$py" -m pip install --no-build-isolation --no-deps --no-index -v \
  -Cbuild-dir="$scratch/build" .
# The tests must import the installed package, not a copy in the tree.
(cd "$scratch" && "$py" -c 'import fastpad, fastpad._core; print("installed:", fastpad.__file__)') \
  >>"$out/build.log" 2>&1 || { status_lines+=("import fastpad: FAILED (see build.log)"); failed=1; }

# -- 2. tests --------------------------------------------------------------------------------------
pytest_args=(-v -rA -p no:cacheprovider -o faulthandler_timeout=60)
if "$py" -c 'import pytest_timeout' >/dev/null 2>&1; then
  pytest_args+=(--timeout=90)  # per test; without pytest-timeout only the step timeout applies
fi
: >"$out/tests_cuda.log"
run_step "tests: CUDA" 120 290 "$out/tests_cuda.log" \
  "$py" -m pytest "${pytest_args[@]}" tests/test_packer_cuda.py
: >"$out/tests_other.log"
run_step "tests: packer, prefetch, scalars, pad, collator" 100 250 "$out/tests_other.log" \
  "$py" -m pytest "${pytest_args[@]}" tests/test_packer.py tests/test_packer_lean.py \
  tests/test_prefetch.py tests/test_scalars.py tests/test_pad.py tests/test_collator.py

# -- 3. end-to-end benchmark (issue 20) ----------------------------------------------------------
e2e_args=(--json "$out/bench_e2e_gpu.json")
[[ $dry_run -eq 1 ]] && e2e_args+=(--device cpu --quick)
: >"$out/bench_e2e_gpu.txt"
run_step "end-to-end benchmark" 200 90 "$out/bench_e2e_gpu.txt" \
  "$py" benchmarks/bench_e2e_gpu.py "${e2e_args[@]}"

# -- 4. GPU benchmark ------------------------------------------------------------------------------
bench_args=(--json "$out/bench_gpu.json")
[[ $dry_run -eq 1 ]] && bench_args+=(--device cpu --quick)
: >"$out/bench_gpu.txt"
run_step "benchmark" 150 5 "$out/bench_gpu.txt" "$py" benchmarks/bench_gpu.py "${bench_args[@]}"

# -- summary ---------------------------------------------------------------------------------------
printf '%s\n' "${status_lines[@]}" >"$scratch/steps.txt"
if ! GPU_CHECK_OUT="$out" GPU_CHECK_STEPS="$scratch/steps.txt" GPU_CHECK_SECONDS=$((SECONDS - start)) \
  "$py" - >"$out/summary.txt" 2>&1 <<'EOF'
import json, os, re

out = os.environ["GPU_CHECK_OUT"]


def read(name):
    try:
        with open(os.path.join(out, name)) as handle:
            return handle.read()
    except OSError:
        return ""


env = read("env.txt")
gpus = [line for line in env.splitlines() if line.startswith("cuda:")]
print("fastpad GPU check")
print("GPU: " + ("; ".join(gpus) if gpus else "none visible to torch"))
for line in env.splitlines():
    if line.startswith(("torch", "python:", "repo:", "cores:", "dry run:")):
        print(line)
print(f"total: {os.environ['GPU_CHECK_SECONDS']} s")
print("\nsteps:")
print(open(os.environ["GPU_CHECK_STEPS"]).read().rstrip())

try:
    e2e = json.loads(read("bench_e2e_gpu.json"))
except ValueError:
    e2e = None
if not e2e:
    print("\nend-to-end benchmark: no JSON (see bench_e2e_gpu.txt)")
else:
    print(f"\nend-to-end on {e2e['device']} (torch {e2e['torch']}, CUDA {e2e['cuda']}, "
          f"sentence-transformers {e2e.get('sentence_transformers')}): {e2e['texts']} texts, "
          f"median of {e2e['rounds']} rounds")
    for batch_size, entry in e2e.get("encode", {}).items():
        cells = ", ".join(
            f"{name} {entry[name]['sentences_per_s']:.0f}/s (prep {entry[name]['host_prep_s_per_batch'] * 1e3:.2f} ms/batch, "
            f"GPU busy {'-' if entry[name]['gpu_busy_share'] is None else format(entry[name]['gpu_busy_share'], '.0%')}, "
            f"{'identical' if entry[name]['identical_to_unpatched'] else 'max diff ' + format(entry[name]['max_abs_difference_to_unpatched'], '.1e')})"
            for name in ("unpatched", "patched", "overlapped"))
        print(f"  encode batch {batch_size}: {cells}; overlapped/unpatched "
              f"{entry['overlapped_speedup_vs_unpatched']:.2f}x")
    for batch_size, entry in e2e.get("loader", {}).items():
        print(f"  DataLoader eval loop batch {batch_size}: loop {entry['loop']['sentences_per_s']:.0f}/s, "
              f"prefetch {entry['prefetch']['sentences_per_s']:.0f}/s ({entry['prefetch_speedup']:.2f}x), "
              f"outputs {'identical' if entry['identical'] else 'DIFFER'}")
    for rows, figures in e2e.get("packer", {}).items():
        print(f"  {rows} rows, host us/call: Packer {figures['Packer'] * 1e6:.1f}, current "
              f"{figures['Packer stream=current'] * 1e6:.1f}, pad(pin)+to {figures['pad(pin)+to'] * 1e6:.1f}, "
              f"pad numpy {figures['pad numpy'] * 1e6:.1f}; Packer/pad+to {figures['Packer / pad(pin)+to']:.2f}")
    for name in e2e.get("errors", {}):
        print(f"  FAILED end-to-end section: {name}")

for log in ("tests_cuda.log", "tests_other.log"):
    text = read(log)
    final = [line for line in text.splitlines() if re.match(r"^=+ .*(passed|failed|error|skipped).* in ", line)]
    counts = {}
    for status in re.findall(r"^tests/\S*::.* (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b", text, re.M):
        counts[status] = counts.get(status, 0) + 1
    print(f"\n{log}: {final[-1].strip('= ') if final else 'no final line (killed?)'}; per-test lines: {counts}")
    for line in text.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            print("  " + line[:300])

try:
    report = json.loads(read("bench_gpu.json"))
except ValueError:
    report = None
if not report:
    print("\nbenchmark: no JSON (see bench_gpu.txt)")
else:
    print(f"\nbenchmark on {report['device']} (torch {report['torch']}, CUDA {report['cuda']}), "
          f"median of {report['rounds']} rounds, pipelined = {report['pipeline']} batches/sync")
    for name, entry in report["workloads"].items():
        timings = entry.get("timings")
        if not timings:
            print(f"  {name}: failed")
            continue
        base = timings.get("tokenizer.pad+to") or next(iter(timings.values()))
        cells = ", ".join(
            f"{path} {figures['pipelined_s'] * 1e6:.0f} us ({base['pipelined_s'] / figures['pipelined_s']:.1f}x)"
            for path, figures in timings.items()
        )
        print(f"  {name} [auto: ragged {entry.get('auto_ragged_batches')}]: {cells}")
        band = entry.get("bandwidth") or {}
        if band:
            print("    H2D GB/s: " + ", ".join(
                f"{key.replace(' GB/s', '')} {value:.1f}" for key, value in band.items() if "GB/s" in key))
    if report.get("overlap"):
        steps = report["overlap"]["seconds_per_step"]
        print(f"  overlap ({report['overlap']['step_s'] * 1e6:.0f} us model step): "
              + ", ".join(f"{key} {value * 1e6:.1f} us/step" for key, value in steps.items()))
    if report.get("crossover"):
        cross = report["crossover"]
        model = cross["model"]
        print(f"  crossover measured (saved bytes where ragged is no slower): {cross['measured_crossover_saved_bytes']}")
        print(f"  crossover modelled: {model['crossover_saved_bytes'] / 1e3:.0f} kB (rebuild {model['rebuild_host_s'] * 1e6:.1f} us, "
              f"views {model['padded_views_host_s'] * 1e6:.1f} us, host {model['host_write_bytes_per_s'] / 1e9:.1f} GB/s, "
              f"H2D {model['pinned_h2d_bytes_per_s'] / 1e9:.1f} GB/s; in code {model['auto_threshold_in_code'] / 1e3:.0f} kB)")
        for point in cross["points"]:
            t = point["timings"]
            print(f"    long row {point['long_row']}: saved {point['saved_bytes'] / 1e3:.0f} kB, pipelined padded "
                  f"{t['padded']['pipelined_s'] * 1e6:.0f} us / ragged {t['ragged']['pipelined_s'] * 1e6:.0f} us, latency "
                  f"{t['padded']['latency_s'] * 1e6:.0f} / {t['ragged']['latency_s'] * 1e6:.0f} us")
    if report.get("pad_pinning"):
        print("  fastpad.pad host time pinned/pageable: " + ", ".join(
            f"{name} {f['pinned'] * 1e6:.0f}/{f['pageable'] * 1e6:.0f} us" for name, f in report["pad_pinning"].items()))
    for name in report.get("errors", {}):
        print(f"  FAILED benchmark section: {name}")
EOF
then
  failed=1
fi

echo "gpu_check: $([[ $failed -eq 0 ]] && echo ok || echo 'FAILED (see summary.txt)') in $((SECONDS - start))s; results in $out"
cat "$out/summary.txt"
exit $failed
