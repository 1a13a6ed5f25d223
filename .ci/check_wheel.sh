#!/usr/bin/env bash
# Usage: .ci/check_wheel.sh WHEEL
# `auditwheel show` must report the wheel consistent with manylinux_2_28 or an older tag (what
# PyTorch's own wheels need; the release build targets 2.17), and the wheel's own tag must be one
# of those: the extension links nothing beyond glibc (libc++ is static; no libtorch, no libpython,
# no libstdc++) and exports only PyInit__core. Works for a wheel of any architecture.
set -euo pipefail
wheel="$1"
report=$(auditwheel show "$wheel" 2>&1) || { echo "$report"; echo "auditwheel show failed"; exit 1; }
echo "$report"
tag=$(tr '\n' ' ' <<<"$report" | sed -n 's/.*consistent with the *following platform tag: *"\([^"]*\)".*/\1/p')
case "$tag" in
  manylinux_2_*) minor=$(cut -d_ -f3 <<<"$tag") ;;
  manylinux2014_*) minor=17 ;;
  manylinux2010_*) minor=12 ;;
  manylinux1_*) minor=5 ;;
  *) minor=999 ;;
esac
if [[ "$minor" -gt 28 ]]; then
  echo "FAIL: auditwheel reports tag '${tag:-none}', expected manylinux_2_28 or older"; exit 1
fi
echo "OK: consistent with $tag"
case "$(basename "$wheel")" in
  *-manylinux_2_*|*-manylinux2014_*|*-manylinux2010_*|*-manylinux1_*) ;;
  *) echo "FAIL: $(basename "$wheel") carries no manylinux tag (not repaired?)"; exit 1 ;;
esac
python - "$wheel" <<'PY'
import re, subprocess, sys, tempfile, zipfile
from pathlib import Path

wheel = sys.argv[1]
archive = zipfile.ZipFile(wheel)
names = archive.namelist()
bundled = [name for name in names if ".libs/" in name]
assert not bundled, f"FAIL: the wheel bundles shared libraries: {bundled}"
assert "fastpad/py.typed" in names and "fastpad/_core.pyi" in names, "FAIL: typing files missing"
modules = [name for name in names if re.fullmatch(r"fastpad/_core\..*\.so", name)]
assert len(modules) == 1, f"FAIL: expected one fastpad/_core*.so, got {modules}"
# The wheel's platform tag names the module's architecture.
with tempfile.TemporaryDirectory() as tmp:
    module = Path(archive.extract(modules[0], tmp))
    header = subprocess.run(["readelf", "-h", module], capture_output=True, text=True, check=True)
    machine = re.search(r"Machine:\s+(.*)", header.stdout)[1]
    expected = {"x86_64": "X86-64", "aarch64": "AArch64"}
    arch = next(arch for arch in expected if wheel.endswith(f"_{arch}.whl"))
    assert expected[arch] in machine, f"FAIL: a {machine} module in an {arch} wheel"
    dynamic = subprocess.run(["readelf", "-dW", module], capture_output=True, text=True, check=True)
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.*?)\]", dynamic.stdout)
    allowed = re.compile(r"(libc|libm|libpthread|libdl|librt|ld-linux[-\w.]*)\.so(\.\d+)?")
    extra = [lib for lib in needed if not allowed.fullmatch(lib)]
    assert not extra, f"FAIL: the module needs {extra} (only glibc is allowed)"
    symbols = subprocess.run(["readelf", "--dyn-syms", "-W", module], capture_output=True,
                             text=True, check=True)
    exported = sorted({line.split()[7].split("@")[0] for line in symbols.stdout.splitlines()
                       if len(line.split()) >= 8 and line.split()[6] != "UND"
                       and line.split()[4] in ("GLOBAL", "WEAK") and line.split()[7] != ""})
    assert exported == ["PyInit__core"], f"FAIL: the module exports {exported[:10]}..."
print(f"OK: {len(names)} files, {arch}, needs {needed}, exports only PyInit__core")
PY
