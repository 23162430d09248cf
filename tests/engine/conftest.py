"""Shared fixtures of the engine tests: the CUDA kernels emulated on the host.

``emulator`` compiles ``kernels/*.cu`` with the host C++ compiler under a small CUDA
emulation (one std::thread per CUDA thread and a std::barrier for ``__syncthreads`` in
modules that use it; plain loops otherwise; atomics as ``std::atomic_ref``) and returns a
launcher with :func:`carabm.engine.kernels.launch`'s interface that runs them on NumPy
arrays. It checks the kernels' arithmetic and indexing against the NumPy reference; it says
nothing about warp scheduling, the memory model or NVRTC (the ``gpu`` tests cover those).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from carabm.engine import kernels

REPO_KERNELS = Path(__file__).resolve().parents[2] / "kernels"
MODULES = sorted(p.stem for p in REPO_KERNELS.glob("*.cu"))

GXX = shutil.which("g++")

EMULATION = r"""
// Just enough CUDA for carabm's kernels, on the host: blocks run one after another; the
// threads of a block are std::threads meeting at a std::barrier for __syncthreads, so
// __shared__ (static) memory is shared by exactly one block's threads at a time. Modules
// without __syncthreads run their threads one after another. Atomics are std::atomic_ref.
#include <atomic>
#include <barrier>
#include <cmath>
#include <thread>
#include <vector>
struct dim3 { unsigned x = 1, y = 1, z = 1; };
static thread_local dim3 threadIdx;
static dim3 blockIdx, blockDim, gridDim;
static std::barrier<>* block_barrier = nullptr;
static inline void __syncthreads() { block_barrier->arrive_and_wait(); }
static inline float atomicAdd(float* a, float v) { return std::atomic_ref<float>(*a).fetch_add(v); }
static inline int atomicAdd(int* a, int v) { return std::atomic_ref<int>(*a).fetch_add(v); }
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


def emulated_source(module: str) -> str:
    info = kernels.source_info(module)
    threaded = "__syncthreads" in info.source
    wrappers = []
    for name, params in info.signatures.items():
        decl = ", ".join(C_NAMES[p.dtype.name] + ("*" if p.pointer else "") + f" {p.name}" for p in params)
        call = ", ".join(p.name for p in params)
        if threaded:
            body = f"""
        std::barrier<> barrier(threads_per_block);
        block_barrier = &barrier;
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < threads_per_block; ++t)
            threads.emplace_back([=] {{ threadIdx = dim3{{t % bx, (t / bx) % by, t / (bx * by)}}; {name}({call}); }});
        for (auto& thread : threads) thread.join();"""
        else:
            body = f"""
        for (unsigned t = 0; t < threads_per_block; ++t) {{ threadIdx = dim3{{t % bx, (t / bx) % by, t / (bx * by)}}; {name}({call}); }}"""
        wrappers.append(f"""
extern "C" void emulate_{name}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz{", " if decl else ""}{decl}) {{
    gridDim = dim3{{gx, gy, gz}};
    blockDim = dim3{{bx, by, bz}};
    const unsigned threads_per_block = bx * by * bz;
    for (unsigned z = 0; z < gz; ++z) for (unsigned y = 0; y < gy; ++y) for (unsigned x = 0; x < gx; ++x) {{
        blockIdx = dim3{{x, y, z}};{body}
    }}
}}""")
    return EMULATION + info.source + "\n" + "\n".join(wrappers)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """A launcher with :func:`carabm.engine.kernels.launch`'s interface that runs the kernels on the CPU."""
    if GXX is None:
        pytest.skip("g++ not installed")
    folder = tmp_path_factory.mktemp("emulated_kernels")
    libraries = {}
    for module in MODULES:
        source = folder / f"{module}.cpp"
        source.write_text(emulated_source(module))
        library = folder / f"{module}.so"
        # -ffp-contract=off: no fused multiply-add, as the loader's --fmad=false
        command = [GXX, "-std=c++20", "-O1", "-ffp-contract=off", "-fPIC", "-shared", "-pthread", str(source), "-o", str(library)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 and "<barrier>" in result.stderr:
            pytest.skip("the host C++ compiler lacks C++20 <barrier>")
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
        getattr(libraries[module], f"emulate_{kernel}")(*(ctypes.c_uint(d) for d in grid3 + block3), *converted)
        launches.append(kernel)

    launch.launches = launches  # type: ignore[attr-defined]
    return launch


