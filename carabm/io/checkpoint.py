"""Checkpoints: the complete state of a run in one HDF5 file beside its output, written atomically.

This module only handles the file. What is state is decided by the objects that own it:
each saves and restores its own part through ``checkpoint_state()`` /
``restore_checkpoint_state(state)`` (docs/state.md), and :func:`model_state` /
:func:`restore_model_state` hand the model's (a dict of plain data: host NumPy arrays and
scalars, numbers, bools, strings, None, lists, tuples and dicts) to and from the file.
:func:`write_checkpoint` writes it atomically (temp file + ``os.replace``);
:func:`read_checkpoint` reads it back. All arrays are host NumPy, so a checkpoint moves
between backends.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import carabm
from carabm.errors import CheckpointError, InputFileError
from carabm.io.crash import crash_point

#: checkpoint format version (independent of the output file's schema)
CHECKPOINT_VERSION = 3
#: the oldest format this carabm reads: 2 stored one HDF5 group per tree node and one dataset per
#: time series (about 0.25 ms of HDF5 metadata each); 3 stores the tree's plain values as one JSON
#: text, its arrays as datasets, and the time series as one 2-D dataset per dtype
OLDEST_READABLE = 2
#: suffix of the checkpoint file beside an output ``FILE.h5`` -> ``FILE.h5.ckpt``
SUFFIX = ".ckpt"


def checkpoint_path(out: str | Path) -> Path:
    """The checkpoint file of an output file: ``FILE.h5`` -> ``FILE.h5.ckpt``."""
    out = Path(out)
    return out.with_name(out.name + SUFFIX)


# --------------------------------------------------------------------------- plain data <-> HDF5 groups


def to_tree(value: Any, where: str) -> dict[str, Any]:
    """Plain data as a tree of type-tagged nodes (see :func:`from_tree`); anything else is a :class:`CheckpointError`."""
    if value is None:
        return {"__kind__": "none"}
    if isinstance(value, bool):
        return {"__kind__": "bool", "value": np.bool_(value)}
    if isinstance(value, int):
        return {"__kind__": "int", "value": np.int64(value)}
    if isinstance(value, float):
        return {"__kind__": "float", "value": np.float64(value)}
    if isinstance(value, str):
        return {"__kind__": "str", "value": value}
    if isinstance(value, np.generic):
        return {"__kind__": "npscalar", "value": value}
    if isinstance(value, np.ndarray):
        return {"__kind__": "ndarray", "value": value}
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise CheckpointError(f"{where}: dict keys must be strings to checkpoint, got {bad[0]!r}")
        return {"__kind__": "dict", "items": {k: to_tree(v, f"{where}[{k!r}]") for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        kind = "list" if isinstance(value, list) else "tuple"
        return {"__kind__": kind, "items": {f"{i:06d}": to_tree(v, f"{where}[{i}]") for i, v in enumerate(value)}}
    raise CheckpointError(f"{where}: cannot checkpoint a {type(value).__name__}; "
                          "checkpoint_state() returns plain data only (arrays, numbers, strings, lists, dicts; docs/state.md)")  # fmt: skip


def from_tree(tree: dict[str, Any], where: str = "state") -> Any:
    """The plain data of a :func:`to_tree` tree."""
    kind = tree["__kind__"]
    if kind == "none":
        return None
    if kind in ("bool", "int", "float"):
        return {"bool": bool, "int": int, "float": float}[kind](tree["value"])
    if kind == "str":
        value = tree["value"]
        return value.decode() if isinstance(value, bytes) else str(value)
    if kind == "npscalar":
        return tree["value"]
    if kind == "ndarray":
        return np.array(tree["value"])
    if kind == "dict":
        return {k: from_tree(v, f"{where}[{k!r}]") for k, v in tree["items"].items()}
    if kind in ("list", "tuple"):
        items = [from_tree(tree["items"][k], f"{where}[{i}]") for i, k in enumerate(sorted(tree["items"]))]
        return items if kind == "list" else tuple(items)
    raise CheckpointError(f"{where}: unknown entry kind {kind!r} in checkpoint (written by another carabm version?)")


def _write_tree_v2(group: h5py.Group, tree: dict[str, Any]) -> None:
    """Format 2 (one group per node), which this carabm still reads; the tests write one with it."""
    group.attrs["__kind__"] = tree["__kind__"]
    if "value" in tree:
        value = tree["value"]
        if isinstance(value, str):
            group.create_dataset("value", data=value, dtype=h5py.string_dtype())
        else:
            array = np.asarray(value)
            big = array.size > 4096
            group.create_dataset("value", data=array, compression="gzip" if big else None, shuffle=big, compression_opts=1 if big else None)
    items = tree.get("items", {})
    if items:
        parent = group.require_group("items")  # looked up once, not per entry
        for key, sub in items.items():
            _write_tree_v2(parent.create_group(key), sub)


def _read_tree(group: h5py.Group) -> dict[str, Any]:
    """A tree from a format-2 group (one group per node)."""
    tree: dict[str, Any] = {"__kind__": str(group.attrs["__kind__"])}
    if "value" in group:
        ds = group["value"]
        value = ds[()]
        if tree["__kind__"] == "npscalar":
            value = ds.dtype.type(value)
        elif tree["__kind__"] == "ndarray":
            value = np.asarray(value)
        tree["value"] = value
    if tree["__kind__"] in ("dict", "list", "tuple"):
        tree["items"] = {k: _read_tree(v) for k, v in group["items"].items()} if "items" in group else {}
    return tree


#: the Python type of each plain scalar kind in a tree (as :func:`to_tree` makes them)
_SCALARS = {"bool": np.bool_, "int": np.int64, "float": np.float64}


def _skeleton(tree: dict[str, Any], arrays: dict[str, Any]) -> dict[str, Any]:
    """``tree`` as JSON-able data: arrays and NumPy scalars move to ``arrays`` under a reference.

    JSON keeps every Python float exactly (shortest round-trip repr, NaN and infinities
    included), every int, bool and string, and the order of the items.
    """
    kind = tree["__kind__"]
    if kind in ("ndarray", "npscalar"):
        ref = f"{len(arrays):06d}"
        arrays[ref] = tree["value"]
        return {"__kind__": kind, "ref": ref}
    node: dict[str, Any] = {"__kind__": kind}
    if "value" in tree:
        value = tree["value"]
        node["value"] = value if isinstance(value, str) else value.item()
    if "items" in tree:
        node["items"] = {key: _skeleton(sub, arrays) for key, sub in tree["items"].items()}
    return node


def _write_tree_v3(group: h5py.Group, tree: dict[str, Any]) -> None:
    """Format 3: the tree's structure and plain values as one JSON text, its arrays as datasets under ``arrays``."""
    arrays: dict[str, Any] = {}
    group.create_dataset("tree", data=json.dumps(_skeleton(tree, arrays)), dtype=h5py.string_dtype())
    stored = group.create_group("arrays")
    for ref, value in arrays.items():
        array = np.asarray(value)
        big = array.size > 4096
        stored.create_dataset(ref, data=array, compression="gzip" if big else None, shuffle=big, compression_opts=1 if big else None)


def _read_tree_v3(group: h5py.Group) -> dict[str, Any]:
    """A tree from a format-3 group (see :func:`_write_tree_v3`)."""
    text = group["tree"][()]
    arrays = group["arrays"]

    def node(data: dict[str, Any]) -> dict[str, Any]:
        kind = data["__kind__"]
        tree: dict[str, Any] = {"__kind__": kind}
        if "ref" in data:
            ds = arrays[data["ref"]]
            value = ds[()]
            tree["value"] = ds.dtype.type(value) if kind == "npscalar" else np.asarray(value)
        elif "value" in data:
            value = data["value"]
            tree["value"] = _SCALARS[kind](value) if kind in _SCALARS else value
        if kind in ("dict", "list", "tuple"):
            tree["items"] = {key: node(sub) for key, sub in data.get("items", {}).items()}
        return tree

    return node(json.loads(text.decode() if isinstance(text, bytes) else text))


def _write_series(group: h5py.Group, series: dict[str, Any], rows: int) -> None:
    """Format 3: the time series as one ``[names, rows]`` dataset per dtype (names in the attribute ``names``)."""
    group.attrs["names"] = list(series)  # the columns' order, as written
    by_dtype: dict[str, list[str]] = {}
    for name, values in series.items():
        by_dtype.setdefault(np.asarray(values).dtype.str, []).append(name)
    for i, names in enumerate(by_dtype.values()):
        data = np.stack([np.asarray(series[name])[:rows] for name in names])
        ds = group.create_dataset(f"{i}", data=data, compression="gzip", compression_opts=1, shuffle=True)
        ds.attrs["names"] = names


def _read_series(group: h5py.Group) -> dict[str, np.ndarray]:
    """The time series from a format-3 ``series`` group, in the order written."""
    columns: dict[str, np.ndarray] = {}
    for ds in group.values():
        data = ds[()]
        for name, values in zip(ds.attrs["names"], data):
            columns[name.decode() if isinstance(name, bytes) else str(name)] = values
    order = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs["names"]]
    return {name: columns[name] for name in order}


# --------------------------------------------------------------------------- the model's state


def model_state(model: Any) -> dict[str, Any]:
    """The model's state (``model.checkpoint_state()``) as a tree for the file."""
    return to_tree(model.checkpoint_state(), "model")


def restore_model_state(model: Any, tree: dict[str, Any]) -> None:
    """Hand a tree from :func:`model_state` to a freshly built model (``model.restore_checkpoint_state``)."""
    model.restore_checkpoint_state(from_tree(tree, "model"))


# --------------------------------------------------------------------------- files


def write_checkpoint(
    path: str | Path,
    model: Any,
    *,
    run_id: str,
    timeseries_rows: int,
    config_yaml: str,
    backend: str,
    output: dict[str, Any] | None = None,
) -> Path:
    """Write the model's state to ``path`` atomically (temp file, fsync, ``os.replace``).

    ``output`` (``{"attrs": root attributes, "timeseries": {name: all rows}}``) is what
    ``--resume`` needs to rebuild the output file up to this checkpoint when a kill
    left it damaged. The temp file is removed when writing fails or is interrupted.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tree = model_state(model)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["carabm_checkpoint"] = CHECKPOINT_VERSION
            f.attrs["carabm_version"] = carabm.__version__
            f.attrs["run_id"] = run_id
            f.attrs["step_index"] = int(model.step_index)
            f.attrs["time_h"] = float(model.step_index * model.dt_h)
            f.attrs["seed"] = int(model.seed)
            f.attrs["backend"] = backend
            f.attrs["timeseries_rows"] = int(timeseries_rows)
            f.create_dataset("config", data=config_yaml, dtype=h5py.string_dtype())
            _write_tree_v3(f.create_group("state"), tree)
            crash_point("checkpoint")
            if output is not None:
                group = f.create_group("output")
                for key, value in output["attrs"].items():
                    group.attrs[key] = value
                _write_series(group.create_group("series"), output["timeseries"], timeseries_rows)
                group.create_dataset("snapshots", data=np.array(output.get("snapshots", []), dtype=object), dtype=h5py.string_dtype())
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        crash_point("checkpoint_replace")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


class Checkpoint:
    """A checkpoint read back: ``attrs`` (run_id, step_index, time_h, timeseries_rows, ...), ``config`` text, ``state`` tree."""

    def __init__(self, attrs: dict[str, Any], config: str, state: dict[str, Any], output: dict[str, Any] | None = None):
        self.attrs = attrs
        self.config = config
        self.state = state
        #: ``{"attrs", "timeseries"}`` of the output file at this checkpoint (None in older checkpoints)
        self.output = output

    @property
    def step_index(self) -> int:
        """Steps the checkpointed run had taken."""
        return int(self.attrs["step_index"])

    @property
    def time_h(self) -> float:
        """Simulated time of the checkpoint [h]."""
        return float(self.attrs["time_h"])


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint file; :class:`InputFileError` with a one-line reason when it is unusable."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no checkpoint (the run stopped before its first checkpoint); start the run again with --overwrite")
    if not h5py.is_hdf5(path):
        raise InputFileError(f"{path}: not an HDF5 checkpoint (damaged); start the run again with --overwrite")
    try:
        with h5py.File(path, "r") as f:
            if "carabm_checkpoint" not in f.attrs:
                raise InputFileError(f"{path}: not a carabm checkpoint")
            version = int(f.attrs["carabm_checkpoint"])
            if version > CHECKPOINT_VERSION:
                raise InputFileError(f"{path}: checkpoint format {version} is newer than this carabm ({carabm.__version__}); upgrade carabm")
            if version < OLDEST_READABLE:
                written = f.attrs.get("carabm_version", "?")
                written = written.decode() if isinstance(written, bytes) else written
                raise InputFileError(f"{path}: checkpoint format {version} (carabm {written}) cannot be read by this carabm ({carabm.__version__}, "
                                     f"formats {OLDEST_READABLE}-{CHECKPOINT_VERSION}); finish that run with carabm {written}, or start it again with --overwrite")  # fmt: skip
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            config = f["config"][()]
            state = _read_tree_v3(f["state"]) if version >= 3 else _read_tree(f["state"])
            output = None
            if "output" in f:
                series: dict[str, np.ndarray] = {}
                if "series" in f["output"]:
                    series = _read_series(f["output/series"])
                else:  # format 2: one dataset per time series
                    f["output/timeseries"].visititems(lambda name, obj: series.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
                output = {"attrs": {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f["output"].attrs.items()}, "timeseries": series,
                          "snapshots": [n.decode() if isinstance(n, bytes) else str(n) for n in f["output/snapshots"][()]]}  # fmt: skip
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the checkpoint ({exc}); start the run again with --overwrite") from exc
    return Checkpoint(attrs, config.decode() if isinstance(config, bytes) else str(config), state, output)
