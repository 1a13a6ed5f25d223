#!/usr/bin/env bash
# Usage: .ci/test_numpy_only.sh REPO DIST [SKIP_TAG]
# For every wheel in DIST built for this machine's architecture (except the cpXY tag SKIP_TAG,
# which .ci/run tests with torch), finds that CPython (pyenv's newest 3.X, else python3.X on
# PATH), installs the wheel into a fresh virtual environment with numpy (its one dependency) and
# the test runners only (pytest, hypothesis), and runs the README's test command from outside the
# source tree: `import fastpad` and the numpy path on each Python; tests that need torch,
# transformers or pyarrow skip (none of them is installed). Fails on pytest's "no tests ran" and
# on a wheel whose Python is missing here.
set -euo pipefail
repo=$(cd "$1" && pwd)
dist=$(cd "$2" && pwd)
skip="${3:-}"
arch=$(uname -m)
quiet_pip() { "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2); }
found=0 tested=0
for wheel in "$dist"/fastpad-*-cp3*-*"$arch".whl; do
  [[ -f "$wheel" ]] || continue
  found=$((found + 1))
  tag=$(basename "$wheel" | cut -d- -f3)  # cp312
  [[ "$tag" == "$skip" ]] && continue
  minor="3.${tag#cp3}"
  python=""
  if command -v pyenv >/dev/null; then
    version=$(pyenv versions --bare | grep -E "^${minor//./\\.}\.[0-9]+$" | sort -V | tail -1 || true)
    [[ -n "$version" ]] && python="$(pyenv prefix "$version")/bin/python"
  fi
  [[ -n "$python" ]] || python=$(command -v "python$minor" || true)
  [[ -n "$python" ]] || { echo "FAIL: no Python $minor here to test $(basename "$wheel")"; exit 1; }
  echo "-- $(basename "$wheel") on $("$python" --version)"
  venv=$(mktemp -d "${TMPDIR:-/tmp}/fastpad-$tag.XXXXXX")
  "$python" -m venv "$venv"
  quiet_pip "$venv/bin/python" -m pip install -q "$wheel" "pytest>=7" "hypothesis>=6.80"
  if "$venv/bin/python" -c 'import torch' 2>/dev/null; then
    echo "FAIL: torch is importable in the numpy-only environment"; exit 1
  fi
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  PATH="$venv/bin:$PATH" FASTPAD_EXPECT_LOCATION="$site" \
    bash "$repo/.ci/pytest_outside.sh" "$repo" -- -p no:cacheprovider -q
  rm -rf "$venv"
  tested=$((tested + 1))
done
[[ $found -gt 0 ]] || { echo "FAIL: no wheel for $arch in $dist"; exit 1; }
echo "OK: $tested wheels passed the numpy-only tests (of $found for $arch; $skip is tested with torch)"
