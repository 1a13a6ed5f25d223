"""Which transformers releases `fastpad.patch_transformers()` patches, and is exact on: measured.

For each transformers release asked for (by default the last patch release of every minor from
4.40 to 5.24), this script

1. builds an environment of its own under ``.transformers-envs/<version>`` (git-ignored, kept
   between runs): a ``venv --without-pip`` whose site-packages sees this interpreter's
   site-packages (torch, numpy, fastpad, pytest, hypothesis) through a ``.pth`` file, and into
   which pip installs only that transformers and the tokenizers / huggingface_hub / ... it pins
   (what shadows the base's copies: pip leaves those alone, being outside the environment);
2. runs tests/test_patch_transformers.py and tests/test_patch_seq2seq.py there with the
   fingerprint gate off
   (benchmarks/transformers_matrix_plugin.py): every entry point fastpad can wrap is patched,
   and every call is compared with the unpatched call on deep copies of its inputs (result
   types, keys, dtypes, shapes, values, warnings, logs, exceptions), collators included: their
   unpatched result is transformers' own behaviour. An entry point is *exact* on a release when
   every test exercising it passed there;
3. merges the results into benchmarks/transformers_matrix.json, and from all results writes the
   validated forms the package ships (python/fastpad/_patch_transformers/validated.json: per
   entry point each distinct combination of its functions' fingerprints found exact, with its
   releases; a form also seen on a release where the entry point was not exact is refused), the
   table docs/transformers-support.md and the README's table (between its markers).

A new transformers release is supported by running this script on it::

    python benchmarks/transformers_matrix.py 5.25.0

``--check VERSION ...`` runs the same tests with the gate on, as a user gets it (CI): it fails
when a test fails or when what is patched differs from the recorded results. ``--report``
rewrites the files from the recorded results without running anything.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from fastpad._patch_transformers.common import ENTRY_POINTS

REPO = Path(__file__).resolve().parent.parent
ENVS = REPO / ".transformers-envs"
RESULTS = REPO / "benchmarks" / "transformers_matrix.json"
VALIDATED = REPO / "python" / "fastpad" / "_patch_transformers" / "validated.json"
DOC = REPO / "docs" / "transformers-support.md"
README = REPO / "README.md"
GUIDE = REPO / "docs" / "guide-transformers.md"
TESTS = ("tests/test_patch_transformers.py", "tests/test_patch_seq2seq.py")

# The last patch release of every minor line: 4.40 .. 4.57 (the 4.x line ends there), 5.0 .. 5.24.
RELEASES = [
    *(
        f"4.{minor}.{patch}"
        for minor, patch in zip(
            range(40, 58), [2, 2, 4, 4, 2, 2, 3, 1, 3, 0, 3, 3, 4, 3, 1, 4, 2, 6], strict=True
        )
    ),
    *(
        f"5.{minor}.{patch}"
        for minor, patch in zip(
            range(25),
            [0, 0, 0, 0, 0, 4, 2, 0, 1, 0, 4, 0, 1, 1, 1, 1, 1, 0, 0, 0, 2, 1, 2, 0, 0],
            strict=True,
        )
    ),
]
# The column of each entry point; any other is named as `stats()` names it.
LABELS = {"tokenizer.__call__": "tokenizer call"}
# Why an entry point is left unpatched on a release, as measured (the failing tests say the
# same in detail, in benchmarks/transformers_matrix.json): the first pattern found in the
# failures' text gives the note.
EXPLANATIONS: list[tuple[str, str, str]] = [
    (
        "DataCollatorWithFlattening",
        "Using `DataCollatorWithFlattening` will flatten",
        "the older collator (through default_data_collator, warns when built): not reproduced",
    ),
    (
        "DataCollatorWithFlattening",
        "has no attribute 'DataCollatorWithFlattening'",
        "no DataCollatorWithFlattening in this release",
    ),
    (
        "DataCollatorWithFlattening",
        "return_flash_attn_kwargs|return_seq_idx|position_ids_start",
        "an older collator (no return_flash_attn_kwargs / return_seq_idx / position_ids_start)",
    ),
    (
        "DataCollatorForSeq2Seq",
        "^no test ran",
        "another algorithm (labels padded in the caller's features, converted by tokenizer.pad, "
        "whose patch covers it): left to the original",
    ),
]


# --------------------------------------------------------------------------------------------
# Environments
# --------------------------------------------------------------------------------------------


def _base_site() -> str:
    return sysconfig.get_paths()["purelib"]


def build_env(version: str, envs: Path) -> Path:
    """The environment of `version` (built once: ``READY`` marks a finished one)."""
    env = envs / version
    if (env / "READY").exists():
        return env
    shutil.rmtree(env, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # addsitedir (not a bare path line) so that the base's own .pth files run too: fastpad's
    # editable install is one.
    Path(site, "_fastpad_matrix_base.pth").write_text(
        f"import site; site.addsitedir({_base_site()!r})\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--disable-pip-version-check",
            f"transformers=={version}",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    found = subprocess.run(
        [str(python), "-c", "import transformers; print(transformers.__version__)"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    ).stdout.strip()
    if found != version:
        raise RuntimeError(f"{env}: transformers {found} imported, {version} expected")
    (env / "READY").write_text(version + "\n")
    return env


# --------------------------------------------------------------------------------------------
# Running the tests in one environment
# --------------------------------------------------------------------------------------------


def run_tests(env: Path, gate: str, timeout: float) -> dict[str, Any]:
    """The patch tests (`TESTS`) in `env`; the plugin's JSON, plus the run's time."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch, "results.json")
        environ = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "FASTPAD_MATRIX_OUT": str(out),
            "FASTPAD_MATRIX_GATE": gate,
            "PYTHONPATH": os.pathsep.join(
                [str(REPO / "benchmarks"), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        start = time.perf_counter()
        try:
            completed = subprocess.run(
                [
                    str(env / "bin" / "python"),
                    "-m",
                    "pytest",
                    *TESTS,
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "-p",
                    "transformers_matrix_plugin",
                ],
                cwd=REPO,
                env=environ,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            tail = (completed.stdout + completed.stderr)[-3000:]
        except subprocess.TimeoutExpired:
            tail = f"timed out after {timeout:.0f} s"
        seconds = time.perf_counter() - start
        results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    results["seconds"] = round(seconds, 1)
    results["tail"] = tail if not results.get("tests") or results.get("exitstatus") else ""
    return results


def judge(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per entry point: exact (every test exercising it passed, and some ran), counts, and
    the first failure."""
    tests = results.get("tests", [])
    general = [test for test in tests if not test["entries"] and test["outcome"] == "failed"]
    verdicts: dict[str, dict[str, Any]] = {}
    for entry in ENTRY_POINTS:
        mine = [test for test in tests if entry in test["entries"]]
        failed = [test for test in mine if test["outcome"] == "failed"]
        passed = sum(test["outcome"] == "passed" and test["when"] == "call" for test in mine)
        reason = ""
        if failed:
            reason = f"{failed[0]['test']}: {failed[0]['message']}"
        elif general:
            reason = f"{general[0]['test']}: {general[0]['message']}"
        elif not passed:
            reason = "no test ran" + (f" ({results['tail'][-300:]})" if results.get("tail") else "")
        verdicts[entry] = {
            "exact": not reason,
            "passed": passed,
            "failed": len(failed),
            "failures": sorted({test["test"].split("[")[0] for test in failed}),
            "reason": reason,
        }
    return verdicts


def measure(version: str, envs: Path, timeout: float) -> dict[str, Any]:
    """Build `version`'s environment, run the tests with the gate off, judge each entry point."""
    start = time.perf_counter()
    env = build_env(version, envs)
    built = time.perf_counter() - start
    results = run_tests(env, "off", timeout)
    return {
        "versions": results.get("versions", {"transformers": version}),
        "family": results.get("family"),
        "fingerprints": results.get("fingerprints", {}),
        "entries": judge(results),
        "seconds": {"environment": round(built, 1), "tests": results["seconds"]},
        "tail": results.get("tail", ""),
    }


# --------------------------------------------------------------------------------------------
# The files written from the results
# --------------------------------------------------------------------------------------------


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def validated_forms(results: dict[str, Any]) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Per entry point, the distinct fingerprint combinations of the releases it was exact on;
    and the conflicts: a combination also seen on a release where it was not exact (refused)."""
    forms: dict[str, list[dict[str, Any]]] = {}
    conflicts: list[str] = []
    for entry in ENTRY_POINTS:
        good: dict[str, dict[str, Any]] = {}
        bad: dict[str, list[str]] = {}
        for version in sorted(results, key=_key):
            found = results[version]["fingerprints"].get(entry)
            if (
                not found
                or any(value is None for value in found.values())
                or entry not in results[version]["entries"]  # recorded before it existed
            ):
                continue
            key = json.dumps(found, sort_keys=True)
            if results[version]["entries"][entry]["exact"]:
                good.setdefault(key, {"releases": [], "fingerprints": found})["releases"].append(
                    version
                )
            else:
                bad.setdefault(key, []).append(version)
        for key in list(good):
            if key in bad:
                conflicts.append(
                    f"{entry}: one form, exact on {good[key]['releases']}, not on {bad[key]}"
                )
                del good[key]
        forms[entry] = list(good.values())
    return forms, conflicts


def write_validated(forms: dict[str, list[dict[str, Any]]]) -> None:
    data = {
        "about": "Written by benchmarks/transformers_matrix.py from benchmarks/"
        "transformers_matrix.json; do not edit. Per entry point of patch_transformers, each "
        "validated form: the fingerprints of the transformers functions its fast path "
        "reproduces, and the releases where the fast path was found exact with them.",
        "entry_points": forms,
    }
    VALIDATED.write_text(json.dumps(data, indent=1) + "\n")


def _patched(results: dict[str, Any], forms: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per release and entry point, whether the shipped forms patch it."""
    patched: dict[str, Any] = {}
    for version, result in results.items():
        patched[version] = {
            entry: any(
                form["fingerprints"] == result["fingerprints"].get(entry)
                for form in forms.get(entry, [])
            )
            for entry in ENTRY_POINTS
        }
    return patched


_UNMEASURED = {"exact": False, "passed": 0, "failed": 0, "failures": [], "reason": "not measured"}


def _note(entry: str, result: dict[str, Any]) -> str:
    verdict = result["entries"].get(entry, _UNMEASURED)
    found = result["fingerprints"].get(entry, {})
    if found and all(value == "absent" for value in found.values()):
        return "not in this release"
    text = verdict["reason"]
    for name, pattern, note in EXPLANATIONS:
        if name == entry and re.search(pattern, text):
            return note
    if verdict["failures"]:
        return "differs: " + ", ".join(f"`{name}`" for name in verdict["failures"])
    return text[:120]


def _cell(entry: str, result: dict[str, Any], patched: bool, counts: bool = False) -> str:
    verdict = result["entries"].get(entry, _UNMEASURED)
    tests = f" ({verdict['passed']} tests)" if counts and verdict.get("passed") else ""
    if patched:
        return "patched, exact" + tests
    if verdict["exact"]:
        return "exact, not patched (a form also seen where it differs)" + tests
    failed = f" ({verdict['failed']} of {verdict['failed'] + verdict['passed']} tests failed)"
    return "not patched: " + _note(entry, result) + (failed if counts and verdict["failed"] else "")


def _short(version: str) -> str:
    return ".".join(version.split(".")[:2])


def tables(results: dict[str, Any], forms: dict[str, list[dict[str, Any]]]) -> tuple[str, str]:
    """The per-release table (docs) and the compressed one (README): consecutive releases with
    the same cells share a row."""
    patched = _patched(results, forms)
    labels = " | ".join(LABELS.get(entry, entry) for entry in ENTRY_POINTS)
    rule = "|---" * len(ENTRY_POINTS)
    full = f"| transformers | tokenizers | {labels} |\n|---|---{rule}|\n"
    groups: list[tuple[list[str], tuple[str, ...]]] = []
    for version in sorted(results, key=_key):
        result = results[version]
        cells = tuple(_cell(entry, result, patched[version][entry]) for entry in ENTRY_POINTS)
        counted = [_cell(entry, result, patched[version][entry], True) for entry in ENTRY_POINTS]
        tokenizers = result["versions"].get("tokenizers") or "?"
        full += f"| {version} | {tokenizers} | " + " | ".join(counted) + " |\n"
        if groups and groups[-1][1] == cells and groups[-1][0][-1].split(".")[0] == version[0]:
            groups[-1][0].append(version)
        else:
            groups.append(([version], cells))
    compact = f"| transformers | {labels} |\n|---{rule}|\n"
    for versions, cells in reversed(groups):
        span = _short(versions[0])
        if len(versions) > 1:
            span = f"{_short(versions[0])} .. {_short(versions[-1])} ({len(versions)} minors)"
        compact += f"| {span} | " + " | ".join(cells) + " |\n"
    return full, compact


def write_docs(results: dict[str, Any], forms: dict[str, list[dict[str, Any]]]) -> str:
    full, compact = tables(results, forms)
    counts = {entry: len(forms[entry]) for entry in ENTRY_POINTS}
    seconds = [result["seconds"]["tests"] for result in results.values() if result.get("seconds")]
    intro = (
        "Written by `python benchmarks/transformers_matrix.py` (do not edit): every release "
        "below was installed into an environment of its own (with the tokenizers it resolves "
        "to) and `tests/test_patch_transformers.py` and `tests/test_patch_seq2seq.py` ran there "
        "with the fingerprint gate off, "
        "each call compared with transformers' unpatched call on deep copies of its inputs "
        "(result types, keys, dtypes, shapes, values, warnings, logs, exceptions; the "
        "collators against transformers' own collators). An entry point is *exact* on a "
        "release when every test exercising it passed there, and *patched* when the "
        "fingerprints of the transformers functions it reproduces are one of the forms found "
        "exact (`python/fastpad/_patch_transformers/validated.json`), on these releases and "
        "any other (a newer release is patched where its functions match a validated form); "
        "where they match none it is left unpatched with one `fastpad.PatchWarning`.\n\n"
        f"Releases: {len(results)}; distinct validated forms per entry point: "
        + ", ".join(f"{entry} {count}" for entry, count in counts.items())
        + (f"; test time per release {min(seconds):.0f}-{max(seconds):.0f} s" if seconds else "")
        + "."
    )
    DOC.write_text(
        "# transformers releases supported by `fastpad.patch_transformers()`\n\n"
        + textwrap.fill(intro, 100, break_on_hyphens=False, break_long_words=False)
        + "\n\n## By release line\n\n"
        + compact
        + "\n## Every release\n\n"
        + full
    )
    return compact


def write_readme(compact: str) -> bool:
    """The compact table between the markers of the README and of the transformers guide."""
    start, end = "<!-- transformers-support:start -->", "<!-- transformers-support:end -->"
    written = False
    for page in (README, GUIDE):
        text = page.read_text()
        if start not in text or end not in text:
            continue
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        page.write_text(f"{head}{start}\n{compact}{end}{tail}")
        written = True
    return written


def write_all(results: dict[str, Any]) -> str:
    forms, conflicts = validated_forms(results)
    for conflict in conflicts:
        print("conflict (form refused):", conflict)
    write_validated(forms)
    compact = write_docs(results, forms)
    write_readme(compact)
    return compact


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _load() -> dict[str, Any]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def _save(results: dict[str, Any]) -> None:
    ordered = {version: results[version] for version in sorted(results, key=_key)}
    RESULTS.write_text(json.dumps(ordered, indent=1) + "\n")


def check(versions: list[str], envs: Path, timeout: float) -> int:
    """The tests with the gate on, as users get it: all pass, and what is patched is what the
    recorded results say."""
    recorded = _load()
    forms, _ = validated_forms(recorded)
    expected = _patched(recorded, forms)
    failures = 0
    for version in versions:
        start = time.perf_counter()
        env = build_env(version, envs)
        results = run_tests(env, "on", timeout)
        failed = [test for test in results.get("tests", []) if test["outcome"] == "failed"]
        passed = sum(test["outcome"] == "passed" for test in results.get("tests", []))
        status = results.get("patched", {})
        problems = [f"{test['test']}: {test['message']}" for test in failed]
        if not results.get("tests"):
            problems.append("no test ran: " + results.get("tail", "")[-500:])
        if version in expected and status != expected[version]:
            problems.append(f"patched {status}, recorded {expected[version]}")
        elif version not in expected:
            problems.append("not in benchmarks/transformers_matrix.json: run the matrix on it")
        patched = [entry for entry, value in status.items() if value is True]
        print(
            f"{version}: {passed} passed, {len(failed)} failed, patched {patched} "
            f"({time.perf_counter() - start:.0f} s)"
        )
        for problem in problems:
            print("   ", problem)
        failures += bool(problems)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("versions", nargs="*", help="transformers versions (default: all 43)")
    parser.add_argument("--check", action="store_true", help="gate on; compare with records")
    parser.add_argument("--report", action="store_true", help="rewrite files from the records")
    parser.add_argument("--jobs", type=int, default=1, help="releases measured at once")
    parser.add_argument("--envs", type=Path, default=ENVS, help="environments folder")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per test run")
    args = parser.parse_args(argv)
    versions = args.versions or sorted(RELEASES, key=_key, reverse=True)  # newest first
    args.envs.mkdir(parents=True, exist_ok=True)
    if args.check:
        return check(versions, args.envs, args.timeout)
    results = _load()
    if not args.report:
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {
                pool.submit(measure, version, args.envs, args.timeout): version
                for version in versions
            }
            for future in concurrent.futures.as_completed(futures):
                version = futures[future]
                try:
                    result = future.result()
                except Exception as error:
                    print(f"{version}: {error!r}", flush=True)
                    continue
                results[version] = result
                _save(results)
                verdicts = ", ".join(
                    f"{entry}={'exact' if verdict['exact'] else 'differs'}"
                    for entry, verdict in result["entries"].items()
                )
                print(
                    f"{version} ({result['seconds']['environment']:.0f} s env, "
                    f"{result['seconds']['tests']:.0f} s tests): {verdicts}",
                    flush=True,
                )
        print(f"measured {len(versions)} releases in {time.perf_counter() - start:.0f} s")
    print(write_all(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
