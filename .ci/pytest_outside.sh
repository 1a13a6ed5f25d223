#!/usr/bin/env bash
# Usage: .ci/pytest_outside.sh REPO [-- PYTEST_ARGS...]
# Runs the README's test command, `python -m pytest tests`, from a scratch directory holding a copy
# of tests/ and pyproject.toml (the pytest config), so `import fastpad` can only find the installed
# package; examples/ goes along (tests/test_ray_cluster.py serves examples/serve_embeddings.py).
# Fails if fastpad comes from the source tree, and on pytest's exit 5 (no tests ran).
set -euo pipefail
repo="$1"; shift
[[ "${1:-}" == "--" ]] && shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$repo/tests" "$repo/examples" "$repo/pyproject.toml" "$work/"
cd "$work"
location=$(python -c 'import fastpad, os; print(os.path.dirname(fastpad.__file__))')
echo "fastpad imported from $location"
case "$location" in
  "$repo"/python/*) echo "FAIL: fastpad was imported from the source tree"; exit 1 ;;
esac
if [[ -n "${FASTPAD_EXPECT_LOCATION:-}" && "$location" != "$FASTPAD_EXPECT_LOCATION"* ]]; then
  echo "FAIL: expected fastpad under $FASTPAD_EXPECT_LOCATION"; exit 1
fi
rc=0
python -m pytest "$@" tests || rc=$?
if [[ $rc -eq 5 ]]; then echo "FAIL: pytest collected no tests"; exit 1; fi
exit $rc
