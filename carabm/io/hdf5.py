"""HDF5 output following DESIGN.md's contract: root attributes, config, lattice, time series, snapshots.

Owns :class:`RunWriter` (writes straight into the output file, flushing as it goes, so a
killed run leaves a readable file up to its last flush) and the metadata of every series.
The readers (:func:`~carabm.io.runfile.check_run_file`, :func:`~carabm.io.runfile.open_run`,
:class:`~carabm.io.runfile.Snapshots`) are in :mod:`carabm.io.runfile`. The layout is
documented in ``docs/outputs.md``.

Schema 2 follows the netCDF-4 data model and the CF conventions where they fit, so
``xarray.open_dataset(RUN.h5, group="timeseries" | "snapshots" | ..., engine="h5netcdf")``
opens each group without carabm: every array is attached to HDF5 dimension scales
(``time_h``, ``z``, ``y``, ``x``, ``agent``, ``event``), units are UDUNITS strings and every
variable has ``units`` (numbers), ``long_name`` and ``description``. Snapshot fields are one
``[time_h, z, y, x]`` array per cytokine, grown by one row per snapshot; snapshot agents
are a CF contiguous ragged array (columns over ``agent``, ``count`` per snapshot). The
readers also read schema-1 files (one group per snapshot).
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import carabm
from carabm.engine.lattice import COMPARTMENTS, Lattice
from carabm.errors import InputFileError
from carabm.io.crash import crash_point
from carabm.io.variables import (  # noqa: F401  (re-exported: code and scripts import them from here)
    AGENT_COLUMNS,
    DESCRIPTIONS,
    SERIES,
    UNITS,
    VALID_RANGE,
    agent_metadata,
    series_metadata,
)

#: the conventions the file follows (root attribute ``Conventions``)
CONVENTIONS = "CF-1.10"
#: HDF5 attributes that belong to dimension scales (bookkeeping, not metadata)
SCALE_ATTRS = frozenset({"CLASS", "NAME", "DIMENSION_LIST", "REFERENCE_LIST", "_Netcdf4Dimid", "_Netcdf4Coordinates"})
#: the NAME of a netCDF-4 dimension that has no coordinate values (netCDF-C's spelling, read by h5netcdf)
_PHONY = "This is a netCDF dimension but not a netCDF variable."

#: snapshots: rows of the [time_h, z, y, x] field arrays in one chunk is 1; largest chunk, bytes (whole [y, x] slabs)
FIELD_CHUNK_BYTES = 1 << 20
#: time-series rows kept in one HDF5 chunk (the last one is rewritten at every flush)
TIMESERIES_CHUNK = 128
#: agent rows kept in one HDF5 chunk (agents of all snapshots, one after another)
AGENT_CHUNK = 16384
#: snapshot rows (time_h, step, agent count) in one HDF5 chunk
SNAPSHOT_CHUNK = 64
_GZIP: dict[str, Any] = {"compression": "gzip", "compression_opts": 4, "shuffle": True}

def decode(value: Any) -> Any:
    """An HDF5 attribute or string value as Python text (bytes decoded as UTF-8), anything else as it is."""
    return value.decode() if isinstance(value, bytes) else value


def type_codes(cell_states: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Agent ``type`` codes: the position of each cell type in ``cell_states``."""
    return {name: i for i, name in enumerate(cell_states)}


def state_codes(cell_states: Mapping[str, Sequence[str]]) -> dict[str, dict[int, str]]:
    """Agent ``state`` codes per cell type: the position of each state name."""
    return {cell: dict(enumerate(states)) for cell, states in cell_states.items()}


def read_state_codes(f: h5py.File) -> dict[str, dict[int, str]]:
    """The ``state`` codes per cell type stored in a run file (attributes ``codes_<cell>``), in ``type`` code order."""
    agents = f.get("snapshots/agents")
    if agents is None or "type" not in agents or "state" not in agents:
        return {}
    types = {int(code): name.removeprefix("code_") for name, code in agents["type"].attrs.items() if name.startswith("code_")}
    out = {}
    for code in sorted(types):
        text = decode(agents["state"].attrs.get(f"codes_{types[code]}", ""))
        out[types[code]] = {int(k): v for k, v in (part.split("=", 1) for part in text.split(", ") if "=" in part)}
    return out


def _codes_text(codes: Mapping[int, str]) -> str:
    return ", ".join(f"{code}={name}" for code, name in sorted(codes.items()))


def _set_attrs(ds: h5py.HLObject, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        ds.attrs[key] = value


def _coordinate(group: h5py.Group, name: str, values: np.ndarray, attrs: Mapping[str, Any]) -> h5py.Dataset:
    """A fixed-length coordinate variable (a dimension scale named ``name``)."""
    ds = group.create_dataset(name, data=values)
    ds.make_scale(name)
    _set_attrs(ds, attrs)
    return ds


def _growing_coordinate(group: h5py.Group, name: str, dtype: Any, chunk: int, attrs: Mapping[str, Any]) -> h5py.Dataset:
    """An unlimited coordinate variable (a dimension scale named ``name``), empty."""
    ds = group.create_dataset(name, shape=(0,), maxshape=(None,), chunks=(chunk,), dtype=dtype, **_GZIP)
    ds.make_scale(name)
    _set_attrs(ds, attrs)
    return ds


def _dimension(group: h5py.Group, name: str, size: int, growing: bool) -> h5py.Dataset:
    """A netCDF-4 dimension without coordinate values (netCDF-C's convention: a dimension scale nobody writes to)."""
    ds = group.create_dataset(name, shape=(size,), maxshape=(None,) if growing else (size,), dtype=np.float32,
                              chunks=(AGENT_CHUNK,) if growing else None)  # fmt: skip
    ds.make_scale(_PHONY if growing else f"{_PHONY}{size:10d}")
    return ds


def _attach(ds: h5py.Dataset, *scales: h5py.Dataset) -> None:
    for axis, scale in enumerate(scales):
        ds.dims[axis].attach_scale(scale)


def _voxel_axes(group: h5py.Group, shape: tuple[int, ...], voxel_um: float) -> tuple[h5py.Dataset, ...]:
    """Coordinate variables ``z``, ``y``, ``x``: voxel centres in um from the lattice corner."""
    out = []
    for name, n in zip("zyx", shape):
        out.append(_coordinate(group, name, (np.arange(n) + 0.5) * float(voxel_um),
                               {"units": "um", "axis": name.upper(), "long_name": f"{name} of the voxel centre",
                                "description": f"voxel centre along {name}, from the lattice corner"}))  # fmt: skip
    return tuple(out)


def _append_rows(ds: h5py.Dataset, start: int, values: np.ndarray) -> None:
    """``ds[start:] = values`` after growing ``ds`` to ``start + len(values)`` rows (1D, unlimited).

    h5py's low-level calls: the same HDF5 write (values converted to the dataset's type),
    without the high-level slicing machinery, which costs about a millisecond per call.
    """
    n = int(values.shape[0])
    dsid = ds.id
    dsid.set_extent((start + n,))
    data = np.ascontiguousarray(values, dtype=dsid.dtype)
    space = dsid.get_space()
    space.select_hyperslab((start,), (n,))
    dsid.write(h5py.h5s.create_simple((n,)), space, data)


def _resize(ds: h5py.Dataset, n: int) -> None:
    if ds.shape[0] != n:
        ds.resize((n,) + ds.shape[1:])


class RunWriter:
    """Writes one run's HDF5 file in place (no temporary name). Use as a context manager.

    ``mode``: ``"x"`` create (fail if present), ``"w"`` create or replace, ``"r+"`` append
    to an existing run (resume; the file must have the current schema). ``cell_states``:
    the cell types (in ``type`` code order) and their state names, written as the code
    attributes of the agents' ``type`` and ``state`` columns (io knows no cell type);
    ``variable_docs``: the metadata of their per-agent variables.
    """

    def __init__(self, path: str | Path, mode: str = "x", cell_states: Mapping[str, Sequence[str]] | None = None,
                 variable_docs: Mapping[str, tuple[str, str, str]] | None = None):  # fmt: skip
        self.path = Path(path)
        #: state names per cell type, in ``type`` code order (the code of a state is its position); from the caller
        self.cell_states = dict(cell_states or {})
        #: units, long name and description of the cell types' per-agent variables; from the caller
        self.variable_docs = dict(variable_docs or {})
        # fs_strategy "none": space freed in the file (a rewritten compressed chunk) is never reused while the file is
        # open, so a kill in the middle of a write cannot leave metadata pointing at overwritten data; the file
        # stays readable up to its last flush (at the cost of some unused bytes, fewer with small time-series chunks)
        creating = mode in ("x", "w", "w-")
        self.file = h5py.File(self.path, mode, locking=False, **({"fs_strategy": "none"} if creating else {}))
        if mode == "r+" and int(self.file.attrs.get("schema_version", carabm.SCHEMA_VERSION)) < carabm.SCHEMA_VERSION:
            schema, version = int(self.file.attrs["schema_version"]), decode(self.file.attrs.get("carabm_version", "?"))
            self.file.close()
            raise InputFileError(
                f"{self.path}: written with schema {schema} (carabm {version}); this carabm writes schema "
                f"{carabm.SCHEMA_VERSION} and cannot append to it; branch it into a new file with --out NEW.h5, "
                f"or resume it with carabm {version}"
            )
        self._rows = int(self.file["timeseries/time_h"].shape[0]) if "timeseries/time_h" in self.file else 0
        # every row written, in memory too: a checkpoint carries them (see :meth:`output_state`)
        self._history: dict[str, list[np.ndarray]] = {}
        # open handles of the time-series datasets (a path lookup in h5py costs more than the append itself)
        self._series_handles: dict[str, h5py.Dataset] = {}
        if "timeseries" in self.file:
            self.file["timeseries"].visititems(
                lambda name, obj: self._history.__setitem__(name, [obj[: self._rows]]) if isinstance(obj, h5py.Dataset) else None
            )

    @property
    def rows(self) -> int:
        """Time-series rows written so far."""
        return self._rows

    def output_state(self) -> dict[str, Any]:
        """Root attributes and every time-series row: what rebuilds this file up to now (kept in checkpoints)."""
        series = {}
        for name, parts in self._history.items():
            values = np.concatenate(parts) if len(parts) > 1 else parts[0]
            self._history[name] = [values]
            series[name] = values
        snaps = self.file.get("snapshots")
        steps = snaps["step"][: snaps["time_h"].shape[0]] if snaps is not None and "time_h" in snaps else []
        return {"attrs": {k: decode(v) for k, v in self.file.attrs.items()}, "timeseries": series,
                "snapshots": [f"{int(step):06d}" for step in steps]}  # fmt: skip

    @property
    def run_id(self) -> str:
        """The run's unique id (root attribute ``run_id``), which its checkpoint repeats."""
        return str(decode(self.file.attrs.get("run_id", "")))

    # ------------------------------------------------------------------ header
    def write_header(self, config_yaml: str, seed: int, backend: str, lattice: Lattice) -> None:
        """Root attributes, the resolved config text and the lattice (compartment labels and voxel axes)."""
        f = self.file
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        f.attrs["Conventions"] = CONVENTIONS
        f.attrs["title"] = "carabm run: agent-based 3D simulation of CAR-T therapy toxicities (CRS, ICANS)"
        f.attrs["source"] = f"carabm {carabm.__version__}"
        f.attrs["history"] = f"{now} created by carabm {carabm.__version__}"
        f.attrs["carabm_version"] = carabm.__version__
        f.attrs["schema_version"] = carabm.SCHEMA_VERSION
        f.attrs["seed"] = int(seed)
        f.attrs["backend"] = backend
        f.attrs["run_id"] = uuid.uuid4().hex
        f.attrs["status"] = "running"
        config = f.create_dataset("config", data=config_yaml, dtype=h5py.string_dtype())
        config.attrs["long_name"] = "run configuration"
        config.attrs["description"] = "resolved YAML config of the run (every value); reproduces it"
        group = f.create_group("lattice")
        group.attrs["description"] = "the simulated volume: voxel centres (z, y, x) and the compartment of each voxel"
        axes = _voxel_axes(group, lattice.labels.shape, lattice.voxel_um)
        comp = group.create_dataset("compartment", data=lattice.labels, compression="gzip", compression_opts=4)
        _attach(comp, *axes)
        _set_attrs(comp, {"units": "1", "long_name": "compartment", "description": "compartment of each voxel (flag_values / flag_meanings)",
                          "flag_values": np.array(list(COMPARTMENTS.values()), dtype=comp.dtype),
                          "flag_meanings": " ".join(COMPARTMENTS), "voxel_um": float(lattice.voxel_um), "axes": "z, y, x",
                          "labels": ", ".join(f"{code}={name}" for name, code in COMPARTMENTS.items())})  # fmt: skip
        for name, code in COMPARTMENTS.items():
            comp.attrs[f"label_{name}"] = code
        f.flush()

    def set_status(self, status: str, **attrs: Any) -> None:
        """Set the root ``status`` (running, complete) and other root attributes; flush."""
        self.file.attrs["status"] = status
        for key, value in attrs.items():
            self.file.attrs[key] = value
        self.file.flush()

    # ------------------------------------------------------------------ time series
    def _series(self, name: str, dtype: Any) -> h5py.Dataset:
        """The time-series dataset ``timeseries/<name>`` (created empty-but-``rows``-long, attached to ``time_h``)."""
        cached = self._series_handles.get(name)
        if cached is not None:
            return cached
        key = f"timeseries/{name}"
        if key in self.file:
            self._series_handles[name] = self.file[key]
            return self._series_handles[name]
        dtype = np.float64 if np.dtype(dtype).kind == "f" else dtype
        if name == "time_h":
            group = self.file.require_group("timeseries")
            group.attrs["description"] = "one row per time step (row 0 is t = 0), over the coordinate time_h"
            ds = _growing_coordinate(group, "time_h", dtype, TIMESERIES_CHUNK, {})
        else:
            time = self._series("time_h", np.float64)
            group = name.split("/", 1)[0]
            if "/" in name and f"timeseries/{group}" not in self.file:
                self.file.create_group(f"timeseries/{group}").attrs["description"] = series_metadata(name)["description"]
            ds = self.file.create_dataset(
                key, shape=(self._rows,), maxshape=(None,), chunks=(TIMESERIES_CHUNK,), dtype=dtype, **_GZIP
            )
            _attach(ds, time)
        _set_attrs(ds, series_metadata(name))
        self._series_handles[name] = ds
        return ds

    def append_timeseries(self, rows: Mapping[str, np.ndarray]) -> None:
        """Append rows (each value a 1D array of equal length) under ``timeseries/``; flush.

        ``time_h`` (the coordinate) is written last, so its length counts complete rows.
        """
        lengths = {len(np.atleast_1d(v)) for v in rows.values()}
        if len(lengths) != 1:
            raise ValueError(f"time-series rows of unequal length: {lengths}")
        (n_new,) = lengths
        order = [name for name in rows if name != "time_h"] + (["time_h"] if "time_h" in rows else [])
        for i, name in enumerate(order):
            if i == len(order) // 2:
                crash_point("timeseries")
            values = np.atleast_1d(np.asarray(rows[name]))
            if name not in self._history:  # a column new in this row (a drug given for the first time): zeros before
                self._history[name] = [np.zeros(self._rows, dtype=np.float64 if values.dtype.kind == "f" else values.dtype)]
            self._history[name].append(values)
            _append_rows(self._series(name, values.dtype), self._rows, values)
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
        snaps = self.file.get("snapshots")
        if snaps is not None and "time_h" in snaps:
            keep = int(np.count_nonzero(snaps["time_h"][()] <= time_h + 1e-9))
            self._cut_snapshots(keep)
        self._history = {name: [np.concatenate(parts)[: self._rows]] for name, parts in self._history.items()}
        self.file.flush()

    def copy_timeseries_from(self, source: h5py.File, rows: int) -> None:
        """Copy the first ``rows`` time-series rows of another run (a branch's history; any schema)."""
        names: list[str] = []
        source["timeseries"].visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        self._rows = 0
        self.append_timeseries({name: source[f"timeseries/{name}"][:rows] for name in names})

    # ------------------------------------------------------------------ therapy events
    def write_events(self, events: list[tuple[float, str, float, str]]) -> None:
        """Replace ``therapy/events`` with all administrations so far: columns time_h, drug, dose_mg, reason over ``event``."""
        if "therapy/events" in self.file:
            del self.file["therapy/events"]
        self.file.require_group("therapy").attrs["description"] = "drug administrations (therapy/events)"
        group = self.file.create_group("therapy/events")
        group.attrs["description"] = "one row per drug administration (columns over the dimension event)"
        event = _dimension(group, "event", len(events), growing=False)
        text = h5py.string_dtype()
        columns = {
            "time_h": (np.array([e[0] for e in events], dtype=np.float64),
                       {"units": "h", "long_name": "time of administration", "description": "time of the dose since CAR-T infusion"}),
            "drug": (np.array([e[1] for e in events], dtype=object), {"long_name": "drug", "description": "drug name, as in the config"}),
            "dose_mg": (np.array([e[2] for e in events], dtype=np.float64),
                        {"units": "mg", "long_name": "dose", "description": "dose given, in mg"}),
            "reason": (np.array([e[3] for e in events], dtype=object),
                       {"long_name": "reason", "description": "why the dose was given (schedule or the trigger that fired)"}),
        }  # fmt: skip
        for name, (values, attrs) in columns.items():
            ds = group.create_dataset(name, data=values, dtype=text if values.dtype == object else values.dtype)
            _attach(ds, event)
            _set_attrs(ds, attrs)
        self.file.flush()

    # ------------------------------------------------------------------ snapshots
    def _snapshot_group(self, shape: tuple[int, int, int], voxel_um: float | None) -> h5py.Group:
        """``snapshots/`` with its coordinates ``time_h``, ``step``, ``z``, ``y``, ``x`` (created at the first snapshot)."""
        group = self.file.require_group("snapshots")
        if "time_h" not in group:
            group.attrs["description"] = (
                "snapshots of the lattice: fields over (time_h, z, y, x), agents as a ragged array in agents/"
            )
            if voxel_um is None:
                voxel_um = (
                    float(self.file["lattice/compartment"].attrs.get("voxel_um", 1.0))
                    if "lattice/compartment" in self.file
                    else 1.0
                )
            time = _growing_coordinate(group, "time_h", np.float64, SNAPSHOT_CHUNK,
                                       {**series_metadata("time_h"), "long_name": "snapshot time since CAR-T infusion"})  # fmt: skip
            step = group.create_dataset("step", shape=(0,), maxshape=(None,), chunks=(SNAPSHOT_CHUNK,), dtype=np.int64)
            _attach(step, time)
            _set_attrs(step, {"units": "1", "long_name": "step index", "description": "time step of the snapshot (0 = infusion)"})
            _voxel_axes(group, shape, voxel_um)
        return group

    def _cut_snapshots(self, keep: int) -> None:
        """Keep the first ``keep`` snapshots (resize every array along ``time_h`` and the agents' rows)."""
        group = self.file["snapshots"]
        agents = group.get("agents")
        if agents is not None:
            rows = int(agents["count"][:keep].sum())
            for name, ds in agents.items():
                if ds.maxshape[0] is None:  # the growing columns (not the fixed zyx / xyz dimensions)
                    _resize(ds, keep if name == "count" else rows)
        for name, ds in group.items():
            if isinstance(ds, h5py.Dataset) and name not in ("z", "y", "x"):
                _resize(ds, min(ds.shape[0], keep))

    def write_snapshot(
        self,
        index: int,
        time_h: float,
        fields: Mapping[str, np.ndarray],
        bbb_integrity: np.ndarray | None,
        agents: Mapping[str, np.ndarray],
        voxel_um: float | None = None,
    ) -> None:
        """Append one snapshot (step ``index``): fields [z,y,x] as a new row of ``snapshots/<cytokine>``, BBB integrity and agents.

        A snapshot of a step already stored replaces it (and drops any after it). With
        ``voxel_um`` an ``agents/xyz_um`` column (voxel centres in µm, x-y-z order) is
        added for ParaView/VisIt. ``time_h`` is grown last, so it counts complete snapshots.
        """
        arrays = dict(fields)
        if bbb_integrity is not None:
            arrays["bbb_integrity"] = bbb_integrity
        shape = next(iter(arrays.values())).shape if arrays else self.file["lattice/compartment"].shape
        group = self._snapshot_group(tuple(shape), voxel_um)
        steps = group["step"][: group["time_h"].shape[0]]
        slot = int(np.flatnonzero(steps == index)[0]) if np.any(steps == index) else len(steps)
        self._cut_snapshots(slot)
        for name, data in arrays.items():
            ds = self._field(group, name, tuple(shape))
            _resize(ds, slot + 1)
            ds[slot] = np.asarray(data, dtype=np.float32)
        crash_point("snapshot")
        if agents:
            agents = dict(agents)
            if voxel_um is not None and "position" in agents:
                position = np.asarray(agents["position"], dtype=np.float32).reshape(-1, 3)
                agents["xyz_um"] = (position[:, ::-1] + np.float32(0.5)) * np.float32(voxel_um)
            self._agents(group, slot, {column: np.asarray(data) for column, data in agents.items()})
        _resize(group["step"], slot + 1)
        group["step"][slot] = int(index)
        _resize(group["time_h"], slot + 1)
        group["time_h"][slot] = float(time_h)
        self.file.flush()

    @staticmethod
    def _field(group: h5py.Group, name: str, shape: tuple[int, ...]) -> h5py.Dataset:
        """``snapshots/<name>``: float32 [time_h, z, y, x], one snapshot per row, chunks of whole [y, x] slabs."""
        if name in group:
            return group[name]
        nz, ny, nx = shape
        slabs = max(1, min(nz, FIELD_CHUNK_BYTES // max(1, 4 * ny * nx)))
        ds = group.create_dataset(name, shape=(0, nz, ny, nx), maxshape=(None, nz, ny, nx), chunks=(1, slabs, ny, nx),
                                  dtype=np.float32, **_GZIP)  # fmt: skip
        _attach(ds, group["time_h"], group["z"], group["y"], group["x"])
        if name == "bbb_integrity":
            _set_attrs(ds, {"units": "1", "long_name": "BBB integrity", "valid_range": np.array([0.0, 1.0], np.float32),
                            "description": "BBB integrity per voxel (1 = intact, 0 = fully open; 1 outside the BBB)"})  # fmt: skip
        else:
            _set_attrs(
                ds,
                {
                    "units": "pg mL-1",
                    "long_name": f"{name} concentration",
                    "description": f"{name} concentration per voxel (voxel mean)",
                },
            )
        return ds

    def _agents(self, group: h5py.Group, slot: int, columns: Mapping[str, np.ndarray]) -> None:
        """Append one snapshot's agents to the ragged array ``snapshots/agents/`` (rows after the earlier snapshots')."""
        agents = group.get("agents")
        if agents is None:
            agents = group.create_group("agents")
            agents.attrs["description"] = ("agents of every snapshot, one after another (CF contiguous ragged array): "
                                           "snapshot i has rows sum(count[:i]) to sum(count[:i+1])")  # fmt: skip
            _dimension(agents, "agent", 0, growing=True)
            count = agents.create_dataset("count", shape=(0,), maxshape=(None,), chunks=(SNAPSHOT_CHUNK,), dtype=np.int64)
            _attach(count, group["time_h"])
            _set_attrs(count, {"units": "1", "long_name": "agents in the snapshot", "sample_dimension": "agent",
                               "description": "number of agent rows of each snapshot"})  # fmt: skip
        start = int(agents["count"][:slot].sum())
        n = len(next(iter(columns.values())))
        stop = start + n
        _resize(agents["agent"], stop)
        for name, data in columns.items():
            if name not in agents:
                ds = agents.create_dataset(name, shape=(start,) + data.shape[1:], maxshape=(None,) + data.shape[1:],
                                           chunks=(AGENT_CHUNK,) + data.shape[1:], dtype=data.dtype, **_GZIP)  # fmt: skip
                scales = [agents["agent"]]
                if data.ndim == 2:
                    axis = "xyz" if name == "xyz_um" else "zyx"
                    if axis not in agents:
                        _dimension(agents, axis, data.shape[1], growing=False)
                    scales.append(agents[axis])
                _attach(ds, *scales)
                _set_attrs(ds, agent_metadata(name, self.variable_docs))
                _agent_codes(ds, name, self.cell_states)
            ds = agents[name]
            _resize(ds, stop)
            ds[start:stop] = data
        _resize(agents["count"], slot + 1)
        agents["count"][slot] = n

    def close(self) -> None:
        """Flush and close the file."""
        if self.file.id.valid:
            self.file.close()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _agent_codes(ds: h5py.Dataset, name: str, cell_states: Mapping[str, Sequence[str]]) -> None:
    """The code attributes of the ``type`` (CF flags) and ``state`` columns."""
    types, states = type_codes(cell_states), state_codes(cell_states)
    if name == "type":
        ds.attrs["flag_values"] = np.array(list(types.values()), dtype=ds.dtype)
        ds.attrs["flag_meanings"] = " ".join(types)
        ds.attrs["codes"] = _codes_text({code: n for n, code in types.items()})
        for cell, code in types.items():
            ds.attrs[f"code_{cell}"] = code
    elif name == "state":
        ds.attrs["codes"] = "; ".join(f"{cell}: {_codes_text(codes)}" for cell, codes in states.items())
        for cell, codes in states.items():
            ds.attrs[f"codes_{cell}"] = _codes_text(codes)
    elif name == "position":
        ds.attrs["order"] = "z, y, x (voxel indices, like the fields)"
    elif name == "xyz_um":
        ds.attrs["order"] = "x, y, z (voxel centres, for ParaView/VisIt)"


#: the readers now in :mod:`carabm.io.runfile`, still importable from here (scripts and notebooks use them)
_MOVED_TO_RUNFILE = frozenset(('open_read', 'schema_of', 'check_run_file', 'read_config_text', 'metadata', 'open_run', 'read_events', 'Snapshots'))


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_RUNFILE:
        from carabm.io import runfile  # noqa: PLC0415  (runfile imports this module)

        return getattr(runfile, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
