"""Member expansion: a SWEEP.yaml (base, overrides, axes, derived, seed) to validated members.

Expansion is deterministic: the same file gives the same members, each with its own
validated config and its own ``run.seed`` derived from the sweep seed and the member index.
Axes combine as a cartesian product in the order written (:mod:`carabm.hpc.designs`);
``derived:`` values are computed per member (:mod:`carabm.hpc.derived`).
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import carabm.biology  # noqa: F401  (registers the built-in model in the catalog: worker processes start here)
from carabm.errors import ConfigError
from carabm.hpc.derived import evaluate
from carabm.hpc.designs import axis_blocks, member_seed, sample_axis
from carabm.hpc.trial import parse_trial
from carabm.io.config import Config, schema, validate_config
from carabm.io.dotted import flatten, get_path, set_path
from carabm.io.yaml_input import read_yaml


@dataclass(frozen=True)
class Member:
    """One member of a sweep: its index, seed, varied values and resolved config."""

    index: int
    seed: int
    values: dict[str, Any]
    config: Config

    @property
    def name(self) -> str:
        """Folder name of the member (``0007``)."""
        return f"{self.index:04d}"


@dataclass
class Sweep:
    """An expanded sweep: the members and the keys they vary."""

    path: Path | None
    seed: int
    keys: list[str]
    members: list[Member] = field(default_factory=list)
    design: dict[str, Any] | None = None  # sobol/morris: method, problem, options, sample (DIR/design.json)
    extended: dict[str, Any] | None = None  # a file with ``extends:``: the merged mapping (kept as DIR/sweep.yaml)

    def __len__(self) -> int:
        return len(self.members)


def _plain(value: Any) -> Any:
    """NumPy scalars to Python numbers (so YAML, CSV and pydantic see plain values)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


SWEEP_KEYS = ("base", "overrides", "axes", "derived", "seed", "description", "trial", "extends")


def _extend(spec: dict[str, Any], sweep_dir: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A sweep mapping with its ``extends:`` file merged in (recursively).

    The extended file is the starting point: ``overrides`` and ``derived`` merge key by key,
    ``axes`` are appended after the extended file's axes, every other key replaces, and a key
    given as null is dropped (``trial: null``: arms of a cohort are not the trial). A ``base``
    path of the extended file stays relative to that file.
    """
    ref = spec.get("extends")
    if ref is None:
        return spec
    if not isinstance(ref, str) or not ref:
        raise ConfigError(f"extends: expected the path of another sweep file (relative to this one), got {ref!r}")
    path = Path(ref) if Path(ref).is_absolute() else sweep_dir / ref
    if path.resolve() in seen:
        raise ConfigError(f"extends: {ref} is already being extended (a cycle of extends:)")
    parent = read_yaml(path)
    parent = _extend(parent, path.parent, (*seen, path.resolve()))
    if isinstance(parent.get("base"), str) and not Path(parent["base"]).is_absolute():
        parent["base"] = str((path.parent / parent["base"]).resolve())
    merged = {k: v for k, v in parent.items() if k != "extends"}
    for key, value in spec.items():
        if key == "extends":
            continue
        if value is None:  # ``trial: null`` etc.: drop the extended file's key
            merged.pop(key, None)
        elif key in ("overrides", "derived") and isinstance(value, dict) and isinstance(parent.get(key) or {}, dict):
            merged[key] = {**(parent.get(key) or {}), **value}
        elif key == "axes" and value is not None:
            merged[key] = [{kind: block} for kind, block in axis_blocks(parent.get("axes")) + axis_blocks(value)]
        else:
            merged[key] = value
    return merged


def _load_base(base: Any, sweep_dir: Path) -> dict[str, Any]:
    if base is None:
        return {}
    if isinstance(base, dict):
        return dict(base)
    if isinstance(base, str):
        path = Path(base)
        if not path.is_absolute():
            path = sweep_dir / path
        data = read_yaml(path)
        layout = data.get("lattice", {}).get("layout", {}) if isinstance(data.get("lattice"), dict) else {}
        if isinstance(layout, dict) and layout.get("file") and not Path(layout["file"]).is_absolute():
            layout["file"] = str((path.parent / layout["file"]).resolve())
        return data
    raise ConfigError(f"base: expected a config path (relative to the sweep file) or a mapping, got {type(base).__name__}")


def _integer_key(defaults: dict[str, Any], key: str) -> bool:
    value = get_path(defaults, key)
    return isinstance(value, int) and not isinstance(value, bool)


def integer_key(key: str) -> bool:
    """Whether the config key ``key`` holds a whole number (sampled values for it are rounded)."""
    return _integer_key(schema()().model_dump(mode="json"), key)


def expand(spec: dict[str, Any], sweep_dir: str | Path = ".", path: Path | None = None) -> Sweep:
    """Expand a sweep mapping into validated members (deterministic).

    Raises :class:`ConfigError` with one line per problem; problems of a member's config
    name the member (``member 3 (cells.cart.dose=1e9): cells.cart.dose: ...``).
    """
    if not isinstance(spec, dict):
        raise ConfigError(f"{path or 'sweep'}: the top level must be a mapping (base, overrides, axes, seed)")
    unknown = set(spec) - set(SWEEP_KEYS)
    if unknown:
        raise ConfigError(f"{', '.join(sorted(unknown))}: unknown sweep key(s); expected {', '.join(SWEEP_KEYS)}")
    extended = None
    if "extends" in spec:
        spec = extended = _extend(spec, Path(sweep_dir))
    if "trial" in spec:  # a trial's table to compare the cohort with (carabm collect)
        parse_trial(spec["trial"])
    seed = spec.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed: expected a whole number >= 0, got {seed!r}")
    base = _load_base(spec.get("base"), Path(sweep_dir))
    overrides = spec.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ConfigError("overrides: expected a mapping of config keys (dotted or nested) to values")
    for key, value in overrides.items():
        set_path(base, str(key), value)
    derived = spec.get("derived") or {}
    if not isinstance(derived, dict):
        raise ConfigError("derived: expected a mapping KEY: expression")

    rows: list[dict[str, Any]] = [{}]
    design: dict[str, Any] | None = None
    for block, (kind, axis) in enumerate(axis_blocks(spec.get("axes"))):
        where = f"axes.{kind}"
        values, block_design = sample_axis(kind, axis, where, seed, block)
        design = block_design if block_design is not None else design
        repeated = set(rows[0]) & set(values[0])
        if repeated:
            raise ConfigError(f"{where}: {', '.join(sorted(repeated))} already varied by an earlier axis")
        rows = [{**a, **b} for a, b in itertools.product(rows, values)]

    defaults = schema()().model_dump(mode="json")
    keys = list(rows[0]) + [k for k in derived if k not in rows[0]]
    members: list[Member] = []
    problems: list[str] = []
    for index, row in enumerate(rows):
        data = copy.deepcopy(base)
        values: dict[str, Any] = {}
        try:
            for key, value in row.items():
                value = _plain(value)
                if isinstance(value, float) and _integer_key(defaults, key):
                    value = int(round(value))
                set_path(data, key, value)
                values[key] = value
            for key, expression in derived.items():
                lookup = copy.deepcopy(defaults)
                for k, v in flatten(data):
                    set_path(lookup, k, v)
                value = evaluate(expression, lookup, f"derived.{key}")
                if isinstance(value, float) and _integer_key(defaults, key):
                    value = int(round(value))
                set_path(data, key, value)
                values[key] = value
            if "run.seed" not in values:
                set_path(data, "run.seed", member_seed(seed, index))
            config = validate_config(data)
        except ConfigError as exc:
            label = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
            problems += [f"member {index}" + (f" ({label})" if label else "") + f": {p}" for p in exc.problems]
            if len(problems) >= 30:
                problems.append("... (stopped after 30 problems)")
                break
            continue
        members.append(Member(index, int(config.run.seed), values, config))
    if problems:
        raise ConfigError(problems)
    return Sweep(path, seed, keys, members, design, extended)


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def load_sweep(path: str | Path) -> Sweep:
    """Read and expand a SWEEP.yaml (a ``base:`` path is relative to the sweep file)."""
    path = Path(path)
    return expand(read_yaml(path), path.parent, path)
