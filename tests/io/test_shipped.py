"""Shipped configs: run by name, `carabm init`, `carabm config list/schema`, and a real non-editable install."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

from carabm.cli import main
from carabm.errors import ConfigError
from carabm.io.shipped import CONFIGS_DIR, SCHEMA_NAME, config_schema, init_folder, resolve_config, shipped_configs
from carabm.io.yaml_input import yaml_load

ROOT = Path(__file__).parents[2]


def test_the_package_ships_the_repository_configs():
    assert CONFIGS_DIR.resolve() == (ROOT / "configs").resolve()  # one source of truth: carabm/configs -> ../configs
    shipped = shipped_configs()
    assert sorted(shipped) == sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))
    assert shipped["quickstart"].kind == "run" and shipped["sweep_example"].kind == "sweep"


def test_resolve_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config("quickstart") == CONFIGS_DIR / "quickstart.yaml"
    assert resolve_config("quickstart.yaml") == CONFIGS_DIR / "quickstart.yaml"
    (tmp_path / "quickstart.yaml").write_text("run: {seed: 3}\n")
    assert resolve_config("quickstart.yaml") == Path("quickstart.yaml")  # a file here wins over the shipped name
    assert resolve_config("other/quickstart.yaml") == Path("other/quickstart.yaml")  # a path stays a path
    with pytest.raises(ConfigError, match=r"^quickstrat: no such config file, nor a shipped run config; shipped: default, quickstart"):
        resolve_config("quickstrat", kind="run")
    with pytest.raises(ConfigError, match="shipped sweep config; shipped: cohort_axicel, cohort_axicel_anakinra, sweep_example"):
        resolve_config("quickstart", kind="sweep")


def test_cli_unknown_name_is_one_line(capsys):
    assert main(["validate", "quickstrat"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nor a shipped config; shipped: calibration_zuma1, cohort_axicel, cohort_axicel_anakinra, default, quickstart, sweep_example (carabm config list)" in err[0]
    assert main(["validate", "quickstart"]) == 0
    assert f"quickstart (shipped: {CONFIGS_DIR / 'quickstart.yaml'}): valid" in capsys.readouterr().out


def test_init_copies_and_never_overwrites(tmp_path, capsys):
    folder = tmp_path / "mine"
    written = init_folder("quickstart", folder)
    assert sorted(p.name for p in written) == sorted(["quickstart.yaml", "README.md", SCHEMA_NAME])
    text = (folder / "quickstart.yaml").read_text()
    assert text.splitlines()[0] == f"# yaml-language-server: $schema={SCHEMA_NAME}"
    assert yaml.safe_load(text) == yaml.safe_load((CONFIGS_DIR / "quickstart.yaml").read_text())
    readme = (folder / "README.md").read_text()
    assert "carabm run quickstart.yaml --out quickstart.h5" in readme and "carabm report quickstart.h5" in readme
    (folder / "README.md").write_text("my notes\n")
    assert main(["init", "quickstart", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exist; pass --overwrite" in err[0]
    assert (folder / "README.md").read_text() == "my notes\n"  # a failed init leaves every file as it was
    assert main(["init", "quickstart", str(folder), "--overwrite"]) == 0
    assert (folder / "README.md").read_text() == readme


def test_init_of_a_sweep_copies_its_base_and_the_sweep_expands(tmp_path, capsys):
    written = init_folder("sweep_example", tmp_path)
    assert {p.name for p in written} >= {"sweep_example.yaml", "quickstart.yaml", "README.md"}
    assert main(["sweep", str(tmp_path / "sweep_example.yaml"), "--expand", "--out", str(tmp_path / "runs")]) == 0
    assert int(capsys.readouterr().out.strip()) > 1


def test_schema_checks_what_the_config_checks(tmp_path, capsys):
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for item in shipped_configs().values():
        if item.kind == "run":
            data = yaml_load(item.path.read_text())  # YAML 1.2 numbers (1.4e8), as carabm and editors read them
            assert not list(validator.iter_errors(data)), item.name
    assert list(validator.iter_errors({"run": {"seeed": 2}}))  # an unknown key is flagged, as carabm validate does
    assert list(validator.iter_errors({"run": {"dt_min": "six"}}))
    out = tmp_path / "schema.json"
    assert main(["config", "schema", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == schema
    assert main(["config", "schema", "--out", str(out)]) == 2  # not replaced without --overwrite
    assert main(["config", "schema"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1]) == schema


def test_non_editable_install_runs_shipped_configs_from_an_empty_folder(tmp_path):
    """Build a wheel from a copy of the sources, install it (no deps) into a folder, use it from an empty folder."""
    src = tmp_path / "carabm-src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("carabm", "kernels", "configs"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                           capture_output=True, text=True)  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("carabm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "carabm/configs/quickstart.yaml" in names and "carabm/kernels/diffusion_lod.cu" in names
    site = tmp_path / "site"
    installed = subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-2000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}

    def carabm_cli(*args):
        return subprocess.run([sys.executable, "-m", "carabm", *args], capture_output=True, text=True, cwd=empty, env=env)

    where = subprocess.run([sys.executable, "-c", "import carabm; print(carabm.__file__)"], capture_output=True, text=True,
                           cwd=empty, env=env)  # fmt: skip
    assert where.stdout.strip().startswith(str(site)), where.stdout  # the installed copy, not this checkout
    listed = carabm_cli("config", "list")
    assert listed.returncode == 0 and "quickstart" in listed.stdout, listed.stderr
    valid = carabm_cli("validate", "quickstart")
    assert valid.returncode == 0 and "valid" in valid.stdout, valid.stderr
    init = carabm_cli("init", "quickstart", "work")
    assert init.returncode == 0, init.stderr
    assert {p.name for p in (empty / "work").iterdir()} == {"quickstart.yaml", "README.md", SCHEMA_NAME}
