"""Command-line interface: parse arguments, call the library, turn CarabmError into one line.

Exit codes: 0 success, 2 bad input (config, file, backend), 1 other carabm errors.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import carabm
from carabm.errors import CarabmError, ConfigError

log = logging.getLogger("carabm")


def _cmd_run(args: argparse.Namespace) -> int:
    from carabm.io.checkpoint import checkpoint_path, read_checkpoint  # noqa: PLC0415
    from carabm.io.config import load_config, validate_config  # noqa: PLC0415
    from carabm.io.runfile import check_run_file  # noqa: PLC0415
    from carabm.io.shipped import resolve_config  # noqa: PLC0415
    from carabm.io.yaml_input import apply_overrides, yaml_load  # noqa: PLC0415
    from carabm.simulation import check_output, run  # noqa: PLC0415

    overrides = list(args.set or [])
    if args.seed is not None:
        overrides.append(f"run.seed={args.seed}")
    if args.backend is not None:
        overrides.append(f"run.backend={args.backend}")
    if args.config is None and args.resume is None:
        raise ConfigError("give a CONFIG to run, or --resume FILE.h5 to continue a run")
    if args.config is not None:
        path = resolve_config(args.config, kind="run")
        log.debug("config: %s%s", path, f" with {' '.join(overrides)}" if overrides else "")
        config = load_config(path, overrides)
        check_output(args.out or "carabm_run.h5", args.overwrite, inputs=[Path(path)])
    else:  # a resume: the config stored with the run (in its checkpoint, which a kill cannot damage) is the base
        if not checkpoint_path(args.resume).exists():
            check_run_file(args.resume)  # says what is wrong with the file, if anything
        text = read_checkpoint(checkpoint_path(args.resume)).config
        config = validate_config(apply_overrides(yaml_load(text) or {}, overrides), check_memory=False)
    progress = args.progress if args.progress is not None else (False if args.quiet else None)
    summary = run(config, out=args.out, overwrite=args.overwrite, progress=progress, resume=args.resume)
    if args.resume is not None and summary["steps_run"] == 0:
        print(f"carabm: {summary['out']} is already complete ({summary['time_h'] / 24:.1f} days); nothing to run")
        if not args.quiet:
            print(summary["summary"].text())
        return 0
    print(f"carabm: wrote {summary['out']}: {summary['steps_run']} steps ({summary['steps']} in all) in {summary['wall_s']:.1f} s")
    if not args.quiet:
        print(summary["summary"].text())
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from carabm.io.report import report  # noqa: PLC0415
    from carabm.io.summary import run_summary  # noqa: PLC0415

    result = report(args.files, args.out)
    if not args.quiet:
        for path in args.files:
            print(run_summary(path).text(next_steps=len(args.files) == 1, exclude=("report",)), end="\n\n")
    print(result.markdown)
    print(f"\ncarabm: wrote {', '.join(str(p) for p in result.written)}")
    return 0


def _cmd_view(args: argparse.Namespace) -> int:
    from carabm.io.runfile import check_run_file  # noqa: PLC0415

    check_run_file(args.file, need_timeseries=False)
    try:
        from carabm.viewer.app import view  # noqa: PLC0415
    except ImportError as exc:
        raise CarabmError(f"the 3D viewer cannot be loaded ({exc}); pip install 'carabm[viewer]'") from exc
    view(args.file, cytokine=args.cytokine, color_by=args.color_by, camera=args.camera)
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from carabm.viewer.render import parse_size, render  # noqa: PLC0415

    result = render(args.file, args.out, size=parse_size(args.size), fps=args.fps, cytokine=args.cytokine,
                    backend=args.backend, cytokine_mode=args.mode, color_by=args.color_by, camera=args.camera,
                    progress=not args.no_progress, overwrite=args.overwrite)  # fmt: skip
    print(f"carabm: wrote {result.out} — {result.frames} frames with {result.backend}, {result.seconds_per_frame:.2f} s per frame")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from carabm.io.config import load_config  # noqa: PLC0415
    from carabm.io.shipped import config_kind, resolve_config  # noqa: PLC0415

    path = resolve_config(args.config)
    name = args.config if str(path) == str(args.config) else f"{args.config} (shipped: {path})"
    kind = config_kind(path) if path.is_file() else "run"
    if kind != "run" and args.set:
        raise CarabmError(f"--set: changes a run config; {name} is a {kind} file (its overrides: go in the file)")
    if kind == "sweep":  # every member's config, validated as carabm sweep does
        from carabm.hpc.members import load_sweep  # noqa: PLC0415

        print(f"{name}: valid sweep ({len(load_sweep(path))} members)")
        return 0
    if kind == "calibration":  # priors, statistics, and member configs at each prior's ends and middle
        from carabm.hpc.calibration import load_calibration  # noqa: PLC0415

        cal = load_calibration(path)
        print(f"{name}: valid calibration ({len(cal.priors)} fitted quantities, {len(cal.statistics)} statistics, "
              f"cohorts of {cal.n} members)")  # fmt: skip
        return 0
    config = load_config(path, list(args.set or []))
    nz, ny, nx = config.lattice.shape
    print(f"{name}: valid ({nz}x{ny}x{nx} voxels, {config.run.n_steps} steps of {config.run.dt_min:g} min)")
    from carabm.biology.model import capped_speeds  # noqa: PLC0415

    for note in capped_speeds(config):
        print(f"  note: {note}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import platform  # noqa: PLC0415

    import numpy  # noqa: PLC0415

    from carabm.engine.backend import cupy_status  # noqa: PLC0415

    status = cupy_status()
    print(f"carabm {carabm.__version__} (schema {carabm.SCHEMA_VERSION})")
    print(f"python {platform.python_version()} on {platform.platform()}")
    print(f"numpy {numpy.__version__}: available")
    try:
        import numba  # noqa: PLC0415

        print(f"numba {numba.__version__}: available (compiled CPU field solver)")
    except ImportError:
        print("numba: not installed (the NumPy field solver is used)")
    if not status.installed:
        print(f"cupy: not installed ({status.reason}); pip install 'carabm[gpu]' for GPU runs")
    else:
        print(f"cupy {status.version}: {'usable' if status.usable else 'not usable'}")
    if status.usable:
        print(f"gpu: {status.gpu_name}, {status.gpu_memory_bytes / 1024**3:.1f} GiB, CUDA runtime {status.cuda_runtime}")
    else:
        print(f"gpu: none usable ({status.reason})")
    print(f"backend auto -> {'cupy' if status.usable else 'numpy'}")
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from carabm.io.shipped import init_folder  # noqa: PLC0415

    written = init_folder(args.name, args.dir, overwrite=args.overwrite)
    print(f"carabm: wrote {', '.join(str(p) for p in written)}")
    if not args.quiet:
        readme = next(p for p in written if p.name == "README.md")
        print(f"next: {readme} says what to try (edit {written[0].name}, then validate, run, report)")
    return 0


def _cmd_config_list(args: argparse.Namespace) -> int:
    from carabm.io.shipped import CONFIGS_DIR, shipped_configs  # noqa: PLC0415

    shipped = shipped_configs()
    if not shipped:
        raise CarabmError(f"no shipped configs found in {CONFIGS_DIR} (a broken install? reinstall carabm)")
    width = max(len(name) for name in shipped)
    for item in shipped.values():
        print(f"{item.name:<{width}}  {item.kind:<5}  {item.about}")
    if not args.quiet:
        print("\nrun one by name (carabm run quickstart --out q.h5) or copy it to edit (carabm init quickstart DIR)")
    return 0


def _cmd_config_schema(args: argparse.Namespace) -> int:
    from carabm.errors import InputFileError  # noqa: PLC0415
    from carabm.io.shipped import schema_text  # noqa: PLC0415

    text = schema_text()
    if args.out is None:
        sys.stdout.write(text)
        return 0
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise InputFileError(f"{out}: exists; pass --overwrite to replace it, or choose another --out")
    if not out.parent.exists():
        raise InputFileError(f"{out.parent}: output folder does not exist")
    out.write_text(text, encoding="utf-8")
    print(f"carabm: wrote {out}; put '# yaml-language-server: $schema={out}' on the first line of a config")
    return 0


def _add_verbosity(parser: argparse.ArgumentParser, top: bool) -> None:
    """-v/-q on the main parser and on every sub-command (so they work before or after it)."""
    default: dict[str, Any] = {"default": False} if top else {"default": argparse.SUPPRESS}
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", help="also carabm's debug messages, and the traceback of an error", **default)
    group.add_argument("-q", "--quiet", action="store_true", help="only warnings, errors and the result; no progress", **default)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``carabm`` command."""
    parser = argparse.ArgumentParser(prog="carabm", description="Agent-based simulator of CAR-T toxicities (CRS, ICANS).",
                                     epilog="Start with: carabm run quickstart --out q.h5 (a shipped config; carabm config list), "
                                     "then carabm report q.h5. Help on a command: carabm COMMAND -h.")  # fmt: skip
    parser.add_argument("--version", action="version", version=f"carabm {carabm.__version__}")
    _add_verbosity(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a simulation from a YAML config or a shipped one")
    run.add_argument("config", nargs="?",
                     help="YAML run configuration, or the name of a shipped one (carabm config list); optional with --resume")
    run.add_argument("--out", help="output HDF5 file (default carabm_run.h5; with --resume, the resumed file)")
    run.add_argument("--backend", choices=["auto", "numpy", "cupy"], help="array backend (overrides run.backend)")
    run.add_argument("--seed", type=int, help="random seed (overrides run.seed)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (YAML), repeatable")
    run.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    run.add_argument("--resume", metavar="FILE.h5",
                     help="continue a run from its checkpoint (FILE.h5.ckpt); with --set changes, a branch into a new --out")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bar on a terminal, a log line every few percent elsewhere (default: on; off with -q)")
    run.set_defaults(func=_cmd_run)

    rep = sub.add_parser("report", help="summary, table (CSV, Markdown) and plots (PNG) of one or more runs")
    rep.add_argument("files", nargs="+", metavar="FILE.h5", help="run outputs; several are overlaid for comparison")
    rep.add_argument("--out", default="report", help="folder for the table and plots (default ./report)")
    rep.set_defaults(func=_cmd_report)

    view = sub.add_parser("view", help="interactive viewer of a run's snapshots")
    view.add_argument("file", metavar="FILE.h5", help="a run output")
    view.add_argument("--cytokine", default="IL6", help="cytokine field to show (default IL6)")
    view.add_argument("--color-by", choices=["type", "state"], default="type", help="colour cells by type or by state (key c)")
    view.add_argument("--camera", choices=["whole", "bbb"], default="whole", help="camera preset at start (keys w, b)")
    view.set_defaults(func=_cmd_view)

    ren = sub.add_parser("render", help="headless movie (MP4) or PNG frames of a run, one frame per snapshot")
    ren.add_argument("file", metavar="FILE.h5", help="a run output")
    ren.add_argument("--out", required=True, help="movie.mp4, or a folder for PNG frames")
    ren.add_argument("--size", default="960x720", metavar="WxH", help="frame size in pixels (default 960x720)")
    ren.add_argument("--fps", type=float, default=4.0, help="frames per second of the MP4 (default 4)")
    ren.add_argument("--cytokine", default="IL6", help="cytokine field to show (default IL6)")
    ren.add_argument("--mode", choices=["volume", "slices"], default="volume", help="cytokine as a volume or 3 orthogonal slices")
    ren.add_argument("--color-by", choices=["type", "state"], default="type",
                     help="colour cells by type, or by state (resting, activated, exhausted)")
    ren.add_argument("--camera", choices=["whole", "bbb"], default="whole", help="camera preset: whole lattice or BBB close-up")
    ren.add_argument("--backend", choices=["auto", "egl", "osmesa", "matplotlib"], default="auto",
                     help="drawing backend (auto: EGL, then OSMesa, then matplotlib 2D)")
    ren.add_argument("--no-progress", action="store_true", help="no progress bar")
    ren.add_argument("--overwrite", action="store_true", help="replace an existing movie, or the frames in an existing folder")
    ren.set_defaults(func=_cmd_render)

    val = sub.add_parser("validate", help="check a config, sweep or calibration file; exit 2 with one line per problem")
    val.add_argument("config", help="YAML run configuration, sweep or calibration file, or the name of a shipped one")
    val.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (YAML), repeatable")
    val.set_defaults(func=_cmd_validate)

    info = sub.add_parser("info", help="version, backends, GPU")
    info.set_defaults(func=_cmd_info)

    init = sub.add_parser("init", help="copy a shipped config to edit, with a README of what to try next",
                          description="Copy shipped config NAME into DIR (default: here) with README.md and the config's "
                          "JSON Schema (for editors). Existing files are kept unless --overwrite.")  # fmt: skip
    init.add_argument("name", metavar="NAME", help="a shipped config (carabm config list), e.g. quickstart")
    init.add_argument("dir", nargs="?", default=".", metavar="DIR", help="folder to write into (created; default .)")
    init.add_argument("--overwrite", action="store_true", help="replace existing files")
    init.set_defaults(func=_cmd_init)

    cfg = sub.add_parser("config", help="the shipped configs and the config's JSON Schema")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    cfg_list = cfg_sub.add_parser("list", help="the configs shipped with carabm")
    cfg_list.set_defaults(func=_cmd_config_list)
    schema = cfg_sub.add_parser("schema", help="JSON Schema of a run config, for editors (yaml-language-server)")
    schema.add_argument("--out", metavar="FILE.json", help="write it to a file (default: print it)")
    schema.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    schema.set_defaults(func=_cmd_config_schema)

    from carabm.hpc.cli import add_parsers as add_hpc_parsers  # noqa: PLC0415

    add_hpc_parsers(sub)  # sweep, collect, calibrate
    for command in list(sub.choices.values()) + list(cfg_sub.choices.values()):
        _add_verbosity(command, top=False)
    return parser


class _CarabmFormatter(logging.Formatter):
    """``carabm: message``; warnings and errors say so."""

    def format(self, record: logging.LogRecord) -> str:  # noqa: D102
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"carabm: {record.levelname.lower()}: {text}"
        return f"carabm: {text}"


def configure_logging(verbose: bool = False, quiet: bool = False) -> logging.Logger:
    """Give the ``carabm`` logger its own stderr handler (not the root logger's), so only carabm's
    messages show: INFO by default, DEBUG with ``verbose``, WARNING with ``quiet``."""
    from carabm.progress import TqdmAwareHandler  # noqa: PLC0415

    logger = logging.getLogger("carabm")
    for handler in [h for h in logger.handlers if getattr(h, "_carabm_cli", False)]:
        logger.removeHandler(handler)
    handler = TqdmAwareHandler(sys.stderr)
    handler._carabm_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(_CarabmFormatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
    return logger


def _os_error_line(exc: OSError) -> str:
    """One line for a failed file operation: the path, what went wrong, what to do."""
    what = exc.strerror or str(exc) or type(exc).__name__
    where = exc.filename if exc.filename is not None else ""
    hint = {
        PermissionError: "check the permissions of that file or folder, or choose another location",
        FileExistsError: "choose another name, or pass --overwrite where the command has it",
        FileNotFoundError: "check the path",
        IsADirectoryError: "give a file, not a folder",
    }.get(type(exc), "")
    if getattr(exc, "errno", None) == 28 or "No space left" in str(exc):  # ENOSPC (h5py may not set errno)
        hint = "free some disk space (a run can then continue with --resume)"
    text = f"{where}: {what}" if where else what
    return f"{text}; {hint}" if hint else text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``carabm`` command; returns the exit code.

    The one place where exceptions become what a user sees: a :class:`CarabmError` is
    one line per problem and its exit code; a failed file operation (OSError) is one
    line naming the path (exit 2); Ctrl-C exits 130 with how to continue; a closed
    output pipe (``carabm report RUN.h5 | head``) ends quietly; anything else is a bug,
    reported in one line (``-v`` shows the traceback).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose and args.quiet:
        parser.error("-v/--verbose and -q/--quiet exclude each other")
    configure_logging(args.verbose, args.quiet)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    prefix = f"carabm {args.command}: error:"
    try:
        import carabm.biology  # noqa: F401, PLC0415  (registers the built-in model in the catalog; slow, so not for --help)

        return int(args.func(args) or 0)
    except CarabmError as exc:
        if args.verbose:
            traceback.print_exc()
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"{prefix} {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"carabm {args.command}: interrupted{_continue_hint(args)}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our stdout went away (| head): not an error; keep Python from complaining at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"{prefix} {_os_error_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a bug, said in one line
        if args.verbose:
            traceback.print_exc()
        print(f"{prefix} unexpected {type(exc).__name__}: {exc} (a bug in carabm; run again with -v for the traceback "
              "and report it)", file=sys.stderr)  # fmt: skip
        return 1


def _continue_hint(args: argparse.Namespace) -> str:
    """After Ctrl-C: how to continue, where the command can."""
    if args.command != "run":
        return ""
    from carabm.io.checkpoint import checkpoint_path  # noqa: PLC0415

    out = args.resume if args.out is None and args.resume is not None else (args.out or "carabm_run.h5")
    if checkpoint_path(out).exists():
        return f"; continue it with: carabm run --resume {out}"
    return "; it stopped before its first checkpoint, so start it again (with --overwrite)"


if __name__ == "__main__":
    raise SystemExit(main())
