"""Whether numba's on-disk cache already holds the compiled CPU kernels (so a run can say it compiles).

The CPU kernels (``_fields_numba``, ``rng_compiled``) are compiled by numba on first use, about
30 s once, then loaded from numba's cache. The cache is found through each function's own
cache locator, so ``NUMBA_CACHE_DIR`` and numba's defaults are honoured.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any


@functools.cache
def compiled_twin(module: str, name: str) -> Any:
    """The numba-compiled CPU twin ``name`` of ``carabm.engine.<module>``, imported once; None without numba."""
    try:
        return getattr(importlib.import_module(f"carabm.engine.{module}"), name)
    except ImportError:  # pragma: no cover - numba is an install requirement
        return None


def _cached(dispatcher: Any) -> bool:
    # numba API: a cache=True dispatcher holds a FunctionCache whose index file lists the
    # compiled signatures; the index is empty when missing or stale (source changed).
    return bool(dispatcher._cache._cache_file._load_index())


def _rng_cached(unit: bool) -> bool:
    """Whether numba's cache holds a random-number kernel (the four words, or ``unit``: the uniform floats), serial or parallel."""
    from carabm.engine import rng_compiled  # noqa: PLC0415

    # building a dispatcher is cheap; compiling waits for its first call
    return _cached(rng_compiled._kernel(False, unit)) or _cached(rng_compiled._kernel(True, unit))


def cpu_kernels_cached() -> bool | None:
    """True when numba's cache holds the CPU kernels a run compiles, False when one must be compiled, None when unknown.

    The field sweeps run in every CPU run, and both random-number kernels (Philox words and
    uniform floats), each in its serial or its parallel build (above
    ``rng_compiled.PARALLEL_MIN_IDS`` ids), so either build counts. None:
    numba is not importable, or its cache cannot be inspected (a numba release that
    changed its internals); callers then say nothing.
    """
    try:
        from carabm.engine import _fields_numba, rng_compiled  # noqa: PLC0415

        if rng_compiled.numba is None:
            return None
        fields = all(_cached(d) for d in (_fields_numba.react_sweep_z, _fields_numba.sweep_yx))
        return fields and _rng_cached(False) and _rng_cached(True)
    except Exception:  # noqa: BLE001 - ImportError, or numba internals that moved
        return None


def cache_dir() -> str | None:
    """The folder where numba caches the field kernels, or None when unknown."""
    try:
        from carabm.engine import _fields_numba  # noqa: PLC0415

        return str(_fields_numba.react_sweep_z._cache._cache_path)
    except Exception:  # noqa: BLE001
        return None


__all__ = ["cpu_kernels_cached", "cache_dir"]
