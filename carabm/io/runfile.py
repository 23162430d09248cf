"""Reading run files: :func:`check_run_file` (one-line errors for bad files), :func:`open_run`
(time series as xarray), :class:`Snapshots` (lazy snapshot reader), the stored config and events.

Reads schema 1 and schema 2 files; the layout is documented in ``docs/outputs.md`` and
written by :class:`carabm.io.hdf5.RunWriter`. The names are also importable from
``carabm.io.hdf5``, where they lived before.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import carabm
from carabm.errors import InputFileError
from carabm.io.hdf5 import SCALE_ATTRS, decode


def open_read(path: str | Path) -> h5py.File:
    """Open a run file read-only without HDF5 file locking, so a run still writing it can be read (up to its last flush).

    If this process already holds the file open with locking (xarray/h5netcdf does by
    default), HDF5 refuses a second open with other locking flags; it is then opened
    with the default flags; failing that, :class:`InputFileError` says so.
    """
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        if "locking flag" not in str(exc) and "already open" not in str(exc):
            raise
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputFileError(
            f"{path}: is already open in this Python session (h5py) in a way that keeps it from being read again; "
            "close it first (f.close())"
        ) from exc


def schema_of(f: h5py.File) -> int:
    """The schema version of an open run file."""
    return int(f.attrs.get("schema_version", carabm.SCHEMA_VERSION))


def check_run_file(path: str | Path, *, need_timeseries: bool = True) -> None:
    """Raise :class:`InputFileError` unless ``path`` is a readable carabm output of a known schema.

    Covers: missing, not HDF5 (or truncated in its header), truncated body, HDF5 but not
    a carabm output, newer schema, and (with ``need_timeseries``) no time series yet.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file; give the .h5 output of 'carabm run'")
    if path.is_dir():
        raise InputFileError(f"{path}: is a folder; give the .h5 output of 'carabm run'")
    if not h5py.is_hdf5(path):
        raise InputFileError(f"{path}: not an HDF5 file (another format, or truncated); give the .h5 output of 'carabm run'")
    try:
        with open_read(path) as f:
            if "carabm_version" not in f.attrs or "schema_version" not in f.attrs:
                raise InputFileError(f"{path}: an HDF5 file, but not a carabm run output (no carabm_version attribute)")
            schema = int(f.attrs["schema_version"])
            if schema > carabm.SCHEMA_VERSION:
                raise InputFileError(
                    f"{path}: written with schema {schema} by a newer carabm ({decode(f.attrs['carabm_version'])}); "
                    f"this is carabm {carabm.__version__} (schema {carabm.SCHEMA_VERSION}); upgrade carabm to read it"
                )
            if need_timeseries:
                if "timeseries/time_h" not in f:
                    raise InputFileError(f"{path}: a carabm output without time series (the run stopped before its first flush)")
                _ = f["timeseries/time_h"][-1:]
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read it as HDF5 (truncated or damaged: {exc}); re-run or restore the file") from exc


def read_config_text(path: str | Path) -> str:
    """The resolved config YAML stored in a run file."""
    with open_read(path) as f:
        return str(decode(f["config"][()]))


def metadata(obj: h5py.HLObject) -> dict[str, Any]:
    """An object's attributes without the dimension-scale bookkeeping; text decoded."""
    return {k: decode(v) for k, v in obj.attrs.items() if k not in SCALE_ATTRS}


def open_run(path: str | Path) -> Any:
    """The time series of a run as an ``xarray.Dataset`` indexed by ``time_h``.

    Variables: ``count_<celltype>``, ``serum_<cytokine>``, ``cns_<cytokine>``, and the
    scalar series (``bbb_integrity``, ``crs_grade``, ...), each with ``units``,
    ``long_name`` and ``description`` attributes. All columns are cut to the shortest (a
    run killed mid-write may leave one column a row ahead). Reads schema 1 and 2 files.
    (Without carabm: ``xarray.open_datatree(path, group="timeseries", engine="h5netcdf")``.)
    """
    import xarray as xr  # noqa: PLC0415

    check_run_file(path)
    columns: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    with open_read(path) as f:
        ts = f["timeseries"]
        time = ts["time_h"][()]
        time_attrs = metadata(ts["time_h"]) if "units" in ts["time_h"].attrs else {"units": "h"}

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and name != "time_h":
                key = name.replace("counts/", "count_").replace("/", "_")
                columns[key] = (obj[()], metadata(obj))

        ts.visititems(visit)
        attrs = metadata(f)
    n = min([len(time)] + [len(v) for v, _ in columns.values()])
    variables = {key: xr.Variable("time_h", values[:n], meta) for key, (values, meta) in columns.items()}
    return xr.Dataset(variables, coords={"time_h": ("time_h", time[:n], time_attrs)}, attrs=attrs)


def read_events(f: h5py.File) -> list[dict[str, Any]]:
    """``therapy/events`` of an open run file as dicts (``time_h``, ``drug``, ``dose_mg``, ``reason``); any schema."""
    group = f.get("therapy/events")
    if not isinstance(group, h5py.Group) or "time_h" not in group:
        return []
    columns = {name: ds[()] for name, ds in group.items() if isinstance(ds, h5py.Dataset) and ds.attrs.get("CLASS") is None}
    n = len(columns["time_h"])
    return [
        {name: (decode(v[i]) if v.dtype.kind in "OSU" else v[i].item()) for name, v in columns.items() if len(v) == n}
        for i in range(n)
    ]


class Snapshots:
    """Lazy reader of a run's snapshots: ``len``, ``times_h``, ``steps`` and ``snaps[i] -> dict``.

    ``snaps[i]`` reads one snapshot on demand: ``{"time_h", "step", "fields": {cytokine:
    float32 [z,y,x]}, "bbb_integrity": float32 [z,y,x] or None, "agents": {column: array}}``.
    Negative indices count from the end. The file is opened per access, so the reader
    can stay around while the run is still writing. Reads schema 1 (a group per
    snapshot) and schema 2 (one ``[time_h, z, y, x]`` array per field) files.
    """

    def __init__(self, path: str | Path):
        check_run_file(path, need_timeseries=False)
        self.path = Path(path)
        with open_read(self.path) as f:
            self.schema = schema_of(f)
            group = f.get("snapshots", {})
            if self.schema == 1:
                self.names: list[str] = sorted(group)
                self.times_h = np.array([float(group[n].attrs["time_h"]) for n in self.names])
                self.steps = np.array([int(n) for n in self.names], dtype=np.int64)
            else:
                n = min(group["time_h"].shape[0], group["step"].shape[0]) if "time_h" in group else 0
                self.times_h = group["time_h"][:n] if n else np.zeros(0)
                self.steps = group["step"][:n].astype(np.int64) if n else np.zeros(0, np.int64)
                self.names = [f"{s:06d}" for s in self.steps]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict[str, Any]:
        """Read snapshot ``i`` (0-based, negative from the end)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"snapshot {i} out of range; the run has {len(self)}")
        i = i % len(self)
        with open_read(self.path) as f:
            if self.schema == 1:
                group = f[f"snapshots/{self.names[i]}"]
                fields = {k: v[()] for k, v in group.get("fields", {}).items()}
                agents = {k: v[()] for k, v in group.get("agents", {}).items()}
                integrity = group["bbb_integrity"][()] if "bbb_integrity" in group else None
            else:
                group = f["snapshots"]
                arrays = {k: v for k, v in group.items() if isinstance(v, h5py.Dataset) and v.ndim == 4}
                fields = {k: v[i] for k, v in arrays.items() if k != "bbb_integrity"}
                integrity = arrays["bbb_integrity"][i] if "bbb_integrity" in arrays else None
                agents = {}
                if "agents" in group:
                    ragged = group["agents"]
                    count = ragged["count"][: i + 1]
                    start, stop = int(count[:i].sum()), int(count.sum())
                    agents = {k: v[start:stop] for k, v in ragged.items() if k != "count" and v.attrs.get("CLASS") is None}
            return {"time_h": float(self.times_h[i]), "step": int(self.steps[i]), "fields": fields,
                    "bbb_integrity": integrity, "agents": agents}  # fmt: skip

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"Snapshots({str(self.path)!r}, n={len(self)}, times_h={self.times_h.tolist()})"
