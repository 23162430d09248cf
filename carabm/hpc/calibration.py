"""The CALIBRATION.yaml file: a trial's table, the virtual cohort, priors, fit and ABC settings.

:func:`load_calibration` validates the file (one line per problem, naming the key and what
is allowed) into a :class:`Calibration`, which turns one particle (values of the fitted
quantities) into an ordinary SWEEP mapping: a ``cohort`` axis whose distributions carry the
particle's trait parameters, the particle's model parameters as overrides, and the cohort
seed. The format is documented in docs/calibration.md.
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carabm.errors import ConfigError
from carabm.hpc.designs import DISTRIBUTIONS
from carabm.hpc.trial import STATISTICS, Trial, check_mapping, parse_trial

CALIBRATION_KEYS = ("description", "trial", "cohort", "parameters", "fit", "abc", "check", "keep_runs", "slurm", "reduced")
COHORT_KEYS = ("base", "seed", "n", "overrides", "traits", "derived")
ABC_KEYS = ("population", "generations", "min_epsilon", "max_walltime_h", "min_acceptance_rate", "initial_epsilon")
PRIORS = ("uniform", "loguniform", "normal")


@dataclass(frozen=True)
class Prior:
    """The prior of one fitted quantity: a config key (``parameters:``) or a trait distribution's parameter.

    ``target`` is where the value goes: ``("parameter", KEY)`` or ``("trait", KEY, DISTRIBUTION, PARAM)``.
    A ``loguniform`` prior is sampled as ``log10`` of the value (uniform there), so the ABC
    perturbation kernel moves over orders of magnitude; its pyabc name is ``log10(NAME)``.
    """

    name: str
    kind: str
    a: float
    b: float
    target: tuple[str, ...]

    @property
    def abc_name(self) -> str:
        """The parameter's name in pyabc's History (``log10(...)`` for log-uniform priors)."""
        return f"log10({self.name})" if self.kind == "loguniform" else self.name

    def to_value(self, x: float) -> float:
        """A pyabc parameter value to the quantity's own units."""
        return float(10.0**x) if self.kind == "loguniform" else float(x)

    def rv_args(self) -> tuple[str, float, float]:
        """scipy.stats name, loc and scale of the prior in pyabc's parameter space."""
        if self.kind == "uniform":
            return "uniform", self.a, self.b - self.a
        if self.kind == "loguniform":
            return "uniform", math.log10(self.a), math.log10(self.b) - math.log10(self.a)
        return "norm", self.a, self.b

    def typical(self) -> list[float]:
        """Values that must give a valid config (checked when the file is loaded): both ends and the middle."""
        if self.kind == "normal":
            return [self.a]
        if self.kind == "loguniform":
            return [self.a, math.sqrt(self.a * self.b), self.b]
        return [self.a, 0.5 * (self.a + self.b), self.b]


def parse_prior(spec: Any, name: str, where: str, target: tuple[str, ...]) -> Prior:
    """``{uniform: [low, high]}``, ``{loguniform: [low, high]}`` (low > 0) or ``{normal: [mean, sd]}``."""
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in PRIORS:
        raise ConfigError(f"{where}: expected a prior {{uniform: [LOW, HIGH]}}, {{loguniform: [LOW, HIGH]}} or "
                          f"{{normal: [MEAN, SD]}}; got {spec!r}")  # fmt: skip
    kind, args = next(iter(spec.items()))
    where = f"{where}.{kind}"
    if not isinstance(args, list) or len(args) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in args):
        raise ConfigError(f"{where}: expected two numbers, got {args!r}")
    a, b = float(args[0]), float(args[1])
    if kind == "normal" and not b > 0:
        raise ConfigError(f"{where}: the sd must be > 0, got {b:g}")
    if kind != "normal" and not a < b:
        raise ConfigError(f"{where}: LOW must be < HIGH, got {a:g}, {b:g}")
    if kind == "loguniform" and a <= 0:
        raise ConfigError(f"{where}: log-uniform bounds must be > 0, got {a:g}")
    return Prior(name, kind, a, b, target)


@dataclass
class AbcSettings:
    """ABC-SMC settings: particles per generation, generations, stopping rules."""

    population: int = 20
    generations: int = 4
    min_epsilon: float = 0.0
    max_walltime_h: float | None = None
    min_acceptance_rate: float = 0.0
    initial_epsilon: float | None = None  # None: the median distance of a prior sample (pyabc's "from_sample")


@dataclass
class Calibration:
    """A validated CALIBRATION.yaml."""

    path: Path | None
    folder: Path
    text: str
    description: str
    trial: Trial
    base: str | dict[str, Any]
    seed: int
    n: int
    overrides: dict[str, Any]
    traits: dict[str, Any]
    derived: dict[str, Any]
    priors: list[Prior]
    statistics: list[str]
    scales: dict[str, float]
    abc: AbcSettings
    check_n: int
    keep_runs: bool
    slurm: dict[str, Any] = field(default_factory=dict)
    trial_data: dict[str, Any] = field(default_factory=dict)  # the ``trial:`` mapping as written
    reduced: bool = False  # the file's reduced: section was applied

    @property
    def abc_names(self) -> list[str]:
        """The fitted quantities' names in pyabc's History, in file order."""
        return [p.abc_name for p in self.priors]

    def values(self, abc_params: dict[str, float]) -> dict[str, float]:
        """A particle (pyabc names) to the fitted quantities' values in their own units (file names)."""
        return {p.name: p.to_value(float(abc_params[p.abc_name])) for p in self.priors}

    def sweep(self, values: dict[str, float], n: int | None = None) -> dict[str, Any]:
        """The SWEEP mapping of the cohort for the fitted quantities' ``values`` (file names, own units).

        Every particle shares the cohort seed: the same uniform draws and member seeds, only
        the distributions and parameters differ (common random numbers, so that the distance
        between particles reflects the parameters rather than the draw).
        """
        from carabm.hpc.members import integer_key  # noqa: PLC0415

        overrides = copy.deepcopy(self.overrides)
        traits = copy.deepcopy(self.traits)
        for prior in self.priors:
            value = values[prior.name]
            if prior.target[0] == "parameter":
                key = prior.target[1]
                overrides[key] = int(round(value)) if integer_key(key) else value
            else:
                _, key, dist, param = prior.target
                traits[key][dist][param] = value
        spec: dict[str, Any] = {"base": copy.deepcopy(self.base), "seed": self.seed, "overrides": overrides,
                                "axes": {"cohort": {"n": int(n or self.n), "keys": traits}}}  # fmt: skip
        if self.derived:
            spec["derived"] = copy.deepcopy(self.derived)
        return spec

    def fingerprint(self) -> str:
        """A hash of what defines the inference (not the ABC stopping rules): a resume must match it."""
        import json  # noqa: PLC0415

        what = {"trial": self.trial.outcomes, "n_trial": self.trial.n, "base": self.base, "seed": self.seed, "n": self.n,
                "overrides": self.overrides, "traits": self.traits, "derived": self.derived,
                "priors": [(p.name, p.kind, p.a, p.b) for p in self.priors], "statistics": self.statistics,
                "scales": self.scales, "population": self.abc.population}  # fmt: skip
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _whole(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: expected a whole number >= {minimum}, got {value!r}")
    return value


def _parse_traits(traits: Any) -> tuple[dict[str, Any], list[Prior]]:
    """The ``cohort.traits`` mapping with every ``{prior: ...}`` replaced by a placeholder, and its priors."""
    traits = check_mapping(traits, "cohort.traits", empty_ok=False)
    out: dict[str, Any] = {}
    priors: list[Prior] = []
    for key, spec in traits.items():
        where = f"cohort.traits.{key}"
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
            raise ConfigError(f"{where}: expected one distribution ({', '.join(DISTRIBUTIONS)}) as in a cohort axis, "
                              f"e.g. {{lognormal: {{median: 1.0e10, sigma: 1.0}}}}; got {spec!r}")  # fmt: skip
        dist, params = next(iter(spec.items()))
        params = check_mapping(params, f"{where}.{dist}", empty_ok=False)
        fixed: dict[str, Any] = {}
        for param, value in params.items():
            if isinstance(value, dict):
                prior_spec = check_mapping(value, f"{where}.{dist}.{param}", ("prior",))
                prior = parse_prior(prior_spec.get("prior"), f"{key}.{dist}.{param}", f"{where}.{dist}.{param}.prior",
                                    ("trait", str(key), str(dist), str(param)))  # fmt: skip
                priors.append(prior)
                fixed[param] = prior.typical()[len(prior.typical()) // 2]
            else:
                fixed[param] = value
        out[str(key)] = {dist: fixed}
    return out, priors


def _parse_fit(data: Any, trial: Trial, n: int) -> tuple[list[str], dict[str, float]]:
    data = check_mapping(data, "fit", ("statistics", "scales"), empty_ok=False)
    names = data.get("statistics")
    if not isinstance(names, list) or not names:
        raise ConfigError(f"fit.statistics: expected a list of trial outcomes to fit, from {', '.join(trial.outcomes)}")
    for name in names:
        if name not in STATISTICS:
            raise ConfigError(f"fit.statistics: {name!r} is not a statistic; expected one of {', '.join(STATISTICS)}")
        if name not in trial.outcomes:
            raise ConfigError(f"fit.statistics: {name!r} has no value in trial.outcomes; add it there or remove it here")
    if len(set(names)) != len(names):
        raise ConfigError("fit.statistics: a statistic is named twice")
    scales_in = check_mapping(data.get("scales"), "fit.scales")
    scales: dict[str, float] = {}
    for name in names:
        if name in scales_in:
            value = scales_in[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"fit.scales.{name}: expected a number > 0 (the statistic's standard error), got {value!r}")
            scales[name] = float(value)
        elif STATISTICS[name].kind == "incidence":
            scales[name] = incidence_scale(trial.outcomes[name], trial.n, n)
        else:
            raise ConfigError(f"fit.scales.{name}: required for a median (its standard error in days; the trial does not publish one)")
    extra = set(scales_in) - set(names)
    if extra:
        raise ConfigError(f"fit.scales: {', '.join(sorted(extra))} not in fit.statistics")
    return list(names), scales


def incidence_scale(p: float, n_trial: int, n_cohort: int) -> float:
    """Standard error of (cohort incidence - trial incidence) for two independent binomial samples at ``p``.

    ``sqrt(p (1 - p) (1 / n_trial + 1 / n_cohort))``, with ``p`` kept half a patient away
    from 0 and 1 so that the scale is never zero.
    """
    p = min(max(p, 0.5 / n_trial), 1 - 0.5 / n_trial)
    return math.sqrt(p * (1 - p) * (1.0 / n_trial + 1.0 / n_cohort))


def _parse_abc(data: Any) -> AbcSettings:
    data = check_mapping(data, "abc", ABC_KEYS)
    out = AbcSettings()
    if "population" in data:
        out.population = _whole(data["population"], "abc.population", 2)
    if "generations" in data:
        out.generations = _whole(data["generations"], "abc.generations", 1)
    for key in ("min_epsilon", "min_acceptance_rate"):
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"abc.{key}: expected a number >= 0, got {value!r}")
            setattr(out, key, float(value))
    if data.get("initial_epsilon") is not None:
        value = data["initial_epsilon"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"abc.initial_epsilon: expected a distance > 0 (or leave it out: from a prior sample), got {value!r}")
        out.initial_epsilon = float(value)
    if data.get("max_walltime_h") is not None:
        value = data["max_walltime_h"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"abc.max_walltime_h: expected hours > 0 (or leave it out), got {value!r}")
        out.max_walltime_h = float(value)
    return out


def parse_calibration(data: Any, folder: str | Path = ".", path: Path | None = None, text: str = "") -> Calibration:
    """Validate a calibration mapping; a relative ``cohort.base`` is resolved against ``folder``."""
    from carabm.hpc.members import expand  # noqa: PLC0415

    check_mapping(data, str(path or "calibration"), CALIBRATION_KEYS, empty_ok=False)
    for key in ("trial", "cohort", "fit"):
        if key not in data:
            raise ConfigError(f"{key}: required (docs/calibration.md)")
    folder = Path(folder)
    trial = parse_trial(data["trial"])
    cohort = check_mapping(data["cohort"], "cohort", COHORT_KEYS, empty_ok=False)
    base = cohort.get("base")
    if isinstance(base, str):
        from carabm.io.shipped import resolve_config  # noqa: PLC0415

        base_path = Path(base) if Path(base).is_absolute() else folder / base
        base = str((base_path if base_path.exists() else resolve_config(base, kind="run")).resolve())
    elif base is not None and not isinstance(base, dict):
        raise ConfigError(f"cohort.base: expected a run config path (relative to the calibration file) or a mapping, got {base!r}")
    seed = _whole(cohort.get("seed", 0), "cohort.seed", 0)
    n = _whole(cohort.get("n"), "cohort.n", 1)
    overrides = dict(check_mapping(cohort.get("overrides"), "cohort.overrides"))
    derived = dict(check_mapping(cohort.get("derived"), "cohort.derived"))
    traits, priors = _parse_traits(cohort.get("traits"))
    for key, spec in check_mapping(data.get("parameters"), "parameters").items():
        if key in traits or key in derived:
            raise ConfigError(f"parameters.{key}: already set by cohort.traits or cohort.derived; fit it there")
        priors.append(parse_prior(spec, str(key), f"parameters.{key}", ("parameter", str(key))))
    if not priors:
        raise ConfigError("parameters: nothing to fit; give priors under parameters: or {prior: ...} in cohort.traits")
    statistics, scales = _parse_fit(data["fit"], trial, n)
    abc = _parse_abc(data.get("abc"))
    check = check_mapping(data.get("check"), "check", ("n",))
    check_n = _whole(check.get("n", 0), "check.n", 0)
    keep_runs = data.get("keep_runs", False)
    if not isinstance(keep_runs, bool):
        raise ConfigError(f"keep_runs: expected true or false, got {keep_runs!r}")
    slurm = dict(check_mapping(data.get("slurm"), "slurm"))
    cal = Calibration(path, folder, text, str(data.get("description", "") or ""), trial, base or {}, seed, n, overrides,
                      traits, derived, priors, statistics, scales, abc, check_n, keep_runs, slurm, dict(data["trial"]))  # fmt: skip
    # every prior's ends and middle (the others at their middle) must give valid member configs
    middle = {p.name: p.typical()[len(p.typical()) // 2] for p in priors}
    for prior in priors:
        for value in prior.typical():
            try:
                expand(cal.sweep({**middle, prior.name: value}, n=1), folder)
            except ConfigError as exc:
                raise ConfigError([f"{prior.name} = {value:g} (prior {prior.kind} {prior.a:g}, {prior.b:g}): {p}"
                                   for p in exc.problems]) from None  # fmt: skip
    if abc.population <= len(priors):
        # pyabc perturbs particles with a normal kernel of the population's covariance: with no more
        # particles than fitted quantities it is singular, and a new particle off its support by
        # rounding gets a kernel density of 0, an infinite weight and a NaN population
        raise ConfigError(f"abc.population: {abc.population} particles for {len(priors)} fitted quantities; give at least "
                          f"{len(priors) + 1} (pyabc's perturbation kernel is singular with fewer)")  # fmt: skip
    return cal


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` laid over ``base``: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else copy.deepcopy(value)
    return out


def apply_reduced(data: dict[str, Any]) -> dict[str, Any]:
    """The file's ``reduced:`` section laid over the rest (the workstation form of a calibration)."""
    reduced = data.get("reduced")
    if not isinstance(reduced, dict) or not reduced:
        raise ConfigError("reduced: --reduced needs a reduced: section (a mapping laid over the file, e.g. "
                          "{cohort: {n: 4}, abc: {population: 6, generations: 2}})")  # fmt: skip
    if "reduced" in reduced or "trial" in reduced:
        raise ConfigError("reduced: may not change trial or nest another reduced:")
    return _merge({k: v for k, v in data.items() if k != "reduced"}, reduced)


def apply_settings(data: dict[str, Any], settings: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``--set KEY=VALUE`` on a calibration mapping: ``abc.population=4``, ``cohort.n=2``,
    ``cohort.overrides.run.duration_h=120`` (after ``cohort.overrides.`` the rest is one config key)."""
    from carabm.io.dotted import parent_of  # noqa: PLC0415
    from carabm.io.yaml_input import parse_override  # noqa: PLC0415

    data = copy.deepcopy(data)
    for text in settings:
        parts, value = parse_override(text)
        if parts[:2] in (["cohort", "overrides"], ["cohort", "derived"]) and len(parts) > 2:
            parts = [*parts[:2], ".".join(parts[2:])]
        parent_of(data, parts)[parts[-1]] = value
    return data


def load_calibration(path: str | Path, reduced: bool = False, settings: list[str] | tuple[str, ...] = ()) -> Calibration:
    """Read and validate a CALIBRATION.yaml (``cohort.base`` relative to the file, or a shipped config's name).

    ``reduced``: lay the file's ``reduced:`` section over it (small cohorts, short runs, few
    generations); ``settings``: ``--set KEY=VALUE`` changes after that (:func:`apply_settings`).
    """
    from carabm.io.yaml_input import read_yaml  # noqa: PLC0415

    path = Path(path)
    data = read_yaml(path)
    if reduced:
        data = apply_reduced(data)
    if settings:
        data = apply_settings(data, settings)
    cal = parse_calibration(data, path.parent, path, path.read_text(encoding="utf-8"))
    cal.reduced = reduced
    return cal


__all__ = ["Calibration", "Prior", "AbcSettings", "load_calibration", "parse_calibration", "apply_reduced", "apply_settings", "parse_prior", "incidence_scale",
           "CALIBRATION_KEYS", "PRIORS"]  # fmt: skip
