"""The only module that knows CPU versus GPU: array module, device facts, transfers.

Everything else asks :func:`get_backend` for a :class:`Backend` and uses its ``xp``
(NumPy or CuPy); this is the only place in carabm that imports ``cupy``.
"""

from __future__ import annotations

import contextlib
import logging
import platform
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from types import ModuleType
from typing import Any

import numpy as np

from carabm.errors import BackendError

log = logging.getLogger("carabm")

BACKEND_NAMES = ("auto", "numpy", "cupy")

#: documented device -> host reads made through :meth:`Backend.to_host`, by reason (process-wide)
HOST_READS: Counter[str] = Counter()
#: objects with ``before(reason)`` and ``after(reason)`` called around every documented read
#: (tests use them to prove that nothing else in a step waits for the GPU)
HOST_READ_HOOKS: list[Any] = []


@dataclass(frozen=True)
class CupyStatus:
    """What we learned when probing for CuPy and a GPU."""

    installed: bool
    usable: bool
    version: str | None = None
    reason: str = ""
    gpu_name: str | None = None
    gpu_memory_bytes: int | None = None
    cuda_runtime: str | None = None


@lru_cache(maxsize=1)
def cupy_status() -> CupyStatus:
    """Probe CuPy once per process: installed? a GPU usable? which one?"""
    try:
        import cupy  # noqa: PLC0415  (the one place cupy is imported)
    except Exception as exc:  # ImportError, or a broken CUDA install
        return CupyStatus(installed=False, usable=False, reason=f"cupy not importable ({exc})")
    version = getattr(cupy, "__version__", None)
    try:
        if not cupy.cuda.is_available():
            return CupyStatus(True, False, version, "CuPy is installed but no CUDA GPU is visible")
        device = cupy.cuda.Device(0)
        props = cupy.cuda.runtime.getDeviceProperties(device.id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        free, total = device.mem_info
        cupy.zeros(1, dtype=cupy.float32).sum().item()  # a real allocation and launch
        runtime = cupy.cuda.runtime.runtimeGetVersion()
        return CupyStatus(True, True, version, "", name, int(total), f"{runtime // 1000}.{runtime % 1000 // 10}")
    except Exception as exc:  # CUDARuntimeError and friends
        return CupyStatus(True, False, version, f"CuPy cannot use the GPU ({type(exc).__name__}: {exc})")


@dataclass(frozen=True)
class Backend:
    """An array backend: ``xp`` is ``numpy`` or ``cupy``; helpers move data to the host."""

    name: str
    xp: ModuleType
    device: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_gpu(self) -> bool:
        """True when arrays live on a GPU (:func:`on_device`)."""
        return on_device(self)

    def asnumpy(self, array: Any) -> np.ndarray:
        """Copy an array (or scalar) of this backend to a NumPy array on the host."""
        if self.is_gpu:
            return self.xp.asnumpy(array)
        return np.asarray(array)

    def to_host(self, array: Any, reason: str) -> np.ndarray:
        """A documented device -> host read (it waits for the device on a GPU), counted under ``reason``.

        A step's host reads all go through here (population sizes after births and deaths,
        the time-series row, ...), so :func:`count_host_reads` can list them; anything
        else that reads device data on the host inside a step is a bug on the GPU path.
        """
        HOST_READS[reason] += 1
        for hook in HOST_READ_HOOKS:
            hook.before(reason)
        host = self.asnumpy(array)
        for hook in HOST_READ_HOOKS:
            hook.after(reason)
        return host

    def asarray(self, array: Any, dtype: Any = None) -> Any:
        """Put a host array on this backend's device."""
        return self.xp.asarray(array, dtype=dtype)

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the CPU); used by benchmarks."""
        if self.is_gpu:
            self.xp.cuda.get_current_stream().synchronize()


@contextlib.contextmanager
def count_host_reads() -> Iterator[Counter[str]]:
    """Count the documented host reads (:meth:`Backend.to_host`) made inside the block, by reason."""
    before = Counter(HOST_READS)
    counts: Counter[str] = Counter()
    try:
        yield counts
    finally:
        counts.update(HOST_READS - before)


def _numpy_backend() -> Backend:
    return Backend("numpy", np, f"CPU ({platform.processor() or platform.machine()})")


def _cupy_backend() -> Backend:
    import cupy  # noqa: PLC0415

    status = cupy_status()
    return Backend("cupy", cupy, f"GPU 0: {status.gpu_name}", {"memory_bytes": status.gpu_memory_bytes})


def get_backend(name: str | Backend = "auto", announce: bool = False) -> Backend:
    """Return the backend named ``auto``, ``numpy`` or ``cupy``.

    ``auto`` picks CuPy when a GPU is usable and NumPy otherwise (with a one-line
    notice when ``announce`` is set); ``cupy`` without a usable GPU is a
    :class:`~carabm.errors.BackendError`.
    """
    if isinstance(name, Backend):
        return name
    if name not in BACKEND_NAMES:
        raise BackendError(f"backend: must be one of {', '.join(BACKEND_NAMES)}, got {name!r}")
    if name == "numpy":
        return _numpy_backend()
    status = cupy_status()
    if name == "cupy":
        if not status.usable:
            raise BackendError(
                f"backend cupy: not usable here: {status.reason}; "
                "use --backend numpy (or auto), or install carabm[gpu] on a machine with an NVIDIA GPU"
            )
        return _cupy_backend()
    if status.usable:
        backend = _cupy_backend()
    else:
        backend = _numpy_backend()
        if announce and _first_notice(status.reason):  # a warning only when CuPy is installed but cannot run
            (log.warning if status.installed else log.info)("backend auto: using numpy (%s)", status.reason)
    if announce and backend.is_gpu and _first_notice(str(backend.device)):
        log.info("backend auto: using cupy on %s", backend.device)
    return backend


_NOTICES: set[str] = set()


def _first_notice(key: str) -> bool:
    """Whether the backend choice ``key`` is announced for the first time in this process (a sweep runs many members)."""
    if key in _NOTICES:
        return False
    _NOTICES.add(key)
    return True


def array_backend(array: Any) -> Backend:
    """The backend an existing array lives on."""
    if isinstance(array, np.ndarray) or np.isscalar(array):
        return _numpy_backend()
    module = type(array).__module__
    if module.startswith("cupy"):
        return _cupy_backend()
    raise TypeError(f"not a NumPy or CuPy array: {type(array).__name__}")


def on_device(data: Any) -> bool:
    """True for data on a GPU: a CuPy array, the ``cupy`` module, a GPU :class:`Backend`."""
    if isinstance(data, Backend):
        return data.name == "cupy"
    if isinstance(data, ModuleType):
        return data is not np
    return hasattr(data, "__cuda_array_interface__")


def launcher_for(data: Any, launcher: Any = None) -> Any:
    """The one NumPy/CuPy dispatch: the CUDA kernel launcher for ``data``, or None for the NumPy path.

    ``data`` is an array, an array module (``xp``) or a :class:`Backend`. A ``launcher``
    given (the store's, or a host emulation of the kernels in tests) wins; data on a GPU
    gets :func:`carabm.engine.kernels.launch`; host data without one takes the NumPy path.
    Every engine path that has a CUDA twin asks this (see docs/gpu.md, "One dispatch")::

        launch = launcher_for(row, launcher)
        if launch is None:
            ...  # NumPy
        else:
            launch("scatter", "scatter_counts", grid, block, args)
    """
    if launcher is not None:
        return launcher
    if on_device(data):
        from carabm.engine.kernels import launch  # noqa: PLC0415

        return launch
    return None


def available_memory_bytes(backend: Backend) -> int:
    """Memory a run may use on the backend's device (physical RAM or GPU memory)."""
    if backend.is_gpu:
        free, _total = backend.xp.cuda.Device().mem_info
        return int(free)
    try:
        import os  # noqa: PLC0415

        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


def cupy_module() -> ModuleType:
    """The ``cupy`` module, for the kernel loader; a :class:`BackendError` when no GPU is usable."""
    status = cupy_status()
    if not status.usable:
        raise BackendError(f"CUDA kernels need a usable GPU: {status.reason}")
    import cupy  # noqa: PLC0415

    return cupy


def gpu_code_available() -> bool:
    """True when CuPy can run kernels here (used by tests to skip cleanly)."""
    return cupy_status().usable
