"""Kernel loader (finding sources, #line, signatures, argument checks) and the CUDA sources run on the CPU.

Nothing here needs a GPU. The last part compiles ``kernels/*.cu`` with the host C++
compiler under a small CUDA emulation (a block's threads as fibers meeting at
``__syncthreads``, blocks one after another; see conftest.py) and runs the solver's real launch sequence
(``fields._lod_step_kernels``) through it, checking the kernels' arithmetic and indexing
against the NumPy reference. It says nothing about warp scheduling, the memory model or
NVRTC; ``tests/engine/test_fields_gpu.py`` covers those on a real GPU.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from carabm.engine import kernels
from carabm.engine.blood_pool import BloodPool, blood_sums_kernels, blood_update_kernels
from carabm.engine.fields import FieldSolver, _lod_step_kernels
from carabm.errors import KernelError

REPO_KERNELS = Path(__file__).resolve().parents[2] / "kernels"
MODULES = sorted(p.stem for p in REPO_KERNELS.glob("*.cu"))


# ---------------------------------------------------------------------------------------
# finding sources


def test_installed_kernels_are_found_and_include_every_module() -> None:
    folder = kernels.kernels_dir()
    assert {"diffusion_lod", "blood_exchange"} <= {p.stem for p in folder.glob("*.cu")}
    assert kernels.kernel_path("diffusion_lod").read_text() == (REPO_KERNELS / "diffusion_lod.cu").read_text()


def test_environment_variable_points_elsewhere(tmp_path, monkeypatch) -> None:
    (tmp_path / "mine.cu").write_text('extern "C" __global__ void k(float* a, int n) {}\n')
    monkeypatch.setenv(kernels.KERNELS_DIR_ENV, str(tmp_path))
    assert kernels.kernels_dir() == tmp_path.resolve()
    assert kernels.kernel_path("mine") == (tmp_path / "mine.cu").resolve()
    info = kernels.source_info("mine")
    assert [p.describe() for p in info.signatures["k"]] == ["float* a", "int n"]


def test_environment_variable_naming_no_folder_is_an_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(kernels.KERNELS_DIR_ENV, str(tmp_path / "absent"))
    with pytest.raises(KernelError, match=r"CARABM_KERNELS_DIR=.*absent: not a folder"):
        kernels.kernels_dir()


def test_missing_module_lists_what_is_there(tmp_path, monkeypatch) -> None:
    (tmp_path / "a.cu").write_text("")
    monkeypatch.setenv(kernels.KERNELS_DIR_ENV, str(tmp_path))
    with pytest.raises(KernelError, match=r"kernel module 'b': no .*b\.cu \(available in .*: a\)"):
        kernels.kernel_path("b")


# ---------------------------------------------------------------------------------------
# the #line directive


def test_build_source_prefixes_line_directive_with_the_real_path(tmp_path) -> None:
    path = tmp_path / "x.cu"
    path.write_text("int a;\nint b;\n")
    source = kernels.build_source(path)
    first, rest = source.split("\n", 1)
    assert first == f'#line 1 "{path.resolve()}"'
    assert rest == "int a;\nint b;\n"


def test_build_source_escapes_quotes_and_backslashes(tmp_path) -> None:
    folder = tmp_path / 'we"ird\\dir'
    folder.mkdir()
    path = folder / "x.cu"
    path.write_text("")
    first = kernels.build_source(path).split("\n", 1)[0]
    assert first == '#line 1 "' + str(path.resolve()).replace("\\", "\\\\").replace('"', '\\"') + '"'


NVCC = shutil.which("nvcc")


@pytest.mark.skipif(NVCC is None, reason="nvcc not installed")
@pytest.mark.parametrize("module", MODULES)
def test_every_kernel_source_compiles_with_nvcc_as_built(module, tmp_path) -> None:
    # the exact text the loader hands to NVRTC, compiled to PTX for sm_90 with its options
    built = tmp_path / f"{module}.cu"
    built.write_text(kernels.build_source(REPO_KERNELS / f"{module}.cu"))
    options = [o for o in kernels.COMPILE_OPTIONS if o.startswith("--fmad")]
    result = subprocess.run(
        [NVCC, "-arch=sm_90", "--ptx", *options, "-o", str(tmp_path / "out.ptx"), str(built)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(NVCC is None, reason="nvcc not installed")
def test_compile_errors_name_the_real_file_and_line(tmp_path) -> None:
    real = tmp_path / "broken.cu"
    real.write_text('extern "C" __global__ void k(float* a) {\n    a[0] = 1.0f;\n    undeclared_thing = 2;\n}\n')
    compiled = tmp_path / "elsewhere" / "buffer.cu"
    compiled.parent.mkdir()
    compiled.write_text(kernels.build_source(real))
    result = subprocess.run([NVCC, "-arch=sm_90", "--ptx", "-o", "/dev/null", str(compiled)], capture_output=True, text=True)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if ": error" in line]
    assert errors and all(line.startswith(f"{real.resolve()}(3): error") for line in errors), result.stderr


# ---------------------------------------------------------------------------------------
# signatures and constants


def test_signatures_of_the_shipped_kernels() -> None:
    info = kernels.source_info("diffusion_lod")
    assert set(info.signatures) == {"react_sweep_z", "sweep_y", "sweep_x"}
    z = [p.describe() for p in info.signatures["react_sweep_z"]]
    assert z[:3] == ["float* c", "float* u", "float* g"] and z[-1] == "float dt"
    assert info.constants["TILE"] == 32
    blood = kernels.source_info("blood_exchange").signatures
    assert [p.describe() for p in blood["blood_partial_sums"]][2] == "double* partials"


def test_parse_signatures_ignores_comments_and_device_functions() -> None:
    source = """
    // extern "C" __global__ void commented(float* a) {}
    __device__ float helper(float x) { return x; }
    /* extern "C" __global__ void also_commented(int n) {} */
    extern "C" __global__ void __launch_bounds__(128, 4) real(const float* __restrict__ a,
                                                              int* b, double s) {}
    extern "C" __global__ void none() {}
    """
    signatures = kernels.parse_signatures(source)
    assert set(signatures) == {"real", "none"}
    assert [p.describe() for p in signatures["real"]] == ["float* a", "int* b", "double s"]
    assert signatures["none"] == ()


@pytest.mark.parametrize("param", ["short* a", "float a[]", "half* h", "float", "size_t n", "long n", "unsigned long long"])
def test_unsupported_parameter_types_are_refused(param) -> None:
    with pytest.raises(KernelError, match="unsupported parameter"):
        kernels.parse_signatures(f'extern "C" __global__ void k({param}) {{}}')


def test_parse_constants_reads_integer_defines_only() -> None:
    assert kernels.parse_constants("#define A 32\n#  define B -4 // note\n#define C 1.5\n#define D(x) x\n") == {"A": 32, "B": -4}


# ---------------------------------------------------------------------------------------
# argument checks


SIG = kernels.parse_signatures('extern "C" __global__ void k(float* c, const int* idx, int n, float dt, double s) {}')["k"]


def good_args() -> list:
    return [np.zeros(4, np.float32), np.zeros(2, np.int32), 3, 0.5, 1.0]


def test_good_arguments_pass_with_scalars_as_exact_c_types() -> None:
    checked = kernels.check_args("k", SIG, good_args(), "host")
    assert [type(a) for a in checked[2:]] == [np.int32, np.float32, np.float64]
    assert checked[0] is good_args()[0] or checked[0].dtype == np.float32


@pytest.mark.parametrize(
    ("index", "value", "message"),
    [
        (0, np.zeros(4, np.float64), r"argument c \(float\* c\): expected dtype float32, got float64"),
        (1, np.zeros(2, np.int64), r"argument idx \(int\* idx\): expected dtype int32, got int64"),
        (0, np.zeros((4, 4), np.float32)[:, ::2], r"argument c .*not C-contiguous"),
        (0, np.zeros((4, 4), np.float32).T, r"argument c .*not C-contiguous"),
        (0, np.zeros(0, np.float32), r"argument c .*empty array"),
        (0, 1.0, r"argument c .*expected an array, got float"),
        (2, 2.0, r"argument n \(int n\): expected an integer, got 2.0"),
        (2, 2**31, r"argument n .*does not fit in a 32-bit int"),
        (2, True, r"argument n .*expected a number, got bool"),
        (3, "0.5", r"argument dt .*expected a number, got str"),
        (3, 1e39, r"argument dt .*overflows float32"),
        (4, np.zeros(1), r"argument s .*expected a number, got ndarray"),
    ],
)
def test_bad_arguments_are_refused_by_name(index, value, message) -> None:
    args = good_args()
    args[index] = value
    with pytest.raises(KernelError, match=message):
        kernels.check_args("k", SIG, args, "host")


def test_arrays_are_checked_once_per_fingerprint_and_scalars_every_launch(monkeypatch) -> None:
    calls = []
    check_pointer = kernels._check_pointer
    monkeypatch.setattr(kernels, "_check_pointer", lambda *a: calls.append(a[1].name) or check_pointer(*a))
    sig = kernels.parse_signatures('extern "C" __global__ void once(float* c, const int* idx, int n, float dt) {}')["once"]
    args = good_args()[:4]
    for n in (3, 4, 3):
        checked = kernels.check_args("once", sig, [*args[:2], n, 0.5], "host")
        assert type(checked[2]) is np.int32 and checked[2] == n
    assert calls == ["c", "idx"]  # the arrays' dtype, layout and device: checked on the first launch only
    with pytest.raises(KernelError, match="does not fit in a 32-bit int"):
        kernels.check_args("once", sig, [*args[:2], 2**31, 0.5], "host")  # same fingerprint, bad value
    with pytest.raises(KernelError, match="overflows float32"):
        kernels.check_args("once", sig, [*args[:2], 3, 1e39], "host")
    with pytest.raises(KernelError, match="not C-contiguous"):
        kernels.check_args("once", sig, [np.zeros((4, 4), np.float32).T, *args[1:3], 0.5], "host")
    assert calls == ["c", "idx", "c"]


def test_wrong_argument_count_lists_the_signature() -> None:
    with pytest.raises(KernelError, match=r"expected 5 arguments \(float\* c, int\* idx, int n, float dt, double s\), got 4"):
        kernels.check_args("k", SIG, good_args()[:4], "host")


class DeviceArray:
    """Stands in for a CuPy array: dtype, flags, shape, size and ``device.id``, as CuPy has them."""

    def __init__(self, dtype, device_id: int, contiguous: bool = True) -> None:  # noqa: ANN001
        self.dtype = np.dtype(dtype)
        self.flags = SimpleNamespace(c_contiguous=contiguous)
        self.shape = (4,)
        self.size = 4
        self.device = SimpleNamespace(id=device_id)


def test_array_on_another_device_is_refused() -> None:
    args = good_args()
    args[0], args[1] = DeviceArray(np.float32, 1), DeviceArray(np.int32, 0)
    with pytest.raises(KernelError, match=r"argument c .*lives on device 1, expected the current device 0"):
        kernels.check_args("k", SIG, args, 0)


def test_host_array_for_a_device_kernel_is_refused() -> None:
    args = good_args()
    args[1] = DeviceArray(np.int32, 0)
    with pytest.raises(KernelError, match=r"argument c .*lives on the host \(a NumPy array\), expected the current device 0"):
        kernels.check_args("k", SIG, args, 0)


def test_arrays_on_the_current_device_pass() -> None:
    args = good_args()
    args[0], args[1] = DeviceArray(np.float32, 2), DeviceArray(np.int32, 2)
    kernels.check_args("k", SIG, args, 2)


@pytest.mark.parametrize(
    ("grid", "block", "message"),
    [((1,), (1025,), "exceeds 1024 threads"), ((0,), (32,), "positive sizes"), ((1, 70000), (32,), "exceeds CUDA's limits")],
)
def test_bad_launch_shapes_are_refused(grid, block, message) -> None:
    with pytest.raises(KernelError, match=message):
        kernels.check_launch_shape("k", grid, block)


def test_launch_shapes_are_padded_to_three_dimensions() -> None:
    assert kernels.check_launch_shape("k", (7,), (32, 4)) == ((7, 1, 1), (32, 4, 1))


# ---------------------------------------------------------------------------------------
# the CUDA sources, run on the CPU

# shapes: nx = 37 > TILE exercises the chunked x sweep and a partial last tile; lines not
# a multiple of 32 leave idle threads; size-1 axes skip their sweep.
SHAPES = [(5, 6, 37), (4, 3, 8), (1, 7, 9), (6, 1, 1)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("conductance", ["none", "shared", "per_field"])
@pytest.mark.parametrize("reaction", [False, True])
def test_emulated_kernels_match_numpy_to_the_bit(emulator, shape, conductance, reaction) -> None:
    # The kernels perform the NumPy path's float32 operations in the same order, without
    # fused multiply-adds (-ffp-contract=off here, --fmad=false under NVRTC), so the results
    # must be identical, not merely close. D = 0 for one field checks the skipped solve.
    rng = np.random.default_rng(7)
    diffusion, decay = [120.0, 0.0, 900.0], [1e-4, 3e-3, 0.0]
    g = {
        "none": None,
        "shared": rng.random(shape).astype(np.float32) * (rng.random(shape) > 0.2),
        "per_field": rng.random((3,) + shape).astype(np.float32),
    }[conductance]
    reference = FieldSolver(shape, 20.0, diffusion, decay, conductance=g, cpu_impl="numpy")
    emulated = FieldSolver(shape, 20.0, diffusion, decay, conductance=g, cpu_impl="numpy")
    c0 = (rng.random(reference.field_shape) * 10).astype(np.float32)
    sources = (rng.random(reference.field_shape) * (rng.random(reference.field_shape) > 0.7)).astype(np.float32)
    uptake = (rng.random(reference.field_shape) * 1e-3).astype(np.float32)
    expected, got = c0.copy(), c0.copy()
    for dt in (60.0, 60.0, 7.5):
        args = (sources, uptake) if reaction else (None, None)
        reference.step(expected, dt, *args)
        _lod_step_kernels(emulated, got, dt, *args, emulator)
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(expected, c0)


def test_emulated_kernels_launch_three_sweeps_per_step(emulator) -> None:
    solver = FieldSolver((3, 4, 5), 20.0, [100.0], [0.0], cpu_impl="numpy")
    emulator.launches.clear()
    _lod_step_kernels(solver, solver.zeros() + 1, 60.0, None, None, emulator)
    assert emulator.launches == ["react_sweep_z", "sweep_y", "sweep_x"]


@pytest.mark.parametrize("n_blood", [1, 300, 2000])
def test_emulated_blood_exchange_matches_numpy(emulator, n_blood) -> None:
    # Sums: float64 accumulation of float32 values in another order than NumPy's pairwise
    # sum, so equal to ~n * 1e-16 relative; the voxel update is the same float32 operations.
    rng = np.random.default_rng(3)
    shape = (8, 16, 20)
    solver = FieldSolver(shape, 20.0, [100.0, 50.0], [0.0, 0.0], cpu_impl="numpy")
    mask = np.zeros(np.prod(shape), bool)
    mask[rng.choice(mask.size, n_blood, replace=False)] = True
    pool = BloodPool(solver, mask.reshape(shape), 5000.0, 1e-6, [3600.0, 1800.0], serum_pg_ml=[5.0, 1.0])
    fields = (rng.random(solver.field_shape) * 100).astype(np.float32)
    index = pool.blood_index.astype(np.int32)
    sums = blood_sums_kernels(fields, index, emulator)
    flat = fields.reshape(2, -1)
    np.testing.assert_allclose(sums, flat[:, pool.blood_index].sum(axis=1, dtype=np.float64), rtol=1e-13)

    expected = fields.copy()
    pool.exchange(expected, 60.0)
    add = np.array([0.25, 3.0], np.float32)
    q = np.array([1.5, 1.01], np.float32)
    got = fields.copy()
    blood_update_kernels(got, index, add, q, emulator)
    by_hand = fields.copy().reshape(2, -1)
    by_hand[:, pool.blood_index] = (by_hand[:, pool.blood_index] + add[:, None]) / q[:, None]
    np.testing.assert_array_equal(got.reshape(2, -1), by_hand)
    untouched = ~mask
    np.testing.assert_array_equal(got.reshape(2, -1)[:, untouched], fields.reshape(2, -1)[:, untouched])


BARRIERS = r"""
// a block sum through shared memory, its barrier inside a device function
__device__ void settle() { __syncthreads(); }
extern "C" __global__ void block_sum(const int* in, int* out, int n) {
    __shared__ int partial[64];
    partial[threadIdx.x] = threadIdx.x < n ? in[threadIdx.x] : 0;
    settle();
    if (threadIdx.x == 0) {
        int total = 0;
        for (int i = 0; i < (int)blockDim.x; ++i) total += partial[i];
        out[blockIdx.x] = total;
    }
}
// the bug the emulation must catch: threads past n leave before the barrier the others wait at
extern "C" __global__ void early_exit(const int* in, int* out, int n) {
    __shared__ int partial[64];
    if ((int)threadIdx.x >= n) return;
    partial[threadIdx.x] = in[threadIdx.x];
    __syncthreads();
    out[threadIdx.x] = partial[0];
}
"""


def test_the_emulation_shares_memory_at_barriers_and_reports_threads_that_skip_one(tmp_path, monkeypatch) -> None:
    from tests.engine.conftest import emulated_launcher, syncing_kernels  # noqa: PLC0415

    (tmp_path / "barriers.cu").write_text(BARRIERS)
    monkeypatch.setenv(kernels.KERNELS_DIR_ENV, str(tmp_path))
    assert syncing_kernels(kernels.source_info("barriers").source) == {"block_sum", "early_exit"}
    launch = emulated_launcher(["barriers"], tmp_path)
    values, out = np.arange(1, 41, dtype=np.int32), np.zeros(2, dtype=np.int32)
    launch("barriers", "block_sum", (2,), (64,), (values, out, 40))
    assert out.tolist() == [820, 820]  # every thread's write seen by thread 0 after the barrier, in both blocks
    with pytest.raises(AssertionError, match="early_exit: some threads of a block ended while others waited"):
        launch("barriers", "early_exit", (1,), (64,), (values, np.zeros(64, dtype=np.int32), 40))
