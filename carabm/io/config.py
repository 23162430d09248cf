"""The run configuration: typed schema (pydantic) and its validation.

YAML reading and ``--set`` overrides live in :mod:`carabm.io.yaml_input` and the one-line
error messages in :mod:`carabm.io.config_errors`; their functions are re-exported here.

Every value has a default, a unit in its name where ambiguous, and a description.
Problems are reported all at once as ``key.path: what is wrong`` lines (ConfigError).
"""

from __future__ import annotations

import difflib
import functools
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from carabm.engine.lattice import COMPARTMENTS, Lattice
from carabm.errors import ConfigError
from carabm.io.catalog import CATALOG, cytokine_names, drug_names
from carabm.io.catalog import Cytokine as CatalogCytokine
from carabm.io.config_errors import describe
from carabm.io.config_errors import problems_from as config_problems
from carabm.io.lattice_config import LatticeConfig, Layout, default_labels  # noqa: F401  (part of this module's API)
from carabm.io.masks import load_mask
from carabm.io.plugins import load_plugins, resolve_plugin
from carabm.io.strict import Strict
from carabm.io.yaml_input import apply_overrides, read_yaml, yaml_load

#: most time steps a run may have
MAX_STEPS = 10**8
#: most cells the model's blood pool can count exactly (float64 integers)
MAX_POOL_CELLS = 2.0**53

# Estimated device bytes per voxel for a run's arrays: K fields x (state, sources,
# uptake, two solver buffers) in float32, plus occupancy, labels, integrity, conductance.
_BYTES_PER_VOXEL_PER_FIELD = 4 * 5
_BYTES_PER_VOXEL_FIXED = 4 + 1 + 4 + 4 + 8


NonNegative = Field(ge=0)


class Patient(Strict):
    """Baseline traits of the virtual patient (what virtual cohorts vary)."""

    weight_kg: float = Field(70.0, gt=0, le=400, description="body weight [kg]; scales mg/kg doses")
    blood_volume_ml: float = Field(5000.0, gt=0, description="blood volume [mL] (about 70 mL/kg)")
    brain_volume_ml: float = Field(
        1200.0, gt=0, description="brain volume [mL]: the lattice's CNS stands for the whole brain, whatever the tumour's size; "
        "1,200 between the adult means of women and men (1,131 and 1,274 mL by MRI in 46 adults, Allen et al., Am J Phys "
        "Anthropol 2002)",
    )
    brain_extracellular_fraction: float = Field(
        0.2, gt=0, le=1, description="share of the brain's volume that is extracellular space, where cytokines distribute [1]; "
        "about 0.2 in the adult brain (Sykova & Nicholson, Physiol Rev 2008); the lattice's CNS concentrations are held in this "
        "volume of the patient's brain",
    )  # fmt: skip
    monocytes_per_ul: float = Field(
        500.0, ge=0, description="blood monocytes [cells/uL] (normal 200-800/uL)"
    )
    tumor_burden_cells: float = Field(
        1e10, gt=0, description="malignant B cells in the body [cells]; sets the representative-volume scale"
    )
    cd19_sites_per_cell: float = Field(
        1e4, gt=0, description="median CD19 density of the tumour's cells at infusion [molecules/cell]; 1e4 from quantitative flow "
        "cytometry of B-cell tumours (Ginaldi et al., J Clin Pathol 1998: 10-16 x 10^3 in B-cell leukaemias, 22 x 10^3 on normal B cells); "
        "below about 3,000 progression after axi-cel is more likely (Spiegel et al., Nat Med 2021)",
    )
    cd19_negative_fraction: float = Field(
        0.0, ge=0, le=1, description="share of the tumour's cells that are CD19-negative at infusion [1]; assumed 0 for the default "
        "patient (a CD19+ lymphoma); CD19-negative or -low tumour at relapse after axi-cel in about 30 % of biopsied relapses "
        "(Plaks et al., Blood 2021) and 10 of 16 (Spiegel et al., Nat Med 2021)",
    )
    cart_expansion_capacity: float = Field(
        1.0, gt=0, description="fold expansion the patient's CAR-T product can make relative to a typical product [1] (adds log2 of it "
        "to cells.cart.max_divisions); 1 for the default patient; product T-cell fitness (CCR7+CD45RA+ T cells) sets expansion "
        "relative to tumour burden, which associates with durable response (Locke et al., Blood Adv 2020)",
    )
    myeloid_cytokine_capacity: float = Field(
        1.0, gt=0, description="cytokine output of the patient's monocytes, macrophages and microglia relative to the default "
        "patient's, at the same activation [1] (scales their secretion, not their activation or IL-6 uptake); healthy people differ "
        "widely, and heritably, in the IL-6, IL-1b and TNF-a their blood cells make on the same stimulus (Li et al., Cell 2016; "
        "ter Horst et al., Cell 2016: 500 Functional Genomics cohort); 1 for the default patient, whose secretion rates are set "
        "against severe CRS at 1e10 tumour cells; a cohort draws it around a fitted median (configs/calibration_zuma1.yaml)",
    )
    ang2_ang1_baseline: float = Field(
        0.25, ge=0, description="pre-treatment serum Ang-2/Ang-1 ratio [1] (endothelial activation before infusion); a high ratio "
                                "predicts severe neurotoxicity (Gust, Cancer Discov 2017) and severe CRS (Hay, Blood 2017); "
                                "assumed 0.25 (Ang-1 dominates Tie2 in health; the default patient is high-risk)",
    )  # fmt: skip


class Run(Strict):
    """Time stepping, randomness, backend and output cadence."""

    duration_h: float = Field(336.0, gt=0, description="simulated patient time [h] (336 h = 14 days)")
    dt_min: float = Field(6.0, gt=0, le=60, description="time step [min]")
    seed: int = Field(1, ge=0, lt=2**63, description="random seed; same seed, same backend, same result")
    backend: Literal["auto", "numpy", "cupy"] = Field("auto", description="array backend")
    snapshot_every_h: float = Field(24.0, gt=0, description="interval between HDF5 snapshots [h]; output.snapshot_schedule and the BBB trigger can shorten it")
    checkpoint_every_h: float = Field(24.0, gt=0, description="interval between checkpoints [h]")

    @property
    def n_steps(self) -> int:
        """Number of steps in the run."""
        return int(math.ceil(self.duration_h * 60.0 / self.dt_min - 1e-9))


class CellSection(Strict):
    """Parameters shared by every cell type (the base of each ``cells.<name>`` section)."""

    initial_count: int = Field(0, ge=0, description="agents placed on the lattice at t = 0 [cells]")
    per_tumour_cell: float | None = Field(
        None, ge=0, le=100,
        description="agents placed at t = 0 per tumour agent on the lattice [cells/cell]; when set it replaces initial_count, so the same "
                    "patient sampled by more or fewer tumour agents keeps its cell ratios (null: initial_count, a fixed number)",
    )  # fmt: skip
    speed_um_min: float = Field(0.0, ge=0, description="random-walk speed [um/min]")


def tumour_agents(cells: Any) -> int:
    """Tumour agents placed at t = 0: the ``initial_count`` of the cell types declared ``tumour``."""
    return sum(getattr(cells, name).initial_count for name, cell in CATALOG.cell_types.items() if cell.tumour)


def initial_agents(cells: Any, name: str) -> int:
    """Agents of cell type ``name`` placed at t = 0: ``per_tumour_cell`` x the tumour agents when set, else ``initial_count``."""
    section = getattr(cells, name)
    ratio = getattr(section, "per_tumour_cell", None)
    if ratio is None:
        return int(section.initial_count)
    return int(round(ratio * tumour_agents(cells)))


def _keep_fixed_counts(data: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """A ``cells.<name>`` section that names ``initial_count`` but not ``per_tumour_cell`` keeps its fixed count.

    Deprecated meaning, kept readable: before ``per_tumour_cell``, ``initial_count`` was the only
    way to set the macrophages and monocytes; a config that sets it still gets that many.
    """
    cells = data.get("cells")
    if not isinstance(cells, dict):
        return data
    fixed = {}
    for name, section in cells.items():
        default = defaults.get("cells", {}).get(name, {})
        if (isinstance(section, dict) and "initial_count" in section and "per_tumour_cell" not in section
                and default.get("per_tumour_cell") is not None):  # fmt: skip
            fixed[name] = {**section, "per_tumour_cell": None}
    return {**data, "cells": {**cells, **fixed}} if fixed else data


def _known(kind: str, name: str, names: list[str]) -> str:
    """``name`` if it is one of ``names``, else a one-line error naming the ``kind``, a close match and what is allowed."""
    if name not in names:
        hint = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        extra = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ValueError(f"unknown {kind} {name!r}{extra} (allowed: {', '.join(names)})")
    return name


def _known_cytokine(name: str) -> str:
    return _known("cytokine", name, list(cytokine_names()))


def _known_drug(name: str) -> str:
    return _known("drug", name, list(drug_names()))


#: a registered cytokine's name
CytokineName = Annotated[str, AfterValidator(_known_cytokine)]
#: a registered drug's name
DrugName = Annotated[str, AfterValidator(_known_drug)]


class CytokineMap(RootModel[dict[str, float]]):
    """A value per cytokine name (unknown names are errors); absent names mean 0."""

    model_config = ConfigDict(strict=True, frozen=True)

    @field_validator("root")
    @classmethod
    def _known(cls, value: dict[str, float]) -> dict[str, float]:
        names = cytokine_names()
        problems = []
        for key, number in value.items():
            try:
                _known_cytokine(key)
            except ValueError as exc:
                problems.append(f"{key}: {exc}")
                continue
            if not math.isfinite(number) or number < 0:
                problems.append(f"{key}: must be >= 0, got {number!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return {name: float(value[name]) for name in names if name in value}  # catalog order

    def as_dict(self) -> dict[str, float]:
        """Non-zero entries, in the catalog's cytokine order (a new dict; the rules ask for it every step)."""
        return dict(self._nonzero)

    @functools.cached_property
    def _nonzero(self) -> tuple[tuple[str, float], ...]:
        return tuple((k, self.root[k]) for k in CATALOG.cytokines if self.root.get(k, 0.0) > 0)


def cytokine_map(**values: float) -> CytokineMap:
    """A :class:`CytokineMap` default, e.g. ``cytokine_map(IL6=1e-2)`` (checked when a config is validated)."""
    return CytokineMap.model_construct(values)


class Cytokine(Strict):
    """Transport and kinetics of one cytokine field."""

    diffusion_um2_s: float = Field(100.0, ge=0, description="diffusion coefficient in tissue [um^2/s]")
    half_life_h: float = Field(0.25, gt=0, description="half-life in tissue (receptor uptake, proteolysis) [h]; Francis & Palsson 1997: time constant 10-30 min")
    serum_half_life_h: float = Field(1.0, gt=0, description="half-life in the systemic pool (clearance) [h]")
    bbb_permeability: float = Field(0.0005, ge=0, le=1, description="conductance of an intact BBB, 0..1; assumed (CSF levels ~1-2 % of serum at rest)")
    vessel_permeability_um_s: float = Field(
        0.001, ge=0,
        description="permeability of the tumour site's capillary wall [um/s] (1e-7 cm/s); assumed for all cytokines (14-52 kDa): "
                    "tumour vessels pass macromolecules of 25-160 kDa at the order of 1e-7 cm/s, little size-selective (a ~2-fold "
                    "range; Yuan, Cancer Res 1995); taken at that order, where the tissue passes about as much to serum as the "
                    "model's secretion was set against (docs/model.md, 'Time step'). Times endothelium.vessel_surface_per_cm, the "
                    "tissue's exchange rate with serum (docs/model.md, 'Capillary exchange')",
    )
    secretion_scale: float = Field(1.0, ge=0, description="multiplier on all secretion (0 = knockout) [1]")
    baseline_pg_ml: float = Field(
        0.0, ge=0,
        description="healthy serum level [pg/mL], kept by basal production in the rest of the body (off the lattice) that "
        "balances serum clearance; each cytokine's default and its source: docs/model.md (Physiological baselines)",
    )


class Therapy(Strict):
    """One drug: a dose given on a schedule (``start_h``) or by a clinical trigger (``when``)."""

    drug: DrugName = Field(description="drug name (see docs/therapies.md; plug-ins add more)")
    start_h: float | None = Field(None, ge=0, description="first dose [h after infusion]")
    when: str | None = Field(None, description="clinical trigger, e.g. 'crs_grade >= 2'")
    dose_mg_kg: float | None = Field(None, ge=0, description="dose [mg/kg] (default: the clinical dose)")
    dose_mg: float | None = Field(None, ge=0, description="flat dose [mg] (default: the clinical dose)")
    every_h: float | None = Field(None, gt=0, description="repeat interval [h]")
    max_doses: int = Field(1, ge=1, description="maximum number of administrations")
    min_interval_h: float = Field(8.0, ge=0, description="triggers: minimum time between doses [h] (ASTCT: tocilizumab no sooner than 8 h)")

    @model_validator(mode="after")
    def _start_or_when(self) -> Therapy:
        if (self.start_h is None) == (self.when is None):
            raise ValueError("give exactly one of start_h or when")
        if self.dose_mg_kg is not None and self.dose_mg is not None:
            raise ValueError("give at most one of dose_mg_kg or dose_mg")
        return self


class SnapshotPhase(Strict):
    """One phase of ``output.snapshot_schedule``: snapshot every ``every_h`` until ``until_h``."""

    until_h: float = Field(gt=0, description="end of this phase [h since infusion]")
    every_h: float = Field(gt=0, description="interval between snapshots during this phase [h]")


class Output(Strict):
    """What goes into the HDF5 file, and when snapshots are taken besides ``run.snapshot_every_h``."""

    snapshot_fields: list[CytokineName] | None = Field(
        None, description="cytokines stored in snapshots (default: all)"
    )
    snapshot_agents: bool = Field(True, description="store agents in snapshots")
    snapshot_schedule: list[SnapshotPhase] = Field(
        default_factory=list,
        description="per-phase snapshot intervals, a list of {until_h, every_h} with rising until_h [h]; "
        "after the last phase run.snapshot_every_h applies",
    )
    snapshot_bbb_below: float | None = Field(
        None, gt=0, le=1, description="mean BBB integrity below which snapshots come every snapshot_bbb_every_h (null: off) [1]"
    )
    snapshot_bbb_every_h: float = Field(2.0, gt=0, description="interval between snapshots while the BBB trigger holds [h]")

    @field_validator("snapshot_schedule")
    @classmethod
    def _rising(cls, phases: list[SnapshotPhase]) -> list[SnapshotPhase]:
        ends = [p.until_h for p in phases]
        if any(b <= a for a, b in zip(ends, ends[1:])):
            raise ValueError(f"until_h must rise from phase to phase, got {ends}")
        return phases

    def snapshot_every_h_at(self, time_h: float, bbb_integrity: float, default_every_h: float) -> float:
        """Snapshot interval [h] at ``time_h``: the phase's (else ``default_every_h``), shortened while the BBB trigger holds."""
        every = next((p.every_h for p in self.snapshot_schedule if time_h < p.until_h), default_every_h)
        if self.snapshot_bbb_below is not None and bbb_integrity < self.snapshot_bbb_below:
            every = min(every, self.snapshot_bbb_every_h)
        return every


class Config(Strict):
    """A whole run: the base of the schema :func:`schema` builds from the catalog (an instance is always of that)."""

    def to_yaml(self) -> str:
        """The resolved configuration as YAML text (every value, defaults included)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


_SCHEMA: dict[int, type[Config]] = {}


def schema() -> type[Config]:
    """The run config's pydantic model, built from the catalog: ``cells``, ``cytokines`` and the biology's sections.

    Rebuilt when the catalog changes (a plug-in registered something); the section order is
    the YAML order: patient, run, lattice, cells, cytokines, biology sections, therapies, output, plugins.
    """
    if not CATALOG.cell_types:
        raise ConfigError("no cell types are registered: import carabm.biology first (carabm.load_config does)")
    if CATALOG.generation not in _SCHEMA:
        cells = create_model("Cells", __base__=Strict, __doc__="One section per cell type.",
                             **{name: (c.section, c.section()) for name, c in CATALOG.cell_types.items()})  # fmt: skip
        cytokines = create_model(
            "Cytokines", __base__=Strict, __doc__="One section per cytokine field (pg/mL).",
            **{name: (Cytokine, _cytokine_section(c)) for name, c in CATALOG.cytokines.items()},
        )  # fmt: skip
        sections = {name: (model, model()) for name, model in CATALOG.sections.items()}
        _SCHEMA.clear()
        _SCHEMA[CATALOG.generation] = create_model(
            "Config", __base__=Config,
            patient=(Patient, Patient()), run=(Run, Run()), lattice=(LatticeConfig, LatticeConfig()),
            cells=(cells, cells()), cytokines=(cytokines, cytokines()), **sections,
            therapies=(list[Therapy], Field(default_factory=list)), output=(Output, Output()),
            plugins=(list[str], Field(default_factory=list, description="plug-in modules or .py files that add cell types, "
                                      "cytokines, drugs or rule layers (docs/extending.md); loaded before validation")),
        )  # fmt: skip
    return _SCHEMA[CATALOG.generation]


def _cytokine_section(c: CatalogCytokine) -> Cytokine:
    return Cytokine(diffusion_um2_s=c.diffusion_um2_s, half_life_h=c.half_life_h, serum_half_life_h=c.serum_half_life_h,
                    bbb_permeability=c.bbb_permeability, vessel_permeability_um_s=c.vessel_permeability_um_s,
                    baseline_pg_ml=c.baseline_pg_ml)  # fmt: skip


def problems_from(error: ValidationError) -> list[str]:
    """One readable line per pydantic error of a config, with its key path (:mod:`carabm.io.config_errors`)."""
    return config_problems(error, schema())


def check_resources(config: Config) -> list[str]:
    """Problems that depend on the machine: a lattice too large for the memory available."""
    nz, ny, nx = config.lattice.shape
    n_voxels = nz * ny * nx
    needed = n_voxels * (len(CATALOG.cytokines) * _BYTES_PER_VOXEL_PER_FIELD + _BYTES_PER_VOXEL_FIXED)
    from carabm.engine.backend import available_memory_bytes, get_backend  # noqa: PLC0415

    try:
        backend = get_backend(config.run.backend)
    except Exception:  # the backend error itself is reported when the run starts
        backend = get_backend("numpy")
    available = available_memory_bytes(backend)
    if needed > 0.8 * available:
        gib = 1024**3
        return [
            f"lattice.shape: {list(config.lattice.shape)} needs about {needed / gib:.1f} GiB, "
            f"more than the {0.8 * available / gib:.1f} GiB usable on {backend.name}; "
            "use a smaller shape or a larger voxel_um"
        ]
    return []


def _merge(base: Any, update: Any) -> Any:
    """``update`` laid over ``base``: mappings merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(update, dict):
        merged = dict(base)
        for key, value in update.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return update


def derived_problems(config: Config) -> list[str]:
    """Values that are fine one by one but whose derived quantities overflow or vanish (one line each, with the key path)."""
    problems: list[str] = []
    run, patient, cells = config.run, config.patient, config.cells
    steps = run.duration_h * 60.0 / run.dt_min
    if not steps <= MAX_STEPS:
        problems.append(f"run.duration_h: {run.duration_h:g} h in steps of run.dt_min={run.dt_min:g} min is {steps:.3g} steps; "
                        f"at most {MAX_STEPS:.0e} steps are allowed")  # fmt: skip
    tumour = [name for name, cell in CATALOG.cell_types.items() if cell.tumour]
    for name, cell in CATALOG.cell_types.items():
        if getattr(getattr(cells, name), "per_tumour_cell", None) is None:
            continue
        if cell.tumour:
            problems.append(f"cells.{name}.per_tumour_cell: the tumour itself is set by initial_count; allowed here: null")
        elif not cell.placed:
            problems.append(f"cells.{name}.per_tumour_cell: {name} is not placed on the lattice at t = 0 (it enters otherwise); allowed here: null")
    scale = max(tumour_agents(cells), 1) / patient.tumor_burden_cells
    why = f"(scale = {' + '.join(f'cells.{name}.initial_count' for name in tumour)} / patient.tumor_burden_cells)"
    pool_ml = patient.blood_volume_ml * scale
    if not (math.isfinite(scale) and math.isfinite(pool_ml) and pool_ml > 0):
        problems.append(f"patient.tumor_burden_cells: {patient.tumor_burden_cells:g} gives a model scale of {scale:.3g} and a blood pool of "
                        f"{pool_ml:.3g} mL {why}; use a value near the patient's real tumour burden (e.g. 1e10)")  # fmt: skip
        return problems
    infused = [(f"cells.{name}.dose", getattr(cells, name).dose) for name in CATALOG.cell_types if hasattr(getattr(cells, name), "dose")]
    for key, cells_in_body in infused + [("patient.monocytes_per_ul", patient.monocytes_per_ul * patient.blood_volume_ml * 1000.0)]:
        in_model = cells_in_body * scale
        if not in_model <= MAX_POOL_CELLS:
            problems.append(f"{key}: gives {in_model:.3g} cells in the model's blood pool {why}; at most {MAX_POOL_CELLS:.3g}")
    return problems


def lattice_problems(config: Config) -> list[str]:
    """The lattice of ``config`` can be built (layout fits the shape, mask file matches) and holds the configured cells."""
    lat = config.lattice
    try:
        if lat.layout.kind == "default":
            labels = default_labels(lat)
        else:
            labels = load_mask(lat.layout.file, lat.layout.dataset)
    except ConfigError as exc:
        return exc.problems
    except ValueError as exc:  # the default layout does not fit the shape
        return [f"lattice.shape: {exc}"]
    if tuple(labels.shape) != tuple(lat.shape):
        return [f"lattice.layout.file: mask shape {list(labels.shape)} differs from lattice.shape {list(lat.shape)}"]
    try:
        labels = Lattice(labels, lat.voxel_um).labels
    except ValueError as exc:
        return [f"lattice.layout.file: {exc}"]
    problems: list[str] = []
    wanted: dict[str, list[str]] = {}
    for name, cell in CATALOG.cell_types.items():
        if cell.placed and initial_agents(config.cells, name) > 0:
            wanted.setdefault(cell.home, []).append(name)
    for home, names in wanted.items():
        voxels = int((labels == COMPARTMENTS[home]).sum())
        total = sum(initial_agents(config.cells, n) for n in names)
        if total > voxels:
            keys = " + ".join(f"cells.{n}.{_count_key(config.cells, n)}" for n in names)
            problems.append(f"{keys}: {total} cells do not fit in the {voxels} {home} voxels of lattice.shape {list(lat.shape)}; "
                            "lower the counts or enlarge lattice.shape")  # fmt: skip
    return problems


def _count_key(cells: Any, name: str) -> str:
    """The key that sets a cell type's agents at t = 0 (``per_tumour_cell`` when set)."""
    return "initial_count" if getattr(getattr(cells, name), "per_tumour_cell", None) is None else "per_tumour_cell"


def run_problems(config: Config, check_memory: bool = True) -> list[str]:
    """Every check a run makes before its first step, on a schema-valid config: one line per problem.

    Used by ``carabm validate`` and by :func:`carabm.simulation.run` (before any file is touched).
    The catalog's checks (``register_check``: e.g. the therapies' triggers) come first.
    """
    problems: list[str] = []
    for check in CATALOG.checks:
        problems += check(config)
    problems += derived_problems(config)
    too_big = check_resources(config) if check_memory else []
    if config.lattice.layout.kind == "mask" and config.lattice.layout.file and not Path(config.lattice.layout.file).is_file():
        problems.append(f"lattice.layout.file: no such file {config.lattice.layout.file!r}")
    elif not too_big:  # (a lattice too large for the memory is not built to look at it)
        problems += lattice_problems(config)
    return problems + too_big


def validate_config(data: dict[str, Any], check_memory: bool = True) -> Config:
    """Validate a raw mapping into a :class:`Config`, reporting every problem at once.

    The plug-ins the mapping names are loaded first (they add to the schema). The mapping is
    laid over the defaults, so a partial section (``secretion_pg_cell_h: {IL6: 0.1}``) changes
    only the keys it names. After the schema, :func:`run_problems` runs every check a run
    makes before its first step.
    """
    plugins = data.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError(f"plugins: must be a list of module names or .py files, got {describe(plugins)}")
    load_plugins(plugins)  # before validation: plug-ins add cell types, cytokines and drugs to the schema
    others = [name for name in CATALOG.plugins if name not in plugins]
    if others:  # their cell types would take part in this run too: a registration cannot be undone
        raise ConfigError(f"plugins: this process has loaded {', '.join(map(repr, others))}, which this config does not name; "
                          "run it in a new process (e.g. its own carabm command)")  # fmt: skip
    model = schema()
    defaults = model().model_dump(mode="json")
    try:
        config = model.model_validate(_merge(defaults, _keep_fixed_counts(data, defaults)))
    except ValidationError as exc:
        raise ConfigError(problems_from(exc)) from None
    problems = run_problems(config, check_memory)
    if problems:
        raise ConfigError(problems)
    return config


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = (), check_memory: bool = True) -> Config:
    """Read a YAML file (or the defaults when ``path`` is None), apply ``--set`` overrides, validate."""
    data = read_yaml(path) if path is not None else {}
    if path is not None and data.get("lattice", {}).get("layout", {}).get("file"):
        layout = data["lattice"]["layout"]
        mask = Path(layout["file"])
        if not mask.is_absolute():
            layout["file"] = str((Path(path).parent / mask).resolve())
    if path is not None and isinstance(data.get("plugins"), list):
        data["plugins"] = [resolve_plugin(p, Path(path).parent) if isinstance(p, str) else p for p in data["plugins"]]
    data = apply_overrides(data, list(overrides))
    return validate_config(data, check_memory=check_memory)


def config_from_text(text: str) -> Config:
    """Rebuild a Config from the resolved YAML stored in an output file."""
    return validate_config(yaml_load(text) or {}, check_memory=False)
