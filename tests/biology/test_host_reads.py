"""The biology step does not wait for the device: its only host reads are documented ``to_host`` calls.

Three checks that run on the CPU:

* the reads per step, by reason and by the module that made them (``count_host_reads``);
* a trap: the model's device arrays become a NumPy subclass that raises on what would make
  the host wait for a GPU (``bool``/``int``/``float`` of device data, ``.item()``, boolean-mask
  indexing, ``nonzero``, ``unique``, ``bincount``, ...) while biology code runs; engine calls
  (which may legitimately read population sizes) and ``to_host`` are let through;
* a source scan of ``carabm/biology/*.py`` for the calls that read device data on the host.
"""

from __future__ import annotations

import functools
import re
import sys
import types
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carabm.biology import model as model_module
from carabm.biology.model import CrsModel
from carabm.engine import rng_compiled, scatter
from carabm.engine.agents import AgentStore
from carabm.engine.backend import Backend, count_host_reads, get_backend
from carabm.engine.blood_pool import BloodPool
from carabm.engine.circulation import BloodCirculation
from carabm.engine.fields import FieldSolver
from carabm.engine.movement import Movement
from carabm.io.config import load_config
from carabm.simulation import Simulation, build_lattice

SMALL = ["lattice.shape=[6, 16, 30]", "cells.bcell.initial_count=300", "cells.macrophage.initial_count=60",
         "cells.monocyte.initial_count=6", "cells.microglia.initial_count=30", "run.backend=numpy"]  # fmt: skip
#: a busy scenario that uses every rule within a few hours: CAR-T contact, serial killing (two
#: cells lysing one target), division, myeloid activation, depletion, IL-6 receptor blockade
BUSY = ["cells.cart.dose=4e9", "cells.cart.kill_rate_per_h=3", "cells.cart.doubling_time_h=2", "cells.cart.homing_per_h=30",
        "therapies=[{drug: monocyte_depletion, start_h: 1}, {drug: tocilizumab, start_h: 2}]"]  # fmt: skip
BIOLOGY = Path(model_module.__file__).parent


def make_model(*extra: str) -> CrsModel:
    config = load_config(None, SMALL + BUSY + list(extra))
    return CrsModel(config, build_lattice(config), get_backend("numpy"))


# --------------------------------------------------------------------------- reads per step


def test_documented_reads_per_step(monkeypatch):
    """Per step the biology makes exactly one read, ``readouts``; engine reads are the engine's."""
    model = make_model()
    for _ in range(30):  # CAR-T cells on the lattice, in contact with B cells
        model.step()
    by_module: Counter[tuple[str, str]] = Counter()
    original = Backend.to_host

    def to_host(self: Backend, array: Any, reason: str) -> np.ndarray:
        by_module[(sys._getframe(1).f_globals["__name__"], reason)] += 1
        return original(self, array, reason)

    monkeypatch.setattr(Backend, "to_host", to_host)
    steps = 20
    with count_host_reads() as reads:
        for _ in range(steps):
            model.step()
    biology = {key: n for key, n in by_module.items() if key[0].startswith("carabm.biology")}
    assert biology == {("carabm.biology.readouts", "readouts"): steps}
    assert reads["readouts"] == steps
    assert "snapshot" not in reads and "bbb_integrity" not in reads
    assert set(model_module.HOST_READS) >= {"readouts", "bbb_integrity", "snapshot"}


def test_steps_skip_the_solvers_range_check(monkeypatch):
    """The BBB conductance set every step skips FieldSolver's range check (a host read on a GPU)."""
    model = make_model()
    checks: list[bool] = []
    original = FieldSolver.set_conductance

    def set_conductance(self: FieldSolver, conductance: Any, check: bool = True) -> None:
        checks.append(check)
        original(self, conductance, check=check)

    monkeypatch.setattr(FieldSolver, "set_conductance", set_conductance)
    for _ in range(3):
        model.step()
    assert checks == [False] * 3


def test_integrity_is_read_once_after_a_restore_and_snapshots_are_documented():
    """The step's start reuses the readouts' mean integrity; a new integrity array costs one documented read."""
    config = load_config(None, SMALL + ["run.duration_h=1"])
    sim = Simulation(config, "numpy")
    sim.step()
    before = sim.model.mean_bbb_integrity()
    sim.model.integrity = sim.model.integrity.copy()  # as a checkpoint restore does
    with count_host_reads() as reads:
        assert sim.model.mean_bbb_integrity() == before
        sim.step()
    assert reads["bbb_integrity"] == 1 and reads["readouts"] == 1  # (and whatever the engine reads)
    with count_host_reads() as reads:
        sim.snapshot()
    assert reads["snapshot"] >= 3  # fields, integrity, agents


# --------------------------------------------------------------------------- the trap


class HostSync(AssertionError):
    """Biology made the host wait for device data outside ``to_host``."""


class DeviceArray(np.ndarray):
    """A NumPy array that stands for device memory: reading its data on the host raises while armed.

    Results of operations stay ``DeviceArray`` (reductions give 0-d arrays, as on CuPy).
    """

    armed = 0

    @staticmethod
    def _refuse(what: str) -> None:
        if DeviceArray.armed > 0:
            raise HostSync(f"host read of device data in biology: {what}")

    def __array_wrap__(self, array: Any, context: Any = None, return_scalar: bool = False) -> Any:
        return np.asarray(array).view(DeviceArray)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        name = getattr(func, "__name__", str(func))
        if name in FORBIDDEN or (name == "where" and len(args) + len(kwargs) == 1):
            DeviceArray._refuse(f"{name}()")
        plain = tuple(np.ndarray if issubclass(t, DeviceArray) else t for t in types)
        return _as_device(super().__array_function__(func, plain, args, kwargs))

    def __bool__(self) -> bool:
        DeviceArray._refuse("bool(array)")
        return super().__bool__()

    def __int__(self) -> int:
        DeviceArray._refuse("int(array)")
        return super().__int__()

    def __float__(self) -> float:
        DeviceArray._refuse("float(array)")
        return super().__float__()

    def __index__(self) -> int:
        DeviceArray._refuse("array used as a Python int")
        return super().__index__()

    def item(self, *args: Any) -> Any:
        DeviceArray._refuse(".item()")
        return super().item(*args)

    def tolist(self) -> Any:
        DeviceArray._refuse(".tolist()")
        return super().tolist()

    def nonzero(self) -> Any:
        DeviceArray._refuse(".nonzero()")
        return super().nonzero()

    def __getitem__(self, key: Any) -> Any:
        if _has_mask(key):
            DeviceArray._refuse("boolean-mask indexing a[mask]")
        return _as_device(super().__getitem__(key))

    def __setitem__(self, key: Any, value: Any) -> None:
        if _has_mask(key):
            DeviceArray._refuse("boolean-mask assignment a[mask] = ...")
        super().__setitem__(key, value)


FORBIDDEN = {"nonzero", "flatnonzero", "argwhere", "unique", "unique_values", "unique_counts", "bincount", "compress",
             "extract", "asnumpy", "item"}  # fmt: skip


def _has_mask(key: Any) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, np.ndarray) and k.dtype == bool and k.ndim > 0 for k in keys)


def _as_device(value: Any) -> Any:
    if isinstance(value, np.ndarray) and not isinstance(value, DeviceArray):
        return value.view(DeviceArray)
    if isinstance(value, np.generic):
        return np.asarray(value).view(DeviceArray)
    if isinstance(value, tuple):
        return tuple(_as_device(v) for v in value)
    return value


def _to_device_state(model: CrsModel) -> None:
    """View the model's device state (not the host state: blood pool counts, therapy) as DeviceArray."""
    store = model.store
    for name, column in store._columns.items():
        store._columns[name] = _as_device(column)
    store._occupancy = _as_device(store._occupancy)
    for obj, names in ((model, ("fields", "labels", "bbb_voxels", "cns_voxels", "tallies")),
                       (model.conductance, ("values", "permeability", "bbb_voxels")),
                       (model.neighbourhood, ("_voxels", "_neighbours")),
                       (model.secretion, ("sources", "uptake")),
                       (model.circulation, ("blood_voxels", "_blood_padded")),
                       (model.blood, ("_serum",))):  # fmt: skip
        for name in names:
            if getattr(obj, name, None) is not None:
                setattr(obj, name, _as_device(getattr(obj, name)))
    model._integrity = _as_device(model._integrity)


def _disarmed(function: Any, model_ref: list[CrsModel], host_result: bool = False) -> Any:
    """An engine entry point: may read device data (population sizes); its results are device arrays again
    (``host_result``: host arrays, for ``to_host``)."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        armed, DeviceArray.armed = DeviceArray.armed, 0
        host = host_result or any(a is np for a in args)  # called with xp = numpy: a host computation
        args = tuple(np if isinstance(a, DeviceModule) else a for a in args)  # the engine dispatches on xp is numpy
        try:
            result = function(*args, **kwargs)
        finally:
            DeviceArray.armed = armed
        if model_ref:
            _to_device_state(model_ref[0])  # columns reallocated by the engine (growth) become device arrays again
        return np.asarray(result) if host_result else result if host else _as_device(result)

    return call


def _armed(function: Any) -> Any:
    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        DeviceArray.armed += 1
        try:
            return function(*args, **kwargs)
        finally:
            DeviceArray.armed -= 1

    return call


class DeviceModule(types.ModuleType):
    """The model's ``xp`` in the trap: NumPy, but the arrays it makes are :class:`DeviceArray`.

    Not ``numpy`` itself, so biology takes its device (CuPy) code paths where it asks ``xp is np``.
    """

    def __init__(self) -> None:
        super().__init__("device_numpy")

    def __getattr__(self, name: str) -> Any:
        value = getattr(np, name)
        if callable(value) and not isinstance(value, type):
            return lambda *args, **kwargs: _as_device(value(*args, **kwargs))
        return value


@pytest.fixture
def trapped(monkeypatch):
    """A busy model whose step and readouts run with the trap armed (engine calls and ``to_host`` disarmed)."""
    model = make_model()
    for _ in range(30):
        model.step()
    reference = make_model()  # the same run without the trap, for comparison
    for _ in range(30 + TRAPPED_STEPS):
        reference.step()
    model.reference = (reference.row, reference.agents_snapshot(), dict(reference.counters))
    ref: list[CrsModel] = [model]
    for cls in (AgentStore, Movement, BloodCirculation, BloodPool, FieldSolver):
        for name, value in list(vars(cls).items()):
            if callable(value) and not name.startswith("__") and not isinstance(value, (staticmethod, classmethod, type)):
                monkeypatch.setattr(cls, name, _disarmed(value, ref))
    for module, name in ((scatter, "add_counts"), (scatter, "add_weights"), (scatter, "gather"), (rng_compiled, "random_bits")):
        monkeypatch.setattr(module, name, _disarmed(getattr(module, name), ref))
    monkeypatch.setattr(Backend, "to_host", _disarmed(Backend.to_host, [], host_result=True))
    model.xp = model.secretion.xp = DeviceModule()  # arrays biology allocates with xp are device arrays too
    monkeypatch.setattr(CrsModel, "step", _armed(CrsModel.step))
    monkeypatch.setattr(CrsModel, "readouts", _armed(CrsModel.readouts))
    _to_device_state(model)
    return model


def test_the_trap_catches_host_reads(trapped):
    """The harness itself: a host read of device data inside armed code raises."""
    kind = trapped.store.kind
    assert isinstance(kind, DeviceArray)
    checks = [lambda: int(kind.sum()), lambda: bool((kind == 0).any()), lambda: kind[kind == 0],
              lambda: np.nonzero(kind)[0], lambda: np.unique(kind), lambda: np.bincount(kind), lambda: float(kind.mean()),
              lambda: kind.sum().item(), lambda: np.where(kind == 0)]  # fmt: skip
    for check in checks:
        with pytest.raises(HostSync):
            _armed(check)()
    assert int(kind.sum()) >= 0  # disarmed: allowed


TRAPPED_STEPS = 20


def test_biology_step_makes_no_host_reads_outside_to_host(trapped):
    """Whole steps (decide, secrete, endothelium, readouts) with every biology array trapped.

    The trap's ``xp`` is not ``numpy``, so biology runs its device (CuPy) formulations; the
    results equal the plain NumPy run's to the bit.
    """
    before = trapped.store.next_id
    with count_host_reads() as reads:
        for _ in range(TRAPPED_STEPS):
            trapped.step()
            _to_device_state(trapped)  # arrays the engine allocated between steps
    assert reads["readouts"] == TRAPPED_STEPS
    assert trapped.store.next_id > before  # the population changed: divisions, circulation
    row, agents, counters = trapped.reference
    assert counters["cart_kills"] > counters["bcell_lysed"] > 0  # the CAR-T rules had work to do
    assert row["activated/macrophage"] > 0 and row["activated/cart"] > 0
    assert trapped.row == row and dict(trapped.counters) == counters
    mine = trapped.agents_snapshot()
    assert mine.keys() == agents.keys()
    for name, values in agents.items():
        assert np.array_equal(mine[name], values), name


# --------------------------------------------------------------------------- source scan

#: calls that read device data on the host (or size their output by it)
FORBIDDEN_SOURCE = ("nonzero(", "flatnonzero(", "unique(", "bincount(", ".item()", "asnumpy(", ".get()", "argwhere(", ".compress(")
#: (file, line text) pairs allowed to contain one of FORBIDDEN_SOURCE, with the reason
ALLOWED_SOURCE: dict[tuple[str, str], str] = {
    ("model.py", "return np.flatnonzero(cells) if self.xp is np else None"):
        "CrsModel.slots_of: host arrays only (xp is numpy); a GPU keeps the masked form, which the trap runs",
}


def test_biology_sources_have_no_host_reads():
    """No host reads in biology sources, except in host-only functions (named ``*_host``, called where ``xp`` is numpy)."""
    problems = []
    for path in sorted(BIOLOGY.glob("*.py")):
        function = ""
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            code = re.sub(r"#.*$", "", line)
            found = re.match(r"\s*def (\w+)", code)
            if found:
                function = found.group(1)
            if "to_host(" in code or function.endswith("_host"):
                continue
            for token in FORBIDDEN_SOURCE:
                if token in code and (path.name, line.strip()) not in ALLOWED_SOURCE:
                    problems.append(f"{path.relative_to(BIOLOGY.parents[1])}:{number}: {token} in {line.strip()!r}")
    assert not problems, "host reads in biology (use masks over all agents, or backend.to_host with a reason):\n" + "\n".join(problems)


@pytest.mark.parametrize("burden", ["1e10", "1e12"])
def test_host_readouts_equal_the_masked_form_a_gpu_runs(burden):
    """``readouts.packed`` on the host (histograms) and in its device form (``[K, n]`` masks): the same bits,
    also with the small CAR-T weights of a large tumour (0.002 cells per agent at 1e12)."""
    from carabm.biology import readouts  # noqa: PLC0415

    model = make_model(f"patient.tumor_burden_cells={burden}", "cells.cart.dose=1.4e8")
    for _ in range(40):
        model.step()
    host = readouts.packed(model)
    model.xp = DeviceModule()  # not numpy: the device formulation, on the same (unarmed) arrays
    device = np.asarray(readouts.packed(model))
    assert np.array_equal(host, device)
    weights = np.asarray(model.store.weights())
    assert host.sum() > 0 and (burden == "1e10" or weights.min() < 0.01)
