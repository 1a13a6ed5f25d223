"""The plain C++ core (csrc/*.cpp) built and tested without Python: tests/cpp/test_core.cpp.

The core is compiled with no Python include path, so a Python header in it fails this test; the
thread pool (csrc/parallel.hpp) and the flatten copy (csrc/plan.hpp) are checked there directly.
Needs the source tree and a C++17 compiler: skipped where the tests run against an installed
wheel from a copy of tests/ (.ci/pytest_outside.sh), which has no csrc/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
TEST_SOURCE = Path(__file__).resolve().parent / "cpp" / "test_core.cpp"


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")


@pytest.mark.skipif(not (CSRC / "parallel.hpp").is_file(), reason="needs the source tree (csrc/)")
@pytest.mark.skipif(_compiler() is None, reason="needs a C++ compiler")
def test_core_builds_and_passes_without_python(tmp_path: Path) -> None:
    compiler = _compiler()
    assert compiler is not None
    core_sources = sorted(str(path) for path in CSRC.glob("*.cpp") if path.name != "bindings.cpp")
    executable = tmp_path / "test_core"
    # A sanitized pytest run (.ci/sanitize.sh) preloads ASan; neither the compiler nor the plain
    # test binary should inherit it.
    env = {key: value for key, value in os.environ.items() if key != "LD_PRELOAD"}
    flags = ["-std=c++17", "-O1", "-Wall", "-Wextra", "-pthread", f"-I{CSRC}"]
    build = subprocess.run(
        [compiler, *flags, str(TEST_SOURCE), *core_sources, "-o", str(executable)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    run = subprocess.run(
        [str(executable)], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().endswith("core tests passed"), run.stdout
