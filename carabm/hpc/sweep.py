"""Sweeps and virtual cohorts: expand a SWEEP.yaml into members, run them, skip or resume.

A sweep file names a base config, overrides applied to every member and ``axes`` that
vary keys (``list``, ``grid``, ``latin_hypercube``, ``cohort``); several axes combine as
a cartesian product in the order written. A ``sobol`` or ``morris`` axis (a SALib
sensitivity design) must be the only axis; its design is kept in ``DIR/design.json`` so
that ``carabm collect`` can compute the sensitivity indices. Expansion is deterministic: the same file gives
the same members, each with its own validated config and its own ``run.seed`` derived
from the sweep seed and the member index. The format is documented in docs/hpc.md.

Layout of a sweep folder::

    DIR/members.csv          index, seed, every varied key
    DIR/design.json          sobol/morris sweeps: the SALib problem, method and sample
    DIR/NNNN/config.yaml     the member's resolved config
    DIR/NNNN/run.h5          its output (+ run.h5.ckpt, run.h5.xmf)
    DIR/NNNN/error.txt       why it failed (removed when it later succeeds)
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import math
import os
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from carabm.errors import CarabmError, ConfigError, InputFileError
from carabm.io import expressions
from carabm.io.config import Config, parent_of, read_yaml, validate_config

log = logging.getLogger("carabm")

AXIS_KINDS = ("list", "grid", "latin_hypercube", "cohort", "sobol", "morris")
DESIGN_KINDS = ("sobol", "morris")
DISTRIBUTIONS = ("lognormal", "normal", "uniform")
OUTPUT_NAME = "run.h5"
MEMBERS_CSV = "members.csv"
DESIGN_JSON = "design.json"


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

    def __len__(self) -> int:
        return len(self.members)


# --------------------------------------------------------------------------- helpers


def _set_path(data: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key in a nested mapping; mapping values merge into existing mappings."""
    parts = key.split(".")
    node = parent_of(data, parts)
    old = node.get(parts[-1])
    if isinstance(value, dict) and isinstance(old, dict):
        merged = dict(old)
        for k, v in value.items():
            _set_path(merged, str(k), v)
        node[parts[-1]] = merged
    else:
        node[parts[-1]] = value


def _get_path(data: Any, key: str) -> Any:
    node = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _plain(value: Any) -> Any:
    """NumPy scalars to Python numbers (so YAML, CSV and pydantic see plain values)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def member_seed(sweep_seed: int, index: int) -> int:
    """The ``run.seed`` of member ``index``: a deterministic hash of (sweep seed, index) in [0, 2**63)."""
    state = np.random.SeedSequence([int(sweep_seed), int(index), 0x5EED]).generate_state(1, dtype=np.uint64)[0]
    return int(state) >> 1


def _rng(sweep_seed: int, block: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(sweep_seed), int(block), int(purpose)]))


# --------------------------------------------------------------------------- axes


def _need_mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{where}: expected a non-empty mapping of config keys, got {type(value).__name__}")
    return value


def _axis_list(spec: Any, where: str) -> list[dict[str, Any]]:
    spec = _need_mapping(spec, where)
    lengths = {}
    for key, values in spec.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.{key}: expected a non-empty list of values")
        lengths[key] = len(values)
    if len(set(lengths.values())) > 1:
        raise ConfigError(f"{where}: the lists must have equal lengths (zip), got {lengths}")
    return [dict(zip(spec, row)) for row in zip(*spec.values())]


def _axis_grid(spec: Any, where: str) -> list[dict[str, Any]]:
    spec = _need_mapping(spec, where)
    for key, values in spec.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.{key}: expected a non-empty list of values")
    return [dict(zip(spec, row)) for row in itertools.product(*spec.values())]


def _range(key: str, value: Any, where: str) -> tuple[float, float, bool]:
    """(low, high, log) from ``[low, high]`` or ``{low, high, log}``."""
    log_scale = False
    if isinstance(value, dict):
        unknown = set(value) - {"low", "high", "log"}
        if unknown or "low" not in value or "high" not in value:
            raise ConfigError(f"{where}.{key}: expected [low, high] or {{low, high, log}}, got {value}")
        low, high, log_scale = value["low"], value["high"], bool(value.get("log", False))
    elif isinstance(value, list) and len(value) == 2:
        low, high = value
    else:
        raise ConfigError(f"{where}.{key}: expected [low, high] or {{low, high, log}}, got {value!r}")
    try:
        low, high = float(low), float(high)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.{key}: low and high must be numbers, got {value!r}") from None
    if not low < high:
        raise ConfigError(f"{where}.{key}: low must be < high, got {low:g}, {high:g}")
    if log_scale and low <= 0:
        raise ConfigError(f"{where}.{key}: log ranges need low > 0, got {low:g}")
    return low, high, log_scale


def _n_and_mapping(spec: Any, where: str, name: str) -> tuple[int, dict[str, Any]]:
    """An axis of the form ``{n: COUNT, NAME: {...}}``: its count and its mapping, nothing else allowed."""
    spec = _need_mapping(spec, where)
    n = _count(spec.get("n"), f"{where}.n")
    mapping = _need_mapping(spec.get(name), f"{where}.{name}")
    unknown = set(spec) - {"n", name}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; expected n, {name}")
    return n, mapping


def _axis_lhs(spec: Any, where: str, seed: int, block: int) -> list[dict[str, Any]]:
    from scipy.stats import qmc  # noqa: PLC0415

    n, ranges = _n_and_mapping(spec, where, "ranges")
    bounds = [_range(k, v, f"{where}.ranges") for k, v in ranges.items()]
    rng = _rng(seed, block, 1)
    try:
        sampler = qmc.LatinHypercube(d=len(bounds), rng=rng)
    except TypeError:  # scipy < 1.15
        sampler = qmc.LatinHypercube(d=len(bounds), seed=rng)
    unit = sampler.random(n)
    rows = []
    for u in unit:
        row = {}
        for (key, (low, high, log_scale)), x in zip(zip(ranges, bounds), u):
            row[key] = math.exp(math.log(low) + x * (math.log(high) - math.log(low))) if log_scale else low + x * (high - low)
        rows.append(row)
    return rows


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: expected a whole number >= 1, got {value!r}")
    return value


def _number(spec: dict[str, Any], name: str, where: str, default: float | None = None) -> float:
    value = spec.get(name, default)
    if value is None or isinstance(value, bool):
        raise ConfigError(f"{where}.{name}: required number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.{name}: expected a number, got {value!r}") from None


def sample_distribution(spec: Any, u: np.ndarray, where: str) -> np.ndarray:
    """Map uniform draws ``u`` in (0, 1) through a distribution spec (inverse CDF).

    ``{lognormal: {median, sigma[, min, max]}}``, ``{normal: {mean, sd[, min, max]}}``
    (truncated to [min, max]) or ``{uniform: {low, high}}``.
    """
    from scipy.stats import norm, truncnorm  # noqa: PLC0415

    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: expected one of {{lognormal: {{median, sigma}}}}, {{normal: {{mean, sd, min, max}}}}, "
                          f"{{uniform: {{low, high}}}}; got {spec!r}")  # fmt: skip
    kind, params = next(iter(spec.items()))
    where = f"{where}.{kind}"
    params = params if isinstance(params, dict) else {}
    allowed = {"lognormal": {"median", "sigma", "min", "max"}, "normal": {"mean", "sd", "min", "max"}, "uniform": {"low", "high"}}[kind]
    unknown = set(params) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; expected {sorted(allowed)}")
    lo = _number(params, "min", where, -math.inf) if kind != "uniform" else 0.0
    hi = _number(params, "max", where, math.inf) if kind != "uniform" else 0.0
    if kind == "lognormal":
        median, sigma = _number(params, "median", where), _number(params, "sigma", where)
        if median <= 0 or sigma < 0:
            raise ConfigError(f"{where}: needs median > 0 and sigma >= 0, got {median:g}, {sigma:g}")
        x = np.exp(math.log(median) + sigma * norm.ppf(u))
        return np.clip(x, lo, hi)
    if kind == "normal":
        mean, sd = _number(params, "mean", where), _number(params, "sd", where)
        if sd <= 0 or not lo < hi:
            raise ConfigError(f"{where}: needs sd > 0 and min < max, got sd {sd:g}, min {lo:g}, max {hi:g}")
        return truncnorm.ppf(u, (lo - mean) / sd, (hi - mean) / sd, loc=mean, scale=sd)
    low, high = _number(params, "low", where), _number(params, "high", where)
    if not low < high:
        raise ConfigError(f"{where}: low must be < high, got {low:g}, {high:g}")
    return low + u * (high - low)


def _axis_cohort(spec: Any, where: str, seed: int, block: int) -> list[dict[str, Any]]:
    n, keys = _n_and_mapping(spec, where, "keys")
    rng = _rng(seed, block, 2)
    columns = {}
    for key, dist in keys.items():  # one stream per key, drawn in file order
        u = rng.random(n)
        columns[key] = sample_distribution(dist, np.clip(u, 1e-12, 1 - 1e-12), f"{where}.keys.{key}")
    return [{key: float(columns[key][i]) for key in keys} for i in range(n)]


def _design_bounds(spec: dict[str, Any], where: str) -> tuple[list[str], list[list[float]]]:
    keys = _need_mapping(spec.get("keys"), f"{where}.keys")
    bounds = []
    for key, value in keys.items():
        low, high, log_scale = _range(key, value, f"{where}.keys")
        if log_scale:
            raise ConfigError(f"{where}.keys.{key}: sensitivity designs take uniform bounds {{low, high}} only (no log)")
        bounds.append([low, high])
    return [str(k) for k in keys], bounds


def _salib_seed(seed: int, block: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(block), 3]).generate_state(1)[0])


def _axis_sobol(spec: Any, where: str, seed: int, block: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Saltelli/Sobol' sample (SALib.sample.sobol): N (D + 2) members, N (2 D + 2) with second order."""
    spec = _need_mapping(spec, where)
    unknown = set(spec) - {"n", "calc_second_order", "keys"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; expected n, calc_second_order, keys")
    n = _count(spec.get("n"), f"{where}.n")
    if n & (n - 1):
        raise ConfigError(f"{where}.n: the Sobol' base sample size must be a power of 2 (e.g. 64, 128), got {n}")
    second = spec.get("calc_second_order", False)
    if not isinstance(second, bool):
        raise ConfigError(f"{where}.calc_second_order: expected true or false, got {second!r}")
    names, bounds = _design_bounds(spec, where)
    problem = {"num_vars": len(names), "names": names, "bounds": bounds}
    try:
        from SALib.sample import sobol  # noqa: PLC0415
    except ImportError:
        raise ConfigError(f"{where}: sensitivity designs need SALib (pip install 'carabm[hpc]' or pip install SALib)") from None

    salib_seed = _salib_seed(seed, block)
    sample = sobol.sample(problem, n, calc_second_order=second, scramble=True, seed=salib_seed)
    design = {"method": "sobol", "problem": problem, "n": n, "calc_second_order": second, "salib_seed": salib_seed,
              "sample": sample.tolist()}  # fmt: skip
    return [dict(zip(names, map(float, x))) for x in sample], design


def _axis_morris(spec: Any, where: str, seed: int, block: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Morris elementary-effects trajectories (SALib.sample.morris): r (D + 1) members."""
    spec = _need_mapping(spec, where)
    unknown = set(spec) - {"trajectories", "levels", "keys"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; expected trajectories, levels, keys")
    r = _count(spec.get("trajectories"), f"{where}.trajectories")
    if r < 2:
        raise ConfigError(f"{where}.trajectories: need at least 2 trajectories, got {r}")
    levels = _count(spec.get("levels", 4), f"{where}.levels")
    if levels < 2 or levels % 2:
        raise ConfigError(f"{where}.levels: expected an even number >= 2 (e.g. 4), got {levels}")
    names, bounds = _design_bounds(spec, where)
    problem = {"num_vars": len(names), "names": names, "bounds": bounds}
    try:
        from SALib.sample import morris  # noqa: PLC0415
    except ImportError:
        raise ConfigError(f"{where}: sensitivity designs need SALib (pip install 'carabm[hpc]' or pip install SALib)") from None

    salib_seed = _salib_seed(seed, block)
    state = np.random.get_state()  # older SALib seeds the global NumPy generator
    try:
        sample = morris.sample(problem, r, num_levels=levels, seed=salib_seed)
    finally:
        np.random.set_state(state)
    design = {"method": "morris", "problem": problem, "trajectories": r, "levels": levels, "salib_seed": salib_seed,
              "sample": sample.tolist()}  # fmt: skip
    return [dict(zip(names, map(float, x))) for x in sample], design


def _blocks(axes: Any) -> list[tuple[str, Any]]:
    """``axes`` as (kind, spec) pairs: a mapping ``{grid: ..., list: ...}`` or a list of one-key mappings."""
    if axes is None:
        return []
    items: Iterable[Any] = axes if isinstance(axes, list) else [axes]
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"axes[{i}]: expected a mapping like {{grid: {{KEY: [values]}}}}, got {item!r}")
        for kind, spec in item.items():
            if kind not in AXIS_KINDS:
                raise ConfigError(f"axes.{kind}: unknown axis kind; expected one of {', '.join(AXIS_KINDS)}")
            out.append((str(kind), spec))
    return out


# --------------------------------------------------------------------------- derived values

def evaluate(expression: str, data: dict[str, Any], where: str) -> Any:
    """Evaluate an arithmetic expression over a member's config (``2e6 * patient.weight_kg``).

    Names are dotted config keys; numbers, ``+ - * / **``, parentheses and
    ``min max round int float exp log sqrt`` are allowed, nothing else (the shared safe
    evaluator :mod:`carabm.io.expressions`, with its limits: ``9**9**9`` fails at once).
    """

    def lookup(key: str) -> Any:
        value = _get_path(data, key)
        if value is None:
            raise ConfigError(f"{where}: {key!r} is not set in the member's config")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key!r} is not a number ({value!r})")
        return value

    try:
        return expressions.evaluate(str(expression), lookup)
    except expressions.ExpressionError as exc:
        raise ConfigError(f"{where}: {expression!r}: {exc}") from None


# --------------------------------------------------------------------------- expansion

SWEEP_KEYS = ("base", "overrides", "axes", "derived", "seed", "description")


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
    value = _get_path(defaults, key)
    return isinstance(value, int) and not isinstance(value, bool)


def expand(spec: dict[str, Any], sweep_dir: str | Path = ".", path: Path | None = None) -> Sweep:
    """Expand a sweep mapping into validated members (deterministic).

    Raises :class:`ConfigError` with one line per problem; problems of a member's config
    name the member (``member 3 (cells.cart.dose=1e9): cells.cart.dose: ...``).
    """
    import copy  # noqa: PLC0415

    if not isinstance(spec, dict):
        raise ConfigError(f"{path or 'sweep'}: the top level must be a mapping (base, overrides, axes, seed)")
    unknown = set(spec) - set(SWEEP_KEYS)
    if unknown:
        raise ConfigError(f"{', '.join(sorted(unknown))}: unknown sweep key(s); expected {', '.join(SWEEP_KEYS)}")
    seed = spec.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed: expected a whole number >= 0, got {seed!r}")
    base = _load_base(spec.get("base"), Path(sweep_dir))
    overrides = spec.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ConfigError("overrides: expected a mapping of config keys (dotted or nested) to values")
    for key, value in overrides.items():
        _set_path(base, str(key), value)
    derived = spec.get("derived") or {}
    if not isinstance(derived, dict):
        raise ConfigError("derived: expected a mapping KEY: expression")

    rows: list[dict[str, Any]] = [{}]
    blocks = _blocks(spec.get("axes"))
    design: dict[str, Any] | None = None
    if len(blocks) > 1 and any(kind in DESIGN_KINDS for kind, _ in blocks):
        kind = next(k for k, _ in blocks if k in DESIGN_KINDS)
        raise ConfigError(f"axes.{kind}: a sensitivity design must be the only axis (its sample is analysed as a whole)")
    for block, (kind, axis) in enumerate(blocks):
        where = f"axes.{kind}"
        if kind == "sobol":
            values, design = _axis_sobol(axis, where, seed, block)
        elif kind == "morris":
            values, design = _axis_morris(axis, where, seed, block)
        elif kind == "list":
            values = _axis_list(axis, where)
        elif kind == "grid":
            values = _axis_grid(axis, where)
        elif kind == "latin_hypercube":
            values = _axis_lhs(axis, where, seed, block)
        else:
            values = _axis_cohort(axis, where, seed, block)
        repeated = set(rows[0]) & set(values[0])
        if repeated:
            raise ConfigError(f"{where}: {', '.join(sorted(repeated))} already varied by an earlier axis")
        rows = [{**a, **b} for a, b in itertools.product(rows, values)]

    defaults = Config().model_dump(mode="json")
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
                _set_path(data, key, value)
                values[key] = value
            for key, expression in derived.items():
                lookup = copy.deepcopy(defaults)
                for k, v in _flatten(data):
                    _set_path(lookup, k, v)
                value = evaluate(expression, lookup, f"derived.{key}")
                if isinstance(value, float) and _integer_key(defaults, key):
                    value = int(round(value))
                _set_path(data, key, value)
                values[key] = value
            if "run.seed" not in values:
                _set_path(data, "run.seed", member_seed(seed, index))
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
    return Sweep(path, seed, keys, members, design)


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out += _flatten(value, full)
        else:
            out.append((full, value))
    return out


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def load_sweep(path: str | Path) -> Sweep:
    """Read and expand a SWEEP.yaml (a ``base:`` path is relative to the sweep file)."""
    path = Path(path)
    return expand(read_yaml(path), path.parent, path)


# --------------------------------------------------------------------------- the sweep folder


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
        _atomic_write(out / "sweep.yaml", Path(sweep.path).read_text(encoding="utf-8"))
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


@dataclass
class MemberResult:
    """What happened to one member: ``done`` (ran now), ``skipped`` (complete already), ``resumed`` or ``failed``."""

    index: int
    outcome: str
    message: str = ""
    wall_s: float = 0.0


def run_member(sweep_file: str | Path, out: str | Path, index: int, backend: str | None = None,
               progress: bool | None = False) -> MemberResult:  # fmt: skip
    """Run member ``index`` of a sweep into ``out/NNNN/run.h5`` (used by every mode).

    ``progress`` as in :func:`carabm.simulation.run` (off by default: workers and MPI ranks
    would interleave their bars; ``carabm sweep --index`` turns it on for a Slurm log). Complete outputs are skipped, incomplete ones resumed from their checkpoint, and any
    failure is written to ``out/NNNN/error.txt`` and returned, not raised.
    """
    out = Path(out)
    folder = out / f"{index:04d}"
    try:
        sweep = load_sweep(sweep_file)
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
    from carabm.io.hdf5 import read_config_text  # noqa: PLC0415
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


# --------------------------------------------------------------------------- modes


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


__all__ = ["Member", "Sweep", "MemberResult", "expand", "load_sweep", "prepare", "run_member", "run_workers", "run_mpi",
           "member_seed", "sample_distribution", "evaluate", "output_status", "slurm_index", "summary_line", "members_csv"]  # fmt: skip
