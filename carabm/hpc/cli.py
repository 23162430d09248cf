"""The ``sweep``, ``collect`` and ``calibrate`` sub-commands (added to the ``carabm`` parser by :func:`add_parsers`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from carabm.errors import CarabmError


def _cmd_sweep(args: argparse.Namespace) -> int:
    from carabm.hpc import sweep as sw  # noqa: PLC0415
    from carabm.io.shipped import resolve_config  # noqa: PLC0415

    args.sweep = str(resolve_config(args.sweep, kind="sweep"))
    if args.expand:
        expanded = sw.load_sweep(args.sweep)
        sw.prepare(expanded, args.out)
        print(len(expanded))
        return 0
    if args.members is not None and args.workers is None:
        raise CarabmError("--members: goes with --workers N (a Slurm array chooses its members with --array)")
    if args.mpi:
        results = sw.run_mpi(args.sweep, args.out, args.backend)
        if results is None:  # not rank 0
            return 0
    elif args.workers is not None:
        if args.workers < 1:
            raise CarabmError(f"--workers: expected a number >= 1, got {args.workers}")
        indices = None
        if args.members is not None:
            indices = parse_members(args.members, len(sw.load_sweep(args.sweep)))
        results = sw.run_workers(args.sweep, args.out, args.workers, args.backend, indices=indices)
    else:
        index = sw.slurm_index(args.index)
        n = len(sw.load_sweep(args.sweep))  # a broken sweep file is a usage error (exit 2), not a member failure
        if not 0 <= index < n:
            raise CarabmError(f"member index {index}: the sweep has {n} members (0..{n - 1})")
        progress = False if args.quiet else None  # one member per process (a Slurm array task): its progress in the log
        results = [sw._report(sw.run_member(args.sweep, args.out, index, args.backend, progress=progress))]
    line = sw.summary_line(results)
    failed = any(r.outcome == "failed" for r in results)
    print(f"carabm sweep: {line}")
    return 1 if failed else 0


def parse_members(text: str, n: int) -> list[int]:
    """``--members``: ``A-B`` (inclusive) and single indices, comma-separated, each in 0..n-1; sorted, no repeats."""
    chosen: set[int] = set()
    for part in text.split(","):
        try:
            if "-" in part.strip()[1:]:
                a, b = part.split("-", 1)
                first, last = int(a), int(b)
            else:
                first = last = int(part)
        except ValueError:
            raise CarabmError(f"--members: expected indices and ranges like 0-39,50, got {text!r}") from None
        if not 0 <= first <= last < n:
            raise CarabmError(f"--members {part.strip()}: the sweep has {n} members (0..{n - 1}); a range is FIRST-LAST")
        chosen.update(range(first, last + 1))
    return sorted(chosen)


def _cmd_collect(args: argparse.Namespace) -> int:
    from carabm.hpc.collect import collect  # noqa: PLC0415

    result = collect(args.dir)
    print(result.markdown)
    print(f"carabm collect: wrote {', '.join(str(p) for p in result.written)}")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from carabm.hpc.calibrate import WORKER_LOGS, calibrate, check_folder, dask_client  # noqa: PLC0415
    from carabm.hpc.calibration import load_calibration  # noqa: PLC0415
    from carabm.io.shipped import resolve_config  # noqa: PLC0415

    args.calibration = str(resolve_config(args.calibration, kind="calibration"))
    if args.workers < 1:
        raise CarabmError(f"--workers: expected a number >= 1, got {args.workers}")
    if args.slurm_jobs is not None and args.slurm_jobs < 1:
        raise CarabmError(f"--slurm-jobs: expected a number >= 1, got {args.slurm_jobs}")
    client = None
    if args.dask or args.slurm_jobs:
        # a bad file or a refused folder stops here, before any Slurm job is submitted
        cal = load_calibration(args.calibration, reduced=args.reduced, settings=args.set)
        check_folder(cal, args.out)
        client = dask_client(args.dask, args.slurm_jobs, cal.slurm, log_directory=Path(args.out) / WORKER_LOGS)
    try:
        result = calibrate(args.calibration, args.out, workers=args.workers, backend=args.backend, dask=client,
                           generations=args.generations, run_check=not args.no_check, reduced=args.reduced,
                           settings=args.set)  # fmt: skip
    finally:
        if client is not None:
            client.close()
    print(result.markdown)
    print(f"carabm calibrate: run {result.run_id}, {result.generations} generation(s) ({result.new_generations} new); "
          f"wrote {', '.join(str(p) for p in result.written)}")  # fmt: skip
    return 0


def add_parsers(sub: Any) -> None:
    """Add ``sweep`` and ``collect`` to the ``carabm`` sub-command parsers."""
    sweep = sub.add_parser("sweep", help="run a parameter sweep or virtual cohort (one member, local workers or MPI)",
                           description="Run the members of SWEEP.yaml into DIR/NNNN/run.h5. Complete members are "
                           "skipped, incomplete ones resumed; failures go to DIR/NNNN/error.txt (exit 1).")  # fmt: skip
    sweep.add_argument("sweep", metavar="SWEEP.yaml", help="sweep file (format: docs/hpc.md), or the name of a shipped one")
    sweep.add_argument("--out", required=True, metavar="DIR", help="sweep folder (members.csv, NNNN/config.yaml, NNNN/run.h5)")
    mode = sweep.add_mutually_exclusive_group()
    mode.add_argument("--index", type=int, metavar="I",
                      help="run member I only (default: $SLURM_ARRAY_TASK_ID)")  # fmt: skip
    mode.add_argument("--workers", type=int, metavar="N", help="run every member in N local processes")
    mode.add_argument("--mpi", action="store_true", help="run every member over MPI ranks (mpiexec -n N ...; needs mpi4py)")
    mode.add_argument("--expand", action="store_true", help="only write members.csv and the configs; print the member count")
    sweep.add_argument("--members", metavar="LIST", help="with --workers: only these members, e.g. 0-39 or 0-9,20-29 "
                       "(the others stay missing; carabm collect reports what completed)")  # fmt: skip
    sweep.add_argument("--backend", choices=["auto", "numpy", "cupy"], help="array backend of every member")
    sweep.set_defaults(func=_cmd_sweep)

    col = sub.add_parser("collect", help="one table (CSV, Parquet) and incidence summary of a sweep's members")
    col.add_argument("dir", metavar="DIR", help="the --out folder of 'carabm sweep'")
    col.set_defaults(func=_cmd_collect)

    cal = sub.add_parser("calibrate", help="fit cohort trait distributions and model parameters to a trial's table (pyabc ABC-SMC)",
                         description="ABC-SMC (pyabc) over virtual cohorts: each particle is a cohort run by the sweep "
                         "runner, compared with the trial's incidences and onset days. Rerunning with the same --out "
                         "resumes the History (DIR/abc.db). Format and outputs: docs/calibration.md.")  # fmt: skip
    cal.add_argument("calibration", metavar="CALIBRATION.yaml", help="calibration file, or the name of a shipped one")
    cal.add_argument("--out", required=True, metavar="DIR",
                     help="calibration folder (abc.db, posterior.csv, diagnostics.csv, posterior_mean.yaml, runs/, cohort/)")  # fmt: skip
    cal.add_argument("--workers", type=int, default=1, metavar="N", help="local processes (pyabc's multicore sampler; default 1)")
    where = cal.add_mutually_exclusive_group()
    where.add_argument("--dask", metavar="ADDRESS", help="a running Dask scheduler (tcp://host:8786 or a scheduler file)")
    where.add_argument("--slurm-jobs", type=int, metavar="N",
                       help="start N Slurm jobs of Dask workers (dask-jobqueue SLURMCluster, settings from the file's slurm:)")  # fmt: skip
    cal.add_argument("--generations", type=int, metavar="G", help="stop when G generations exist (default: abc.generations)")
    cal.add_argument("--backend", choices=["auto", "numpy", "cupy"], help="array backend of every member")
    cal.add_argument("--reduced", action="store_true",
                     help="the file's reduced: form (small cohorts, short runs, few generations: a workstation)")
    cal.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="change a setting of the file: abc.population=4, cohort.n=2, cohort.overrides.run.duration_h=120")
    cal.add_argument("--no-check", action="store_true", help="do not run the posterior-mean cohort (check.n) at the end")
    cal.set_defaults(func=_cmd_calibrate)


__all__ = ["add_parsers"]
