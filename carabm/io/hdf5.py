"""HDF5 output following DESIGN.md's contract: root attributes, config, lattice, time series, snapshots.

Owns :class:`RunWriter` (writes straight into the output file, flushing as it goes, so a
killed run leaves a readable file up to its last flush), :func:`check_run_file` (one-line
errors for bad files), :func:`open_run` (time series as xarray) and :class:`Snapshots`
(lazy snapshot reader). The layout is documented in ``docs/outputs.md``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import carabm
from carabm.engine.lattice import COMPARTMENTS, Lattice
from carabm.errors import InputFileError
from carabm.io.config import CELL_TYPES

#: units written as attributes on time-series datasets, by name (or name prefix before "/")
UNITS = {
    "time_h": "h", "counts": "cells", "serum": "pg/mL", "cns": "pg/mL", "bbb_integrity": "1 (1 = intact)",
    "crs_grade": "ASTCT grade 0-4 (model surrogate)", "icans_grade": "ICANS grade 0-4 (model surrogate)",
    "tumor_burden": "cells", "blood_per_ul": "cells/uL", "temperature_c": "degC", "vascular_leak": "1 (0 = none)",
    "ice_score": "ICE points 0-10 (model surrogate)", "activated": "cells", "cns_infiltrate": "cells",
}  # fmt: skip
#: descriptions written as attributes on time-series datasets
DESCRIPTIONS = {
    "time_h": "simulated time since CAR-T infusion",
    "counts": "cells of this type, lattice plus systemic blood pool",
    "serum": "serum (systemic blood pool) concentration",
    "cns": "mean concentration over CNS voxels",
    "bbb_integrity": "mean BBB integrity over BBB voxels",
    "crs_grade": "cytokine release syndrome grade, model surrogate of ASTCT",
    "icans_grade": "ICANS grade, model surrogate of ASTCT (ICE score and edema)",
    "tumor_burden": "B cells alive on the lattice",
    "blood_per_ul": "circulating cells per uL of blood",
    "temperature_c": "body temperature, model surrogate",
    "vascular_leak": "systemic capillary leak",
    "ice_score": "immune effector cell encephalopathy score, model surrogate",
    "activated": "activated cells of this type",
    "cns_infiltrate": "CAR-T cells and monocytes in the CNS",
}
#: time-series rows kept in one HDF5 chunk
TIMESERIES_CHUNK = 1024
#: largest snapshot chunk, bytes (whole [z, y, x] slabs)
FIELD_CHUNK_BYTES = 1 << 20


def _key(name: str) -> str:
    return name.split("/")[0]


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def type_codes() -> dict[str, int]:
    """Agent ``type`` codes: the index of each cell type in ``CELL_TYPES``."""
    return {name: i for i, name in enumerate(CELL_TYPES)}


def state_codes() -> dict[str, dict[int, str]]:
    """Agent ``state`` codes per cell type (read from the biology modules)."""
    from carabm.biology import cart, myeloid  # noqa: PLC0415

    myeloid_codes = {myeloid.RESTING: "resting", myeloid.ACTIVATED: "activated"}
    return {
        "cart": {cart.RESTING: "resting", cart.ACTIVATED: "activated", cart.EXHAUSTED: "exhausted"},
        "bcell": {0: "alive"},
        "macrophage": myeloid_codes, "monocyte": myeloid_codes, "microglia": myeloid_codes,
    }  # fmt: skip


def _codes_text(codes: Mapping[int, str]) -> str:
    return ", ".join(f"{code}={name}" for code, name in sorted(codes.items()))


class RunWriter:
    """Writes one run's HDF5 file in place (no temporary name). Use as a context manager.

    ``mode``: ``"x"`` create (fail if present), ``"w"`` create or replace, ``"r+"`` append
    to an existing run (resume).
    """

    def __init__(self, path: str | Path, mode: str = "x"):
        self.path = Path(path)
        self.file = h5py.File(self.path, mode, locking=False)  # readers may look while the run writes
        self._rows = int(self.file["timeseries/time_h"].shape[0]) if "timeseries/time_h" in self.file else 0

    @property
    def rows(self) -> int:
        """Time-series rows written so far."""
        return self._rows

    @property
    def run_id(self) -> str:
        """The run's unique id (root attribute ``run_id``), which its checkpoint repeats."""
        return str(_decode(self.file.attrs.get("run_id", "")))

    # ------------------------------------------------------------------ header
    def write_header(self, config_yaml: str, seed: int, backend: str, lattice: Lattice) -> None:
        """Root attributes, the resolved config text and the compartment labels."""
        f = self.file
        f.attrs["carabm_version"] = carabm.__version__
        f.attrs["schema_version"] = carabm.SCHEMA_VERSION
        f.attrs["seed"] = int(seed)
        f.attrs["backend"] = backend
        f.attrs["run_id"] = uuid.uuid4().hex
        f.attrs["status"] = "running"
        config = f.create_dataset("config", data=config_yaml, dtype=h5py.string_dtype())
        config.attrs["description"] = "resolved YAML config of the run (every value); reproduces it"
        comp = f.create_dataset("lattice/compartment", data=lattice.labels, compression="gzip", compression_opts=4)
        comp.attrs["voxel_um"] = float(lattice.voxel_um)
        comp.attrs["axes"] = "z, y, x"
        comp.attrs["units"] = "label"
        comp.attrs["description"] = "compartment of each voxel"
        for name, code in COMPARTMENTS.items():
            comp.attrs[f"label_{name}"] = code
        comp.attrs["labels"] = ", ".join(f"{code}={name}" for name, code in COMPARTMENTS.items())
        f.flush()

    def set_status(self, status: str, **attrs: Any) -> None:
        """Set the root ``status`` (running, complete) and other root attributes; flush."""
        self.file.attrs["status"] = status
        for key, value in attrs.items():
            self.file.attrs[key] = value
        self.file.flush()

    # ------------------------------------------------------------------ time series
    def append_timeseries(self, rows: Mapping[str, np.ndarray]) -> None:
        """Append rows (each value a 1D array of equal length) under ``timeseries/``; flush."""
        lengths = {len(np.atleast_1d(v)) for v in rows.values()}
        if len(lengths) != 1:
            raise ValueError(f"time-series rows of unequal length: {lengths}")
        (n_new,) = lengths
        for name, values in rows.items():
            values = np.atleast_1d(np.asarray(values))
            key = f"timeseries/{name}"
            if key not in self.file:
                dtype = np.float64 if values.dtype.kind == "f" else values.dtype
                ds = self.file.create_dataset(key, shape=(self._rows,), maxshape=(None,), chunks=(TIMESERIES_CHUNK,), dtype=dtype,
                                              compression="gzip", compression_opts=4, shuffle=True)  # fmt: skip
                ds.attrs["units"] = UNITS.get(_key(name), "")
                ds.attrs["description"] = DESCRIPTIONS.get(_key(name), "")
            ds = self.file[key]
            ds.resize((self._rows + n_new,))
            ds[self._rows :] = values
        self._rows += n_new
        self.file.flush()

    def truncate(self, rows: int, time_h: float) -> None:
        """Cut the time series to ``rows`` rows and drop snapshots after ``time_h`` (resume)."""
        ts = self.file.get("timeseries")
        if ts is not None:

            def cut(_: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset) and obj.shape[0] > rows:
                    obj.resize((rows,))

            ts.visititems(cut)
        self._rows = min(self._rows, rows)
        for name in list(self.file.get("snapshots", {})):
            if float(self.file[f"snapshots/{name}"].attrs["time_h"]) > time_h + 1e-9:
                del self.file[f"snapshots/{name}"]
        self.file.flush()

    def copy_timeseries_from(self, source: h5py.File, rows: int) -> None:
        """Copy the first ``rows`` time-series rows of another run (a branch's history)."""

        def copy(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                ds = self.file.create_dataset(f"timeseries/{name}", data=obj[:rows], maxshape=(None,), chunks=(TIMESERIES_CHUNK,),
                                              compression="gzip", compression_opts=4, shuffle=True)  # fmt: skip
                for key, value in obj.attrs.items():
                    ds.attrs[key] = value

        source["timeseries"].visititems(copy)
        self._rows = rows
        self.file.flush()

    # ------------------------------------------------------------------ snapshots
    def write_events(self, events: list[tuple[float, str, float, str]]) -> None:
        """Replace ``therapy/events`` with all administrations so far: columns time_h, drug, dose_mg, reason."""
        if "therapy/events" in self.file:
            del self.file["therapy/events"]
        group = self.file.create_group("therapy/events")
        group.attrs["description"] = "one row per drug administration"
        text = h5py.string_dtype()
        columns = {
            "time_h": (np.array([e[0] for e in events], dtype=np.float64), "h"),
            "drug": (np.array([e[1] for e in events], dtype=object), ""),
            "dose_mg": (np.array([e[2] for e in events], dtype=np.float64), "mg"),
            "reason": (np.array([e[3] for e in events], dtype=object), ""),
        }
        for name, (values, units) in columns.items():
            ds = group.create_dataset(name, data=values, dtype=text if values.dtype == object else values.dtype)
            ds.attrs["units"] = units
        self.file.flush()

    def write_snapshot(
        self,
        index: int,
        time_h: float,
        fields: Mapping[str, np.ndarray],
        bbb_integrity: np.ndarray | None,
        agents: Mapping[str, np.ndarray],
        voxel_um: float | None = None,
    ) -> None:
        """One snapshot ``snapshots/NNNNNN`` (NNNNNN: step index) with fields [z,y,x], BBB integrity and agents.

        With ``voxel_um`` an ``agents/xyz_um`` column (voxel centres in µm, x-y-z order) is
        added for ParaView/VisIt.
        """
        name = f"snapshots/{index:06d}"
        if name in self.file:
            del self.file[name]
        group = self.file.create_group(name)
        group.attrs["time_h"] = float(time_h)
        group.attrs["step"] = int(index)
        for cytokine, data in fields.items():
            ds = self._field(group, f"fields/{cytokine}", data)
            ds.attrs["units"] = "pg/mL"
            ds.attrs["description"] = f"{cytokine} concentration per voxel"
        if bbb_integrity is not None:
            ds = self._field(group, "bbb_integrity", bbb_integrity)
            ds.attrs["units"] = "1 (1 = intact; 1 outside the BBB)"
            ds.attrs["description"] = "BBB integrity per voxel"
        if agents:
            agents = dict(agents)
            if voxel_um is not None and "position" in agents:
                position = np.asarray(agents["position"], dtype=np.float32).reshape(-1, 3)
                agents["xyz_um"] = (position[:, ::-1] + np.float32(0.5)) * np.float32(voxel_um)
            for column, data in agents.items():
                self._agent_column(group, column, np.asarray(data))
        self.file.flush()

    @staticmethod
    def _field(group: h5py.Group, name: str, data: np.ndarray) -> h5py.Dataset:
        data = np.ascontiguousarray(data, dtype=np.float32)
        nz, ny, nx = data.shape
        slabs = max(1, min(nz, FIELD_CHUNK_BYTES // max(1, 4 * ny * nx)))
        ds = group.create_dataset(name, data=data, chunks=(slabs, ny, nx), compression="gzip", compression_opts=4, shuffle=True)
        ds.attrs["axes"] = "z, y, x"
        return ds

    @staticmethod
    def _agent_column(group: h5py.Group, name: str, data: np.ndarray) -> None:
        options: dict[str, Any] = {}
        if data.shape[0] > 0:
            options = {"chunks": (min(data.shape[0], 65536),) + data.shape[1:], "compression": "gzip", "compression_opts": 4,
                       "shuffle": True}  # fmt: skip
        ds = group.create_dataset(f"agents/{name}", data=data, **options)
        if name == "position":
            ds.attrs["order"] = "z, y, x (voxel indices, like the fields)"
            ds.attrs["units"] = "voxel"
        elif name == "xyz_um":
            ds.attrs["order"] = "x, y, z (voxel centres, for ParaView/VisIt)"
            ds.attrs["units"] = "um"
        elif name == "type":
            ds.attrs["codes"] = _codes_text({code: n for n, code in type_codes().items()})
            for cell, code in type_codes().items():
                ds.attrs[f"code_{cell}"] = code
        elif name == "state":
            ds.attrs["codes"] = "; ".join(f"{cell}: {_codes_text(codes)}" for cell, codes in state_codes().items())
            for cell, codes in state_codes().items():
                ds.attrs[f"codes_{cell}"] = _codes_text(codes)
        elif name == "id":
            ds.attrs["description"] = "stable agent id (never reused)"

    def close(self) -> None:
        """Flush and close the file."""
        if self.file.id.valid:
            self.file.close()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --------------------------------------------------------------------------- reading


def open_read(path: str | Path) -> h5py.File:
    """Open a run file read-only without HDF5 file locking, so a run still writing it can be read (up to its last flush)."""
    return h5py.File(path, "r", locking=False)


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
                    f"{path}: written with schema {schema} by a newer carabm ({_decode(f.attrs['carabm_version'])}); "
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
        return str(_decode(f["config"][()]))


def open_run(path: str | Path) -> Any:
    """The time series of a run as an ``xarray.Dataset`` indexed by ``time_h``.

    Variables: ``count_<celltype>``, ``serum_<cytokine>``, ``cns_<cytokine>``, and the
    scalar series (``bbb_integrity``, ``crs_grade``, ...), each with ``units`` and
    ``description`` attributes. All columns are cut to the shortest (a run killed
    mid-write may leave one column a row ahead).
    """
    import xarray as xr  # noqa: PLC0415

    check_run_file(path)
    columns: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    with open_read(path) as f:
        ts = f["timeseries"]
        time = ts["time_h"][()]

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and name != "time_h":
                key = name.replace("counts/", "count_").replace("/", "_")
                columns[key] = (obj[()], {k: str(_decode(v)) for k, v in obj.attrs.items()})

        ts.visititems(visit)
        attrs = {k: _decode(v) for k, v in f.attrs.items()}
    n = min([len(time)] + [len(v) for v, _ in columns.values()])
    variables = {key: xr.Variable("time_h", values[:n], meta) for key, (values, meta) in columns.items()}
    return xr.Dataset(variables, coords={"time_h": ("time_h", time[:n], {"units": "h"})}, attrs=attrs)


class Snapshots:
    """Lazy reader of a run's snapshots: ``len``, ``times_h``, ``steps`` and ``snaps[i] -> dict``.

    ``snaps[i]`` reads one snapshot on demand: ``{"time_h", "step", "fields": {cytokine:
    float32 [z,y,x]}, "bbb_integrity": float32 [z,y,x] or None, "agents": {column: array}}``.
    Negative indices count from the end. The file is opened per access, so the reader
    can stay around while the run is still writing.
    """

    def __init__(self, path: str | Path):
        check_run_file(path, need_timeseries=False)
        self.path = Path(path)
        with open_read(self.path) as f:
            group = f.get("snapshots", {})
            self.names: list[str] = sorted(group)
            self.times_h = np.array([float(group[n].attrs["time_h"]) for n in self.names])
            self.steps = np.array([int(n) for n in self.names], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict[str, Any]:
        """Read snapshot ``i`` (0-based, negative from the end)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"snapshot {i} out of range; the run has {len(self)}")
        name = self.names[i]
        with open_read(self.path) as f:
            group = f[f"snapshots/{name}"]
            fields = {k: v[()] for k, v in group.get("fields", {}).items()}
            agents = {k: v[()] for k, v in group.get("agents", {}).items()}
            integrity = group["bbb_integrity"][()] if "bbb_integrity" in group else None
            return {"time_h": float(group.attrs["time_h"]), "step": int(name), "fields": fields,
                    "bbb_integrity": integrity, "agents": agents}  # fmt: skip

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"Snapshots({str(self.path)!r}, n={len(self)}, times_h={self.times_h.tolist()})"
