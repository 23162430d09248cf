"""Headless rendering of a run, one frame per snapshot, to an MP4 or a folder of PNGs.

Owns the choice of drawing backend: vispy on EGL (surfaceless Mesa), vispy on OSMesa,
else a matplotlib 2D view (a slice and projected cells), so ``carabm render`` always
produces frames and says which backend drew them.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from carabm.errors import CarabmError, InputFileError
from carabm.viewer.scene import CAMERA_PRESETS, COLOR_BY, RunScene

log = logging.getLogger("carabm")

#: drawing backends in the order ``auto`` tries them
BACKENDS = ("egl", "osmesa", "matplotlib")
#: where OSMesa usually lives on Debian/Ubuntu
OSMESA_CANDIDATES = ("/usr/lib/x86_64-linux-gnu/libOSMesa.so.8", "/usr/lib/aarch64-linux-gnu/libOSMesa.so.8", "/usr/lib/libOSMesa.so.8")
#: seconds a backend probe may take before it counts as failed
PROBE_TIMEOUT_S = 60


@dataclass
class RenderResult:
    """What :func:`render` wrote: ``out`` (MP4 file or PNG folder), ``files``, the backend used, timing."""

    out: Path
    files: list[Path]
    backend: str
    frames: int
    seconds_per_frame: float


def gl_environment(backend: str) -> dict[str, str]:
    """Environment variables a GL ``backend`` needs (set before vispy/PyOpenGL load GL)."""
    if backend == "egl":
        return {"EGL_PLATFORM": os.environ.get("EGL_PLATFORM", "surfaceless")}
    if backend == "osmesa":
        env = {"PYOPENGL_PLATFORM": "osmesa"}
        library = os.environ.get("OSMESA_LIBRARY") or next((p for p in OSMESA_CANDIDATES if Path(p).exists()), "")
        if library:
            env["OSMESA_LIBRARY"] = library
        return env
    return {}


_PROBE = """
import vispy, numpy as np
vispy.use(app={app!r})
from vispy import scene
canvas = scene.SceneCanvas(size=(32, 32), show=False)
view = canvas.central_widget.add_view()
scene.visuals.Markers(parent=view.scene).set_data(np.zeros((1, 3), np.float32))
image = canvas.render()
assert image.shape[:2] == (32, 32), image.shape
"""


def probe_backend(backend: str) -> tuple[bool, str]:
    """Whether vispy can draw offscreen with ``backend`` (``egl`` or ``osmesa``), tried in a child process.

    A child process, because a failed GL start can leave the GL libraries loaded for the
    wrong platform; the probe costs about a second.
    """
    env = {**os.environ, **gl_environment(backend)}
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE.format(app=backend)], env=env, capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return False, f"timed out after {PROBE_TIMEOUT_S} s"
    if done.returncode == 0:
        return True, "ok"
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return False, lines[-1] if lines else f"exit {done.returncode}"


def choose_backend(requested: str = "auto") -> str:
    """The drawing backend to use: ``requested`` if not ``auto``, else the first of :data:`BACKENDS` that works."""
    if requested not in (*BACKENDS, "auto"):
        raise CarabmError(f"render backend must be auto, {', '.join(BACKENDS)}; got {requested!r}")
    if requested == "matplotlib":
        return requested
    candidates = BACKENDS[:-1] if requested == "auto" else (requested,)
    try:
        import vispy  # noqa: F401, PLC0415
    except ImportError:
        if requested != "auto":
            raise CarabmError("vispy is not installed; pip install 'carabm[viewer]' (or use --backend matplotlib)") from None
        log.info("render backend: matplotlib 2D (vispy not installed; pip install 'carabm[viewer]' for 3D)")
        return "matplotlib"
    reasons = []
    for backend in candidates:
        ok, why = probe_backend(backend)
        if ok:
            return backend
        reasons.append(f"{backend}: {why}")
    if requested != "auto":
        raise CarabmError(f"render backend {requested} does not work here ({reasons[0]}); see docs/viewer.md for the packages it needs")
    log.info("render backend: matplotlib 2D fallback (no offscreen GL: %s)", "; ".join(reasons))
    return "matplotlib"


# ---------------------------------------------------------------------------- frame sources
def _vispy_frames(run: RunScene, size: tuple[int, int], backend: str, cytokine_mode: str, color_by: str = "type",
                  camera: str = "whole") -> Iterator[np.ndarray]:  # fmt: skip
    os.environ.update(gl_environment(backend))
    logging.getLogger("OpenGL").setLevel(logging.WARNING)  # PyOpenGL logs a missing accelerate module at INFO
    import vispy  # noqa: PLC0415

    vispy.use(app=backend)  # the osmesa app picks its own gl backend
    from vispy import scene  # noqa: PLC0415

    from carabm.viewer.vispy_scene import VispyScene  # noqa: PLC0415

    canvas = scene.SceneCanvas(size=size, show=False, bgcolor=(0.05, 0.05, 0.08, 1.0))
    try:
        drawn = VispyScene(canvas, run, cytokine_mode=cytokine_mode, color_by=color_by, camera=camera)
        for i in range(len(run)):
            drawn.show_frame(run.frame(i))
            yield np.ascontiguousarray(canvas.render(alpha=False)[..., :3])
    finally:
        canvas.close()


def _matplotlib_frames(run: RunScene, size: tuple[int, int], color_by: str = "type", camera: str = "whole") -> Iterator[np.ndarray]:
    from carabm.viewer.flat import draw_frame  # noqa: PLC0415

    for i in range(len(run)):
        yield draw_frame(run, run.frame(i), size, color_by=color_by, camera=camera)


# ---------------------------------------------------------------------------- writers
def _open_mp4(path: Path, fps: float) -> Callable[..., None] | None:
    try:
        import imageio.v2 as imageio  # noqa: PLC0415
        import imageio_ffmpeg  # noqa: F401, PLC0415
    except ImportError:
        return None
    return imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=1, ffmpeg_log_level="error")


def _write_png(path: Path, image: np.ndarray) -> None:
    try:
        import imageio.v2 as imageio  # noqa: PLC0415

        imageio.imwrite(path, image)
    except ImportError:
        import matplotlib.image  # noqa: PLC0415

        matplotlib.image.imsave(path, image)


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> (width, height) in pixels; both even (video encoders need it) and >= 64."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise InputFileError(f"--size must be WIDTHxHEIGHT in pixels, like 960x720; got {text!r}") from None
    if width < 64 or height < 64 or width > 8192 or height > 8192:
        raise InputFileError(f"--size must be between 64x64 and 8192x8192 pixels; got {text!r}")
    return width - width % 2, height - height % 2


#: frames per second an MP4 may have
MAX_FPS = 240.0


def check_output(out: str | Path, fps: float, overwrite: bool) -> None:
    """Refuse ``--out``/``--fps`` before any work: one line naming what is wrong and what is allowed."""
    out = Path(out)
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise InputFileError(f"--fps must be a number of frames per second above 0 and at most {MAX_FPS:g}; got {fps!r}")
    if out.suffix.lower() == ".mp4":
        if out.is_dir():
            raise InputFileError(f"{out}: is a folder; name the movie something else, or drop .mp4 to write PNG frames into a folder")
        if out.exists() and not overwrite:
            raise InputFileError(f"{out}: exists; pass --overwrite to replace it, or choose another --out")
        folder = out.parent
        while not folder.exists():
            folder = folder.parent
    else:
        if out.exists() and not out.is_dir():
            raise InputFileError(f"{out}: is a file; --out is a movie (.mp4) or a folder for PNG frames")
        if out.suffix and not out.exists():
            raise InputFileError(f"{out}: unknown movie format {out.suffix!r}; allowed: a .mp4 file, or a folder (no suffix) for PNG frames")
        if out.is_dir() and any(out.glob("frame_*.png")) and not overwrite:
            raise InputFileError(f"{out}: holds frames already; pass --overwrite to replace them, or choose another --out")
        folder = out if out.exists() else out.parent
        while not folder.exists():
            folder = folder.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputFileError(f"{folder}: not writable; choose another --out")


def render(path: str | Path, out: str | Path, *, size: tuple[int, int] = (960, 720), fps: float = 4.0, cytokine: str = "IL6",
           backend: str = "auto", cytokine_mode: str = "volume", color_by: str = "type", camera: str = "whole",
           progress: bool = True, overwrite: bool = False) -> RenderResult:  # fmt: skip
    """Render every snapshot of the run ``path`` to ``out``: an ``.mp4`` file, else a folder of PNGs.

    ``backend`` is ``auto`` (EGL, then OSMesa, then matplotlib 2D), or one of them by name;
    ``cytokine_mode`` is ``volume`` or ``slices`` (3D backends); ``color_by`` colours the cells
    by ``type`` or agent ``state``; ``camera`` is the preset ``whole`` or ``bbb``. Returns a
    :class:`RenderResult`.
    """
    if color_by not in COLOR_BY:
        raise InputFileError(f"--color-by must be one of {', '.join(COLOR_BY)}; got {color_by!r}")
    if camera not in CAMERA_PRESETS:
        raise InputFileError(f"--camera must be one of {', '.join(CAMERA_PRESETS)}; got {camera!r}")
    run = RunScene(path, cytokine=cytokine)
    check_output(out, fps, overwrite)  # (before the slow part: probing GL, drawing)
    out = Path(out)
    chosen = choose_backend(backend)
    log.info("render backend: %s; %d frames of %dx%d px, %s", {"egl": "vispy on EGL (offscreen)", "osmesa": "vispy on OSMesa",
             "matplotlib": "matplotlib 2D"}[chosen], len(run), size[0], size[1], cytokine)  # fmt: skip
    if chosen == "matplotlib":
        frames = _matplotlib_frames(run, size, color_by, camera)
    else:
        frames = _vispy_frames(run, size, chosen, cytokine_mode, color_by, camera)
    as_movie = out.suffix.lower() == ".mp4"
    writer = None
    final = out
    if as_movie:  # written under a temporary name, renamed when complete: a failed render leaves an old movie as it was
        out.parent.mkdir(parents=True, exist_ok=True)
        out = out.with_name(out.stem + ".partial.mp4")
        writer = _open_mp4(out, fps)
        if writer is None:
            out = final = final.with_suffix("")
            log.info("imageio-ffmpeg not installed: writing PNGs to %s/ instead of an MP4", out)
            as_movie = False
    if not as_movie:
        out.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm  # noqa: PLC0415

    files: list[Path] = []
    start = time.perf_counter()
    try:
        for i, image in enumerate(tqdm(frames, total=len(run), desc="render", unit="frame", disable=not progress)):
            if writer is not None:
                writer.append_data(image)
            else:
                name = out / f"frame_{i:05d}.png"
                _write_png(name, image)
                files.append(name)
    except BaseException:
        if writer is not None:
            writer.close()
            out.unlink(missing_ok=True)
        raise
    if writer is not None:
        writer.close()
        os.replace(out, final)
        out = final
        files = [out]
    else:  # frames of an earlier, longer render (replaced with --overwrite) would mix with these
        for stale in out.glob("frame_*.png"):
            if stale not in files:
                stale.unlink()
    elapsed = time.perf_counter() - start
    return RenderResult(out=out, files=files, backend=chosen, frames=len(run), seconds_per_frame=elapsed / max(len(run), 1))
