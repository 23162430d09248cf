"""The CUDA kernel loader: finds ``kernels/*.cu``, compiles each once per process, checks every launch.

Owns finding the sources (package data, or ``$CARABM_KERNELS_DIR``), the ``#line`` prefix
that makes compiler errors name the real file, the kernel signatures read from the sources,
and :func:`launch`, which refuses bad arguments with a :class:`~carabm.errors.KernelError`.

Signatures are parsed from each ``extern "C" __global__ void name(...)`` declaration, so the
``.cu`` file is the single source of truth. Parameter types understood: ``float``,
``double``, ``int``, ``unsigned int``, ``long long``, ``unsigned long long`` and
``unsigned char``, as pointers (with optional ``const`` / ``__restrict__``) or scalars.
Scalars are converted to exactly that C type before launch: CuPy would otherwise pass a
Python ``float`` as a ``double`` and an ``int`` as 64 bits, which a kernel expecting
``float`` / ``int`` would silently misread. ``#include "x.cuh"`` of a file beside the
source is inlined (with ``#line`` directives), so the text compiled, and CuPy's cache key,
cover the headers too. Only the pure-Python parts
(finding files, building the source, parsing, argument checks) run without a GPU.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from carabm.errors import KernelError

#: environment variable naming a folder of ``*.cu`` files to use instead of the installed ones
KERNELS_DIR_ENV = "CARABM_KERNELS_DIR"

#: NVRTC options for every module. ``--fmad=false`` forbids contracting ``a*b + c`` into one
#: fused multiply-add, so each float32 operation rounds exactly as the NumPy reference's
#: separate ufunc calls do (parity to the bit, not only to a tolerance); the kernels are
#: memory-bound, so the extra instructions cost nothing measurable. IEEE division and
#: denormals are NVRTC's defaults (``--prec-div=true``, ``--ftz=false``), as on the CPU.
COMPILE_OPTIONS: tuple[str, ...] = ("--std=c++14", "--fmad=false")

_C_TYPES = {
    "float": np.dtype(np.float32),
    "double": np.dtype(np.float64),
    "int": np.dtype(np.int32),
    "unsigned int": np.dtype(np.uint32),
    "long long": np.dtype(np.int64),
    "unsigned long long": np.dtype(np.uint64),
    "unsigned char": np.dtype(np.uint8),
}
#: the spellings of :data:`_C_TYPES`, for error messages
_ALLOWED = "float, double, int, unsigned int, long long, unsigned long long, unsigned char (scalars or pointers)"
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*$', re.M)
_DECLARATION = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(([^)]*)\)', re.S)
_DEFINE = re.compile(r"^\s*#\s*define\s+(\w+)\s+(-?\d+)\s*(?://.*)?$", re.M)
_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


@dataclass(frozen=True)
class Param:
    """One kernel parameter: its name, whether it is a pointer, and the element / scalar dtype."""

    name: str
    pointer: bool
    dtype: np.dtype

    def describe(self) -> str:
        """The parameter as the C source spells it, e.g. ``float* c`` or ``int nz``."""
        c_name = {v: k for k, v in _C_TYPES.items()}[self.dtype]
        return f"{c_name}{'*' if self.pointer else ''} {self.name}"


# ---------------------------------------------------------------------------------------
# finding and reading sources (no GPU needed)


def _candidate_dirs() -> list[Path]:
    here = Path(__file__).resolve().parent  # carabm/engine
    # 1. carabm/kernels: the installed package data (a symlink to kernels/ in a checkout);
    # 2. the checkout's top-level kernels/, should the symlink be missing (e.g. on Windows).
    return [here.parent / "kernels", here.parent.parent / "kernels"]


def kernels_dir() -> Path:
    """The folder holding the ``*.cu`` sources: ``$CARABM_KERNELS_DIR`` if set, else the installed ones."""
    override = os.environ.get(KERNELS_DIR_ENV)
    if override:
        path = Path(override).expanduser()
        if not path.is_dir():
            raise KernelError(f"{KERNELS_DIR_ENV}={override}: not a folder; point it at a folder of *.cu files or unset it")
        return path.resolve()
    candidates = _candidate_dirs()
    for path in candidates:
        if path.is_dir() and any(path.glob("*.cu")):
            return path.resolve()
    searched = ", ".join(str(p) for p in candidates)
    raise KernelError(
        f"CUDA kernel sources (*.cu) not found (looked in {searched}); reinstall carabm "
        f"or set {KERNELS_DIR_ENV} to the repository's kernels/ folder"
    )


def kernel_path(module: str) -> Path:
    """The source file of kernel module ``module`` (``"diffusion_lod"`` -> ``.../diffusion_lod.cu``)."""
    folder = kernels_dir()
    path = folder / f"{module}.cu"
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in folder.glob("*.cu"))) or "none"
        raise KernelError(f"kernel module {module!r}: no {path} (available in {folder}: {available})")
    return path


def _line_directive(path: Path, line: int) -> str:
    quoted = str(path).replace("\\", "\\\\").replace('"', '\\"')
    return f'#line {line} "{quoted}"'


def build_source(path: Path, _seen: tuple[Path, ...] = ()) -> str:
    """The source text to compile: a ``#line 1 "<real path>"`` directive, then the file.

    The directive makes NVRTC (and nvcc) report errors against the real file and line
    rather than an anonymous buffer; backslashes and quotes in the path are escaped.
    ``#include "name"`` lines naming a file in the same folder are replaced by that file
    (itself built this way) and a directive back to the including file's next line.
    """
    real = Path(path).resolve()
    if real in _seen:
        raise KernelError(f"kernel source {real}: #include cycle ({' -> '.join(p.name for p in (*_seen, real))})")
    text = Path(path).read_text(encoding="utf-8")

    def inline(match: re.Match[str]) -> str:
        header = real.parent / match.group(1)
        if not header.is_file():
            line = text.count("\n", 0, match.start()) + 1
            raise KernelError(f"kernel source {real}:{line}: #include \"{match.group(1)}\": no such file beside it")
        after = text.count("\n", 0, match.start()) + 2
        return build_source(header, (*_seen, real)).rstrip("\n") + "\n" + _line_directive(real, after)

    return _line_directive(real, 1) + "\n" + _INCLUDE.sub(inline, text)


def _parse_param(text: str, kernel: str) -> Param:
    tokens = text.replace("*", " * ").split()
    tokens = [t for t in tokens if t not in ("const", "__restrict__", "__restrict")]
    pointer = "*" in tokens
    tokens = [t for t in tokens if t != "*"]
    c_type = " ".join(tokens[:-1])
    name = tokens[-1] if tokens else ""
    if c_type == "unsigned":
        c_type = "unsigned int"
    if c_type not in _C_TYPES or not name.isidentifier() or name in ("int", "char", "long", "unsigned", "float", "double"):
        raise KernelError(f"kernel {kernel}: unsupported parameter {text.strip()!r} (use {_ALLOWED})")
    return Param(name, pointer, _C_TYPES[c_type])


def parse_signatures(source: str) -> dict[str, tuple[Param, ...]]:
    """Every ``extern "C" __global__`` kernel in ``source`` and its parameters, in order."""
    code = _COMMENT.sub(" ", source)
    signatures: dict[str, tuple[Param, ...]] = {}
    for match in _DECLARATION.finditer(code):
        name, params = match.group(1), match.group(2).strip()
        if name in signatures:
            raise KernelError(f"kernel {name}: declared twice")
        parts = [p for p in params.split(",") if p.strip()] if params and params != "void" else []
        signatures[name] = tuple(_parse_param(p, name) for p in parts)
    return signatures


def parse_constants(source: str) -> dict[str, int]:
    """The integer ``#define NAME value`` constants of a source (launch shapes the host must match)."""
    return {name: int(value) for name, value in _DEFINE.findall(source)}


@dataclass(frozen=True)
class SourceInfo:
    """What the host needs to know of one ``.cu`` file, read without compiling it."""

    path: Path
    source: str
    signatures: dict[str, tuple[Param, ...]]
    constants: dict[str, int]


_SOURCES: dict[Path, SourceInfo] = {}
#: (module, $CARABM_KERNELS_DIR) -> its SourceInfo: a launch must not touch the file system
_BY_NAME: dict[tuple[str, str | None], SourceInfo] = {}


def source_info(module: str) -> SourceInfo:
    """Read, prefix and parse ``<module>.cu`` (cached per module name and kernels folder for the process)."""
    key = (module, os.environ.get(KERNELS_DIR_ENV))
    info = _BY_NAME.get(key)
    if info is None:
        path = kernel_path(module)
        if path not in _SOURCES:
            source = build_source(path)
            _SOURCES[path] = SourceInfo(path, source, parse_signatures(source), parse_constants(source))
        info = _BY_NAME[key] = _SOURCES[path]
    return info


# ---------------------------------------------------------------------------------------
# argument checks (no GPU needed: NumPy arrays and plain objects can be checked)


def _device_of(array: Any) -> int | str | None:
    """The CUDA device id of a CuPy array, ``"host"`` for a NumPy array, ``None`` if unknown."""
    if isinstance(array, np.ndarray):
        return "host"
    device = getattr(array, "device", None)
    device_id = getattr(device, "id", None)
    return int(device_id) if device_id is not None else None


_INT_LIMITS = {dtype: (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)) for dtype in _C_TYPES.values() if dtype.kind in "iu"}
_FLOAT_MAX = {dtype: float(np.finfo(dtype).max) for dtype in _C_TYPES.values() if dtype.kind == "f"}


def _refuse(kernel: str, param: Param, problem: str) -> KernelError:
    return KernelError(f"kernel {kernel}, argument {param.name} ({param.describe()}): {problem}")


def _check_pointer(kernel: str, param: Param, arg: Any, device: int | str) -> Any:
    dtype = getattr(arg, "dtype", None)
    if dtype is None or not hasattr(arg, "flags") or not hasattr(arg, "shape"):
        raise _refuse(kernel, param, f"expected an array, got {type(arg).__name__}")
    if dtype != param.dtype:
        raise _refuse(kernel, param, f"expected dtype {param.dtype.name}, got {np.dtype(dtype).name}")
    if not arg.flags.c_contiguous:
        raise _refuse(kernel, param, "array is not C-contiguous (pass xp.ascontiguousarray(...))")
    on = _device_of(arg)
    if on != device:
        here = "the host (a NumPy array)" if on == "host" else f"device {on}"
        there = "the host" if device == "host" else f"the current device {device}"
        raise _refuse(kernel, param, f"array lives on {here}, expected {there}")
    if arg.size == 0:
        raise _refuse(kernel, param, "empty array (pass a 1-element placeholder for an unused input)")
    return arg


def _check_scalar(kernel: str, param: Param, arg: Any) -> Any:
    if isinstance(arg, (bool, np.bool_)) or not isinstance(arg, (int, float, np.integer, np.floating)):
        raise _refuse(kernel, param, f"expected a number, got {type(arg).__name__}")
    if param.dtype.kind in "iu":
        if not isinstance(arg, (int, np.integer)):
            raise _refuse(kernel, param, f"expected an integer, got {arg!r}")
        low, high = _INT_LIMITS[param.dtype]
        if not low <= int(arg) <= high:
            kind = "an unsigned" if param.dtype.kind == "u" else "a"
            raise _refuse(kernel, param, f"{int(arg)} does not fit in {kind} {param.dtype.itemsize * 8}-bit int")
        return param.dtype.type(arg)
    if abs(float(arg)) > _FLOAT_MAX[param.dtype] and np.isfinite(float(arg)):
        raise _refuse(kernel, param, f"{arg!r} overflows {param.dtype.name}")
    return param.dtype.type(arg)


#: argument fingerprints that passed every check (see :func:`check_args`), bounded
_VERIFIED: set[tuple[Any, ...]] = set()
#: (C type, Python int) -> the int converted to its C type, bounded
_SCALARS: dict[tuple[Any, ...], Any] = {}
_CACHE_LIMIT = 4096


#: id -> parameter tuple, kept alive so that an id in a fingerprint names one signature for good
_SIGNATURE_IDS: dict[int, Sequence[Param]] = {}


def _fingerprint(kernel: str, params: Sequence[Param], args: Sequence[Any], device: int | str) -> tuple[Any, ...] | None:
    """Everything the pointer checks depend on, per argument; ``None`` if an array-like lacks an attribute.

    For an array: its type, dtype, C-contiguity, emptiness and device; for a scalar: its type
    (its value is checked by :func:`_scalar`). Equal fingerprints pass or fail alike. The
    signature enters by id (hashing 30 parameters each launch would cost more than the check).
    """
    token = id(params)
    if _SIGNATURE_IDS.get(token) is not params:
        if len(_SIGNATURE_IDS) >= _CACHE_LIMIT:  # a caller building new tuples: forget ids before reusing any
            _SIGNATURE_IDS.clear()
            _VERIFIED.clear()
        _SIGNATURE_IDS[token] = params
    try:
        return (kernel, device, token, *[
            (type(a), a.dtype, a.flags.c_contiguous, a.size == 0, "host" if type(a) is np.ndarray else _device_of(a))
            if p.pointer
            else type(a)
            for p, a in zip(params, args)
        ])  # fmt: skip
    except AttributeError:
        return None


def _scalar(kernel: str, param: Param, arg: Any) -> Any:
    """:func:`_check_scalar`, its result cached for Python ints (floats: -0.0 == 0.0 as a key)."""
    if type(arg) is not int:
        return _check_scalar(kernel, param, arg)
    key = (param.dtype, arg)
    converted = _SCALARS.get(key)
    if converted is not None:
        return converted
    converted = _check_scalar(kernel, param, arg)
    if len(_SCALARS) >= _CACHE_LIMIT:
        _SCALARS.clear()
    _SCALARS[key] = converted
    return converted


def check_args(kernel: str, params: Sequence[Param], args: Sequence[Any], device: int | str) -> tuple[Any, ...]:
    """Check ``args`` against a kernel's parameters; return them with scalars as exact C types.

    Arrays must have the parameter's dtype, be C-contiguous and live on ``device`` (a CUDA
    device id, or ``"host"`` for NumPy arrays, used when emulating kernels on the CPU).
    Scalars must be of the right kind (an integer for ``int``; a real number for ``float``
    and ``double``) and fit in the C type. Any mismatch is a :class:`KernelError` naming
    the kernel, the parameter and what was wrong.

    Every launch pays for this, so the full check runs once per argument fingerprint (per
    array: type, dtype, contiguity, emptiness, device; per scalar: type) and a launch whose
    fingerprint passed before only converts its scalars, each conversion (with its range
    check) cached per value: ``scripts/bench_launch.py`` measures the difference.
    """
    if len(args) != len(params):
        expected = ", ".join(p.describe() for p in params)
        raise KernelError(f"kernel {kernel}: expected {len(params)} arguments ({expected}), got {len(args)}")
    key = _fingerprint(kernel, params, args, device)
    if key is not None and key in _VERIFIED:
        return tuple(arg if param.pointer else _scalar(kernel, param, arg) for param, arg in zip(params, args))
    checked = tuple(
        _check_pointer(kernel, param, arg, device) if param.pointer else _scalar(kernel, param, arg)
        for param, arg in zip(params, args)
    )
    if key is not None:
        if len(_VERIFIED) >= _CACHE_LIMIT:
            _VERIFIED.clear()
        _VERIFIED.add(key)
    return checked


def _check_shape(kernel: str, what: str, dims: Sequence[int]) -> tuple[int, int, int]:
    dims = tuple(int(d) for d in dims)
    if not 1 <= len(dims) <= 3 or min(dims) < 1:
        raise KernelError(f"kernel {kernel}: {what} must be 1 to 3 positive sizes, got {dims}")
    return dims + (1,) * (3 - len(dims))  # type: ignore[return-value]


def check_launch_shape(
    kernel: str, grid: Sequence[int], block: Sequence[int]
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Check grid and block sizes against CUDA's limits (block <= 1024 threads, grid.y/z <= 65535)."""
    grid3 = _check_shape(kernel, "grid", grid)
    block3 = _check_shape(kernel, "block", block)
    if block3[0] * block3[1] * block3[2] > 1024 or block3[2] > 64:
        raise KernelError(f"kernel {kernel}: block {block3} exceeds 1024 threads (or 64 in z)")
    if grid3[0] > 2**31 - 1 or grid3[1] > 65535 or grid3[2] > 65535:
        raise KernelError(f"kernel {kernel}: grid {grid3} exceeds CUDA's limits")
    return grid3, block3


def array_module(array: Any) -> Any:
    """NumPy for a NumPy array (kernels emulated on the host in tests), else CuPy."""
    from carabm.engine.backend import cupy_module, on_device  # noqa: PLC0415

    if not on_device(array):
        return np

    return cupy_module()


#: a launcher: ``launch(module, kernel, grid, block, args)``; :func:`launch` on a GPU, an emulator in tests
Launcher = Callable[[str, str, Sequence[int], Sequence[int], Sequence[Any]], None]


# ---------------------------------------------------------------------------------------
# compiling and launching (GPU only)

_MODULES: dict[tuple[Path, int], Any] = {}


def load_module(module: str) -> Any:
    """The compiled ``cupy.RawModule`` of ``<module>.cu`` on the current device (compiled once per process).

    CuPy keeps its own on-disk cache of compiled kernels (``$CUPY_CACHE_DIR``, by default
    ``~/.cupy/kernel_cache``), so a later process skips NVRTC too. Every kernel of the file
    is fetched here, so a compile error surfaces at first use with the compiler's log,
    which names the real ``.cu`` file and line thanks to the ``#line`` directive.
    """
    from carabm.engine.backend import cupy_module  # noqa: PLC0415

    cupy = cupy_module()
    info = source_info(module)
    key = (info.path, cupy.cuda.runtime.getDevice())
    if key not in _MODULES:
        try:
            raw = cupy.RawModule(code=info.source, options=COMPILE_OPTIONS)
            for name in info.signatures:
                raw.get_function(name)
        except Exception as exc:  # CompileException, CUDADriverError, ...
            raise KernelError(f"kernel module {module} ({info.path}) failed to compile or load:\n{exc}") from exc
        _MODULES[key] = raw
    return _MODULES[key]


_FUNCTIONS: dict[tuple[Path, str, int], Any] = {}


def launch(module: str, kernel: str, grid: Sequence[int], block: Sequence[int], args: Sequence[Any]) -> None:
    """Launch ``kernel`` of ``<module>.cu`` on the current stream after checking every argument."""
    from carabm.engine.backend import cupy_module  # noqa: PLC0415

    cupy = cupy_module()
    info = source_info(module)
    params = info.signatures.get(kernel)
    if params is None:
        raise KernelError(f"kernel {kernel}: not in {info.path} (has {', '.join(sorted(info.signatures)) or 'none'})")
    device = cupy.cuda.runtime.getDevice()
    checked = check_args(kernel, params, args, device)
    grid3, block3 = check_launch_shape(kernel, grid, block)
    function = _FUNCTIONS.get((info.path, kernel, device))
    if function is None:
        function = _FUNCTIONS[(info.path, kernel, device)] = load_module(module).get_function(kernel)
    function(grid3, block3, checked)
