"""The simulation: build the world from a config, advance it step by step, write outputs.

The order of DESIGN.md's layers within a step is :data:`carabm.biology.model.STEP`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from carabm.biology.model import CrsModel
from carabm.engine.backend import Backend, get_backend
from carabm.engine.lattice import COMPARTMENTS, Lattice
from carabm.errors import ConfigError, InputFileError
from carabm.io.catalog import CATALOG
from carabm.io.checkpoint import checkpoint_path, read_checkpoint, restore_model_state, write_checkpoint
from carabm.io.config import Config, config_from_text, default_labels, load_config
from carabm.io.hdf5 import RunWriter
from carabm.io.masks import load_mask
from carabm.io.runfile import check_run_file, open_read
from carabm.io.shipped import resolve_config
from carabm.io.xdmf import write_xdmf
from carabm.progress import RunProgress

log = logging.getLogger("carabm")


def build_lattice(config: Config) -> Lattice:
    """The lattice of a config: default layout or a label mask from a file."""
    lat = config.lattice
    if lat.layout.kind == "default":
        try:
            labels = default_labels(lat)
        except ValueError as exc:
            raise ConfigError(f"lattice.shape: {exc}") from exc
    else:
        labels = load_mask(lat.layout.file, lat.layout.dataset)
        if tuple(labels.shape) != tuple(lat.shape):
            raise ConfigError(f"lattice.layout.file: mask shape {list(labels.shape)} differs from lattice.shape {list(lat.shape)}")
    try:
        return Lattice(labels, lat.voxel_um)
    except ValueError as exc:
        raise ConfigError(f"lattice.layout.file: {exc}") from exc


def cell_states() -> dict[str, tuple[str, ...]]:
    """The registered cell types and their state names, in ``type`` code order (for the run file's code attributes)."""
    return {name: cell.states for name, cell in CATALOG.cell_types.items()}


def variable_docs() -> dict[str, tuple[str, str, str]]:
    """Units, long name and description of every cell type's per-agent variables (the first declaration of a shared name)."""
    docs: dict[str, tuple[str, str, str]] = {}
    for cell in CATALOG.cell_types.values():
        for name, doc in cell.variable_docs.items():
            docs.setdefault(name, doc)
    return docs


class Simulation:
    """One run: the backend, the lattice and the CRS/ICANS model advanced step by step."""

    def __init__(self, config: Config, backend: str | Backend | None = None):
        self.config = config
        self.backend = get_backend(backend or config.run.backend, announce=True)
        self.xp = self.backend.xp
        self.seed = config.run.seed
        self.dt_h = config.run.dt_min / 60.0
        self.lattice = build_lattice(config)
        self.model = CrsModel(config, self.lattice, self.backend)

    @functools.cached_property
    def config_yaml(self) -> str:
        """The resolved config as YAML text (made once: the config is frozen, and every checkpoint stores it)."""
        return self.config.to_yaml()

    @property
    def step_index(self) -> int:
        """Steps taken."""
        return self.model.step_index

    @property
    def time_h(self) -> float:
        """Simulated time since infusion [h]."""
        return self.step_index * self.dt_h

    def step(self) -> None:
        """Advance one time step (the layers are listed in :data:`carabm.biology.model.STEP`)."""
        self.model.step()

    def readouts(self) -> dict[str, Any]:
        """Small host-side reductions for the time series (computed once per step by the model)."""
        return self.model.row if self.model.row else self.model.readouts()

    def snapshot(self) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
        """Fields, BBB integrity and agents as host arrays (documented host reads, reason ``snapshot``)."""
        index = self.model.index
        wanted = self.config.output.snapshot_fields or list(index)
        fields = {name: self.backend.to_host(self.model.fields[index[name]], "snapshot") for name in wanted}
        agents = self.model.agents_snapshot() if self.config.output.snapshot_agents else {}
        return fields, self.backend.to_host(self.model.integrity, "snapshot"), agents


def announce_compile(backend_name: str) -> bool:
    """Log, and return True, when numba must compile the CPU kernels first (a cold cache: first run, new sources)."""
    if backend_name != "numpy":
        return False
    from carabm.engine.jit_cache import cache_dir, cpu_kernels_cached  # noqa: PLC0415

    cached = cpu_kernels_cached()
    log.debug("numba cache of the CPU kernels: %s (%s)", cache_dir(), {True: "warm", False: "cold", None: "unknown"}[cached])
    if cached is False:
        log.info("compiling the CPU kernels, once, ~30 s (numba caches them in %s)", cache_dir())
        return True
    return False


#: the time series is flushed to the file at least this often [simulated h] (and at every snapshot and checkpoint).
#: Rows wait in memory in between: each flush writes every column (~40 datasets) and flushes the file, which
#: costs more than a quickstart step; a kill loses nothing a resume cannot rebuild (the checkpoint carries the
#: rows up to it), and a reader of a running file sees it at most this far behind.
FLUSH_EVERY_H = 6.0


def config_differences(a: Config, b: Config, ignore: tuple[str, ...] = ("run.backend",)) -> list[str]:
    """Key paths (``run.seed``, ``therapies``, ...) whose values differ between two configs."""

    def walk(x: Any, y: Any, path: str, out: list[str]) -> None:
        if path in ignore:
            return
        if isinstance(x, dict) and isinstance(y, dict):
            for key in list(x) + [k for k in y if k not in x]:
                walk(x.get(key), y.get(key), f"{path}.{key}" if path else str(key), out)
        elif x != y:
            out.append(path)

    out: list[str] = []
    walk(a.model_dump(mode="json"), b.model_dump(mode="json"), "", out)
    return out


def run(
    config: Config | str | Path | None = None,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    backend: str | None = None,
    progress: bool | None = None,
    resume: str | Path | None = None,
) -> dict[str, Any]:
    """Run a simulation to its end and write its HDF5 output; returns a summary dict.

    Everything is checked before any file is touched (the config, the lattice, the output
    location). A new output is first written under a temporary name and takes the name
    ``out`` only once the run has really started (built, first row, snapshot), so a failed
    start leaves an existing ``out`` (and its ``.xmf``, ``.ckpt``) as it was. It is then
    flushed as the run goes; a checkpoint (``OUT.ckpt``) is written atomically every
    ``run.checkpoint_every_h`` and at the end, and an XDMF sidecar (``OUT.xmf``) after
    every snapshot.

    ``resume`` names a run's output file: the run continues from its checkpoint. With
    ``config`` None (or equal to the stored config, ``run.backend`` aside) and ``out``
    None or the same file, it is a plain resume: the output is rebuilt from the checkpoint
    (which carries the time series and root attributes) and the snapshots up to it, so a
    file damaged by a kill is repaired. Otherwise it is a branch: ``out`` must be a new
    file, which gets the parent's time series up to the branch point and the attributes
    ``parent_run`` and ``branch_time_h``.

    ``config`` may also name a shipped config (``"quickstart"``, see ``carabm config list``).
    ``progress``: None (auto: a bar on a terminal, log lines elsewhere), True or False.

    The returned dict has ``out``, ``steps``, ``steps_run``, ``time_h``, ``wall_s``,
    ``backend``, ``final`` (the last time-series row) and ``summary``: the
    :class:`carabm.io.summary.RunSummary` of the file (what ``carabm report`` prints).
    """
    result = _run(config, out, overwrite=overwrite, backend=backend, progress=progress, resume=resume)
    from carabm.io.summary import run_summary  # noqa: PLC0415

    result["summary"] = run_summary(result["out"])
    return result


def _run(
    config: Config | str | Path | None,
    out: str | Path | None,
    *,
    overwrite: bool,
    backend: str | None,
    progress: bool | None,
    resume: str | Path | None,
) -> dict[str, Any]:
    if resume is not None:
        return _resume(config, out, resume, overwrite=overwrite, backend=backend, progress=progress)
    if config is None:
        raise ConfigError("run: give a config (or --resume FILE.h5)")
    inputs = [resolve_config(config, kind="run")] if not isinstance(config, Config) else []
    if not isinstance(config, Config):
        config = load_config(inputs[0])
    else:
        _check_config(config)
    out = Path(out) if out is not None else Path("carabm_run.h5")
    check_output(out, overwrite, inputs=inputs + _config_inputs(config))
    sim = Simulation(config, backend)

    def start(writer: RunWriter) -> None:
        writer.write_header(sim.config_yaml, sim.seed, sim.backend.name, sim.lattice)
        writer.append_timeseries(_stack([sim.readouts()]))
        writer.write_snapshot(sim.step_index, sim.time_h, *sim.snapshot(), voxel_um=sim.lattice.voxel_um)

    with _new_output(out, start) as writer:
        write_xdmf(writer.file, h5_path=writer.path)
        _checkpoint(writer, sim, config)
        return _loop(sim, config, writer, progress)


def _check_config(config: Config) -> None:
    from carabm.io.config import run_problems  # noqa: PLC0415

    problems = run_problems(config, check_memory=False)
    if problems:
        raise ConfigError(problems)


def _config_inputs(config: Config) -> list[Path]:
    return [Path(config.lattice.layout.file)] if config.lattice.layout.kind == "mask" and config.lattice.layout.file else []


def check_output(out: str | Path, overwrite: bool, inputs: list[Path] | tuple[Path, ...] = ()) -> None:
    """Refuse an output path before any work: exists without ``overwrite``, an input file, a folder, not writable."""
    out = Path(out)
    if out.suffix == ".xmf" or out.name.endswith((".ckpt", ".tmp")):
        raise InputFileError(f"{out}: name the .h5 output; the .xmf and .ckpt files are written beside it")
    for given in inputs:
        if given is not None and Path(given).exists() and out.exists() and out.resolve() == Path(given).resolve():
            raise InputFileError(f"{out}: is an input of this run; choose another --out (an .h5 file)")
    if out.suffix.lower() in (".yaml", ".yml", ".json", ".npy", ".txt", ".csv"):
        raise InputFileError(f"{out}: --out is the HDF5 output; name it FILE.h5")
    if out.is_dir():
        raise InputFileError(f"{out}: is a folder; give --out a file name such as {out / 'run.h5'}")
    if out.exists() and not overwrite:
        raise InputFileError(f"{out}: exists; pass --overwrite to replace it, or choose another --out")
    folder = out.parent
    if not folder.exists():
        raise InputFileError(f"{folder}: output folder does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputFileError(f"{folder}: output folder is not writable; choose another --out")


class _new_output:  # noqa: N801 - used as a context manager, like open()
    """A new output file written under a temporary name, renamed to ``out`` once ``start(writer)`` succeeded.

    Until then an existing ``out`` is untouched; if ``start`` fails the temporary file goes.
    """

    def __init__(self, out: Path, start: Any):
        self.out, self.start = out, start
        self.tmp = out.with_name(out.name + ".new.tmp")

    def __enter__(self) -> RunWriter:
        self.tmp.unlink(missing_ok=True)  # (carabm's own temporary name: a leftover of a killed start)
        self.writer = RunWriter(self.tmp, "x", cell_states=cell_states(), variable_docs=variable_docs())
        try:
            self.start(self.writer)
            self.writer.file.flush()
            os.replace(self.tmp, self.out)
        except BaseException:
            self.writer.close()
            self.tmp.unlink(missing_ok=True)
            raise
        self.writer.path = self.out
        return self.writer

    def __exit__(self, *exc: Any) -> None:
        self.writer.close()


def _snapshot(writer: RunWriter, sim: Simulation) -> None:
    writer.write_snapshot(sim.step_index, sim.time_h, *sim.snapshot(), voxel_um=sim.lattice.voxel_um)
    write_xdmf(writer.file, h5_path=writer.path)
    log.debug("snapshot at %.4g h (step %d) in %s", sim.time_h, sim.step_index, writer.path)


def _checkpoint(writer: RunWriter, sim: Simulation, config: Config) -> None:
    write_checkpoint(checkpoint_path(writer.path), sim.model, run_id=writer.run_id, timeseries_rows=writer.rows,
                     config_yaml=sim.config_yaml if config is sim.config else config.to_yaml(), backend=sim.backend.name,
                     output=writer.output_state())  # fmt: skip
    log.debug("checkpoint at %.4g h (step %d): %s", sim.time_h, sim.step_index, checkpoint_path(writer.path))


@contextlib.contextmanager
def _interrupt_between_steps() -> Iterator[Callable[[], None]]:
    """Ctrl-C (SIGINT) ends a run between two steps, after that step's writes, never inside one.

    Python raises KeyboardInterrupt at whatever code runs when the signal arrives, e.g. in the
    middle of an HDF5 write or in an h5py object's destructor (where an exception cannot
    propagate). The handler only records it; the loop calls the yielded check after each
    step's writes. A second Ctrl-C interrupts at once. Only where Python's default handler is
    installed, in the main thread (elsewhere the check does nothing).
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield lambda: None
        return
    pending: list[int] = []

    def record(signum: int, frame: Any) -> None:
        if pending:
            raise KeyboardInterrupt
        pending.append(signum)

    def check() -> None:
        if pending:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, record)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)


def _loop(sim: Simulation, config: Config, writer: RunWriter, progress: bool | None) -> dict[str, Any]:
    """Step from the current state to ``run.duration_h``, appending to ``writer``."""
    cfg = config.run
    steps = cfg.n_steps
    snapshot_every = max(1, round(cfg.snapshot_every_h / sim.dt_h))  # the base interval; see _snapshot_due
    checkpoint_every = max(1, round(cfg.checkpoint_every_h / sim.dt_h))
    flush_every = max(1, min(snapshot_every, round(FLUSH_EVERY_H / sim.dt_h)))
    first = sim.step_index
    rows: list[dict[str, Any]] = []
    if first < steps:
        announce_compile(sim.backend.name)
    started = time.perf_counter()
    with RunProgress(steps, first, sim.dt_h, enabled=progress) as bar, _interrupt_between_steps() as interrupted:
        while sim.step_index < steps:
            sim.step()
            rows.append(sim.readouts())
            i = sim.step_index
            snapshot_due = _snapshot_due(config, i, sim.dt_h, rows[-1]) or i == steps
            checkpoint_due = i % checkpoint_every == 0 or i == steps
            if snapshot_due or checkpoint_due or i % flush_every == 0:
                writer.append_timeseries(_stack(rows))
                rows = []
                if sim.model.therapy.events:
                    writer.write_events(sim.model.therapy.events)
            if snapshot_due:
                _snapshot(writer, sim)
            if checkpoint_due:
                _checkpoint(writer, sim, config)
            bar.update(1)
            interrupted()
    wall = time.perf_counter() - started
    # wall time over every session that wrote this file (a resume adds to it): ms/step in the summary
    wall_total = float(writer.file.attrs.get("wall_s", 0.0)) + wall
    wall_steps = int(writer.file.attrs.get("wall_steps", 0)) + sim.step_index - first
    writer.set_status("complete", final_time_h=float(sim.time_h), wall_s=wall_total, wall_steps=wall_steps)
    return {"out": str(writer.path), "steps": steps, "steps_run": sim.step_index - first, "time_h": sim.time_h, "wall_s": wall,
            "backend": sim.backend.name, "final": sim.readouts()}  # fmt: skip


def _snapshot_due(config: Config, step: int, dt_h: float, row: dict[str, Any]) -> bool:
    """Whether step ``step`` takes a snapshot: at multiples of the interval that holds now (``output.snapshot_schedule``,
    the BBB trigger on this step's mean integrity, else ``run.snapshot_every_h``), so a resumed run snapshots alike."""
    every_h = config.output.snapshot_every_h_at(step * dt_h, float(row.get("bbb_integrity", 1.0)), config.run.snapshot_every_h)
    return step % max(1, round(every_h / dt_h)) == 0


def _readable_run_id(path: Path) -> str | None:
    """The ``run_id`` of a run file, or None when it is missing or unreadable (a kill may have damaged it)."""
    try:
        check_run_file(path, need_timeseries=False)
        with open_read(path) as f:
            run_id = f.attrs.get("run_id", "")
            return str(run_id.decode() if isinstance(run_id, bytes) else run_id)
    except (InputFileError, OSError, KeyError):
        return None


def _resume(
    config: Config | str | Path | None,
    out: str | Path | None,
    parent: str | Path,
    *,
    overwrite: bool,
    backend: str | None,
    progress: bool | None,
) -> dict[str, Any]:
    """Continue (or branch) a run from the checkpoint beside ``parent``."""

    parent = Path(parent)
    if not parent.exists() and not checkpoint_path(parent).exists():
        check_run_file(parent)  # the one-line "no such file"
    ckpt_file = checkpoint_path(parent)
    ckpt = read_checkpoint(ckpt_file)
    run_id = _readable_run_id(parent)
    if run_id is None and ckpt.output is None:
        check_run_file(parent)  # an old checkpoint cannot repair the file: say what is wrong with it
    if run_id is not None and ckpt.attrs.get("run_id") != run_id:
        raise InputFileError(f"{ckpt_file}: this checkpoint belongs to another run than {parent}; it cannot be resumed")
    stored = config_from_text(ckpt.config)
    if config is None:
        config = stored
    elif not isinstance(config, Config):
        config = load_config(resolve_config(config, kind="run"))
    else:
        _check_config(config)
    changed = config_differences(stored, config)
    out = Path(out) if out is not None else parent
    same = out.resolve() == parent.resolve()
    if same and changed:
        raise InputFileError(
            f"{parent}: --resume with changed settings ({', '.join(changed[:6])}{', ...' if len(changed) > 6 else ''}) starts a branch; "
            "give --out NEW.h5 for it (the parent file is left as it is)"
        )
    fixed = [key for key in changed if key.startswith(("lattice.", "run.dt_min"))]
    if fixed:
        raise InputFileError(f"{parent}: a branch cannot change {', '.join(fixed)} (the saved state depends on them)")
    if not same:
        check_output(out, overwrite, inputs=[parent, ckpt_file, *_config_inputs(config)])
    sim = Simulation(config, backend)
    restore_model_state(sim.model, ckpt.state)
    rows = int(ckpt.attrs["timeseries_rows"])
    history = _history(ckpt, parent, rows)
    if same:
        log.info("resuming %s from its checkpoint at %.3g h (step %d)", parent, sim.time_h, sim.step_index)
        attrs = ckpt.output["attrs"] if ckpt.output is not None else _root_attrs(parent)
        line = f"resumed at step {sim.step_index} ({sim.time_h:g} h) on {sim.backend.name}"
        lost: list[str] = []

        def rebuild(writer: RunWriter) -> None:
            writer.write_header(ckpt.config, sim.seed, sim.backend.name, sim.lattice)
            writer.append_timeseries(history)
            if sim.model.therapy.events:
                writer.write_events(sim.model.therapy.events)
            expected = ckpt.output["snapshots"] if ckpt.output is not None else []
            lost.extend(_copy_snapshots(parent, writer, sim, expected))
            text = str(attrs.get("resume_history", "")) + "\n" + line + (f" (snapshots lost to damage: {', '.join(lost)})" if lost else "")
            writer.set_status("running", **{k: v for k, v in attrs.items() if k not in ("status", "resume_history")}, resume_history=text.strip())

        with _new_output(parent, rebuild) as writer:
            for name in lost:
                log.warning("%s: snapshot %s could not be read back (damaged by the interruption) and is missing", parent, name)
            write_xdmf(writer.file, h5_path=writer.path)
            return _loop(sim, config, writer, progress)
    log.info("branching %s at %.3g h into %s (changed: %s)", parent, sim.time_h, out, ", ".join(changed) or "nothing")

    def start(writer: RunWriter) -> None:
        writer.write_header(config.to_yaml(), sim.seed, sim.backend.name, sim.lattice)
        writer.set_status("running", parent_run=str(parent.resolve()), branch_time_h=float(sim.time_h),
                          branch_step=int(sim.step_index), branch_changes=", ".join(changed))  # fmt: skip
        writer.append_timeseries(history)
        writer.write_snapshot(sim.step_index, sim.time_h, *sim.snapshot(), voxel_um=sim.lattice.voxel_um)

    with _new_output(out, start) as writer:
        write_xdmf(writer.file, h5_path=writer.path)
        _checkpoint(writer, sim, config)
        return _loop(sim, config, writer, progress)


def _history(ckpt: Any, parent: Path, rows: int) -> dict[str, np.ndarray]:
    """The time series up to the checkpoint: from the checkpoint, or (older checkpoints) from the run file."""
    if ckpt.output is not None:
        return {name: values[:rows] for name, values in ckpt.output["timeseries"].items()}
    out: dict[str, np.ndarray] = {}
    with open_read(parent) as f:
        if int(f["timeseries/time_h"].shape[0]) < rows:
            raise InputFileError(f"{parent}: has fewer time-series rows than its checkpoint records (file damaged); re-run it")
        f["timeseries"].visititems(lambda name, obj: out.__setitem__(name, obj[:rows]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _root_attrs(path: Path) -> dict[str, Any]:
    with open_read(path) as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}


def _copy_snapshots(parent: Path, writer: RunWriter, sim: Simulation, expected: list[str]) -> list[str]:
    """Copy the parent's snapshots up to the checkpoint into ``writer``; returns those of ``expected`` it could not read.

    Each snapshot is read in full before it is written again (a kill can leave one damaged).
    The snapshot at the checkpoint's own step, if the run had written one, is written
    again from the restored state when it cannot be read.
    """
    from carabm.errors import CarabmError  # noqa: PLC0415
    from carabm.io.runfile import Snapshots  # noqa: PLC0415

    copied: set[str] = set()
    step = sim.step_index
    try:
        snaps = Snapshots(parent)
        for i, at in enumerate(snaps.steps):
            if int(at) > step:
                continue
            try:
                snap = snaps[i]
            except (OSError, KeyError, RuntimeError, ValueError, IndexError):
                continue
            agents = {k: v for k, v in snap["agents"].items() if k != "xyz_um"}  # (recomputed from the positions)
            voxel_um = sim.lattice.voxel_um if "xyz_um" in snap["agents"] else None
            writer.write_snapshot(snap["step"], snap["time_h"], snap["fields"], snap["bbb_integrity"], agents, voxel_um=voxel_um)
            copied.add(f"{int(at):06d}")
    except (CarabmError, OSError, KeyError, RuntimeError, ValueError):
        pass  # the file (or its snapshot index) cannot be read at all
    lost = [n for n in expected if int(n) <= step and n not in copied]
    own = f"{step:06d}"
    if own in lost:
        writer.write_snapshot(sim.step_index, sim.time_h, *sim.snapshot(), voxel_um=sim.lattice.voxel_um)
        lost = [n for n in lost if n != own]
    return lost


def _stack(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    return {key: np.array([r[key] for r in rows]) for key in rows[0]}


__all__ = ["Simulation", "run", "build_lattice", "config_differences", "COMPARTMENTS"]
