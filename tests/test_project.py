"""The project around the package: metadata in one place, citation, and the README's commands."""

import configparser
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

import carabm
from carabm.cli import build_parser

ROOT = Path(__file__).parents[1]


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_setup_cfg_holds_no_metadata():
    # With a [project] table in pyproject.toml, setuptools ignores (with only a build-log
    # warning) metadata given in setup.cfg: a dependency added there would not be installed.
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    assert not cfg.has_section("metadata"), "project metadata belongs in pyproject.toml [project]"
    misplaced = {"install_requires", "python_requires", "entry_points", "setup_requires"} & set(cfg["options"])
    assert not misplaced, f"setup.cfg [options] {sorted(misplaced)}: put these in pyproject.toml [project]"
    sections = [s for s in cfg.sections() if s.startswith(("options.extras_require", "options.entry_points"))]
    assert not sections, f"setup.cfg {sections}: put these in pyproject.toml [project]"


def test_pyproject_metadata():
    project = _pyproject()["project"]
    assert project["dynamic"] == ["version"]
    assert _pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "carabm.__version__"}
    assert project["scripts"] == {"carabm": "carabm.cli:main"}
    minimum = tuple(int(x) for x in re.fullmatch(r">=(\d+)\.(\d+)", project["requires-python"]).groups())
    versions = [tuple(int(x) for x in c.rsplit(" :: ", 1)[1].split(".")) for c in project["classifiers"]
                if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert versions and min(versions) == minimum, "the Python classifiers start at requires-python"
    assert {"gpu", "viewer", "render", "hpc", "docs", "test"} <= set(project["optional-dependencies"])


def test_py_typed_is_package_data():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    assert "py.typed" in cfg["options.package_data"]["carabm"]
    assert (ROOT / "carabm" / "py.typed").is_file()


def test_citation_and_changelog_name_the_current_version():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    for key in ("cff-version", "message", "title", "version", "date-released", "authors", "license", "repository-code", "abstract",
                "keywords"):
        assert citation.get(key), f"CITATION.cff: {key} is missing"
    assert str(citation["version"]) == carabm.__version__, "CITATION.cff version differs from carabm.__version__"
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    released = re.search(rf"^## \[{re.escape(carabm.__version__)}\] - (\d{{4}}-\d{{2}}-\d{{2}})$", changelog, re.M)
    assert released, f"CHANGELOG.md has no '## [{carabm.__version__}] - DATE' section"
    assert released.group(1) == str(citation["date-released"]), "CITATION.cff date-released differs from the CHANGELOG"


def _shell_commands(markdown: str) -> list[list[str]]:
    """Every command of the ```bash blocks, split into words (comments dropped, && chains split)."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", markdown, re.S | re.M):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                commands.append(words[:cut])
                words = words[cut + 1:]
    return [c for c in commands if c]


README_COMMANDS = _shell_commands((ROOT / "README.md").read_text(encoding="utf-8"))


def _carabm_arguments(words: list[str]) -> list[str] | None:
    """The arguments given to carabm by a command: carabm itself, through mpiexec, or the Docker image."""
    if words[0] == "carabm":
        return words[1:]
    if words[0] in ("mpiexec", "mpirun", "srun") and "carabm" in words:
        return words[words.index("carabm") + 1:]
    if words[:2] == ["docker", "run"] and "carabm" in words and "--entrypoint" not in words:
        return words[words.index("carabm") + 1:]  # the image, then the arguments of its entry point, carabm
    return None


CARABM = [(c, _carabm_arguments(c)) for c in README_COMMANDS if _carabm_arguments(c) is not None]


def test_readme_has_carabm_commands():
    assert len(CARABM) >= 3


@pytest.mark.parametrize(("words", "args"), CARABM, ids=[" ".join(c) for c, _ in CARABM])
def test_readme_carabm_commands_parse(words, args):
    build_parser().parse_args(args)  # argparse exits (SystemExit) on an unknown option or a missing argument
    for word in args:
        shipped = word.removeprefix("/opt/carabm/")  # where the Docker image keeps the repository's files
        if shipped.startswith(("configs/", "scripts/")):
            assert (ROOT / shipped).exists(), f"{' '.join(words)}: {word} does not exist"


SBATCH = [c for c in README_COMMANDS if c[0] == "sbatch"]


def test_readme_has_sbatch_commands():
    assert SBATCH


@pytest.mark.parametrize("words", SBATCH, ids=" ".join)
def test_readme_sbatch_commands_give_the_script_its_arguments(words, tmp_path):
    # Run the batch script as Slurm would (bash, the arguments after the script), with a
    # stand-in `carabm` on PATH that records what the script asked of it.
    script = next(i for i, w in enumerate(words) if w.endswith(".sbatch"))
    fake = tmp_path / "carabm"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$CARABM_ARGS"\n', encoding="utf-8")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", "CARABM_ARGS": str(tmp_path / "args"),
           "SLURM_ARRAY_TASK_ID": "0"}
    done = subprocess.run(["bash", str(ROOT / words[script]), *words[script + 1:]], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, f"{' '.join(words)}: {done.stderr.strip()}"
    called = (tmp_path / "args").read_text(encoding="utf-8").split()
    sweep_file = called[called.index("sweep") + 1]
    assert (ROOT / sweep_file).is_file(), f"{' '.join(words)}: the sweep file {sweep_file} does not exist"


# Modules left out of the API reference on purpose: the command line's plumbing and the
# implementation details behind documented classes (their docstrings still read in the source).
API_INTERNAL = {
    "carabm.cli", "carabm.hpc.cli", "carabm.engine.jit_cache", "carabm.engine.movement_kernels", "carabm.engine.rng_compiled", "carabm.io.crash",
    "carabm.viewer.app", "carabm.viewer.flat", "carabm.viewer.vispy_scene",
}


def test_every_public_module_is_on_an_api_page():
    documented = set(re.findall(r"^::: (carabm[\w.]*)$", "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "api").glob("*.md")),
                                re.M))
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / "carabm").rglob("*.py")
               if not p.name.startswith("_") and "kernels" not in p.parts and "configs" not in p.parts}
    missing = sorted(modules - documented - API_INTERNAL)
    assert not missing, f"add to a page of docs/api/ (::: module) or to API_INTERNAL: {missing}"
    assert not (documented | API_INTERNAL) - modules - {"carabm"}, "docs/api or API_INTERNAL names a module that is gone"
