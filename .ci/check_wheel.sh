#!/usr/bin/env bash
# Usage: .ci/check_wheel.sh WHEEL
# `auditwheel show` must report the wheel consistent with a manylinux tag: the extension links
# nothing beyond glibc/libstdc++/libgcc (no libtorch, no libpython), so a manylinux build (cibuildwheel)
# can ship it as is.
set -euo pipefail
wheel="$1"
report=$(auditwheel show "$wheel" 2>&1) || { echo "$report"; echo "auditwheel show failed"; exit 1; }
echo "$report"
tag=$(tr '\n' ' ' <<<"$report" | sed -n 's/.*consistent with the *following platform tag: *"\([^"]*\)".*/\1/p')
case "$tag" in
  manylinux_*|manylinux1_*|manylinux2010_*|manylinux2014_*) echo "OK: consistent with $tag" ;;
  *) echo "FAIL: auditwheel reports tag '${tag:-none}', expected a manylinux tag"; exit 1 ;;
esac
# The extension must not depend on libtorch or libpython (one wheel for every torch version).
python - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
bundled = [name for name in names if ".libs/" in name]
assert not bundled, f"FAIL: the wheel bundles shared libraries: {bundled}"
assert any(name.startswith("fastpad/_core") for name in names), "FAIL: no fastpad/_core in the wheel"
assert "fastpad/py.typed" in names and "fastpad/_core.pyi" in names, "FAIL: typing files missing"
print("OK: wheel contents", len(names), "files")
PY
