#!/usr/bin/env bash
# Usage: .ci/fuzz.sh [smoke|local] [extra atheris/libFuzzer flags...]
# Runs the atheris harnesses in fuzz/ against the importable fastpad (the installed wheel in CI,
# the sanitized build under .ci/sanitize.sh).
#   smoke: a fixed seed and a fixed number of runs (CI; FUZZ_RUNS, default 100000 per harness, about
#          10-40 s each), plus 1000 inputs of each without atheris (`--random`): deterministic, so
#          CI does not turn red on a finding a longer or faster run happened to reach.
#   local: minutes each (FUZZ_SECONDS, default 300), corpus kept in fuzz/corpus/*, crashers
#          written to fuzz/crashes/ (turn each into a test in tests/test_fuzz_differential.py).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
mode="${1:-smoke}"
shift || true
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
case "$mode" in
  smoke) budget=(-runs="${FUZZ_RUNS:-100000}" -seed=1); what="${FUZZ_RUNS:-100000} runs" ;;
  local) budget=(-max_total_time="${FUZZ_SECONDS:-300}"); what="${FUZZ_SECONDS:-300}s" ;;
  *) echo "usage: $0 [smoke|local]"; exit 2 ;;
esac
mkdir -p crashes corpus/core corpus/pad
for harness in fuzz_core fuzz_pad; do
  echo "-- $harness: 1000 deterministic random inputs"
  python "$harness.py" --random 1000
  if python -c 'import atheris' 2>/dev/null; then
    corpus="corpus/${harness#fuzz_}"
    echo "-- $harness: atheris, $what"
    # -rss_limit_mb: the harnesses allocate little; a runaway allocation is a finding too.
    python "$harness.py" "${budget[@]}" -rss_limit_mb=4096 \
      -timeout=60 -artifact_prefix=crashes/ -print_final_stats=1 "$@" "$corpus"
  else
    echo "-- atheris is not installed: $harness ran without coverage guidance only"
  fi
done
