"""Agent engine on a GPU: CUDA kernels against the NumPy engine, and proof that a step never waits for the GPU.

Skipped without a usable GPU. Parity: moves without chemotaxis or BBB gating, wall crossing,
division, compaction and circulation use only integer arithmetic and comparisons of exact
float32 products, so they must match NumPy to the bit. Chemotaxis (``expf``) and the BBB
gate (``powf``) may round differently from NumPy's float32 ``exp``/``power`` by an ulp, which
flips a choice only when a random number lands within an ulp of a boundary: there the test
allows a handful of differing agents.

No host round-trips: a ``spin`` kernel keeps the GPU busy for seconds; the host then queues
the operations under test. If any of them waited for the device (a ``.get()``, a
data-dependent shape such as ``nonzero``, ``bincount``'s size), the stream would be idle by
the time the host checks it. Documented reads (``Backend.to_host``) are allowed: a hook
checks the stream is still busy just before each one and restarts the spin after it.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
from test_agent_kernels import assert_same_world, fields_and_integrity, kinds

from carabm.engine import backend as backend_module
from carabm.engine import kernels, rng, rng_compiled, scatter
from carabm.engine.backend import get_backend

pytestmark = pytest.mark.gpu

SPIN_NS = 3_000_000_000  # 3 s: far longer than the host needs to queue any step here


def gpu_world(seed: int = 11):  # noqa: ANN201
    from test_agent_kernels import SHAPE, VOXEL_UM  # noqa: PLC0415

    from carabm.engine.agents import AgentStore  # noqa: PLC0415
    from carabm.engine.lattice import Lattice, default_layout  # noqa: PLC0415
    from carabm.engine.movement import Movement  # noqa: PLC0415

    gpu = get_backend("cupy")
    lattice = Lattice(default_layout(SHAPE, VOXEL_UM), VOXEL_UM)
    store = AgentStore(kinds(), SHAPE, backend=gpu, capacity=64)
    for name, home, count in (("tumour", "tissue", 300), ("tcell", "blood", 60), ("mono", "tissue", 80), ("tcell", "tissue", 50)):
        store.place_random(name, count, lattice.flat_indices(home), seed, 0, purpose=f"place:{name}:{home}")
    return lattice, store, Movement(store, lattice, dt_min=3.0, seed=seed)


class HostStore:
    """A GPU store's columns copied to the host, compared like an AgentStore."""

    def __init__(self, store) -> None:  # noqa: ANN001
        self.n, self.next_id = store.n, store.next_id
        self.columns = {name: store.backend.asnumpy(store[name]) for name in store.columns}
        self.occupancy = store.backend.asnumpy(store.occupancy)
        self._store = store

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    @property
    def id(self) -> np.ndarray:
        return self.columns["id"]

    def check(self) -> None:
        self._store.check()


def test_philox_kernel_matches_numpy() -> None:
    cupy = get_backend("cupy").xp
    ids = np.random.default_rng(0).integers(0, 2**40, 100_000)
    for seed, step, purpose in [(0, 0, "move"), (2**40 + 7, 2**33 + 5, "divide")]:
        got = rng_compiled.random_bits(cupy, seed, step, cupy.asarray(ids), purpose)
        for g, e in zip(got, rng.random_bits(np, seed, step, ids, purpose)):
            np.testing.assert_array_equal(cupy.asnumpy(g), e)


def test_moves_wall_crossing_division_match_numpy_exactly() -> None:
    from test_agent_kernels import world  # noqa: PLC0415

    _, reference, ref_movement = world()
    _, gpu_store, gpu_movement = gpu_world()
    cupy = gpu_store.xp
    for step in range(1, 8):
        assert int(gpu_movement.step(step)) == ref_movement.step(step)
        assert tuple(int(c) for c in gpu_movement.transmigrate(step)) == ref_movement.transmigrate(step)
        selection = (reference.kind != 2) & (rng.uniform(np, 5, step, reference.id, "pick") < 0.2)
        ref_movement.divide(selection, step, "divide")
        gpu_movement.divide(cupy.asarray(selection), step, "divide")
        assert_same_world(reference, HostStore(gpu_store))
    dead = rng.uniform(np, 3, 0, reference.id, "die") < 0.3
    assert gpu_store.remove(cupy.asarray(dead)) == reference.remove(dead)
    assert_same_world(reference, HostStore(gpu_store))


def test_chemotaxis_and_bbb_gate_match_numpy_up_to_rounding_flips() -> None:
    from test_agent_kernels import world  # noqa: PLC0415

    _, reference, ref_movement = world()
    _, gpu_store, gpu_movement = gpu_world()
    cupy = gpu_store.xp
    fields, integrity = fields_and_integrity(1)
    ref_movement.step(1, fields, integrity)
    gpu_movement.step(1, cupy.asarray(fields), cupy.asarray(integrity))
    got = HostStore(gpu_store)
    order_a, order_b = np.argsort(reference.id), np.argsort(got.id)
    differ = (reference.position[order_a] != got["position"][order_b]).any(axis=1).sum()
    assert differ <= 3, f"{differ} of {reference.n} agents moved elsewhere on the GPU"
    gpu_store.check()


def test_scatter_gather_contacts_match_numpy() -> None:
    cupy = get_backend("cupy").xp
    rng_np = np.random.default_rng(5)
    voxels = rng_np.integers(0, 5000, 200_000)
    weights = rng_np.random(200_000) * 30
    expected = np.zeros(5000, np.float32)
    scatter.add_weights(expected, voxels, weights, 1e-3)
    row = cupy.zeros(5000, cupy.float32)
    scatter.add_weights(row, cupy.asarray(voxels), cupy.asarray(weights), 1e-3)
    np.testing.assert_allclose(cupy.asnumpy(row), expected, rtol=1e-5)
    expected64, row64 = np.zeros(5000), cupy.zeros(5000, cupy.float64)  # double atomic adds: float64 sums
    scatter.add_weights(expected64, voxels, weights, 1e-3)
    scatter.add_weights(row64, cupy.asarray(voxels), cupy.asarray(weights), 1e-3)
    np.testing.assert_allclose(cupy.asnumpy(row64), expected64, rtol=1e-12)
    fields = rng_np.random((8, 5000)).astype(np.float32)
    np.testing.assert_array_equal(cupy.asnumpy(scatter.gather(cupy.asarray(fields), cupy.asarray(voxels))), fields[:, voxels])
    from test_agent_kernels import world  # noqa: PLC0415

    _, reference, _ = world()
    _, gpu_store, _ = gpu_world()
    np.testing.assert_array_equal(cupy.asnumpy(gpu_store.contact_counts(26, "tumour")), reference.contact_counts(26, "tumour"))


class BusyWatch:
    """Keeps the GPU busy and records any moment the host found it idle (it had waited)."""

    def __init__(self, cupy) -> None:  # noqa: ANN001
        self.stream = cupy.cuda.get_current_stream()
        self.idle_at: list[str] = []
        self.reads: Counter[str] = Counter()

    def spin(self) -> None:
        kernels.launch("rng", "spin", (1,), (1,), (SPIN_NS,))

    def check(self, where: str) -> None:
        if self.stream.done:
            self.idle_at.append(where)

    def before(self, reason: str) -> None:
        self.check(f"before the documented read {reason!r}")

    def after(self, reason: str) -> None:
        self.reads[reason] += 1
        self.spin()


def watch(cupy):  # noqa: ANN001, ANN201
    """A :class:`BusyWatch` registered as a host-read hook (remove it with ``unwatch``)."""
    w = BusyWatch(cupy)
    backend_module.HOST_READ_HOOKS.append(w)
    return w


def unwatch(w) -> None:  # noqa: ANN001
    backend_module.HOST_READ_HOOKS.remove(w)
    w.stream.synchronize()


def test_engine_layers_never_wait_for_the_gpu() -> None:
    lattice, store, movement = gpu_world()
    cupy = store.xp
    fields, integrity = (cupy.asarray(a) for a in fields_and_integrity(1))
    movement.step(1, fields, integrity)  # compile every kernel first
    movement.transmigrate(1)
    store.contact_counts(6)
    row = cupy.zeros(lattice.n_voxels, cupy.float32)
    scatter.add_counts(row, store.flat_index(), store.kind == 0, 1.0)
    cupy.cuda.get_current_stream().synchronize()
    w = watch(cupy)
    try:
        w.spin()
        start = time.perf_counter()
        for step in range(2, 6):
            movement.step(step, fields, integrity, speed_scale=cupy.ones(store.n, cupy.float32))
            movement.transmigrate(step)
            store.contact_counts(6, "tumour")
            scatter.add_counts(row, store.flat_index(), store.kind == 0, 1.0)
            scatter.add_weights(row, store.flat_index(), cupy.ones(store.n, cupy.float64), 0.5)
            scatter.gather(fields.reshape(2, -1), store.flat_index())
        host_s = time.perf_counter() - start
        w.check("after the last operation")
    finally:
        unwatch(w)
    assert host_s < SPIN_NS / 1e9 / 2
    assert not w.idle_at, f"the host waited for the GPU: {w.idle_at}"
    assert not w.reads


def test_a_whole_model_step_waits_only_at_documented_reads() -> None:
    from pathlib import Path  # noqa: PLC0415

    from carabm.io.config import load_config  # noqa: PLC0415
    from carabm.simulation import Simulation  # noqa: PLC0415

    config = load_config(Path(__file__).parents[2] / "configs" / "quickstart.yaml", ["run.duration_h=72"])
    sim = Simulation(config, "cupy")
    cupy = sim.model.xp
    for _ in range(30):  # into CAR-T activation, killing, division and secretion
        sim.step()
    cupy.cuda.get_current_stream().synchronize()
    w = watch(cupy)
    try:
        for _ in range(3):
            w.spin()
            sim.model.step()
            w.check("at the end of the step")
    finally:
        unwatch(w)
    assert not w.idle_at, f"the host waited for the GPU outside documented reads: {w.idle_at}"
    print("documented reads in 3 steps:", dict(w.reads))
