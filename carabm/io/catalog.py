"""The model catalog: the registry of cell types, cytokines, drugs, config sections and rule layers.

Holds no names itself: the built-in biology (:mod:`carabm.biology`) and plug-ins fill it;
the config schema, HDF5 codes, readouts, report and viewer are built from what it holds.
It sits at the io level so that io can read it without importing biology (docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from carabm.engine.agents import KindSpec

#: the phases of a step that run registered layers, in step order (see CrsModel.step)
PHASES = ("grow", "decide", "blood_pool", "secrete")


@dataclass(frozen=True)
class CellType:
    """Everything about one cell type, declared once by its module.

    ``states``: state names, the code of each is its position. ``activated``: the state
    counted by the ``activated/<name>`` readout (None: no such readout). ``section``: the
    pydantic model of ``cells.<name>`` in the config. ``spec``: builds the engine's
    :class:`KindSpec` from that section and the cytokine field indices. ``variable_docs``:
    units, long name and description of each variable (HDF5 attributes). ``layers``: phase
    (:data:`PHASES`) -> function of the model. ``placed``: ``initial_count`` agents (or ``per_tumour_cell`` x the tumour agents) are placed
    in ``home`` at t = 0 (infused kinds enter through ``setup`` instead). ``setup``: runs once
    after placement (infusion, blood pools). ``extravasation_scale``: per-agent multiplier on
    leaving the blood (``float32 [n]``, 1 for other kinds). ``tumour``: its lattice count is
    the ``tumor_burden`` readout. ``tallies``: events its rules count (``model.tally``), kept in
    ``model.counters``.
    """

    name: str
    long_name: str
    home: str
    states: tuple[str, ...]
    section: type[BaseModel]
    spec: Callable[[Any, Mapping[str, int]], KindSpec]
    colour: tuple[float, float, float]
    activated: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    variable_docs: Mapping[str, tuple[str, str, str]] = field(default_factory=dict)
    layers: Mapping[str, Callable[[Any], None]] = field(default_factory=dict)
    placed: bool = True
    setup: Callable[[Any], None] | None = None
    extravasation_scale: Callable[[Any], Any] | None = None
    tumour: bool = False
    tallies: tuple[str, ...] = ()

    def code(self, state: str) -> int:
        """The code of a state name."""
        return self.states.index(state)


@dataclass(frozen=True)
class Cytokine:
    """One cytokine field: its name, what it is, and its default transport (``cytokines.<name>``)."""

    name: str
    long_name: str
    diffusion_um2_s: float
    half_life_h: float
    serum_half_life_h: float
    bbb_permeability: float = 0.0005
    vessel_permeability_um_s: float = 0.001  # um/s (1e-7 cm/s)
    units: str = "pg/mL"
    baseline_pg_ml: float = 0.0  # healthy serum level, kept by basal production outside the lattice


@dataclass(frozen=True)
class Drug:
    """One drug's default dose, PK and mechanism (the ``drug`` of a ``therapies`` entry)."""

    name: str
    mechanism: str  # what the effect acts on (see biology.therapies.Effects)
    dose_mg_kg: float | None  # clinical default per kg, or
    dose_mg: float | None  # clinical default flat dose
    max_dose_mg: float | None  # cap on a weight-based dose
    route: str  # iv | sc | oral
    half_life_h: float
    volume_l_per_kg: float  # apparent volume of distribution
    absorption_per_h: float | None  # first-order absorption (sc/oral); None for iv bolus
    ec50_ug_ml: float
    emax: float
    csf_fraction: float  # CNS/plasma ratio with an intact BBB
    depletion_fraction: float = 0.0  # depletion drugs: share removed over depletion_h
    depletion_h: float = 0.0
    source: str = ""
    masks_fever: bool = False  # given, fever is no longer required to grade CRS (ASTCT: tocilizumab, corticosteroids)


@dataclass(frozen=True)
class Layer:
    """A rule layer not owned by a cell type (a plug-in's extra rule), run in ``phase``."""

    name: str
    phase: str
    run: Callable[[Any], None]


class Catalog:
    """What the model is made of, in registration order (cell types: their order is their HDF5 ``type`` code)."""

    def __init__(self) -> None:
        self.cell_types: dict[str, CellType] = {}
        self.cytokines: dict[str, Cytokine] = {}
        self.drugs: dict[str, Drug] = {}
        self.sections: dict[str, type[BaseModel]] = {}
        self.layers: list[Layer] = []
        self.checks: list[Callable[[Any], list[str]]] = []
        self.plugins: list[str] = []
        self.generation = 0  # bumped by every registration (the config schema is rebuilt when it changes)

    def _add(self, table: dict[str, Any], item: Any, what: str) -> None:
        if item.name in table:
            if table[item.name] == item:
                return  # the same declaration twice (a module imported again): nothing to do
            raise ValueError(f"{what} {item.name!r} is already registered")
        table[item.name] = item
        self.generation += 1

    def snapshot(self) -> dict[str, Any]:
        """What is registered now (for :meth:`restore`: tests that load plug-ins put the catalog back)."""
        return {name: (dict(value) if isinstance(value, dict) else list(value)) for name, value in vars(self).items() if name != "generation"}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Go back to a :meth:`snapshot` (the config schema is rebuilt at its next use)."""
        for name, value in snapshot.items():
            setattr(self, name, dict(value) if isinstance(value, dict) else list(value))
        self.generation += 1

    def phase_layers(self, phase: str) -> list[Callable[[Any], None]]:
        """The functions of one phase: the cell types' layers in catalog order, then the extra layers."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; allowed: {', '.join(PHASES)}")
        own = [c.layers[phase] for c in self.cell_types.values() if phase in c.layers]
        return own + [layer.run for layer in self.layers if layer.phase == phase]

    def state_codes(self) -> dict[str, dict[int, str]]:
        """Agent ``state`` codes per cell type (written into HDF5 attributes by the caller)."""
        return {name: dict(enumerate(c.states)) for name, c in self.cell_types.items()}


#: the one catalog of this process
CATALOG = Catalog()


def register_cell_type(cell: CellType) -> CellType:
    """Add a cell type (its ``type`` code is the number of cell types registered before it)."""
    CATALOG._add(CATALOG.cell_types, cell, "cell type")
    return cell


def register_cytokine(cytokine: Cytokine) -> Cytokine:
    """Add a cytokine field."""
    CATALOG._add(CATALOG.cytokines, cytokine, "cytokine")
    return cytokine


def register_drug(drug: Drug) -> Drug:
    """Add a drug."""
    CATALOG._add(CATALOG.drugs, drug, "drug")
    return drug


def register_section(name: str, model: type[BaseModel]) -> None:
    """Add a top-level config section owned by the biology (``endothelium``, ``clinical``)."""
    if CATALOG.sections.get(name, model) is not model:
        raise ValueError(f"config section {name!r} is already registered")
    if name not in CATALOG.sections:
        CATALOG.sections[name] = model
        CATALOG.generation += 1


def register_layer(layer: Layer) -> Layer:
    """Add a rule layer that runs after the cell types' layers of its phase."""
    CATALOG.phase_layers(layer.phase)  # checks the phase
    if layer not in CATALOG.layers:
        CATALOG.layers.append(layer)
    return layer


def register_check(check: Callable[[Any], list[str]]) -> None:
    """Add a cross check of a validated config (returns problem lines ``key.path: what``)."""
    if check not in CATALOG.checks:
        CATALOG.checks.append(check)


def cell_names() -> tuple[str, ...]:
    """Names of the registered cell types, in ``type`` code order."""
    return tuple(CATALOG.cell_types)


def cytokine_names() -> tuple[str, ...]:
    """Names of the registered cytokines, in field order."""
    return tuple(CATALOG.cytokines)


def drug_names() -> tuple[str, ...]:
    """Names of the registered drugs."""
    return tuple(CATALOG.drugs)
