"""One GPU check of carabm: install, GPU tests, compute-sanitizer, benchmarks, kernel timings, one JSON summary.

Usage: scripts/gpu_check.sh [--out DIR] [--budget SECONDS] [--only PART]... [--skip PART]...
                            [--timeout PART=SECONDS]... [--no-gpu] [--overwrite]

Meant to be run once on a GPU machine (H100/H200, CUDA 13, CuPy, no network), from a
checkout, and to fit in 9 minutes (``--budget``, default 520 s). The parts run one after
another, each in its own process with its own timeout (its process group is killed when
it runs over), and a part that fails or times out does not stop the others:

  install            pip install --no-deps --no-build-isolation -e .
  pytest_gpu         python -m pytest -m gpu (JUnit XML kept, for the host-sync tests)
  sanitizer_memcheck, sanitizer_racecheck, sanitizer_synccheck
                     compute-sanitizer --tool ... python scripts/gpu_kernels.py --size small
                     (every kernel launched once at a small size through carabm's loader)
  kernel_timings     scripts/gpu_kernels.py --size large --timings (CUDA events per kernel)
  bench_fields       scripts/bench_fields.py --size large --backend cupy
  bench_agents       scripts/bench_agents.py --size medium --backend cupy
  bench_step         scripts/bench_step.py --size large --backend cupy --no-reference
  bench_batch        scripts/bench_batch.py --size medium --backend cupy (what a member axis can gain)

Everything goes into the output folder (``--out``, default ``runs/gpu_check_<UTC time>``):
one log per part and ``summary.json``: the GPU found, each part (status passed / failed /
timeout / skipped, with the reason, seconds, command and log), and each target of
docs/gpu.md with its measured value and whether it was met (``null``: not measured, and
why). Without a usable GPU (or with ``--no-gpu``) every GPU part is "skipped: no GPU".
Exit status: 0 when every part passed and every target was met, 1 otherwise, 2 for bad
arguments or an output folder that is not empty (``--overwrite`` to write into it anyway).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
DEFAULT_BUDGET_S = 520.0
#: seconds kept back from the budget for writing the summary
RESERVE_S = 5.0
#: a part is not started with less than this many seconds left
MIN_PART_S = 10.0

#: targets of docs/gpu.md
LOD_ROOFLINE_FRACTION = 0.8
LOD_H100_MS = 1.3
HOST_SYNC_TESTS = ("test_engine_layers_never_wait_for_the_gpu", "test_a_whole_model_step_waits_only_at_documented_reads")


@dataclass(frozen=True)
class Part:
    """One step of the check: how to run it, its default timeout, whether it needs a GPU."""

    name: str
    timeout_s: float
    needs_gpu: bool
    description: str
    command: Callable[[Path, str], list[str] | None]  # (output folder, python) -> argv, or None: skipped (see reason)


def find_sanitizer() -> str | None:
    """``compute-sanitizer`` on PATH, else under ``$CUDA_HOME``/``$CUDA_PATH``/``/usr/local/cuda``."""
    found = shutil.which("compute-sanitizer")
    if found:
        return found
    for base in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if base and (Path(base) / "bin" / "compute-sanitizer").is_file():
            return str(Path(base) / "bin" / "compute-sanitizer")
    return None


def _sanitizer(tool: str) -> Callable[[Path, str], list[str] | None]:
    def command(out: Path, python: str) -> list[str] | None:
        sanitizer = find_sanitizer()
        if sanitizer is None:
            return None
        return [sanitizer, "--tool", tool, "--error-exitcode", "1", python, str(SCRIPTS / "gpu_kernels.py"), "--size", "small"]

    return command


PARTS: tuple[Part, ...] = (
    Part("install", 30, False, "pip install --no-deps --no-build-isolation -e .",
         lambda out, py: [py, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-e", str(ROOT)]),
    Part("pytest_gpu", 100, True, "the GPU tests (pytest -m gpu)",
         lambda out, py: [py, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", f"--junitxml={out / 'pytest_gpu.xml'}",
                          str(ROOT / "tests")]),
    Part("sanitizer_memcheck", 30, True, "compute-sanitizer memcheck, every kernel at a small size", _sanitizer("memcheck")),
    Part("sanitizer_racecheck", 30, True, "compute-sanitizer racecheck (shared memory), every kernel", _sanitizer("racecheck")),
    Part("sanitizer_synccheck", 20, True, "compute-sanitizer synccheck (barriers), every kernel", _sanitizer("synccheck")),
    Part("kernel_timings", 30, True, "per-kernel GPU time by CUDA events, 256^3 x 8 fields and 1e6 agents",
         lambda out, py: [py, str(SCRIPTS / "gpu_kernels.py"), "--size", "large", "--repeats", "2", "--timings",
                          str(out / "kernel_timings.json")]),
    Part("bench_fields", 50, True, "bench_fields.py --size large --backend cupy",
         lambda out, py: [py, str(SCRIPTS / "bench_fields.py"), "--size", "large", "--backend", "cupy"]),
    Part("bench_agents", 50, True, "bench_agents.py --size medium --backend cupy",
         lambda out, py: [py, str(SCRIPTS / "bench_agents.py"), "--size", "medium", "--backend", "cupy"]),
    Part("bench_step", 140, True, "bench_step.py --size large --backend cupy --no-reference",
         lambda out, py: [py, str(SCRIPTS / "bench_step.py"), "--size", "large", "--backend", "cupy", "--no-reference"]),
    Part("bench_batch", 40, True, "bench_batch.py --size medium --backend cupy",
         lambda out, py: [py, str(SCRIPTS / "bench_batch.py"), "--size", "medium", "--backend", "cupy"]),
)  # fmt: skip
PART_NAMES = tuple(p.name for p in PARTS)
#: files a part writes besides its log (removed before it runs: only an --overwrite folder has old ones)
OUTPUTS = {"pytest_gpu": "pytest_gpu.xml", "kernel_timings": "kernel_timings.json"}


class Parser(argparse.ArgumentParser):
    """Errors as one line (``gpu_check: error: ...``) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"gpu_check: error: {message}\n")


def parse_timeouts(values: list[str]) -> dict[str, float]:
    """``PART=SECONDS`` items -> {part: seconds}; ValueError naming what is wrong and what is allowed."""
    result = {}
    for item in values:
        name, _, seconds = item.partition("=")
        if name not in PART_NAMES:
            raise ValueError(f"--timeout {item!r}: unknown part {name!r} (parts: {', '.join(PART_NAMES)})")
        try:
            value = float(seconds)
        except ValueError:
            value = float("nan")
        if not value > 0 or value == float("inf"):
            raise ValueError(f"--timeout {item!r}: seconds must be a positive number, as in {name}=120")
        result[name] = value
    return result


def probe_gpu(python: str) -> dict[str, Any]:
    """Whether CuPy can use a GPU here, asked in a child process (as the parts will run)."""
    code = (
        "import json; from carabm.engine.backend import cupy_status as s; st = s(); "
        "print(json.dumps({'usable': st.usable, 'reason': st.reason, 'device': st.gpu_name, 'cupy': st.version, "
        "'cuda_runtime': st.cuda_runtime}))"
    )
    try:
        result = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, env=child_env())
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError, OSError) as exc:
        return {"usable": False, "reason": f"probe failed ({type(exc).__name__})"}


def nvidia_smi() -> str | None:
    """``nvidia-smi``'s view of the GPUs (name, driver, memory, clocks), or None where it is absent or fails."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    query = "name,driver_version,memory.total,clocks.max.sm,clocks.max.memory,power.limit"
    try:
        result = subprocess.run([smi, f"--query-gpu={query}", "--format=csv"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


def child_env() -> dict[str, str]:
    """The environment of the parts: this checkout first on PYTHONPATH (in case the install part failed)."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), path])), "PYTHONUNBUFFERED": "1"}


def run_command(argv: list[str], log: Path, timeout_s: float) -> tuple[str, int | None, float]:
    """Run ``argv`` (stdout and stderr to ``log``) in its own process group; (status, returncode, seconds).

    Status ``timeout`` when it ran past ``timeout_s``: the whole group is sent SIGTERM, then
    SIGKILL 5 s later, so children (pytest workers, sanitizer targets) stop too.
    """
    start = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        try:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=child_env(), start_new_session=True)
        except OSError as exc:
            out.write(f"gpu_check: cannot start: {exc}\n")
            return "failed", None, time.monotonic() - start
        try:
            returncode = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            out.write(f"\ngpu_check: timed out after {timeout_s:g} s; process group killed\n")
            return "timeout", None, time.monotonic() - start
    return ("passed" if returncode == 0 else "failed"), returncode, time.monotonic() - start


def last_json(log: Path) -> dict[str, Any] | None:
    """The last line of a log that parses as a JSON object (the benchmarks' contract line)."""
    if not log.is_file():
        return None
    for line in reversed(log.read_text(encoding="utf-8", errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def _target(target: str, value: Any = None, unit: str = "", limit: Any = None, met: bool | None = None, note: str = "") -> dict:
    return {"target": target, "value": value, "unit": unit, "limit": limit, "met": met, "note": note}


def _not_measured(part: dict[str, Any] | None) -> str:
    if part is None:
        return "not measured: part not run"
    return f"not measured: {part['part']} {part['status']}" + (f" ({part['reason']})" if part.get("reason") else "")


def evaluate_targets(parts: dict[str, dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """Each target of docs/gpu.md against what the parts measured (``met`` None: not measured).

    Only the files of parts that ran this time are read (an ``--overwrite`` folder may hold
    older ones).
    """

    def ran(name: str) -> bool:
        return parts.get(name, {}).get("status") in ("passed", "failed", "timeout")

    targets = []
    # correctness: the GPU tests, the host-sync tests among them, the sanitizers
    pytest_part = parts.get("pytest_gpu")
    if pytest_part and pytest_part["status"] in ("passed", "failed"):
        targets.append(_target("pytest -m gpu passes", pytest_part["returncode"], "exit status", 0, pytest_part["status"] == "passed"))
    else:
        targets.append(_target("pytest -m gpu passes", note=_not_measured(pytest_part)))
    outcomes = junit_outcomes(out / "pytest_gpu.xml") if ran("pytest_gpu") else {}
    sync = {name: outcomes.get(name) for name in HOST_SYNC_TESTS}
    if all(v in ("passed", "failed") for v in sync.values()):
        targets.append(_target("no host synchronisation inside a step except the documented reads", sync, "test outcomes",
                               "passed", all(v == "passed" for v in sync.values())))  # fmt: skip
    else:
        targets.append(_target("no host synchronisation inside a step except the documented reads", sync or None,
                               note="not measured: " + ", ".join(f"{k} {v or 'not run'}" for k, v in sync.items())))  # fmt: skip
    for tool in ("memcheck", "racecheck", "synccheck"):
        part = parts.get(f"sanitizer_{tool}")
        name = f"compute-sanitizer {tool}: no errors, every kernel launched"
        if part and part["status"] in ("passed", "failed"):
            errors = sanitizer_errors(out / f"{part['part']}.log")
            targets.append(_target(name, errors, "errors", 0, part["status"] == "passed" and errors == 0))
        else:
            targets.append(_target(name, note=_not_measured(part)))
    # speed: the field step against the 24-byte roofline at copy bandwidth
    fields = last_json(out / "bench_fields.log") if ran("bench_fields") else None
    roofline = [c for c in (fields or {}).get("cases", []) if c["case"].endswith("ms/step vs 24 B roofline") and "+sources" not in c["case"]]
    name = f"LOD step 256^3x8 at >= {LOD_ROOFLINE_FRACTION:.0%} of copy bandwidth at 24 B/voxel*field (H100: <= {LOD_H100_MS} ms)"
    if roofline:
        case = roofline[0]
        limit = case["reference_value"] / LOD_ROOFLINE_FRACTION
        targets.append(_target(name, case["value"], "ms", round(limit, 4), case["value"] <= limit, case["reference"]))
    else:
        targets.append(_target(name, note=_not_measured(parts.get("bench_fields"))))
    # agents: move + exclusion + contacts per step, sorted by voxel
    agents = last_json(out / "bench_agents.log") if ran("bench_agents") else None
    agent_cases = [c for c in (agents or {}).get("cases", []) if "target_ms_per_step" in c]
    for n, limit in ((1_000_000, 0.3), (10_000_000, 1.0)):
        name = f"agents n={n:.0e}: move + exclusion + contacts <= {limit:g} ms/step"
        found = [c for c in agent_cases if f"n={n:.0e} " in c["case"]]
        if found:
            ms = found[0]["ms_per_step"]
            targets.append(_target(name, ms, "ms", found[0]["target_ms_per_step"], ms <= found[0]["target_ms_per_step"], found[0]["case"]))
        else:
            targets.append(_target(name, note=_not_measured(parts.get("bench_agents"))))
    # the whole 14-day default run
    step = last_json(out / "bench_step.log") if ran("bench_step") else None
    runs = [c for c in (step or {}).get("cases", []) if c["case"] == "default 14-day run wall time"]
    name = "14-day default run < 120 s"
    if runs:
        limit = runs[0].get("target_s", 120.0)
        targets.append(_target(name, runs[0]["value"], "s", limit, runs[0]["value"] < limit))
    else:
        targets.append(_target(name, note=_not_measured(parts.get("bench_step"))))
    # the bound on batching: 16 members' worth on one lattice against 16 single steps (issue 20 asks 4x)
    batch = last_json(out / "bench_batch.log") if ran("bench_batch") else None
    bound = [c for c in (batch or {}).get("cases", []) if "target_ratio" in c]
    name = "a step of 16 members' worth >= 4x faster than 16 single steps (the bound on a member axis)"
    if bound:
        targets.append(_target(name, bound[0]["ratio"], "x", bound[0]["target_ratio"], bound[0]["ratio"] >= bound[0]["target_ratio"],
                               bound[0]["case"]))  # fmt: skip
    else:
        targets.append(_target(name, note=_not_measured(parts.get("bench_batch"))))
    return targets


def junit_outcomes(path: Path) -> dict[str, str]:
    """Test function name -> passed / failed / skipped, from a pytest JUnit XML file (empty if absent)."""
    if not path.is_file():
        return {}
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError:
        return {}
    outcomes = {}
    for case in root.iter("testcase"):
        name = case.get("name", "").split("[")[0]
        children = {child.tag for child in case}
        outcome = "failed" if children & {"failure", "error"} else "skipped" if "skipped" in children else "passed"
        if outcomes.get(name) != "failed":  # a parametrised test fails if any of its cases fails
            outcomes[name] = outcome
    return outcomes


def sanitizer_errors(log: Path) -> int | None:
    """The error count of compute-sanitizer's ``ERROR SUMMARY`` lines in a log (summed), None if there is none."""
    if not log.is_file():
        return None
    counts = re.findall(r"ERROR SUMMARY: (\d+) error", log.read_text(encoding="utf-8", errors="replace"))
    return sum(int(c) for c in counts) if counts else None


def git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


def prepare_out(out: Path, overwrite: bool) -> str | None:
    """Create the output folder; an error line if it exists, is not empty and ``overwrite`` is off."""
    if out.exists() and not out.is_dir():
        return f"--out {out}: exists and is not a folder"
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        return f"--out {out}: folder exists and is not empty; name a new one or pass --overwrite"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"--out {out}: cannot create it ({exc.strerror})"
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the parts within the budget, write summary.json, print a short report."""
    parser = Parser(prog="gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/gpu_check_<UTC time>)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, help=f"seconds for all parts (default {DEFAULT_BUDGET_S:g})")
    parser.add_argument("--only", action="append", choices=PART_NAMES, metavar="PART", help="run only these parts (repeatable)")
    parser.add_argument("--skip", action="append", choices=PART_NAMES, default=[], metavar="PART", help="skip a part (repeatable)")
    parser.add_argument("--timeout", action="append", default=[], metavar="PART=SECONDS", help="a part's own timeout")
    parser.add_argument("--no-gpu", action="store_true", help="act as if no GPU were usable (every GPU part skipped)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out folder")
    parser.add_argument("--python", default=sys.executable, help="the Python of the parts (default: this one)")
    args = parser.parse_args(argv)
    try:
        timeouts = parse_timeouts(args.timeout)
    except ValueError as exc:
        parser.error(str(exc))
    if not 0 < args.budget < float("inf"):
        parser.error(f"--budget must be a positive number of seconds, got {args.budget:g}")
    started = datetime.now(timezone.utc)
    out = args.out or ROOT / "runs" / f"gpu_check_{started:%Y%m%dT%H%M%SZ}"
    problem = prepare_out(out, args.overwrite)
    if problem:
        parser.error(problem)

    clock = time.monotonic()
    selected = set(args.only or PART_NAMES) - set(args.skip)
    gpu = {"usable": False, "reason": "--no-gpu"} if args.no_gpu else None
    results: dict[str, dict[str, Any]] = {}
    for part in PARTS:
        result: dict[str, Any] = {"part": part.name, "description": part.description, "status": "skipped", "reason": "",
                                  "returncode": None, "seconds": 0.0, "timeout_s": None, "command": None, "log": None}  # fmt: skip
        results[part.name] = result
        if part.name not in selected:
            result["reason"] = "--only" if args.only and part.name not in args.only else "--skip"
            continue
        if part.needs_gpu:
            if gpu is None:
                gpu = probe_gpu(args.python)
            if not gpu.get("usable"):
                result["reason"] = f"no GPU ({gpu.get('reason') or 'not usable'})"
                continue
        left = args.budget - (time.monotonic() - clock) - RESERVE_S
        timeout_s = min(timeouts.get(part.name, part.timeout_s), left)
        if left < MIN_PART_S:
            result["reason"] = f"time budget spent ({args.budget:g} s)"
            continue
        argv = part.command(out, args.python)
        if argv is None:
            result["reason"] = "compute-sanitizer not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin)"
            continue
        log = out / f"{part.name}.log"
        if part.name in OUTPUTS:
            (out / OUTPUTS[part.name]).unlink(missing_ok=True)
        print(f"gpu_check: {part.name} ({part.description}), timeout {timeout_s:.0f} s ...", flush=True)
        status, returncode, seconds = run_command(argv, log, timeout_s)
        result.update(status=status, returncode=returncode, seconds=round(seconds, 2), timeout_s=round(timeout_s, 1),
                      command=" ".join(argv), log=log.name)  # fmt: skip
        if status == "failed":
            result["reason"] = f"exit status {returncode}" if returncode is not None else "could not start"
            if part.name == "install" and "invalid command 'bdist_wheel'" in log.read_text(errors="replace"):
                result["reason"] += (" (--no-build-isolation uses this environment's build tools: it lacks wheel, which"
                                     " pyproject.toml requires; install it, or setuptools >= 70.1)")  # fmt: skip
        elif status == "timeout":
            result["reason"] = f"ran past {timeout_s:.0f} s"
        print(f"gpu_check: {part.name}: {status} in {seconds:.1f} s", flush=True)

    targets = evaluate_targets(results, out)
    timings = out / "kernel_timings.json"
    met = [t["met"] for t in targets]
    verdict = f"{met.count(True)} met, {met.count(False)} not met, {met.count(None)} not measured (of {len(met)} targets)"
    summary = {
        "check": "carabm gpu_check",
        "commit": git_commit(),
        "started_utc": started.isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - clock, 1),
        "budget_s": args.budget,
        "gpu": gpu or {"usable": None, "reason": "not probed (no GPU part selected)"},
        "nvidia_smi": nvidia_smi(),
        "parts": list(results.values()),
        "targets": targets,
        "kernel_timings": json.loads(timings.read_text()) if timings.is_file() and results.get("kernel_timings", {}).get("status") == "passed" else None,
        "verdict": verdict,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    width = max(len(name) for name in PART_NAMES)
    print(f"gpu_check: {out / 'summary.json'}")
    for result in results.values():
        print(f"  {result['part']:<{width}}  {result['status']}{': ' + result['reason'] if result['reason'] else ''}")
    for target in targets:
        state = {True: "met", False: "NOT met", None: "not measured"}[target["met"]]
        value = "" if target["value"] is None or isinstance(target["value"], dict) else f" ({target['value']} {target['unit']})"
        print(f"  target: {target['target']}: {state}{value}")
    print(f"gpu_check: {verdict}")
    passed = all(r["status"] == "passed" for r in results.values() if r["part"] in selected)
    return 0 if passed and all(m is True for m in met) else 1


if __name__ == "__main__":
    sys.exit(main())
