"""Counter-based random numbers (Philox4x32-10) keyed by (seed, step, agent id, purpose).

Every number is a pure function of its key, so results do not depend on the order of
agents in memory, a checkpoint needs only the seed and the step counter, and NumPy and
CuPy draw bit-identical numbers (the arithmetic is 32x32->64-bit integer products).
Reference: Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

# Philox4x32 round constants (Salmon et al. 2011, Random123).
_M0 = 0xD2511F53
_M1 = 0xCD9E8D57
_W0 = 0x9E3779B9
_W1 = 0xBB67AE85
_MASK32 = 0xFFFFFFFF
_ROUNDS = 10


def purpose_id(purpose: str | int) -> int:
    """A stable 32-bit id for a named purpose (e.g. ``"move"``, ``"divide"``)."""
    if isinstance(purpose, int):
        return purpose & _MASK32
    return zlib.crc32(purpose.encode("utf-8")) & _MASK32


def philox4x32(xp: Any, counter: tuple[Any, Any, Any, Any], key: tuple[int, int]) -> tuple[Any, ...]:
    """Philox4x32-10 on arrays: ``counter`` is four uint32 arrays (broadcastable), ``key`` two ints.

    Returns four uint32 arrays of random bits.
    """
    c0, c1, c2, c3 = (xp.asarray(c, dtype=xp.uint64) & _MASK32 for c in counter)
    c0, c1, c2, c3 = xp.broadcast_arrays(c0, c1, c2, c3)
    k0, k1 = int(key[0]) & _MASK32, int(key[1]) & _MASK32
    for _ in range(_ROUNDS):
        p0 = c0 * _M0
        p1 = c2 * _M1
        hi0, lo0 = p0 >> 32, p0 & _MASK32
        hi1, lo1 = p1 >> 32, p1 & _MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + _W0) & _MASK32
        k1 = (k1 + _W1) & _MASK32
    return tuple(c.astype(xp.uint32) for c in (c0, c1, c2, c3))


def _seed_key(seed: int) -> tuple[int, int]:
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    return seed & _MASK32, seed >> 32


def random_bits(xp: Any, seed: int, step: int, ids: Any, purpose: str | int) -> tuple[Any, ...]:
    """Four independent uint32 words per id for this (seed, step, purpose)."""
    ids = xp.asarray(ids, dtype=xp.uint64)
    counter = (ids & _MASK32, ids >> 32, xp.uint64(int(step) & _MASK32), xp.uint64(purpose_id(purpose)))
    return philox4x32(xp, counter, _seed_key(seed))


def _to_unit(xp: Any, word: Any, dtype: Any) -> Any:
    # 24 high bits -> float in [0, 1): exact in float32 on every backend.
    return (word >> 8).astype(dtype) * dtype(1.0 / (1 << 24))


def uniform(xp: Any, seed: int, step: int, ids: Any, purpose: str | int, n: int = 1, dtype: Any = np.float32) -> Any:
    """Uniform numbers in [0, 1): shape ``[len(ids)]`` for ``n == 1``, else ``[n, len(ids)]`` (n <= 4)."""
    if not 1 <= n <= 4:
        raise ValueError("uniform: n must be 1..4 (one Philox block per id); use another purpose for more")
    words = random_bits(xp, seed, step, ids, purpose)
    out = [_to_unit(xp, w, np.dtype(dtype).type) for w in words[:n]]
    return out[0] if n == 1 else xp.stack(out)


def integers(xp: Any, seed: int, step: int, ids: Any, purpose: str | int, high: int) -> Any:
    """Integers uniform on ``[0, high)`` (``high`` <= 2**16, bias below 2**-16)."""
    word = random_bits(xp, seed, step, ids, purpose)[0]
    return ((word >> 16) * np.uint32(high) >> 16).astype(xp.int32)


def normal(xp: Any, seed: int, step: int, ids: Any, purpose: str | int, dtype: Any = np.float32) -> Any:
    """Standard normal numbers (Box-Muller on two 32-bit words)."""
    w0, w1, _, _ = random_bits(xp, seed, step, ids, purpose)
    u1 = ((w0 >> 8).astype(np.float64) + 0.5) / (1 << 24)
    u2 = (w1 >> 8).astype(np.float64) / (1 << 24)
    return (xp.sqrt(-2.0 * xp.log(u1)) * xp.cos(2.0 * np.pi * u2)).astype(dtype)


def priorities(xp: Any, seed: int, step: int, ids: Any, purpose: str | int) -> Any:
    """Random 64-bit tie-break priorities, unique with overwhelming probability, mixed with the id."""
    w0, w1, _, _ = random_bits(xp, seed, step, ids, purpose)
    return (w0.astype(xp.uint64) << 32) | w1.astype(xp.uint64)


def stochastic_round(x: Any, u: Any) -> Any:
    """``x`` rounded down or up at random, unbiased: ``floor(x) + (u < x - floor(x))``, ``u`` uniform in [0, 1).

    The one stochastic rounding of the model (cells infused, entering, dying or made in a
    step): a scalar ``x`` gives an ``int``, an array ``x`` an int64 array (``u`` the same shape).
    """
    whole = np.floor(x)
    up = u < x - whole
    if np.ndim(whole) == 0:
        return int(whole) + int(up)
    return whole.astype(np.int64) + up
