"""Headless rendering of a real small run: PNG frames (size, not blank, cell-type colours, one per snapshot), MP4."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from carabm.cli import main
from carabm.errors import InputFileError
from carabm.io.runfile import Snapshots
from carabm.viewer.render import choose_backend, render
from carabm.viewer.scene import BBB_BREACHED, BBB_INTACT, CELL_COLORS, COMPARTMENT_COLORS, STATE_COLORS, state_name

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


def _in_scene(image: np.ndarray) -> np.ndarray:
    """The frame without the legend column (right) and the colour bar / scale text (bottom), which repeat the colours."""
    return image[: image.shape[0] - 70, : image.shape[1] - 120]


def _check_outlines(image: np.ndarray) -> None:
    """Compartment outlines drawn in the scene: the blood vessel and CNS outline colours (the tiny run has both)."""
    for name in ("blood", "cns"):
        assert _has_colour(_in_scene(image), COMPARTMENT_COLORS[name], tolerance=45), f"no {name} outline colour"


def _check_colorbar(image: np.ndarray) -> None:
    """The cytokine colour bar at the bottom left: viridis from dark purple (low) to yellow (high)."""
    from vispy.color import get_colormap  # noqa: PLC0415

    from carabm.viewer.vispy_scene import bar_boxes  # noqa: PLC0415

    left, top, width, height = (int(v) for v in bar_boxes(image.shape[1], image.shape[0])["cytokine"])
    row = image[top + height // 2]
    ends = get_colormap("viridis").map(np.array([0.02, 0.98]))[:, :3] * 255
    assert np.abs(row[left + 3] - ends[0]).max() <= 30, row[left + 3]
    assert np.abs(row[left + width - 4] - ends[1]).max() <= 30, row[left + width - 4]


def _bbb_blue(image: np.ndarray) -> np.ndarray:
    """Pixels of intact-BBB blue (BBB_INTACT, translucent over the dark background): blue dominant, green >= red."""
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    assert BBB_INTACT[2] > 1.5 * BBB_INTACT[1] and BBB_INTACT[1] >= BBB_INTACT[0]
    return (b > 90) & (b > 1.5 * g) & (g >= r)


def _states_present(run: Path) -> set[str]:
    agents = Snapshots(run)[-1]["agents"]
    return {state_name(list(CELL_COLORS)[t], s) for t, s in zip(agents["type"], agents["state"], strict=True)}


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
    last = _read_png(result.files[-1])
    _check_outlines(last)
    _check_colorbar(last)


def test_render_state_colours_bbb_camera_with_gl(tiny_run: Path, gl_backend: str, tmp_path: Path) -> None:
    whole = _read_png(render(tiny_run, tmp_path / "whole", size=SIZE, backend=gl_backend, color_by="state", progress=False).files[-1])
    result = render(tiny_run, tmp_path / "bbb", size=SIZE, backend=gl_backend, color_by="state", camera="bbb", progress=False)
    _check_frames(result, tiny_run, [])
    last = _read_png(result.files[-1])
    for state in _states_present(tiny_run):  # every state the cells are in has its colour, seen from afar
        assert _has_colour(_in_scene(whole), STATE_COLORS[state]), f"no {state} colour"
    for name in ("macrophage", "microglia"):  # by state, no cell carries its type colour
        assert not _has_colour(_in_scene(whole), CELL_COLORS[name], tolerance=25), f"{name} type colour in a by-state frame"
    assert _bbb_blue(_in_scene(last)).sum() >= 3
    _check_outlines(last)
    _check_colorbar(last)
    # the close-up sees the BBB larger than the whole-lattice view does
    bbb_pixels = [int(_bbb_blue(_in_scene(im)).sum()) for im in (whole, last)]
    assert bbb_pixels[1] > 1.5 * bbb_pixels[0], bbb_pixels


def test_render_slices_with_gl(tiny_run: Path, gl_backend: str, tmp_path: Path) -> None:
    result = render(tiny_run, tmp_path / "slices", size=SIZE, backend=gl_backend, cytokine_mode="slices", progress=False)
    _check_frames(result, tiny_run, [])


def test_render_matplotlib_fallback(tiny_run: Path, tmp_path: Path) -> None:
    result = render(tiny_run, tmp_path / "flat", size=SIZE, backend="matplotlib", progress=False)
    assert result.backend == "matplotlib"
    _check_frames(result, tiny_run, _types_present(tiny_run))


def test_render_matplotlib_state_bbb(tiny_run: Path, tmp_path: Path) -> None:
    result = render(tiny_run, tmp_path / "flat_state", size=SIZE, backend="matplotlib", color_by="state", camera="bbb", progress=False)
    _check_frames(result, tiny_run, [])
    last = _read_png(result.files[-1])
    assert _has_colour(_in_scene(last), COMPARTMENT_COLORS["cns"], tolerance=45)
    assert _has_colour(_in_scene(last), STATE_COLORS["resting"])


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
    with pytest.raises(SystemExit):
        main(["render", str(tiny_run), "--out", str(out), "--camera", "side"])
    with pytest.raises(InputFileError, match="--color-by"):
        render(tiny_run, out, color_by="age", backend="matplotlib")


def _red(image: np.ndarray) -> int:
    """Pixels of breached-BBB red in the scene part of a frame."""
    return int((np.abs(_in_scene(image) - np.asarray(BBB_BREACHED) * 255).max(axis=-1) <= 60).sum())


def _rings(image: np.ndarray) -> int:
    """White pixels (the rings around cells in the CNS) in the scene part of a frame."""
    return int((_in_scene(image) >= 235).all(axis=-1).sum())


@pytest.mark.parametrize("backend", ["matplotlib", "gl"])
def test_render_shows_a_bbb_breach_in_red_and_rings_cells_in_the_cns(breached_run: Path, tmp_path: Path, backend: str,
                                                                     request: pytest.FixtureRequest) -> None:  # fmt: skip
    if backend == "gl":
        backend = request.getfixturevalue("gl_backend")
    # BBB integrity falls to 0.65; one macrophage in the CNS at the end
    result = render(breached_run, tmp_path / "frames", size=SIZE, backend=backend, camera="bbb", progress=False)
    first, last = (_read_png(result.files[i]) for i in (0, -1))
    assert _red(last) > 3 * _red(first) + 20, (_red(first), _red(last))
    assert _rings(last) > _rings(first), (_rings(first), _rings(last))


def test_render_output_rules(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad --out/--fps: one line, exit 2, before any drawing; existing movies and frames replaced only with --overwrite."""
    base = ["render", str(tiny_run), "--size", "160x120", "--backend", "matplotlib", "--no-progress"]
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    for args, expected in (
        (["--out", str(tmp_path / "m.mp4"), "--fps", "nan"], "--fps must be a number of frames per second above 0"),
        (["--out", str(tmp_path / "m.mp4"), "--fps", "0"], "--fps must be a number"),
        (["--out", str(tmp_path / "m.mp4"), "--fps", "-1"], "--fps must be a number"),
        (["--out", str(tmp_path / "movie.gif")], "unknown movie format '.gif'; allowed: a .mp4 file, or a folder"),
        (["--out", str(existing)], "is a file; --out is a movie (.mp4) or a folder for PNG frames"),
    ):
        capsys.readouterr()
        assert main(base + args) == 2, args
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert existing.read_text() == "keep me" and not (tmp_path / "movie.gif").exists()

    frames = tmp_path / "frames"
    assert main(base + ["--out", str(frames)]) == 0
    (frames / "frame_00099.png").write_bytes(b"an older, longer render")
    before = {p.name: p.read_bytes() for p in frames.iterdir()}
    assert main(base + ["--out", str(frames)]) == 2
    assert "holds frames already; pass --overwrite" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in frames.iterdir()} == before
    assert main(base + ["--out", str(frames), "--overwrite"]) == 0
    assert sorted(p.name for p in frames.iterdir()) == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]


def test_render_mp4_is_replaced_only_with_overwrite(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("imageio_ffmpeg")
    movie = tmp_path / "movie.mp4"
    movie.write_bytes(b"an old movie")
    base = ["render", str(tiny_run), "--out", str(movie), "--size", "160x120", "--backend", "matplotlib", "--no-progress"]
    assert main(base) == 2 and "exists; pass --overwrite" in capsys.readouterr().err
    assert movie.read_bytes() == b"an old movie"
    assert main(base + ["--overwrite"]) == 0
    assert movie.read_bytes()[4:8] == b"ftyp" and sorted(p.name for p in tmp_path.iterdir()) == ["movie.mp4"]
