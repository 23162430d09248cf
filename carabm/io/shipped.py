"""The configs shipped inside the package (``carabm/configs``, the repository's ``configs/``) and ``carabm init``.

Owns :func:`shipped_configs`, :func:`resolve_config` (a bare name such as ``quickstart``
that is not a file names a shipped config), :func:`init_folder` and :func:`config_schema`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from carabm.errors import ConfigError, InputFileError

#: the packaged configs: a symlink to the repository's configs/ in a checkout, a folder when installed
CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"
#: the JSON Schema file ``carabm init`` writes beside the config, named in its modeline
SCHEMA_NAME = "carabm-config.schema.json"


@dataclass(frozen=True)
class ShippedConfig:
    """One packaged config: its name, file, kind (``run``, ``sweep`` or ``calibration``) and first comment line."""

    name: str
    path: Path
    kind: str
    about: str


def _about(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#") and line.lstrip("# ").strip():
            return line.lstrip("# ").strip()
        if line and not line.startswith("#"):
            break
    return ""


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _kind(text: str) -> str:
    try:
        data = yaml.load(text, Loader=_SAFE_LOADER)  # (the kind only: libyaml's parser, ~7x faster, when present)
    except yaml.YAMLError:
        return "run"
    if isinstance(data, dict) and "trial" in data and "cohort" in data:
        return "calibration"
    return "sweep" if isinstance(data, dict) and ("axes" in data or "base" in data or "extends" in data) else "run"


def config_kind(path: str | Path) -> str:
    """What a YAML file is: ``run``, ``sweep`` or ``calibration`` (by its top-level keys); ``run`` when unreadable."""
    try:
        return _kind(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return "run"


def shipped_configs() -> dict[str, ShippedConfig]:
    """The packaged configs by name (file stem), sorted."""
    out: dict[str, ShippedConfig] = {}
    if not CONFIGS_DIR.is_dir():
        return out
    for path in sorted(CONFIGS_DIR.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        out[path.stem] = ShippedConfig(path.stem, path, _kind(text), _about(text))
    return out


def _is_bare_name(text: str) -> bool:
    return "/" not in text and "\\" not in text and not text.startswith(".")


def resolve_config(config: str | Path, kind: str | None = None) -> Path:
    """``config`` as a path: an existing file as it is; else a bare name (``quickstart`` or
    ``quickstart.yaml``) of a shipped config; else the path unchanged (its reader says it is missing).

    A bare name without ``.yaml`` that names neither raises :class:`ConfigError` listing the
    shipped names (of ``kind``, ``run``, ``sweep`` or ``calibration``, when given).
    """
    path = Path(config)
    text = str(config)
    if path.exists() or not _is_bare_name(text):
        return path
    shipped = shipped_configs()
    name = text[: -len(".yaml")] if text.endswith(".yaml") else text
    if name in shipped and (kind is None or shipped[name].kind == kind):
        return shipped[name].path
    if path.suffix in (".yaml", ".yml"):
        return path
    names = ", ".join(n for n, c in shipped.items() if kind is None or c.kind == kind) or "none"
    raise ConfigError(f"{text}: no such config file, nor a shipped {kind + ' ' if kind else ''}config; shipped: {names} (carabm config list)")


def config_schema() -> dict[str, Any]:
    """The JSON Schema of a run config (pydantic's ``model_json_schema``), for editors."""
    import carabm  # noqa: PLC0415
    from carabm.io.config import schema as config_schema_model  # noqa: PLC0415

    schema = config_schema_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "carabm run config"
    schema["description"] = f"A carabm {carabm.__version__} run configuration (YAML); every key: docs/parameters.md"
    return schema


def schema_text() -> str:
    """:func:`config_schema` as indented JSON text."""
    return json.dumps(config_schema(), indent=2) + "\n"


README_TEXT = """\
# carabm: {name}

`{config}` is a copy of carabm's shipped `{name}` config: edit it, then

```
carabm validate {config}                  # check it; one line per problem
{run_line}
```

What to try next:

- `carabm report {out}` prints the run's summary and writes plots to `report/`.
- `carabm render {out} --out {stem}.mp4` makes a movie; `carabm view {out}` opens the 3D viewer
  (`pip install 'carabm[viewer]'`).
- `carabm run {config} --out b.h5 --set cells.cart.dose=5e7` changes one value without editing the file;
  `--set therapies='[{{drug: tocilizumab, when: "crs_grade >= 2"}}]'` adds a therapy.
- `carabm config list` shows the other shipped configs; `carabm init NAME` copies one.

Editors: the first line of `{config}` points yaml-language-server (VS Code's YAML
extension, Neovim, ...) at `{schema}`, the JSON Schema of the config, so keys are
completed and checked as you type. `carabm config schema --out {schema}` rewrites it
for the installed carabm version.
"""

SWEEP_README_TEXT = """\
# carabm: {name}

`{config}` is a copy of carabm's shipped `{name}` sweep{base_note}. Edit it, then

```
carabm sweep {config} --expand --out {stem}_runs    # write the members' configs, print how many
carabm sweep {config} --out {stem}_runs --workers 2
carabm collect {stem}_runs
```

The format of sweep files: docs/hpc.md. `carabm config list` shows the other shipped configs.
"""


CALIBRATION_README_TEXT = """\
# carabm: {name}

`{config}` is a copy of carabm's shipped `{name}` calibration{base_note}. Edit it, then

```
carabm calibrate {config} --reduced --out {stem}_small --workers 2   # the workstation form
carabm calibrate {config} --out {stem} --workers 8                   # the full form (or --slurm-jobs N)
carabm collect {stem}_small                                          # the fitted cohort next to the trial
```

The format of calibration files: docs/calibration.md (needs pip install 'carabm[calibrate]').
"""


def _modeline(schema: str) -> str:
    return f"# yaml-language-server: $schema={schema}\n"


def init_folder(name: str, folder: str | Path = ".", overwrite: bool = False) -> list[Path]:
    """Copy shipped config ``name`` (and a sweep's base config) into ``folder`` with a README.md and the
    config's JSON Schema; returns the files written. Existing files are kept unless ``overwrite``."""
    shipped = shipped_configs()
    key = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if key not in shipped:
        raise ConfigError(f"{name}: not a shipped config; shipped: {', '.join(shipped) or 'none'}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputFileError(f"{folder}: exists and is not a folder")
    chosen = shipped[key]
    copies = [chosen]
    base_note = ""
    if chosen.kind in ("sweep", "calibration"):
        data = yaml.safe_load(chosen.path.read_text(encoding="utf-8")) or {}
        base = data.get("base") if chosen.kind == "sweep" else (data.get("cohort") or {}).get("base")
        if isinstance(base, str) and Path(base).stem in shipped and shipped[Path(base).stem].path.name == Path(base).name:
            copies.append(shipped[Path(base).stem])
            base_note = f" over `{Path(base).name}` (copied too)"
    files: dict[Path, str] = {}
    for item in copies:
        text = item.path.read_text(encoding="utf-8")
        files[folder / item.path.name] = (_modeline(SCHEMA_NAME) + text) if item.kind == "run" else text
    if any(item.kind == "run" for item in copies):
        files[folder / SCHEMA_NAME] = schema_text()
    config = chosen.path.name
    template = {"sweep": SWEEP_README_TEXT, "calibration": CALIBRATION_README_TEXT}.get(chosen.kind, README_TEXT)
    stem = chosen.path.stem
    run_line = f"carabm run {config} --out {stem}.h5"
    files[folder / "README.md"] = template.format(name=key, config=config, stem=stem, out=f"{stem}.h5", schema=SCHEMA_NAME,
                                                  run_line=run_line, base_note=base_note)  # fmt: skip
    existing = [str(p) for p in files if p.exists()]
    if existing and not overwrite:
        raise InputFileError(f"{', '.join(existing)}: exist{'s' if len(existing) == 1 else ''}; pass --overwrite to replace, or choose another folder")
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return list(files)


__all__ = ["ShippedConfig", "shipped_configs", "resolve_config", "config_kind", "config_schema", "schema_text", "init_folder", "CONFIGS_DIR",
           "SCHEMA_NAME"]  # fmt: skip
