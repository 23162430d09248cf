"""Counter-based RNG: known-answer vectors, key independence, order independence, distribution."""

import numpy as np
import pytest

from carabm.engine import rng

# Known-answer vectors of Philox4x32-10 published with Random123 (Salmon et al. 2011).
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize(("counter", "key", "expected"), KAT)
def test_philox_known_answers(xp, counter, key, expected):
    out = rng.philox4x32(xp, tuple(xp.asarray([c], dtype=xp.uint64) for c in counter), key)
    assert tuple(int(o[0]) for o in out) == expected


def test_philox_matches_pure_python_rounds():
    def reference(c, k):
        c, k = list(c), list(k)
        for _ in range(10):
            p0, p1 = c[0] * 0xD2511F53, c[2] * 0xCD9E8D57
            c = [(p1 >> 32) ^ c[1] ^ k[0], p1 & 0xFFFFFFFF, (p0 >> 32) ^ c[3] ^ k[1], p0 & 0xFFFFFFFF]
            k = [(k[0] + 0x9E3779B9) & 0xFFFFFFFF, (k[1] + 0xBB67AE85) & 0xFFFFFFFF]
        return tuple(c)

    gen = np.random.default_rng(7)
    for _ in range(20):
        c = tuple(int(v) for v in gen.integers(0, 2**32, 4))
        k = tuple(int(v) for v in gen.integers(0, 2**32, 2))
        out = rng.philox4x32(np, tuple(np.array([v], dtype=np.uint64) for v in c), k)
        assert tuple(int(o[0]) for o in out) == reference(c, k)


def test_order_independent(xp):
    ids = xp.arange(1000, dtype=xp.int64)
    perm = xp.asarray(np.random.default_rng(0).permutation(1000))
    a = rng.uniform(xp, 5, 17, ids, "move")
    b = rng.uniform(xp, 5, 17, ids[perm], "move")
    assert bool(xp.all(a[perm] == b))


def test_keys_change_the_stream(xp):
    ids = xp.arange(4096, dtype=xp.int64)
    base = rng.uniform(xp, 1, 3, ids, "move")
    for other in (rng.uniform(xp, 2, 3, ids, "move"), rng.uniform(xp, 1, 4, ids, "move"), rng.uniform(xp, 1, 3, ids, "divide")):
        assert float(xp.mean(base == other)) < 0.01


def test_uniform_distribution(xp):
    u = rng.uniform(xp, 11, 0, xp.arange(200_000), "test", n=2)
    assert u.shape == (2, 200_000)
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    # mean 1/2 and variance 1/12 within ~6 standard errors
    assert abs(float(u.mean()) - 0.5) < 6 * (1 / 12 / 400_000) ** 0.5
    assert abs(float(u.var()) - 1 / 12) < 0.002
    hist = np.histogram(np.asarray(u[0].get() if hasattr(u, "get") else u[0]), bins=20, range=(0, 1))[0]
    expected = 200_000 / 20
    chi2 = float(((hist - expected) ** 2 / expected).sum())
    assert chi2 < 43.8  # 99.9% quantile of chi-square with 19 degrees of freedom


def test_integers_and_normal(xp):
    ids = xp.arange(100_000)
    k = rng.integers(xp, 3, 1, ids, "pick", 6)
    assert int(k.min()) == 0 and int(k.max()) == 5
    z = rng.normal(xp, 3, 1, ids, "noise")
    assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1) < 0.02


def test_compiled_cpu_twins_draw_the_same_numbers():
    from carabm.engine import rng_compiled

    ids = np.arange(5000, dtype=np.int64)
    assert np.array_equal(rng.priorities(np, 9, 4, ids, "place"), rng_compiled.priorities(np, 9, 4, ids, "place"))
    assert np.array_equal(rng.uniform(np, 9, 4, ids, "move"), rng_compiled.uniform(np, 9, 4, ids, "move"))
    # the fused uniform kernel on the threaded path too (ids above PARALLEL_MIN_IDS), with ids above 2^32
    big = np.random.default_rng(1).integers(0, 2**40, rng_compiled.PARALLEL_MIN_IDS + 1000)
    got = rng_compiled.uniform(np, 2**40 + 7, 2**33 + 5, big, "divide")
    assert got.dtype == np.float32 and np.array_equal(rng.uniform(np, 2**40 + 7, 2**33 + 5, big, "divide"), got)


def test_stochastic_round_is_unbiased_and_keeps_whole_numbers() -> None:
    from carabm.engine.rng import stochastic_round, uniform

    assert stochastic_round(3.0, 0.0) == 3 and isinstance(stochastic_round(3.0, 0.0), int)  # a whole number never rounds up
    assert stochastic_round(2.25, 0.2) == 3 and stochastic_round(2.25, 0.3) == 2
    assert stochastic_round(-1.5, 0.4) == -1 and stochastic_round(-1.5, 0.6) == -2  # floor, not truncation
    u = uniform(np, 1, 0, np.arange(200_000), "round").astype(np.float64)
    x = np.full(u.size, 0.3)
    got = stochastic_round(x, u)
    assert got.dtype == np.int64 and set(np.unique(got)) == {0, 1}
    assert abs(got.mean() - 0.3) < 0.005
