"""Compiled twins of :func:`carabm.engine.rng.random_bits` (bit-identical): numba on the CPU, CUDA on a GPU.

Philox written with array operations makes ~100 passes over the arrays (and ~100 kernel
launches on a GPU); compiled, it is one pass, which the movement of 1e6 agents per step
needs. On the CPU without numba it falls back to the array version; on a GPU the kernel
``philox_ids`` of ``kernels/rng.cu`` runs (``launcher`` lets tests emulate it on the host).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from carabm.engine import rng
from carabm.engine.backend import launcher_for
from carabm.engine.numba_cache import CACHE

try:  # numba is an install requirement, but keep the engine importable without it
    import numba
except ImportError:  # pragma: no cover
    numba = None

_kernels: dict[tuple[bool, bool], Any] = {}


#: below this many ids a serial loop beats starting the thread pool
PARALLEL_MIN_IDS = 65536


_M0, _M1, _W0, _W1, _MASK, _ROUNDS = rng._M0, rng._M1, rng._W0, rng._W1, rng._MASK32, rng._ROUNDS
_UNIT = np.float32(1.0 / (1 << 24))


def _philox_rounds(id_, step, purpose, k0_init, k1_init):  # noqa: ANN001, ANN202 - compiled below
    """Philox4x32 of the counter (id low, id high, step, purpose) under the key (k0, k1): the four words."""
    c0 = np.uint64(id_) & np.uint64(_MASK)
    c1 = np.uint64(id_) >> np.uint64(32)
    c2 = np.uint64(step)
    c3 = np.uint64(purpose)
    k0 = np.uint64(k0_init)
    k1 = np.uint64(k1_init)
    for _ in range(_ROUNDS):
        p0 = c0 * np.uint64(_M0)
        p1 = c2 * np.uint64(_M1)
        hi0 = p0 >> np.uint64(32)
        lo0 = p0 & np.uint64(_MASK)
        hi1 = p1 >> np.uint64(32)
        lo1 = p1 & np.uint64(_MASK)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + np.uint64(_W0)) & np.uint64(_MASK)
        k1 = (k1 + np.uint64(_W1)) & np.uint64(_MASK)
    return c0, c1, c2, c3


if numba is not None:  # a module-level function, so the kernels that inline it stay in numba's cache
    _philox_rounds = numba.njit(inline="always", cache=CACHE, nogil=True)(_philox_rounds)


def _build_kernel(parallel: bool, unit: bool = False) -> Any:
    """The Philox kernel: four words per id into ``out [4, n]``, or (``unit``) the first as float32 in [0, 1) into ``out [n]``."""
    if unit:

        @numba.njit(parallel=parallel, cache=CACHE, nogil=True)
        def philox_unit(ids, step, purpose, k0_init, k1_init, out):  # pragma: no cover - compiled
            for i in numba.prange(ids.shape[0]):
                c0, _, _, _ = _philox_rounds(ids[i], step, purpose, k0_init, k1_init)
                # as to_unit: the top 24 bits, exact in float32, times 2^-24 (exact)
                out[i] = np.float32(np.uint32(c0) >> np.uint32(8)) * _UNIT

        return philox_unit

    @numba.njit(parallel=parallel, cache=CACHE, nogil=True)
    def philox_ids(ids, step, purpose, k0_init, k1_init, out):  # pragma: no cover - compiled
        for i in numba.prange(ids.shape[0]):
            c0, c1, c2, c3 = _philox_rounds(ids[i], step, purpose, k0_init, k1_init)
            out[0, i] = np.uint32(c0)
            out[1, i] = np.uint32(c1)
            out[2, i] = np.uint32(c2)
            out[3, i] = np.uint32(c3)

    return philox_ids


def random_bits_kernel(xp: Any, seed: int, step: int, ids: Any, purpose: str | int, launcher: Any = None) -> tuple[Any, ...]:
    """:func:`carabm.engine.rng.random_bits` by the CUDA kernel ``philox_ids`` (one launch, no host sync)."""
    ids = xp.ascontiguousarray(xp.asarray(ids, dtype=xp.int64).ravel())
    out = xp.empty((4, ids.size), dtype=xp.uint32)
    if ids.size:
        k0, k1 = rng._seed_key(seed)
        args = (ids, out, int(ids.size), k0, k1, int(step) & rng._MASK32, rng.purpose_id(purpose))
        launcher_for(xp, launcher)("rng", "philox_ids", ((ids.size + 255) // 256,), (256,), args)
    return out[0], out[1], out[2], out[3]


def random_bits(xp: Any, seed: int, step: int, ids: Any, purpose: str | int) -> tuple[Any, ...]:
    """Same result as :func:`carabm.engine.rng.random_bits`; compiled for NumPy (numba) and CuPy (CUDA)."""
    if xp is not np:
        launch = launcher_for(xp)
        if launch is not None:
            return random_bits_kernel(xp, seed, step, ids, purpose, launch)
    if numba is None:
        return rng.random_bits(xp, seed, step, ids, purpose)
    ids = _host_ids(ids)
    out = np.empty((4, ids.size), dtype=np.uint32)
    _kernel(ids.size >= PARALLEL_MIN_IDS, False)(ids, np.uint64(int(step) & rng._MASK32), _purpose_word(purpose), *_seed_words(seed), out)
    return out[0], out[1], out[2], out[3]


def _host_ids(ids: Any) -> np.ndarray:
    """``ids`` as the kernels take them: a C-contiguous 1-D int64 host array."""
    if type(ids) is not np.ndarray or ids.dtype != np.int64 or ids.ndim != 1 or not ids.flags.c_contiguous:
        ids = np.ascontiguousarray(ids, dtype=np.int64).ravel()
    return ids


def _kernel(parallel: bool, unit: bool) -> Any:
    """The numba kernel for these flags (built, or loaded from numba's cache, at first use)."""
    kernel = _kernels.get((parallel, unit))
    if kernel is None:
        kernel = _kernels[(parallel, unit)] = _build_kernel(parallel, unit)
    return kernel


@functools.lru_cache(maxsize=4096)
def _purpose_word(purpose: str | int) -> np.uint64:
    """:func:`carabm.engine.rng.purpose_id` as the kernel's word (a run uses a few dozen purposes: kept)."""
    return np.uint64(rng.purpose_id(purpose))


@functools.lru_cache(maxsize=64)
def _seed_words(seed: int) -> tuple[np.uint64, np.uint64]:
    """The Philox key of a seed as the kernel's two words."""
    k0, k1 = rng._seed_key(seed)
    return np.uint64(k0), np.uint64(k1)


def to_unit(word: Any, xp: Any) -> Any:
    """A uint32 word -> float32 in [0, 1), exactly as :func:`carabm.engine.rng.uniform` does."""
    return (word >> 8).astype(xp.float32) * xp.float32(1.0 / (1 << 24))


def priorities(xp: Any, seed: int, step: int, ids: Any, purpose: str | int) -> Any:
    """Same result as :func:`carabm.engine.rng.priorities`, from the compiled words on the CPU."""
    w0, w1, _, _ = random_bits(xp, seed, step, ids, purpose)
    return (w0.astype(xp.uint64) << xp.uint64(32)) | w1.astype(xp.uint64)


def uniform(xp: Any, seed: int, step: int, ids: Any, purpose: str | int) -> Any:
    """Same result as :func:`carabm.engine.rng.uniform` (one float32 in [0, 1) per id), compiled on the CPU.

    On the CPU one kernel makes the number (no words in between); elsewhere ``to_unit`` of the first word.
    """
    if xp is not np or numba is None:
        return to_unit(random_bits(xp, seed, step, ids, purpose)[0], xp)
    ids = _host_ids(ids)
    out = np.empty(ids.size, dtype=np.float32)
    _kernel(ids.size >= PARALLEL_MIN_IDS, True)(ids, np.uint64(int(step) & rng._MASK32), _purpose_word(purpose), *_seed_words(seed), out)
    return out
