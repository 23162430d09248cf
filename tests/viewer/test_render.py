"""Headless rendering of a real small run: PNG frames (size, not blank, cell-type colours, one per snapshot), MP4."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from carabm.cli import main
from carabm.io.hdf5 import Snapshots
from carabm.viewer.render import choose_backend, render
from carabm.viewer.scene import CELL_COLORS

SIZE = (320, 240)


@pytest.fixture(scope="session")
def gl_backend() -> str:
    """The offscreen GL backend here, or a skip when vispy or offscreen GL is missing."""
    pytest.importorskip("vispy")
    pytest.importorskip("OpenGL")
    backend = choose_backend("auto")
    if backend == "matplotlib":
        pytest.skip("no offscreen GL here (EGL and OSMesa both failed); see docs/viewer.md")
    return backend


def _read_png(path: Path) -> np.ndarray:
    import matplotlib.image  # noqa: PLC0415

    image = matplotlib.image.imread(path)
    return (image[..., :3] * 255).round().astype(np.int16) if image.dtype != np.uint8 else image[..., :3].astype(np.int16)


def _has_colour(image: np.ndarray, rgb: tuple[float, float, float], tolerance: int = 40) -> bool:
    target = np.asarray(rgb) * 255
    return bool((np.abs(image - target).max(axis=-1) <= tolerance).sum() >= 3)


def _check_frames(result, run: Path, types_present: list[str]) -> None:
    assert result.frames == len(Snapshots(run)) == 3  # 0, 3, 6 h
    assert len(result.files) == result.frames
    for path in result.files:
        image = _read_png(path)
        assert image.shape == (SIZE[1], SIZE[0], 3)
        assert image.std() > 5, f"{path} looks blank"
    last = _read_png(result.files[-1])
    for name in types_present:
        assert _has_colour(last, CELL_COLORS[name]), f"no {name} colour {CELL_COLORS[name]} in {result.files[-1]}"


def _types_present(run: Path) -> list[str]:
    agents = Snapshots(run)[-1]["agents"]
    counts = np.bincount(agents["type"], minlength=len(CELL_COLORS))
    # a type with a handful of cells can hide behind others in 3D; check those with enough to be seen
    return [name for name, n in zip(CELL_COLORS, counts, strict=True) if n >= 20]


def test_render_pngs_with_gl(tiny_run: Path, gl_backend: str, tmp_path: Path) -> None:
    result = render(tiny_run, tmp_path / "frames", size=SIZE, backend=gl_backend, progress=False)
    assert result.backend == gl_backend
    _check_frames(result, tiny_run, _types_present(tiny_run))


def test_render_slices_with_gl(tiny_run: Path, gl_backend: str, tmp_path: Path) -> None:
    result = render(tiny_run, tmp_path / "slices", size=SIZE, backend=gl_backend, cytokine_mode="slices", progress=False)
    _check_frames(result, tiny_run, [])


def test_render_matplotlib_fallback(tiny_run: Path, tmp_path: Path) -> None:
    result = render(tiny_run, tmp_path / "flat", size=SIZE, backend="matplotlib", progress=False)
    assert result.backend == "matplotlib"
    _check_frames(result, tiny_run, _types_present(tiny_run))


def test_render_mp4(tiny_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("imageio_ffmpeg")
    out = tmp_path / "movie.mp4"
    result = render(tiny_run, out, size=SIZE, backend="matplotlib", progress=False)
    assert result.files == [out]
    assert out.stat().st_size > 1000
    assert out.read_bytes()[4:8] == b"ftyp"  # an MP4 container


def test_render_cli_and_errors(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["render", str(tiny_run), "--out", str(out), "--size", "160x120", "--backend", "matplotlib", "--no-progress"]) == 0
    assert len(list(out.glob("frame_*.png"))) == 3
    assert "3 frames with matplotlib" in capsys.readouterr().out
    assert main(["render", str(tiny_run), "--out", str(out), "--cytokine", "IL99", "--backend", "matplotlib"]) == 2
    assert "no cytokine 'IL99'" in capsys.readouterr().err
    assert main(["render", str(tiny_run), "--out", str(out), "--size", "big"]) == 2
    assert "--size must be WIDTHxHEIGHT" in capsys.readouterr().err
    assert main(["render", str(tmp_path / "missing.h5"), "--out", str(out)]) == 2
