"""The sweep folder: ``members.csv``, ``design.json``, each member's ``config.yaml`` and output status.

Layout of a sweep folder::

    DIR/members.csv          index, seed, every varied key
    DIR/design.json          sobol/morris sweeps: the SALib problem, method and sample
    DIR/sweep.yaml           the sweep file as run
    DIR/NNNN/config.yaml     the member's resolved config
    DIR/NNNN/run.h5          its output (+ run.h5.ckpt, run.h5.xmf)
    DIR/NNNN/error.txt       why it failed (removed when it later succeeds)

Files are written atomically and only when their text changes, so concurrent array tasks
preparing the same folder are safe.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from carabm.errors import InputFileError
from carabm.hpc.members import Sweep

OUTPUT_NAME = "run.h5"
MEMBERS_CSV = "members.csv"
DESIGN_JSON = "design.json"


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` unless the file already holds it; atomic, so concurrent array tasks are safe."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def members_csv(sweep: Sweep) -> str:
    """The text of ``members.csv``: index, seed and every varied key."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["index", "seed", *sweep.keys])
    for m in sweep.members:
        writer.writerow([m.index, m.seed, *[_csv_value(m.values.get(k)) for k in sweep.keys]])
    return buf.getvalue()


def _csv_value(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return yaml_dump_flow(value)
    return repr(value) if isinstance(value, float) else value


def yaml_dump_flow(value: Any) -> str:
    """A value as one-line YAML (lists and mappings in members.csv)."""
    import yaml  # noqa: PLC0415

    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()


def prepare(sweep: Sweep, out: str | Path, indices: Iterable[int] | None = None) -> Path:
    """Create ``out``, write ``members.csv`` and the members' ``config.yaml`` (all, or ``indices``).

    Refuses a folder whose ``members.csv`` describes another sweep.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputFileError(f"{out}: exists and is not a folder; give a folder for the sweep")
    out.mkdir(parents=True, exist_ok=True)
    text = members_csv(sweep)
    existing = out / MEMBERS_CSV
    if existing.exists() and existing.read_text(encoding="utf-8") != text:
        raise InputFileError(f"{existing}: holds another sweep's members (the sweep file changed?); use a new --out folder")
    _atomic_write(existing, text)
    if sweep.design is not None:  # for carabm collect: the sensitivity analysis
        _atomic_write(out / DESIGN_JSON, json.dumps(sweep.design, indent=1) + "\n")
    if sweep.path is not None:  # provenance: the sweep file as run
        text = Path(sweep.path).read_text(encoding="utf-8")
        if sweep.extended is not None:  # with its extends: file merged in (carabm collect reads trial: here)
            text = (f"# {sweep.path} as run, with the file it extends merged in\n"
                    + yaml.safe_dump(sweep.extended, sort_keys=False))
        _atomic_write(out / "sweep.yaml", text)
    chosen = set(indices) if indices is not None else None
    for m in sweep.members:
        if chosen is None or m.index in chosen:
            (out / m.name).mkdir(exist_ok=True)
            _atomic_write(out / m.name / "config.yaml", m.config.to_yaml())
    return out


def output_status(path: Path) -> str:
    """``missing``, ``complete``, ``running`` (incomplete, resumable) or ``damaged`` for a member's output file.

    A file a kill left unreadable counts as ``running`` when its checkpoint exists
    (``--resume`` rebuilds the file from it), else as ``damaged``.
    """
    from carabm.io.checkpoint import checkpoint_path  # noqa: PLC0415

    if not path.exists():
        return "running" if checkpoint_path(path).exists() else "missing"
    import h5py  # noqa: PLC0415

    try:
        with h5py.File(path, "r", locking=False) as f:
            status = f.attrs.get("status", "")
    except OSError:
        return "running" if checkpoint_path(path).exists() else "damaged"
    status = status.decode() if isinstance(status, bytes) else str(status)
    return "complete" if status == "complete" else "running"
