"""Runners: one member (a Slurm array task, ``--index``), local worker processes, or MPI ranks.

Every mode runs members through :func:`run_member`: complete outputs are skipped,
incomplete ones resumed from their checkpoint, and a member's failure is written to
``NNNN/error.txt`` and returned, never raised, so one bad member does not stop a sweep.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carabm.errors import CarabmError, InputFileError
from carabm.hpc.folder import OUTPUT_NAME, output_status, prepare
from carabm.hpc.members import Member, Sweep, load_sweep

log = logging.getLogger("carabm")

@dataclass
class MemberResult:
    """What happened to one member: ``done`` (ran now), ``skipped`` (complete already), ``resumed`` or ``failed``."""

    index: int
    outcome: str
    message: str = ""
    wall_s: float = 0.0


def run_member(sweep_file: str | Path, out: str | Path, index: int, backend: str | None = None,
               progress: bool | None = False, sweep: Sweep | None = None) -> MemberResult:  # fmt: skip
    """Run member ``index`` of a sweep into ``out/NNNN/run.h5`` (used by every mode).

    ``progress`` as in :func:`carabm.simulation.run` (off by default: workers and MPI ranks
    would interleave their bars; ``carabm sweep --index`` turns it on for a Slurm log). Complete outputs are skipped, incomplete ones resumed from their checkpoint, and any
    failure is written to ``out/NNNN/error.txt`` and returned, not raised. ``sweep``: the
    file already expanded (a caller running many members of one sweep expands it once).
    """
    out = Path(out)
    folder = out / f"{index:04d}"
    try:
        sweep = sweep if sweep is not None else load_sweep(sweep_file)
        if not 0 <= index < len(sweep):
            raise InputFileError(f"--index {index}: the sweep has {len(sweep)} members (0..{len(sweep) - 1})")
        member = sweep.members[index]
        prepare(sweep, out, [index])
        return _run_member(member, folder, backend, progress)
    except Exception as exc:  # noqa: BLE001 - a member's failure must not stop the sweep
        folder.mkdir(parents=True, exist_ok=True)
        detail = "".join(traceback.format_exception(exc))
        text = f"{type(exc).__name__}: {exc}\n\n{detail}"
        (folder / "error.txt").write_text(text, encoding="utf-8")
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return MemberResult(index, "failed", first)


def _run_member(member: Member, folder: Path, backend: str | None, progress: bool | None = False) -> MemberResult:
    from carabm.io.checkpoint import checkpoint_path  # noqa: PLC0415
    from carabm.io.config import config_from_text  # noqa: PLC0415
    from carabm.io.runfile import read_config_text  # noqa: PLC0415
    from carabm.simulation import config_differences, run  # noqa: PLC0415

    out = folder / OUTPUT_NAME
    error = folder / "error.txt"
    status = output_status(out)
    if status in ("complete", "running"):
        try:
            stored = config_from_text(read_config_text(out))
        except (CarabmError, OSError, KeyError):  # unreadable: a resume rebuilds it from the checkpoint
            stored = None
        if stored is not None:
            changed = config_differences(stored, member.config)
            if changed:
                raise InputFileError(f"{out}: was made with other settings ({', '.join(changed[:4])}); "
                                     "remove it or use a new sweep folder")  # fmt: skip
    if status == "complete":
        error.unlink(missing_ok=True)
        return MemberResult(member.index, "skipped", "complete already")
    if status == "running" and checkpoint_path(out).exists():
        try:
            summary = run(None, out=None, resume=out, backend=backend, progress=progress)
        except CarabmError as exc:
            log.warning("member %d: cannot resume %s (%s); running it again", member.index, out, exc)
        else:
            error.unlink(missing_ok=True)
            return MemberResult(member.index, "resumed", f"{summary['steps_run']} steps after the checkpoint", summary["wall_s"])
    summary = run(member.config, out=out, overwrite=status != "missing", backend=backend, progress=progress)
    error.unlink(missing_ok=True)
    return MemberResult(member.index, "done", "", summary["wall_s"])


def _member_main(args: tuple[str, str, int, str | None]) -> MemberResult:
    return run_member(*args)


def run_workers(sweep_file: str | Path, out: str | Path, workers: int, backend: str | None = None,
                indices: Iterable[int] | None = None) -> list[MemberResult]:  # fmt: skip
    """Run members (all, or ``indices``) in ``workers`` local processes; results in index order."""
    import multiprocessing  # noqa: PLC0415
    from concurrent.futures import ProcessPoolExecutor, as_completed  # noqa: PLC0415

    sweep = load_sweep(sweep_file)
    prepare(sweep, out)
    todo = list(indices) if indices is not None else [m.index for m in sweep.members]
    results: list[MemberResult] = []
    if workers <= 1:
        for i in todo:
            results.append(_report(run_member(sweep_file, out, i, backend)))
        return results
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    saved = {k: os.environ.get(k) for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS")}
    for k in saved:  # spawned workers inherit this: no oversubscription of the cores
        os.environ.setdefault(k, threads)
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_member_main, (str(sweep_file), str(out), i, backend)) for i in todo]
            for fut in as_completed(futures):
                results.append(_report(fut.result()))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return sorted(results, key=lambda r: r.index)


def _report(result: MemberResult) -> MemberResult:
    text = f"member {result.index:04d}: {result.outcome}" + (f" ({result.message})" if result.message else "")
    if result.wall_s:
        text += f" in {result.wall_s:.1f} s"
    (log.warning if result.outcome == "failed" else log.info)(text)
    return result


TAG_READY, TAG_WORK = 1, 2


def run_mpi(sweep_file: str | Path, out: str | Path, backend: str | None = None, comm: Any = None) -> list[MemberResult] | None:
    """Run a sweep under MPI: rank 0 hands out member indices one at a time; returns the results on rank 0.

    With one rank, rank 0 runs every member itself. Other ranks return None.
    """
    if comm is None:
        try:
            from mpi4py import MPI  # noqa: PLC0415
        except ImportError:
            raise CarabmError("--mpi needs mpi4py (pip install 'carabm[hpc]', with an MPI library installed)") from None
        comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    todo: list[int] = []
    problem: CarabmError | None = None
    if rank == 0:
        try:
            sweep = load_sweep(sweep_file)
            prepare(sweep, out)
            todo = [m.index for m in sweep.members]
        except CarabmError as exc:
            problem = exc
    if comm.bcast(problem is not None, root=0):  # a bad sweep file stops every rank, none waits forever
        if problem is not None:
            raise problem
        return None
    if size == 1:
        return [_report(run_member(sweep_file, out, i, backend)) for i in todo]
    if rank == 0:
        results: list[MemberResult] = []
        pending = list(reversed(todo))
        active = size - 1
        while active:
            status_result = comm.recv(source=_any_source(comm), tag=TAG_READY)
            worker, result = status_result
            if result is not None:
                results.append(_report(result))
            if pending:
                comm.send(pending.pop(), dest=worker, tag=TAG_WORK)
            else:
                comm.send(None, dest=worker, tag=TAG_WORK)
                active -= 1
        return sorted(results, key=lambda r: r.index)
    result = None
    while True:
        comm.send((rank, result), dest=0, tag=TAG_READY)
        index = comm.recv(source=0, tag=TAG_WORK)
        if index is None:
            return None
        result = run_member(sweep_file, out, index, backend)


def _any_source(comm: Any) -> int:
    try:
        from mpi4py import MPI  # noqa: PLC0415

        return MPI.ANY_SOURCE
    except ImportError:
        return getattr(comm, "ANY_SOURCE", -1)


def slurm_index(index: int | None) -> int:
    """The member index: ``--index`` or ``SLURM_ARRAY_TASK_ID``; an error when neither is given."""
    if index is not None:
        return index
    env = os.environ.get("SLURM_ARRAY_TASK_ID")
    if env is None:
        raise CarabmError("give --index I, --workers N or --mpi (or run inside a Slurm array job: SLURM_ARRAY_TASK_ID)")
    try:
        return int(env)
    except ValueError:
        raise CarabmError(f"SLURM_ARRAY_TASK_ID={env!r} is not a member index") from None


def summary_line(results: list[MemberResult]) -> str:
    """One line: how many members ran, were skipped, resumed and failed."""
    counts = {k: sum(r.outcome == k for r in results) for k in ("done", "resumed", "skipped", "failed")}
    failed = [f"{r.index:04d}" for r in results if r.outcome == "failed"]
    line = (f"{len(results)} member(s): {counts['done']} ran, {counts['resumed']} resumed, {counts['skipped']} complete already, "
            f"{counts['failed']} failed")  # fmt: skip
    if failed:
        line += f" ({', '.join(failed[:10])}{', ...' if len(failed) > 10 else ''}; see NNNN/error.txt)"
    return line
