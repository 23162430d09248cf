"""Sweep axes: the designs and samplers that turn an ``axes:`` entry into rows of config values.

``list`` (zip), ``grid`` (cartesian product), ``latin_hypercube`` (scipy.stats.qmc), ``cohort``
(independent draws from distributions) and the SALib sensitivity designs ``sobol`` and
``morris``. Every random draw is keyed by (sweep seed, axis block, purpose), so a sweep file
expands to the same rows every time. The format is documented in docs/hpc.md.
"""

from __future__ import annotations

import importlib
import itertools
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from carabm.errors import ConfigError

AXIS_KINDS = ("list", "grid", "latin_hypercube", "cohort", "sobol", "morris")

DESIGN_KINDS = ("sobol", "morris")

DISTRIBUTIONS = ("lognormal", "normal", "uniform")


def member_seed(sweep_seed: int, index: int) -> int:
    """The ``run.seed`` of member ``index``: a deterministic hash of (sweep seed, index) in [0, 2**63)."""
    state = np.random.SeedSequence([int(sweep_seed), int(index), 0x5EED]).generate_state(1, dtype=np.uint64)[0]
    return int(state) >> 1


def _rng(sweep_seed: int, block: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(sweep_seed), int(block), int(purpose)]))


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


def _n_and_mapping(spec: Any, where: str, name: str, extra: tuple[str, ...] = ()) -> tuple[int, dict[str, Any]]:
    """An axis of the form ``{n: COUNT, NAME: {...}}``: its count and its mapping, nothing else allowed."""
    spec = _need_mapping(spec, where)
    n = _count(spec.get("n"), f"{where}.n")
    mapping = _need_mapping(spec.get(name), f"{where}.{name}")
    unknown = set(spec) - {"n", name}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; expected n, {', '.join((name, *extra))}")
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
    spec = dict(_need_mapping(spec, where))
    paired = spec.pop("paired", False)
    if not isinstance(paired, bool):
        raise ConfigError(f"{where}.paired: expected true or false, got {paired!r}")
    n, keys = _n_and_mapping(spec, where, "keys", extra=("paired",))
    if paired and "run.seed" in keys:
        raise ConfigError(f"{where}: paired: true sets each patient's run.seed; leave run.seed out of keys")
    rng = _rng(seed, block, 2)
    columns = {}
    for key, dist in keys.items():  # one stream per key, drawn in file order
        u = rng.random(n)
        columns[key] = sample_distribution(dist, np.clip(u, 1e-12, 1 - 1e-12), f"{where}.keys.{key}")
    rows: list[dict[str, Any]] = [{key: float(columns[key][i]) for key in keys} for i in range(n)]
    if paired:  # patient i keeps one run.seed in every arm of the other axes (common random numbers)
        for i, row in enumerate(rows):
            row["run.seed"] = member_seed(seed, i)
    return rows


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


def _salib_problem(spec: Any, where: str) -> tuple[list[str], dict[str, Any]]:
    """The keys of a sensitivity design and SALib's ``problem`` (names and bounds)."""
    names, bounds = _design_bounds(spec, where)
    return names, {"num_vars": len(names), "names": names, "bounds": bounds}


def _salib_sampler(method: str, where: str) -> Any:
    """SALib's sampler module ``SALib.sample.<method>``; one line naming the extra when SALib is missing."""
    try:
        return importlib.import_module(f"SALib.sample.{method}")
    except ImportError:
        raise ConfigError(f"{where}: sensitivity designs need SALib (pip install 'carabm[hpc]' or pip install SALib)") from None


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
    names, problem = _salib_problem(spec, where)
    sobol = _salib_sampler("sobol", where)

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
    names, problem = _salib_problem(spec, where)
    morris = _salib_sampler("morris", where)

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


def sample_axis(kind: str, spec: Any, where: str, seed: int, block: int) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The rows of one axis (``{key: value}`` each) and, for sobol/morris, the design kept in ``design.json``."""
    if kind == "sobol":
        return _axis_sobol(spec, where, seed, block)
    if kind == "morris":
        return _axis_morris(spec, where, seed, block)
    if kind == "list":
        return _axis_list(spec, where), None
    if kind == "grid":
        return _axis_grid(spec, where), None
    if kind == "latin_hypercube":
        return _axis_lhs(spec, where, seed, block), None
    return _axis_cohort(spec, where, seed, block), None


def axis_blocks(axes: Any) -> list[tuple[str, Any]]:
    """The ``axes:`` entry as (kind, spec) pairs, checked: a sensitivity design must be the only axis."""
    blocks = _blocks(axes)
    if len(blocks) > 1 and any(kind in DESIGN_KINDS for kind, _ in blocks):
        kind = next(k for k, _ in blocks if k in DESIGN_KINDS)
        raise ConfigError(f"axes.{kind}: a sensitivity design must be the only axis (its sample is analysed as a whole)")
    return blocks
