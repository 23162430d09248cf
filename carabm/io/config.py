"""The run configuration: typed schema (pydantic), YAML loading, ``--set`` overrides, errors.

Every value has a default, a unit in its name where ambiguous, and a description.
Problems are reported all at once as ``key.path: what is wrong`` lines (ConfigError).
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from carabm.errors import ConfigError
from carabm.io.dotted import parent_of

CYTOKINES: tuple[str, ...] = ("IL6", "IL1b", "IFNg", "TNFa", "GMCSF", "MCP1", "IL10", "IL2", "DAMP")
CELL_TYPES: tuple[str, ...] = ("cart", "bcell", "macrophage", "monocyte", "microglia")
DRUGS: tuple[str, ...] = (
    "tocilizumab", "siltuximab", "anakinra", "dexamethasone", "methylprednisolone",
    "lenzilumab", "emapalumab", "dasatinib", "monocyte_depletion", "macrophage_depletion",
)  # fmt: skip

#: the compartment where each cell type is placed at t = 0 (CAR-T cells are infused into the blood pool)
HOME: dict[str, str] = {"cart": "blood", "bcell": "tissue", "macrophage": "tissue", "monocyte": "tissue", "microglia": "cns"}
#: most time steps a run may have
MAX_STEPS = 10**8
#: most cells the model's blood pool can count exactly (float64 integers)
MAX_POOL_CELLS = 2.0**53

# Estimated device bytes per voxel for a run's arrays: K fields x (state, sources,
# uptake, two solver buffers) in float32, plus occupancy, labels, integrity, conductance.
_BYTES_PER_VOXEL_PER_FIELD = 4 * 5
_BYTES_PER_VOXEL_FIXED = 4 + 1 + 4 + 4 + 8


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors; ints never pass as bools."""

    # allow_inf_nan=False: every float field rejects .inf and .nan (one rule for all of them)
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, validate_default=True, allow_inf_nan=False)


NonNegative = Field(ge=0)


class Patient(Strict):
    """Baseline traits of the virtual patient (what virtual cohorts vary)."""

    weight_kg: float = Field(70.0, gt=0, le=400, description="body weight [kg]; scales mg/kg doses")
    blood_volume_ml: float = Field(5000.0, gt=0, description="blood volume [mL] (about 70 mL/kg)")
    monocytes_per_ul: float = Field(
        500.0, ge=0, description="blood monocytes [cells/uL] (normal 200-800/uL)"
    )
    tumor_burden_cells: float = Field(
        1e10, gt=0, description="malignant B cells in the body [cells]; sets the representative-volume scale"
    )


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


class Layout(Strict):
    """Compartment geometry: the default layout or a label mask from a file."""

    kind: Literal["default", "mask"] = Field("default", description="default geometry or a mask file")
    tissue_fraction: float = Field(0.6, gt=0, lt=1, description="share of x taken by the tumour site")
    vessel_radius_um: float = Field(30.0, gt=0, description="radius of the tissue vessel [um]")
    brain_vessel_width_um: float = Field(40.0, gt=0, description="width of the brain vessel slab [um]")
    bbb_thickness_um: float = Field(20.0, gt=0, description="thickness of the BBB layer [um]")
    file: str | None = Field(None, description="kind=mask: .npy or HDF5 file with uint8 labels 0..3")
    dataset: str | None = Field(None, description="kind=mask, HDF5: dataset name (default lattice/compartment)")

    @model_validator(mode="after")
    def _mask_needs_file(self) -> Layout:
        if self.kind == "mask" and not self.file:
            raise ValueError("file: required when kind is 'mask'")
        return self


class LatticeConfig(Strict):
    """The voxel grid."""

    shape: tuple[int, int, int] = Field((16, 32, 48), description="[nz, ny, nx] voxels")
    voxel_um: float = Field(20.0, gt=0, description="voxel edge [um] (one cell per voxel)")
    layout: Layout = Layout()

    @field_validator("shape", mode="before")
    @classmethod
    def _shape_from_list(cls, value: Any) -> Any:
        if isinstance(value, list):
            return tuple(value)
        return value

    @field_validator("shape")
    @classmethod
    def _positive(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(n < 1 for n in value):
            raise ValueError(f"every entry must be >= 1, got {list(value)}")
        return value


class CellType(Strict):
    """Parameters shared by every cell type."""

    initial_count: int = Field(0, ge=0, description="agents placed on the lattice at t = 0 [cells]")
    speed_um_min: float = Field(0.0, ge=0, description="random-walk speed [um/min]")


def _cytokine_map(**values: float) -> dict[str, float]:
    return {name: float(values.get(name, 0.0)) for name in CYTOKINES if name in values}


class CytokineMap(Strict):
    """A value per cytokine name (unknown names are errors); absent names mean 0."""

    IL6: float = Field(0.0, ge=0)
    IL1b: float = Field(0.0, ge=0)
    IFNg: float = Field(0.0, ge=0)
    TNFa: float = Field(0.0, ge=0)
    GMCSF: float = Field(0.0, ge=0)
    MCP1: float = Field(0.0, ge=0)
    IL10: float = Field(0.0, ge=0)
    IL2: float = Field(0.0, ge=0)
    DAMP: float = Field(0.0, ge=0)

    def as_dict(self) -> dict[str, float]:
        """Non-zero entries."""
        return {k: v for k, v in self.model_dump().items() if v > 0}


class CarT(CellType):
    """CAR-T cells: infused into the blood at t = 0, home to tissue, kill CD19+ B cells, expand, contract."""

    dose: float = Field(1.4e8, ge=0, description="CAR-T cells infused at t = 0 [cells]; axi-cel label dose 2e6/kg x 70 kg")
    speed_um_min: float = Field(18.0, ge=0, description="T-cell speed [um/min]; Textor et al., PNAS 2011 (lymph node)")
    homing_per_h: float = Field(
        6.0, ge=0, description="extravasation rate from blood at the vessel wall [1/h]; assumed: most infused cells home within 2 days"
    )
    activation_per_h: float = Field(4.0, ge=0, description="activation rate on contact with a CD19+ B cell [1/h]; assumed (minutes to hours)")
    kill_rate_per_h: float = Field(
        0.12, ge=0, description="lysis rate of a contacted target by an activated cell [1/h]; assumed (serial killing, one target per ~8 h of contact)"
    )
    max_kills: int = Field(25, ge=1, description="kills before exhaustion [targets]; assumed (serial-killing capacity)")
    doubling_time_h: float = Field(12.0, gt=0, description="division time when stimulated [h]; assumed (activated T cells divide every 8-24 h)")
    max_divisions: int = Field(10, ge=0, description="divisions before exhaustion; assumed (2^10 = 1024-fold per clone, within 1e2-1e5-fold)")
    stimulation_memory_h: float = Field(36.0, gt=0, description="proliferation/secretion continue this long after the last antigen contact [h]; assumed")
    death_resting_per_day: float = Field(0.02, ge=0, description="death rate of resting CAR-T cells [1/day]; assumed")
    death_contraction_per_day: float = Field(0.35, ge=0, description="death rate of activated cells after antigen loss (contraction) [1/day]; assumed")
    death_exhausted_per_day: float = Field(0.6, ge=0, description="death rate of exhausted cells [1/day]; assumed")
    secretion_pg_cell_h: CytokineMap = Field(
        CytokineMap(IFNg=2e-3, GMCSF=1e-3, TNFa=5e-4, IL2=1e-3),
        description="secretion of an activated, stimulated CAR-T cell [pg/cell/h]; assumed: ng/mL per 1e5 cells per day in co-culture",
    )


class BCell(CellType):
    """Malignant CD19+ B cells: grow, die when lysed, release DAMPs."""

    initial_count: int = Field(2000, ge=0, description="tumour B cells on the lattice at t = 0 [cells]; sets the lattice scale")
    speed_um_min: float = Field(0.5, ge=0, description="B-cell speed [um/min]; assumed: slow, tumour-bound")
    doubling_time_h: float = Field(168.0, gt=0, description="tumour doubling time when space is free [h]; assumed (aggressive lymphoma, days)")
    damp_release_pg: float = Field(2e-5, ge=0, description="DAMP released by one lysed cell [pg]; assumed (HMGB1-like surrogate)")


class Myeloid(CellType):
    """Macrophage-like activation: signals raise an activation level that drives secretion."""

    trigger_half_max_pg_ml: CytokineMap = Field(
        CytokineMap(IFNg=1000.0, GMCSF=500.0, DAMP=100.0),
        description="half-maximal concentration of each activating (priming) signal [pg/mL]; assumed: ng/mL range as for IFN-g and GM-CSF priming of macrophages in vitro",
    )
    amplifier_half_max_pg_ml: CytokineMap = Field(
        CytokineMap(IL1b=200.0, IL6=1000.0, TNFa=100.0),
        description="half-maximal concentration of each amplifying signal [pg/mL]; they raise activation only of primed cells; assumed",
    )
    amplification_gain: float = Field(3.0, ge=0, description="fold rise of the priming signal at saturating amplifiers [1]; assumed")
    activation_hill: float = Field(2.0, gt=0, description="Hill power of every activating signal [1]; assumed (switch-like, a quiet resting state)")
    contact_signal: float = Field(0.6, ge=0, le=1, description="signal from contact with an activated CAR-T cell (CD40L), 0..1; assumed")
    activation_per_h: float = Field(0.4, ge=0, description="rate of activation at full signal [1/h]; assumed")
    deactivation_per_h: float = Field(0.2, ge=0, description="rate of return to rest [1/h]; assumed (about 3.5 h half-life)")
    il10_half_max_pg_ml: float = Field(300.0, gt=0, description="IL-10 halving activation [pg/mL]; assumed")
    il10_delay_h: float = Field(48.0, gt=0, description="time activated before half-maximal IL-10 secretion [h]; assumed")
    secretion_pg_cell_h: CytokineMap = Field(
        CytokineMap(IL6=1e-2, IL1b=1e-3, MCP1=1e-3, TNFa=5e-4, IL10=1e-3),
        description="secretion at full activation [pg/cell/h]; assumed: 10x the 1-10 ng/1e6 cells/day of LPS-stimulated myeloid cells in vitro, so that serum IL-6 reaches the levels of severe CRS",
    )
    basal_fraction: float = Field(0.00005, ge=0, le=1, description="secretion at rest as a fraction of full [1]; assumed (gives baseline levels)")
    il6_needs_il1: float = Field(
        0.8, ge=0, le=1, description="share of IL-6 production that needs IL-1 signalling [1]; assumed (IL-1 induces IL-6; Norelli, Nat Med 2018: IL-1 precedes IL-6)"
    )
    il1_for_il6_half_max_pg_ml: float = Field(1000.0, gt=0, description="IL-1b giving half of the IL-1-dependent IL-6 production [pg/mL]; assumed")
    il6_uptake_per_h: float = Field(0.5, ge=0, description="IL-6 consumed by receptor uptake in the cell's voxel [1/h]; assumed")


class Macrophage(Myeloid):
    """Tissue-resident and monocyte-derived macrophages."""

    initial_count: int = Field(400, ge=0, description="tissue macrophages at t = 0 [cells]")
    speed_um_min: float = Field(1.0, ge=0, description="macrophage speed [um/min]; assumed")
    death_per_day: float = Field(0.05, ge=0, description="turnover of tissue macrophages [1/day]; assumed (weeks-long lifespan)")


class Monocyte(Myeloid):
    """Circulating monocytes: recruited by MCP-1, main IL-1/IL-6 source, become macrophages."""

    initial_count: int = Field(40, ge=0, description="monocytes in lattice tissue at t = 0 [cells] (blood: patient.monocytes_per_ul)")
    speed_um_min: float = Field(5.0, ge=0, description="monocyte crawling speed [um/min]; assumed")
    secretion_pg_cell_h: CytokineMap = Field(
        CytokineMap(IL6=4e-2, IL1b=5e-3, TNFa=1e-3, IL10=5e-4),
        description="secretion at full activation [pg/cell/h]; assumed 4-5x macrophages for IL-6/IL-1 (Norelli, Nat Med 2018: monocytes are the main source); no MCP-1, so recruited cells do not attract each other",
    )
    recruitment_per_h: float = Field(0.3, ge=0, description="baseline extravasation rate at the vessel wall [1/h]; assumed")
    mcp1_recruitment_gain: float = Field(20.0, ge=0, description="fold rise of extravasation at saturating MCP-1; assumed")
    mcp1_half_max_pg_ml: float = Field(50.0, gt=0, description="MCP-1 for half the rise [pg/mL]; assumed")
    trigger_half_max_pg_ml: CytokineMap = Field(
        CytokineMap(IFNg=1000.0, GMCSF=100.0, DAMP=100.0),
        description="half-maximal priming concentration [pg/mL]; assumed: monocytes respond to GM-CSF at lower levels than macrophages",
    )
    gmcsf_recruitment_gain: float = Field(5.0, ge=0, description="fold rise of extravasation at saturating GM-CSF [1]; assumed (GM-CSF drives myeloid recruitment; Sterner, Blood 2019)")
    gmcsf_half_max_pg_ml: float = Field(20.0, gt=0, description="GM-CSF for half that rise and half the emergency marrow output [pg/mL]; assumed")
    gmcsf_marrow_gain: float = Field(2.0, ge=0, description="fold rise of the circulating monocyte baseline at saturating serum GM-CSF [1]; assumed (emergency myelopoiesis)")
    chemotaxis_sensitivity: float = Field(0.01, ge=0, description="bias up the MCP-1 gradient [1/(pg/mL)]; assumed")
    differentiation_h: float = Field(72.0, gt=0, description="mean time in tissue before becoming a macrophage [h]; assumed (days)")
    blood_half_life_h: float = Field(24.0, gt=0, description="circulating half-life; marrow output keeps the baseline [h]; assumed (about 1 day)")


class Microglia(Myeloid):
    """CNS-resident macrophages: the local CNS feedback loop."""

    initial_count: int = Field(150, ge=0, description="microglia in the CNS region at t = 0 [cells]")
    secretion_pg_cell_h: CytokineMap = Field(
        CytokineMap(IL6=1e-4, IL1b=5e-5, MCP1=2e-4, TNFa=5e-5, IL10=5e-5),
        description="secretion at full activation [pg/cell/h]; assumed 5x below macrophages (microglia are weaker producers)",
    )
    speed_um_min: float = Field(0.2, ge=0, description="soma motility [um/min]; assumed (nearly sessile)")


class Cells(Strict):
    """One section per cell type."""

    cart: CarT = CarT()
    bcell: BCell = BCell()
    macrophage: Macrophage = Macrophage()
    monocyte: Monocyte = Monocyte()
    microglia: Microglia = Microglia()


class Cytokine(Strict):
    """Transport and kinetics of one cytokine field."""

    diffusion_um2_s: float = Field(100.0, ge=0, description="diffusion coefficient in tissue [um^2/s]")
    half_life_h: float = Field(0.25, gt=0, description="half-life in tissue (receptor uptake, proteolysis) [h]; Francis & Palsson 1997: time constant 10-30 min")
    serum_half_life_h: float = Field(1.0, gt=0, description="half-life in the systemic pool (clearance) [h]")
    bbb_permeability: float = Field(0.0005, ge=0, le=1, description="conductance of an intact BBB, 0..1; assumed (CSF levels ~1-2 % of serum at rest)")
    secretion_scale: float = Field(1.0, ge=0, description="multiplier on all secretion (0 = knockout) [1]")


def _cyt(d: float, t_tissue: float, t_serum: float, bbb: float = 0.0005) -> Cytokine:
    return Cytokine(diffusion_um2_s=d, half_life_h=t_tissue, serum_half_life_h=t_serum, bbb_permeability=bbb)


class Cytokines(Strict):
    """One section per cytokine field (pg/mL). Diffusion from protein size (Stokes-Einstein, assumed)."""

    IL6: Cytokine = _cyt(100.0, 0.25, 0.75)
    IL1b: Cytokine = _cyt(110.0, 0.25, 0.5)
    IFNg: Cytokine = _cyt(80.0, 0.25, 1.0)
    TNFa: Cytokine = _cyt(70.0, 0.25, 0.5)
    GMCSF: Cytokine = _cyt(100.0, 0.25, 1.0)
    MCP1: Cytokine = _cyt(130.0, 0.5, 1.0)
    IL10: Cytokine = _cyt(80.0, 0.5, 2.0)
    IL2: Cytokine = _cyt(110.0, 0.25, 0.5)
    DAMP: Cytokine = _cyt(100.0, 0.5, 1.0)


class Endothelium(Strict):
    """Endothelial activation and BBB integrity."""

    damage_half_max_pg_ml: CytokineMap = Field(
        CytokineMap(IL6=1000.0, IL1b=300.0, TNFa=300.0, IFNg=300.0),
        description="concentration at the BBB for half-maximal damage, per cytokine [pg/mL]; assumed",
    )
    damage_hill: float = Field(2.0, gt=0, description="Hill power of the damaging signals [1]; assumed")
    damage_per_h: float = Field(0.08, ge=0, description="integrity loss rate at full activation [1/h]; assumed (foot-process loss over a day)")
    recovery_per_h: float = Field(0.01, ge=0, description="recovery rate towards 1 [1/h]; assumed (days)")
    crossing_hill: float = Field(2.0, gt=0, description="BBB opening (1 - integrity)^h scales cell crossing per try and cytokine conductance; assumed")
    leak_half_max_pg_ml: CytokineMap = Field(
        CytokineMap(IL6=300.0, IL1b=60.0, TNFa=60.0, IFNg=150.0),
        description="serum level for half-maximal systemic capillary leak, per cytokine [pg/mL]; assumed",
    )
    leak_per_h: float = Field(0.15, ge=0, description="systemic leak rise rate at full activation [1/h]; assumed")
    leak_recovery_per_h: float = Field(0.08, ge=0, description="systemic leak recovery rate [1/h]; assumed")


class Clinical(Strict):
    """Model surrogates of the ASTCT CRS and ICANS grades (labelled as model outputs)."""

    fever_half_max_pg_ml: CytokineMap = Field(
        CytokineMap(IL6=80.0, IL1b=20.0, TNFa=30.0), description="serum pyrogen level for half of the maximal fever [pg/mL]; assumed"
    )
    fever_max_c: float = Field(3.0, gt=0, description="maximal temperature rise [degC]; assumed (40 degC peak)")
    hypotension_leak: list[float] = Field(
        [0.25, 0.5, 0.75], min_length=3, max_length=3, description="systemic leak (0..1) for grade-2, -3, -4 hypotension; assumed"
    )
    hypoxia_leak: list[float] = Field([0.3, 0.55, 0.8], min_length=3, max_length=3, description="systemic leak (0..1) for grade-2, -3, -4 hypoxia; assumed")
    ice_half_max: float = Field(1.0, gt=0, description="CNS inflammation index halving the ICE score; assumed")
    ice_hill: float = Field(2.0, gt=0, description="Hill power of the ICE-score fall [1]; assumed")
    cns_signal_half_max_pg_ml: CytokineMap = Field(
        CytokineMap(IL6=200.0, IL1b=60.0, TNFa=80.0, IFNg=100.0),
        description="mean CNS level counting as one unit of the inflammation index, per cytokine [pg/mL]; assumed",
    )
    edema_integrity: float = Field(0.15, ge=0, le=1, description="mean BBB integrity below which cerebral edema (ICANS 4) is modelled; assumed")


class Therapy(Strict):
    """One drug: a dose given on a schedule (``start_h``) or by a clinical trigger (``when``)."""

    drug: Literal[DRUGS] = Field(description="drug name")  # type: ignore[valid-type]
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

    snapshot_fields: list[Literal[CYTOKINES]] | None = Field(  # type: ignore[valid-type]
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
    """A whole run."""

    patient: Patient = Patient()
    run: Run = Run()
    lattice: LatticeConfig = LatticeConfig()
    cells: Cells = Cells()
    cytokines: Cytokines = Cytokines()
    endothelium: Endothelium = Endothelium()
    clinical: Clinical = Clinical()
    therapies: list[Therapy] = Field(default_factory=list)
    output: Output = Output()

    def to_yaml(self) -> str:
        """The resolved configuration as YAML text (every value, defaults included)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# --------------------------------------------------------------------------- errors


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.startswith("function-") or part in {"tuple", "list"}:
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        args = getattr(annotation, "__args__", ())
        model = next((a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)), annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _allowed_names(parent: tuple[Any, ...]) -> list[str]:
    model = _model_at(parent)
    return list(model.model_fields) if model else []


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _message(err: dict[str, Any]) -> str:
    kind, loc, value, ctx = err["type"], tuple(err["loc"]), err.get("input"), err.get("ctx") or {}
    path = _path(loc)
    if kind == "extra_forbidden":
        parent, name = loc[:-1], str(loc[-1])
        allowed = _allowed_names(parent)
        where = _path(parent)
        what = {"cells": "cell type", "cytokines": "cytokine"}.get(where, "key")
        hint = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        text = f"{path}: unknown {what} {name!r}"
        if hint:
            text += f"; did you mean {hint[0]!r}?"
        return text + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        if loc and loc[-1] == "drug" or "drug" in path:
            hint = difflib.get_close_matches(str(value), DRUGS, n=1, cutoff=0.6)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            return f"{path}: unknown drug {_describe(value)}{extra} (allowed: {', '.join(DRUGS)})"
        if "snapshot_fields" in path:
            return f"{path}: unknown cytokine {_describe(value)} (allowed: {', '.join(CYTOKINES)})"
        return f"{path}: must be one of {expected}, got {_describe(value)}"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"{path}: must be {bounds[kind]} {limit:g}, got {_describe(value)}"
    types = {
        "float_type": "a number", "int_type": "an integer", "bool_type": "true or false",
        "string_type": "a string", "list_type": "a list", "tuple_type": "a list",
        "model_type": "a mapping of keys", "dict_type": "a mapping of keys", "model_attributes_type": "a mapping of keys",
    }  # fmt: skip
    if kind in types:
        return f"{path}: must be {types[kind]}, got {_describe(value)}"
    if kind == "finite_number":
        return f"{path}: must be a finite number, got {_describe(value)}"
    if kind == "missing" and loc and isinstance(loc[-1], int):
        return f"{_path(loc[:-1])}: too few entries (expected [nz, ny, nx])"
    if kind == "missing":
        return f"{path}: required key is missing"
    if kind == "too_short" or kind == "too_long":
        return f"{path}: wrong length, got {_describe(value)} ({err['msg']})"
    if kind == "value_error":
        msg = str(ctx.get("error", err["msg"]))
        if ":" in msg.split(" ")[0]:  # "file: required ..." -> nested key
            sub, rest = msg.split(":", 1)
            return f"{path}.{sub}:{rest}" if path else f"{sub}:{rest}"
        return f"{path}: {msg}" if path else msg
    return f"{path}: {err['msg']}, got {_describe(value)}"


def problems_from(error: ValidationError) -> list[str]:
    """One readable line per pydantic error, with its key path."""
    lines: list[str] = []
    for err in error.errors():
        line = _message(err)
        if line not in lines:
            lines.append(line)
    return lines


# --------------------------------------------------------------------------- loading


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e8`` and ``1.4e8`` as floats (YAML 1.2 style), as people write them."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Parse YAML text safely (no arbitrary objects), reading ``1e8`` as a number."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506  (a SafeLoader subclass)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning I/O and syntax errors into ConfigError."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, expected a YAML config file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from exc
    try:
        data = yaml_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML at {where}: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=VALUE`` into the key path and the YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. run.seed=3")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"--set {text!r}: empty key; expected a dotted path like cells.cart.dose")
    try:
        value = yaml_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML ({str(exc).splitlines()[0]})") from exc
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``--set`` overrides to a raw config mapping; unknown keys are reported by validation."""
    problems: list[str] = []
    for text in overrides:
        try:
            parts, value = parse_override(text)
            parent_of(data, parts)[parts[-1]] = value
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return data


def check_resources(config: Config) -> list[str]:
    """Problems that depend on the machine: a lattice too large for the memory available."""
    nz, ny, nx = config.lattice.shape
    n_voxels = nz * ny * nx
    needed = n_voxels * (len(CYTOKINES) * _BYTES_PER_VOXEL_PER_FIELD + _BYTES_PER_VOXEL_FIXED)
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
    scale = max(cells.bcell.initial_count, 1) / patient.tumor_burden_cells
    why = "(scale = cells.bcell.initial_count / patient.tumor_burden_cells)"
    pool_ml = patient.blood_volume_ml * scale
    if not (math.isfinite(scale) and math.isfinite(pool_ml) and pool_ml > 0):
        problems.append(f"patient.tumor_burden_cells: {patient.tumor_burden_cells:g} gives a model scale of {scale:.3g} and a blood pool of "
                        f"{pool_ml:.3g} mL {why}; use a value near the patient's real tumour burden (e.g. 1e10)")  # fmt: skip
        return problems
    for key, cells_in_body in (("cells.cart.dose", cells.cart.dose),
                               ("patient.monocytes_per_ul", patient.monocytes_per_ul * patient.blood_volume_ml * 1000.0)):  # fmt: skip
        in_model = cells_in_body * scale
        if not in_model <= MAX_POOL_CELLS:
            problems.append(f"{key}: gives {in_model:.3g} cells in the model's blood pool {why}; at most {MAX_POOL_CELLS:.3g}")
    return problems


def lattice_problems(config: Config) -> list[str]:
    """The lattice of ``config`` can be built (layout fits the shape, mask file matches) and holds the configured cells."""
    from carabm.engine.lattice import COMPARTMENTS, Lattice, default_layout, load_mask  # noqa: PLC0415

    lat = config.lattice
    try:
        if lat.layout.kind == "default":
            labels = default_layout(lat.shape, lat.voxel_um, lat.layout.tissue_fraction, lat.layout.vessel_radius_um,
                                    lat.layout.brain_vessel_width_um, lat.layout.bbb_thickness_um)  # fmt: skip
        else:
            labels = load_mask(lat.layout.file, lat.layout.dataset)
    except ConfigError as exc:
        return exc.problems
    if tuple(labels.shape) != tuple(lat.shape):
        return [f"lattice.layout.file: mask shape {list(labels.shape)} differs from lattice.shape {list(lat.shape)}"]
    try:
        labels = Lattice(labels, lat.voxel_um).labels
    except ValueError as exc:
        return [f"lattice.layout.file: {exc}"]
    problems: list[str] = []
    wanted: dict[str, list[str]] = {}
    for name, home in HOME.items():
        if name != "cart" and getattr(config.cells, name).initial_count > 0:
            wanted.setdefault(home, []).append(name)
    for home, names in wanted.items():
        voxels = int((labels == COMPARTMENTS[home]).sum())
        total = sum(getattr(config.cells, n).initial_count for n in names)
        if total > voxels:
            keys = " + ".join(f"cells.{n}.initial_count" for n in names)
            problems.append(f"{keys}: {total} cells do not fit in the {voxels} {home} voxels of lattice.shape {list(lat.shape)}; "
                            "lower the counts or enlarge lattice.shape")  # fmt: skip
    return problems


def run_problems(config: Config, check_memory: bool = True) -> list[str]:
    """Every check a run makes before its first step, on a schema-valid config: one line per problem.

    Used by ``carabm validate`` and by :func:`carabm.simulation.run` (before any file is touched).
    """
    problems: list[str] = []
    from carabm.biology.triggers import trigger_problems  # noqa: PLC0415

    for i, therapy in enumerate(config.therapies):
        if therapy.when is not None:
            problems += [f"therapies[{i}].when: {p}" for p in trigger_problems(therapy.when)]
    problems += derived_problems(config)
    too_big = check_resources(config) if check_memory else []
    if config.lattice.layout.kind == "mask" and config.lattice.layout.file and not Path(config.lattice.layout.file).is_file():
        problems.append(f"lattice.layout.file: no such file {config.lattice.layout.file!r}")
    elif not too_big:  # (a lattice too large for the memory is not built to look at it)
        problems += lattice_problems(config)
    return problems + too_big


def validate_config(data: dict[str, Any], check_memory: bool = True) -> Config:
    """Validate a raw mapping into a :class:`Config`, reporting every problem at once.

    The mapping is laid over the defaults, so a partial section (``secretion_pg_cell_h:
    {IL6: 0.1}``) changes only the keys it names. After the schema, :func:`run_problems`
    runs every check a run makes before its first step.
    """
    try:
        config = Config.model_validate(_merge(Config().model_dump(mode="json"), data))
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
    data = apply_overrides(data, list(overrides))
    return validate_config(data, check_memory=check_memory)


def config_from_text(text: str) -> Config:
    """Rebuild a Config from the resolved YAML stored in an output file."""
    return validate_config(yaml_load(text) or {}, check_memory=False)
