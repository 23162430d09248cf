"""The ``sweep`` and ``collect`` sub-commands (added to the ``carabm`` parser by :func:`add_parsers`)."""

from __future__ import annotations

import argparse
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
    if args.mpi:
        results = sw.run_mpi(args.sweep, args.out, args.backend)
        if results is None:  # not rank 0
            return 0
    elif args.workers is not None:
        if args.workers < 1:
            raise CarabmError(f"--workers: expected a number >= 1, got {args.workers}")
        results = sw.run_workers(args.sweep, args.out, args.workers, args.backend)
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


def _cmd_collect(args: argparse.Namespace) -> int:
    from carabm.hpc.collect import collect  # noqa: PLC0415

    result = collect(args.dir)
    print(result.markdown)
    print(f"carabm collect: wrote {', '.join(str(p) for p in result.written)}")
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
    sweep.add_argument("--backend", choices=["auto", "numpy", "cupy"], help="array backend of every member")
    sweep.set_defaults(func=_cmd_sweep)

    col = sub.add_parser("collect", help="one table (CSV, Parquet) and incidence summary of a sweep's members")
    col.add_argument("dir", metavar="DIR", help="the --out folder of 'carabm sweep'")
    col.set_defaults(func=_cmd_collect)


__all__ = ["add_parsers"]
