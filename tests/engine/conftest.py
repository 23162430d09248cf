"""Shared fixtures of the engine tests: the CUDA kernels emulated on the host.

``emulator`` compiles ``kernels/*.cu`` with the host C++ compiler under a small CUDA
emulation (the threads of a block as fibers meeting at ``__syncthreads`` in kernels that
use it; plain loops otherwise; atomics as ``std::atomic_ref``) and returns a
launcher with :func:`carabm.engine.kernels.launch`'s interface that runs them on NumPy
arrays. It checks the kernels' arithmetic and indexing against the NumPy reference; it says
nothing about warp scheduling, the memory model or NVRTC (the ``gpu`` tests cover those).
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from carabm.engine import kernels

REPO_KERNELS = Path(__file__).resolve().parents[2] / "kernels"
MODULES = sorted(p.stem for p in REPO_KERNELS.glob("*.cu"))

GXX = shutil.which("g++")

EMULATION = r"""
// Just enough CUDA for carabm's kernels, on the host: blocks run one after another. Kernels
// that call __syncthreads run the threads of a block as fibers (ucontext) on one OS thread:
// the scheduler resumes each fiber in turn until it reaches the barrier (or ends), and starts
// the next round only when all have, so __shared__ (static) memory is shared by exactly one
// block's threads at a time; a round in which some threads end while others wait at a
// barrier is reported (a barrier not reached by every thread is a bug on a GPU). Other
// kernels run their threads one after another. Atomics are std::atomic_ref.
#include <atomic>
#include <cmath>
#include <functional>
#include <ucontext.h>
#include <vector>
struct dim3 { unsigned x = 1, y = 1, z = 1; };
static dim3 threadIdx, blockIdx, blockDim, gridDim;
static ucontext_t scheduler_context;
static std::vector<ucontext_t> fiber_contexts;
static std::vector<std::vector<char>> fiber_stacks;
static std::vector<char> fiber_done;
static std::function<void()> fiber_body;
static unsigned current_fiber = 0;
static inline void __syncthreads() { swapcontext(&fiber_contexts[current_fiber], &scheduler_context); }
static void fiber_entry() { fiber_body(); fiber_done[current_fiber] = 1; }  // returns to uc_link: the scheduler
// Runs one block's threads as fibers; returns 1 if a barrier was not reached by every thread.
static int run_block_as_fibers(unsigned bx, unsigned by, unsigned threads) {
    fiber_contexts.resize(threads);
    fiber_stacks.resize(threads);
    fiber_done.assign(threads, 0);
    for (unsigned t = 0; t < threads; ++t) {
        fiber_stacks[t].resize(1 << 16);
        getcontext(&fiber_contexts[t]);
        fiber_contexts[t].uc_stack.ss_sp = fiber_stacks[t].data();
        fiber_contexts[t].uc_stack.ss_size = fiber_stacks[t].size();
        fiber_contexts[t].uc_link = &scheduler_context;
        makecontext(&fiber_contexts[t], fiber_entry, 0);
    }
    for (unsigned finished = 0; finished < threads;) {
        unsigned ended_now = 0;
        for (unsigned t = 0; t < threads; ++t) {
            if (fiber_done[t]) continue;
            current_fiber = t;
            threadIdx = dim3{t % bx, (t / bx) % by, t / (bx * by)};
            swapcontext(&scheduler_context, &fiber_contexts[t]);
            ended_now += fiber_done[t];
        }
        finished += ended_now;
        if (ended_now != 0 && finished < threads) return 1;  // some ended while others wait at a barrier
    }
    return 0;
}
static inline float atomicAdd(float* a, float v) { return std::atomic_ref<float>(*a).fetch_add(v); }
static inline double atomicAdd(double* a, double v) { return std::atomic_ref<double>(*a).fetch_add(v); }
static inline int atomicAdd(int* a, int v) { return std::atomic_ref<int>(*a).fetch_add(v); }
static inline unsigned long long atomicCAS(unsigned long long* a, unsigned long long compare, unsigned long long v) {
    std::atomic_ref<unsigned long long>(*a).compare_exchange_strong(compare, v);
    return compare;  // the old value, as CUDA's atomicCAS returns
}
static inline unsigned long long atomicMax(unsigned long long* a, unsigned long long v) {
    std::atomic_ref<unsigned long long> r(*a);
    unsigned long long old = r.load();
    while (old < v && !r.compare_exchange_weak(old, v)) {}
    return old;
}
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
"""

C_NAMES = {
    "float32": "float", "float64": "double", "int32": "int", "uint32": "unsigned int", "int64": "long long",
    "uint64": "unsigned long long", "uint8": "unsigned char",
}  # fmt: skip
CTYPES = {
    "float32": ctypes.c_float, "float64": ctypes.c_double, "int32": ctypes.c_int, "uint32": ctypes.c_uint,
    "int64": ctypes.c_longlong, "uint64": ctypes.c_ulonglong, "uint8": ctypes.c_ubyte,
}  # fmt: skip


def function_body(source: str, declaration: re.Match) -> str:
    """The body of the function whose declaration (up to its opening parenthesis) ``declaration`` matched."""
    start = source.index("{", declaration.end())
    depth = 0
    for end in range(start, len(source)):
        depth += {"{": 1, "}": -1}.get(source[end], 0)
        if depth == 0:
            return source[start : end + 1]
    raise ValueError(f"{declaration.group(0)}: unbalanced braces")


def syncing_kernels(source: str) -> set[str]:
    """Kernels whose body calls ``__syncthreads``, directly or through a ``__device__`` function that does."""
    syncing = {
        m.group(1) for m in re.finditer(r"__device__[^;{()]*?\b(\w+)\s*\(", source) if "__syncthreads" in function_body(source, m)
    }
    pattern = re.compile(r"__syncthreads" + "".join(rf"|\b{name}\s*\(" for name in syncing))
    kernels_found = re.finditer(r"__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(", source)
    return {m.group(1) for m in kernels_found if pattern.search(function_body(source, m))}


def emulated_source(module: str) -> str:
    info = kernels.source_info(module)
    syncing = syncing_kernels(info.source)
    wrappers = []
    for name, params in info.signatures.items():
        threaded = name in syncing
        decl = ", ".join(C_NAMES[p.dtype.name] + ("*" if p.pointer else "") + f" {p.name}" for p in params)
        call = ", ".join(p.name for p in params)
        if threaded:
            body = f"""
        fiber_body = [=] {{ {name}({call}); }};
        if (run_block_as_fibers(bx, by, threads_per_block)) return 1;"""
        else:
            body = f"""
        for (unsigned t = 0; t < threads_per_block; ++t) {{ threadIdx = dim3{{t % bx, (t / bx) % by, t / (bx * by)}}; {name}({call}); }}"""
        wrappers.append(f"""
extern "C" int emulate_{name}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz{", " if decl else ""}{decl}) {{
    gridDim = dim3{{gx, gy, gz}};
    blockDim = dim3{{bx, by, bz}};
    const unsigned threads_per_block = bx * by * bz;
    for (unsigned z = 0; z < gz; ++z) for (unsigned y = 0; y < gy; ++y) for (unsigned x = 0; x < gx; ++x) {{
        blockIdx = dim3{{x, y, z}};{body}
    }}
    return 0;
}}""")
    return EMULATION + info.source + "\n" + "\n".join(wrappers)


def emulated_launcher(modules: list[str], folder: Path) -> kernels.Launcher:
    """Compile ``modules`` (found as :func:`kernels.source_info` finds them) under the emulation; their launcher."""
    if GXX is None:
        pytest.skip("g++ not installed")
    libraries = {}
    for module in modules:
        source = folder / f"{module}.cpp"
        source.write_text(emulated_source(module))
        library = folder / f"{module}.so"
        # -ffp-contract=off: no fused multiply-add, as the loader's --fmad=false
        command = [GXX, "-std=c++20", "-O1", "-ffp-contract=off", "-fPIC", "-shared", str(source), "-o", str(library)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 and "atomic_ref" in result.stderr:
            pytest.skip("the host C++ compiler lacks C++20 std::atomic_ref")
        if result.returncode != 0:
            pytest.fail(f"emulated {module} does not compile:\n{result.stderr}")
        libraries[module] = ctypes.CDLL(str(library))
    launches: list[str] = []

    def launch(module, kernel, grid, block, args) -> None:  # noqa: ANN001
        info = kernels.source_info(module)
        params = info.signatures[kernel]
        checked = kernels.check_args(kernel, params, args, "host")
        grid3, block3 = kernels.check_launch_shape(kernel, grid, block)
        converted = [
            ctypes.c_void_p(a.ctypes.data) if p.pointer else CTYPES[p.dtype.name](a.item()) for p, a in zip(params, checked)
        ]
        failed = getattr(libraries[module], f"emulate_{kernel}")(*(ctypes.c_uint(d) for d in grid3 + block3), *converted)
        assert not failed, f"kernel {kernel}: some threads of a block ended while others waited at __syncthreads"
        launches.append(kernel)

    launch.launches = launches  # type: ignore[attr-defined]
    return launch


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    """A launcher with :func:`carabm.engine.kernels.launch`'s interface that runs the kernels on the CPU.

    Compiled once per session (~20 s on the 2-core CI machine); ``launches`` records every
    launch, so a test that inspects it clears it first.
    """
    return emulated_launcher(MODULES, tmp_path_factory.mktemp("emulated_kernels"))
