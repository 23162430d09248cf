"""The rule vocabulary: "signal S raises behaviour B with half-max h and Hill power n".

Small pure functions on arrays of any backend (``xp`` is inferred from the inputs'
operations), so cell modules read like the biology instead of like array code.
"""

from __future__ import annotations

import math
from typing import Any


def hill(signal: Any, half_max: float, power: float = 1.0) -> Any:
    """Rising Hill response in [0, 1): ``s^n / (s^n + h^n)``; 0 for a zero half-max signal weight."""
    if half_max <= 0:
        return signal * 0.0
    x = (signal / half_max) ** power if power != 1.0 else signal / half_max
    return x / (1.0 + x)


def inhibition(signal: Any, half_max: float, power: float = 1.0) -> Any:
    """Falling Hill response: 1 at no signal, 1/2 at ``half_max``."""
    return 1.0 - hill(signal, half_max, power)


def any_of(*responses: Any) -> Any:
    """Probabilistic OR of independent responses in [0, 1]: ``1 - prod(1 - r)``."""
    rest = 1.0
    for r in responses:
        rest = rest * (1.0 - r)
    return 1.0 - rest


def probability(rate_per_h: Any, dt_h: float) -> Any:
    """Probability that an event of constant rate happens within one step: ``1 - exp(-rate dt)``."""
    return 1.0 - _exp(rate_per_h, -dt_h)


def _exp(rate: Any, factor: float) -> Any:
    if isinstance(rate, (int, float)):
        return math.exp(rate * factor)
    return _array_module(rate).exp(rate * factor)


def _array_module(array: Any) -> Any:
    from carabm.engine.backend import array_backend  # noqa: PLC0415

    return array_backend(array).xp


def relax(level: Any, target_rate: Any, decay_rate: Any, dt_h: float) -> Any:
    """Exact step of ``dL/dt = r_on (1 - L) - r_off L`` over ``dt`` with rates held fixed.

    Unconditionally stable and bounded in [0, 1] for any step (the ODE is linear in L).
    """
    total = target_rate + decay_rate
    steady = target_rate / (total + 1e-30)
    return steady + (level - steady) * _exp(total, -dt_h)


def rate_per_h_from_half_life(half_life_h: float) -> float:
    """First-order rate [1/h] of a half-life [h]."""
    return math.log(2.0) / half_life_h
