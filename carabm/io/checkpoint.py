"""Checkpoints: the complete state of a run in one HDF5 file beside its output, written atomically.

Owns :func:`model_state` / :func:`restore_model_state` (what of a ``CrsModel`` is state),
:func:`write_checkpoint` (temp file + ``os.replace``) and :func:`read_checkpoint`.

What is stored (all arrays as host NumPy, so a checkpoint moves between backends):
fields, BBB integrity, serum (blood pool), the agent store's live rows (every column,
ids in order) with ``n`` and ``next_id``, the circulation pool, systemic leak, counters,
the step index, and therapy state (``model.effects``, ``model.therapy`` and any of
:data:`EXTRA_STATE` present). Randomness is counter-based, so seed + step index suffice.
The occupancy grid and the solver's conductance are rebuilt from positions and integrity.

Extension: an object that holds state may define ``checkpoint_state() -> dict`` and
``restore_checkpoint_state(state: dict)``; otherwise its ``__dict__`` is stored
recursively (numbers, bools, strings, None, NumPy/CuPy arrays, lists, tuples, dicts and
nested plain objects). References to the config, backend, lattice, modules and functions
are not state and are skipped; anything else raises a :class:`CheckpointError` naming it.
"""

from __future__ import annotations

import importlib
import os
import types
from collections import Counter
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import carabm
from carabm.errors import CarabmError, InputFileError
from carabm.io.crash import crash_point

#: model attributes holding therapy (or other biology) state, stored when present
EXTRA_STATE = ("effects", "therapy", "therapies_state", "pk")
#: checkpoint format version (independent of the output file's schema)
CHECKPOINT_VERSION = 1
#: suffix of the checkpoint file beside an output ``FILE.h5`` -> ``FILE.h5.ckpt``
SUFFIX = ".ckpt"


class CheckpointError(CarabmError):
    """State that cannot be checkpointed, or a checkpoint that does not fit the run."""

    exit_code = 2


def checkpoint_path(out: str | Path) -> Path:
    """The checkpoint file of an output file: ``FILE.h5`` -> ``FILE.h5.ckpt``."""
    out = Path(out)
    return out.with_name(out.name + SUFFIX)


# --------------------------------------------------------------------------- generic state tree


def _is_device_array(value: Any) -> bool:
    return hasattr(value, "__cuda_array_interface__") and hasattr(value, "get")


def _skippable(value: Any) -> bool:
    """References that are configuration or machinery, not state."""
    from pydantic import BaseModel  # noqa: PLC0415

    from carabm.engine.backend import Backend  # noqa: PLC0415
    from carabm.engine.lattice import Lattice  # noqa: PLC0415

    return isinstance(
        value, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, BaseModel, Backend, Lattice, type)
    )


def to_tree(value: Any, where: str) -> Any:
    """A value as a tree of dicts/lists and host NumPy leaves with type tags (see :func:`from_tree`)."""
    if hasattr(value, "checkpoint_state") and callable(value.checkpoint_state):
        return {"__kind__": "custom", "__class__": _class_name(value), "state": to_tree(value.checkpoint_state(), where)}
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
    if _is_device_array(value):
        return {"__kind__": "device", "value": value.get()}
    if isinstance(value, Counter):
        return {"__kind__": "counter", "items": {str(k): to_tree(v, f"{where}[{k!r}]") for k, v in value.items()}}
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise CheckpointError(f"{where}: dict keys must be strings to checkpoint, got {bad[0]!r}")
        return {"__kind__": "dict", "items": {k: to_tree(v, f"{where}[{k!r}]") for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        kind = "list" if isinstance(value, list) else "tuple"
        return {"__kind__": kind, "items": {f"{i:06d}": to_tree(v, f"{where}[{i}]") for i, v in enumerate(value)}}
    if _skippable(value):
        return {"__kind__": "skip"}
    if hasattr(value, "__dict__"):
        items = {k: to_tree(v, f"{where}.{k}") for k, v in vars(value).items()}
        return {"__kind__": "object", "__class__": _class_name(value), "items": items}
    raise CheckpointError(
        f"{where}: cannot checkpoint a {type(value).__name__}; give its class checkpoint_state() and restore_checkpoint_state()"
    )


def _class_name(value: Any) -> str:
    cls = type(value)
    return f"{cls.__module__}:{cls.__qualname__}"


def _new_object(class_name: str, where: str) -> Any:
    module, _, qualname = class_name.partition(":")
    if not module.startswith("carabm"):
        raise CheckpointError(f"{where}: refusing to rebuild a {class_name} (only carabm classes are rebuilt)")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj.__new__(obj)


def from_tree(tree: dict[str, Any], current: Any, xp: Any, where: str) -> Any:
    """Rebuild a value from :func:`to_tree`'s output, into ``current`` where it is an object.

    Arrays that were on a device (or whose current value is a device array) go to ``xp``;
    skipped references keep their ``current`` value.
    """
    kind = tree["__kind__"]
    if kind == "skip":
        return current
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
    if kind == "device":
        return xp.asarray(tree["value"])
    if kind in ("dict", "counter"):
        old = current if isinstance(current, dict) else {}
        items = {k: from_tree(v, old.get(k), xp, f"{where}[{k!r}]") for k, v in tree["items"].items()}
        return Counter(items) if kind == "counter" else items
    if kind in ("list", "tuple"):
        old = list(current) if isinstance(current, (list, tuple)) else []
        keys = sorted(tree["items"])
        items = [from_tree(tree["items"][k], old[i] if i < len(old) else None, xp, f"{where}[{i}]") for i, k in enumerate(keys)]
        return items if kind == "list" else tuple(items)
    if kind == "custom":
        obj = current if current is not None and _class_name(current) == tree["__class__"] else _new_object(tree["__class__"], where)
        obj.restore_checkpoint_state(from_tree(tree["state"], None, xp, where))
        return obj
    if kind == "object":
        obj = current if current is not None and _class_name(current) == tree["__class__"] else _new_object(tree["__class__"], where)
        for key, sub in tree["items"].items():
            old = getattr(obj, key, None)
            object.__setattr__(obj, key, from_tree(sub, old, xp, f"{where}.{key}"))
        return obj
    raise CheckpointError(f"{where}: unknown entry kind {kind!r} in checkpoint (written by a newer carabm?)")


def _write_tree(group: h5py.Group, tree: dict[str, Any]) -> None:
    group.attrs["__kind__"] = tree["__kind__"]
    if "__class__" in tree:
        group.attrs["__class__"] = tree["__class__"]
    if "value" in tree:
        value = tree["value"]
        if isinstance(value, str):
            group.create_dataset("value", data=value, dtype=h5py.string_dtype())
        else:
            array = np.asarray(value)
            big = array.size > 4096
            group.create_dataset("value", data=array, compression="gzip" if big else None, shuffle=big, compression_opts=1 if big else None)
    if "state" in tree:
        _write_tree(group.create_group("state"), tree["state"])
    for key, sub in tree.get("items", {}).items():
        _write_tree(group.require_group("items").create_group(key), sub)


def _read_tree(group: h5py.Group) -> dict[str, Any]:
    tree: dict[str, Any] = {"__kind__": str(group.attrs["__kind__"])}
    if "__class__" in group.attrs:
        tree["__class__"] = str(group.attrs["__class__"])
    if "value" in group:
        ds = group["value"]
        value = ds[()]
        if tree["__kind__"] == "npscalar":
            value = ds.dtype.type(value)
        elif tree["__kind__"] in ("ndarray", "device"):
            value = np.asarray(value)
        tree["value"] = value
    if "state" in group:
        tree["state"] = _read_tree(group["state"])
    if tree["__kind__"] in ("dict", "counter", "list", "tuple", "object"):
        tree["items"] = {k: _read_tree(v) for k, v in group["items"].items()} if "items" in group else {}
    return tree


# --------------------------------------------------------------------------- the model's state


def model_state(model: Any) -> dict[str, Any]:
    """The complete dynamic state of a ``CrsModel`` as a state tree (host NumPy leaves).

    The occupancy grid, the solver's conductance and per-step caches are not state: they
    are rebuilt by :func:`restore_model_state`.
    """
    if getattr(model, "_dies", None) is not None:
        raise CheckpointError("model: deaths pending (checkpoint only between steps)")
    b, store = model.backend, model.store
    columns = {name: b.to_host(column[: store.n], "checkpoint").copy() for name, column in store._columns.items() if not name.startswith("_")}
    state: dict[str, Any] = {
        "step_index": int(model.step_index),
        "fields": b.to_host(model.fields, "checkpoint"),
        "integrity": b.to_host(model.integrity, "checkpoint"),
        "serum_pg_ml": np.asarray(model.blood.serum_pg_ml, dtype=np.float64),
        "leak": model.leak,
        "counters": Counter(model.counters),
        "circulation_pool": np.array(model.circulation.pool),
        "store": {"n": int(store.n), "next_id": int(store.next_id), "columns": columns},
    }
    extras = {name: to_tree(getattr(model, name), f"model.{name}") for name in EXTRA_STATE if hasattr(model, name)}
    return {"__kind__": "dict", "items": {"core": to_tree(state, "model"), "extras": {"__kind__": "dict", "items": extras}}}


def restore_model_state(model: Any, tree: dict[str, Any]) -> None:
    """Put a state tree from :func:`model_state` into a freshly built ``CrsModel`` (same lattice)."""
    xp = model.xp
    state = from_tree(tree["items"]["core"], None, np, "model")
    fields = np.asarray(state["fields"])
    if fields.shape != tuple(model.fields.shape):
        raise CheckpointError(
            f"checkpoint fields have shape {list(fields.shape)} but this run's are {list(model.fields.shape)}; "
            "lattice.shape and the cytokine list cannot change when resuming or branching"
        )
    model.step_index = int(state["step_index"])
    model.fields = xp.ascontiguousarray(xp.asarray(fields, dtype=model.fields.dtype))
    model.integrity = xp.ascontiguousarray(xp.asarray(state["integrity"], dtype=model.integrity.dtype))
    model.blood.serum_pg_ml = state["serum_pg_ml"]
    model.leak = state["leak"]
    model.counters = Counter(state["counters"])
    pool = np.asarray(state["circulation_pool"])
    if pool.shape != model.circulation.pool.shape:
        raise CheckpointError(f"checkpoint circulation pool has shape {list(pool.shape)}, expected {list(model.circulation.pool.shape)}")
    model.circulation.pool = pool.astype(model.circulation.pool.dtype)
    _restore_store(model.store, state["store"])
    extras = tree["items"]["extras"]["items"]
    for name, sub in extras.items():
        setattr(model, name, from_tree(sub, getattr(model, name, None), xp, f"model.{name}"))
    model._dies = None
    model._agents_moved()
    model.refresh_conductance()


def _restore_store(store: Any, saved: dict[str, Any]) -> None:
    xp = store.xp
    n = int(saved["n"])
    columns = saved["columns"]
    expected = {name for name in store._columns if not name.startswith("_")}
    if set(columns) != expected:
        raise CheckpointError(
            f"checkpoint agent columns {sorted(columns)} differ from this model's {sorted(expected)}; "
            "the cell rules changed since the checkpoint was written"
        )
    store._grow(n)
    store.n = n
    for name, values in columns.items():
        column = store._columns[name]
        column[:n] = xp.asarray(np.asarray(values), dtype=column.dtype)
    store.next_id = int(saved["next_id"])
    store._columns["_padded_index"][:n] = store.padded_flat(store.position)
    store._occupancy[...] = -1
    store._occupancy.ravel()[store.padded_flat()] = xp.arange(n, dtype=xp.int32)
    store.check()


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
            _write_tree(f.create_group("state"), tree)
            crash_point("checkpoint")
            if output is not None:
                group = f.create_group("output")
                for key, value in output["attrs"].items():
                    group.attrs[key] = value
                series = group.create_group("timeseries")
                for name, values in output["timeseries"].items():
                    series.create_dataset(name, data=np.asarray(values)[:timeseries_rows], compression="gzip", compression_opts=1)
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
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            config = f["config"][()]
            state = _read_tree(f["state"])
            output = None
            if "output" in f:
                series: dict[str, np.ndarray] = {}
                f["output/timeseries"].visititems(lambda name, obj: series.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
                output = {"attrs": {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f["output"].attrs.items()}, "timeseries": series,
                          "snapshots": [n.decode() if isinstance(n, bytes) else str(n) for n in f["output/snapshots"][()]]}  # fmt: skip
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the checkpoint ({exc}); start the run again with --overwrite") from exc
    return Checkpoint(attrs, config.decode() if isinstance(config, bytes) else str(config), state, output)
