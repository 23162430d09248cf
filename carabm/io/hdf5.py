"""HDF5 output following DESIGN.md's contract: root attributes, config, lattice, time series, snapshots.

Time series are appendable (chunked, resizable) and flushed as the run goes, so a run
killed halfway leaves a readable file up to its last flush.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import carabm
from carabm.engine.lattice import COMPARTMENTS, Lattice
from carabm.errors import InputFileError

#: units written as attributes on time-series datasets, by name prefix
UNITS = {
    "time_h": "h", "counts": "cells", "serum": "pg/mL", "cns": "pg/mL", "bbb_integrity": "1 (1 = intact)",
    "crs_grade": "ASTCT grade 0-4 (model surrogate)", "icans_grade": "ICANS grade 0-4 (model surrogate)",
    "tumor_burden": "B cells alive on the lattice", "blood_per_ul": "cells/uL",
}  # fmt: skip


def _units_for(name: str) -> str:
    return UNITS.get(name.split("/")[0], "")


class RunWriter:
    """Writes one run's HDF5 file. Use as a context manager."""

    def __init__(self, path: str | Path, mode: str = "w"):
        self.path = Path(path)
        self.file = h5py.File(self.path, mode)
        self._rows = int(self.file["timeseries/time_h"].shape[0]) if "timeseries/time_h" in self.file else 0

    # ------------------------------------------------------------------ header
    def write_header(self, config_yaml: str, seed: int, backend: str, lattice: Lattice) -> None:
        """Root attributes, the resolved config text and the compartment labels."""
        f = self.file
        f.attrs["carabm_version"] = carabm.__version__
        f.attrs["schema_version"] = carabm.SCHEMA_VERSION
        f.attrs["seed"] = int(seed)
        f.attrs["backend"] = backend
        f.create_dataset("config", data=config_yaml, dtype=h5py.string_dtype())
        comp = f.create_dataset("lattice/compartment", data=lattice.labels, compression="gzip", compression_opts=4)
        comp.attrs["voxel_um"] = float(lattice.voxel_um)
        comp.attrs["axes"] = "z, y, x"
        for name, code in COMPARTMENTS.items():
            comp.attrs[f"label_{name}"] = code
        comp.attrs["labels"] = ", ".join(f"{code}={name}" for name, code in COMPARTMENTS.items())

    # ------------------------------------------------------------------ time series
    def append_timeseries(self, rows: Mapping[str, np.ndarray]) -> None:
        """Append rows (each value a 1D array of equal length) under ``timeseries/``."""
        lengths = {len(np.atleast_1d(v)) for v in rows.values()}
        if len(lengths) != 1:
            raise ValueError(f"time-series rows of unequal length: {lengths}")
        (n_new,) = lengths
        for name, values in rows.items():
            values = np.atleast_1d(np.asarray(values))
            key = f"timeseries/{name}"
            if key not in self.file:
                dtype = np.float64 if values.dtype.kind == "f" else values.dtype
                ds = self.file.create_dataset(key, shape=(self._rows,), maxshape=(None,), chunks=(1024,), dtype=dtype)
                ds.attrs["units"] = _units_for(name)
            ds = self.file[key]
            ds.resize((self._rows + n_new,))
            ds[self._rows :] = values
        self._rows += n_new
        self.file.flush()

    # ------------------------------------------------------------------ snapshots
    def write_snapshot(
        self,
        index: int,
        time_h: float,
        fields: Mapping[str, np.ndarray],
        bbb_integrity: np.ndarray | None,
        agents: Mapping[str, np.ndarray],
    ) -> None:
        """One snapshot ``snapshots/NNNNNN`` with fields [z,y,x], BBB integrity and agents."""
        group = self.file.require_group(f"snapshots/{index:06d}")
        group.attrs["time_h"] = float(time_h)
        for name, data in fields.items():
            ds = group.create_dataset(
                f"fields/{name}", data=np.asarray(data, dtype=np.float32), compression="gzip", compression_opts=4, shuffle=True
            )
            ds.attrs["units"] = "pg/mL"
        if bbb_integrity is not None:
            ds = group.create_dataset("bbb_integrity", data=np.asarray(bbb_integrity, dtype=np.float32), compression="gzip")
            ds.attrs["units"] = "1 (1 = intact; 1 outside the BBB)"
        for name, data in agents.items():
            data = np.asarray(data)
            ds = group.create_dataset(f"agents/{name}", data=data, compression="gzip" if data.size > 1024 else None)
            if name == "position":
                ds.attrs["order"] = "z, y, x (voxel indices, like the fields)"
        self.file.flush()

    def close(self) -> None:
        """Flush and close the file."""
        self.file.close()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def check_run_file(path: str | Path) -> None:
    """Raise :class:`InputFileError` unless ``path`` is a readable carabm output of a known schema."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise InputFileError(f"{path}: not an HDF5 file (truncated or another format); give a carabm run output (.h5)")
    try:
        with h5py.File(path, "r") as f:
            if "carabm_version" not in f.attrs or "schema_version" not in f.attrs:
                raise InputFileError(f"{path}: an HDF5 file, but not a carabm run output (no carabm_version attribute)")
            schema = int(f.attrs["schema_version"])
    except OSError as exc:
        raise InputFileError(f"{path}: cannot open as HDF5 ({exc}); the file may be truncated") from exc
    if schema > carabm.SCHEMA_VERSION:
        raise InputFileError(
            f"{path}: written with schema {schema} by a newer carabm; this is carabm {carabm.__version__} "
            f"(schema {carabm.SCHEMA_VERSION}); upgrade carabm to read it"
        )


def open_run(path: str | Path) -> Any:
    """The time series of a run as an ``xarray.Dataset`` indexed by ``time_h``.

    Variables: ``count_<celltype>``, ``serum_<cytokine>``, ``cns_<cytokine>``, and the
    scalar series (``bbb_integrity``, ``crs_grade``, ...), each with a ``units`` attribute.
    """
    import xarray as xr  # noqa: PLC0415

    check_run_file(path)
    variables: dict[str, Any] = {}
    with h5py.File(path, "r") as f:
        ts = f["timeseries"]
        time = ts["time_h"][()]

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and name != "time_h":
                key = name.replace("counts/", "count_").replace("/", "_")
                variables[key] = xr.Variable("time_h", obj[()], {"units": obj.attrs.get("units", "")})

        ts.visititems(visit)
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    return xr.Dataset(variables, coords={"time_h": ("time_h", time, {"units": "h"})}, attrs=attrs)
