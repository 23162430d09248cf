"""``carabm calibrate``: fit trait distributions and model parameters to a trial's table with pyabc's ABC-SMC.

One particle is a virtual cohort: the cohort's SWEEP mapping (:mod:`carabm.hpc.calibration`)
is written to ``DIR/runs/HASH/sweep.yaml`` and its members run through the sweep member
runner; the summary statistics are the cohort's incidences and median onset days
(:mod:`carabm.hpc.trial`). pyabc owns the inference (ABC-SMC, its History database
``DIR/abc.db``, resuming with ``ABCSMC.load``) and the parallelism (its multicore sampler
locally, its Dask sampler on a cluster). The outputs (posterior summary, diagnostics,
posterior-mean sweep file) are described in docs/calibration.md.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from multiprocessing import ProcessError
from pathlib import Path
from typing import Any

from carabm.errors import CarabmError, InputFileError
from carabm.hpc.calibration import Calibration, load_calibration
from carabm.hpc.trial import cohort_statistics

log = logging.getLogger("carabm")

DB_NAME = "abc.db"
STATE_JSON = "calibration.json"
POSTERIOR_CSV = "posterior.csv"
DIAGNOSTICS_CSV = "diagnostics.csv"
POSTERIOR_MEAN_YAML = "posterior_mean.yaml"
SUMMARY_MD = "calibration.md"
RUNS = "runs"
COHORT = "cohort"
#: the Slurm logs of the Dask worker jobs that --slurm-jobs starts (inside the calibration folder)
WORKER_LOGS = "logs/dask-workers"
QUANTILES = (0.025, 0.25, 0.5, 0.75, 0.975)


def _pyabc() -> Any:
    try:
        import pyabc  # noqa: PLC0415
    except ImportError:
        raise CarabmError("carabm calibrate needs pyabc: pip install 'carabm[calibrate]'") from None
    return pyabc


#: a particle's members when their run files are removed (``keep_runs: false``): the first and last
#: snapshot only, without agents, and the checkpoint at the end (the summary reads the time series;
#: a killed particle is run again by pyabc); the same numbers, 14-20 % less time (docs/calibration.md)
DISCARDED_RUN_OUTPUT: dict[str, Any] = {"run.snapshot_every_h": 1.0e6, "run.checkpoint_every_h": 1.0e6,
                                        "output.snapshot_agents": False}  # fmt: skip


class CohortModel:
    """pyabc's model: one particle's virtual cohort run by the sweep member runner, its statistics returned.

    Picklable (pyabc sends it to worker processes or Dask workers). Every member's output is
    summarised by :func:`carabm.hpc.collect.collect` into ``DIR/runs/HASH/results.csv``; the
    members' run files are removed afterwards unless ``keep_runs`` is set.
    """

    def __init__(self, calibration: Calibration, out: str | Path, backend: str | None = None, threads: int | None = None):
        self.calibration = calibration
        self.out = str(Path(out).resolve())
        self.backend = backend
        self.threads = threads

    def folder(self, sweep: dict[str, Any]) -> Path:
        """The particle's sweep folder: named by a hash of its sweep mapping (the same particle, the same folder)."""
        text = json.dumps(sweep, sort_keys=True, default=str)
        return Path(self.out) / RUNS / hashlib.sha256(text.encode()).hexdigest()[:16]

    def __call__(self, abc_params: dict[str, float]) -> dict[str, float]:
        """Run the cohort of one particle and return its summary statistics (pyabc's ``sum_stat``)."""
        import yaml  # noqa: PLC0415

        from carabm.hpc.collect import collect  # noqa: PLC0415
        from carabm.hpc.members import expand  # noqa: PLC0415
        from carabm.hpc.runners import run_member  # noqa: PLC0415

        if self.threads:
            _limit_threads(self.threads)
        cal = self.calibration
        spec = cal.sweep(cal.values(abc_params))
        if not cal.keep_runs:  # the run files go once summarised: write only what the summary reads
            for key, value in DISCARDED_RUN_OUTPUT.items():
                spec["overrides"].setdefault(key, value)
        folder = self.folder(spec)
        folder.mkdir(parents=True, exist_ok=True)
        sweep_file = folder / "sweep.yaml"
        sweep_file.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        sweep = expand(spec, cal.folder, sweep_file)
        for member in sweep.members:
            run_member(sweep_file, folder, member.index, self.backend, sweep=sweep)
        rows = [r for r in collect(folder, plots=False).rows if r["status"] == "complete"]
        if len(rows) < len(sweep.members):
            log.warning("%s: %d of %d members did not complete (see NNNN/error.txt)", folder, len(sweep.members) - len(rows),
                        len(sweep.members))  # fmt: skip
        if not cal.keep_runs:
            for member in sweep.members:
                for path in [*(folder / member.name).glob("run.h5*"), folder / member.name / "run.xmf"]:
                    path.unlink(missing_ok=True)  # the run file, its checkpoint and its XDMF sidecar
        duration_day = sweep.members[0].config.run.duration_h / 24.0
        if not rows:  # every member failed: a fault of the setup, not of the particle (pyabc would resample forever)
            errors = sorted(folder.glob("*/error.txt"))
            first = errors[0].read_text(encoding="utf-8", errors="replace").strip().splitlines() if errors else []
            raise CarabmError(f"{folder}: every member of the cohort failed, e.g. {errors[0] if errors else folder}: "
                              f"{first[-1] if first else 'no error recorded'}")  # fmt: skip
        return cohort_statistics(cal.statistics, rows, censor_day=duration_day)


def _limit_threads(threads: int) -> None:
    try:
        import numba  # noqa: PLC0415

        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    except (ImportError, ValueError):
        pass


def _distance(cal: Calibration) -> Any:
    """A weighted Euclidean distance: each statistic divided by its standard error (``fit.scales``)."""
    pyabc = _pyabc()
    return pyabc.PNormDistance(p=2, fixed_weights={name: 1.0 / cal.scales[name] for name in cal.statistics})


def _prior(cal: Calibration) -> Any:
    pyabc = _pyabc()
    return pyabc.Distribution(**{p.abc_name: pyabc.RV(*p.rv_args()) for p in cal.priors})


def make_sampler(workers: int = 1, dask_client: Any = None) -> Any:
    """pyabc's sampler: Dask (a ``distributed.Client``), multicore (``workers`` > 1) or single core."""
    pyabc = _pyabc()
    if dask_client is not None:
        from pyabc.sampler import DaskDistributedSampler  # noqa: PLC0415

        return DaskDistributedSampler(dask_client=dask_client, batch_size=1)
    if workers > 1:
        return pyabc.sampler.MulticoreEvalParallelSampler(n_procs=workers)
    return pyabc.sampler.SingleCoreSampler()


def dask_client(address: str | None = None, slurm_jobs: int | None = None, slurm: dict[str, Any] | None = None,
                log_directory: str | Path | None = None) -> Any:  # fmt: skip
    """A ``distributed.Client``: to a running scheduler (address or scheduler-file), or to a dask-jobqueue SLURMCluster.

    ``slurm`` holds ``SLURMCluster``'s keyword arguments (the file's ``slurm:`` section:
    ``cores``, ``memory``, ``walltime``, ``queue``, ``account``, ``job_extra_directives``, ...);
    ``slurm_jobs`` Slurm jobs of workers are started (``cluster.scale(jobs=N)``). Their Slurm
    logs go to ``log_directory`` unless the section sets its own (dask-jobqueue's default is the
    driver's working folder).
    """
    try:
        from distributed import Client  # noqa: PLC0415
    except ImportError:
        raise CarabmError("--dask/--slurm-jobs need dask.distributed: pip install 'carabm[calibrate]'") from None
    if slurm_jobs:
        try:
            from dask_jobqueue import SLURMCluster  # noqa: PLC0415
        except ImportError:
            raise CarabmError("--slurm-jobs needs dask-jobqueue: pip install 'carabm[calibrate]'") from None
        settings = dict(slurm or {})
        settings.setdefault("cores", 1)
        settings.setdefault("memory", "4GB")
        if log_directory is not None:
            settings.setdefault("log_directory", str(log_directory))
        try:
            cluster = SLURMCluster(**settings)
        except (TypeError, ValueError) as exc:
            raise CarabmError(f"slurm: SLURMCluster refused the settings ({exc})") from None
        cluster.scale(jobs=slurm_jobs)
        return Client(cluster)
    if address is None:
        raise CarabmError("give --dask ADDRESS (tcp://host:8786 or a scheduler file) or --slurm-jobs N")
    if Path(address).is_file():
        return Client(scheduler_file=address)
    return Client(address)


@dataclass
class CalibrationResult:
    """What :func:`calibrate` did: the run id, generations in the History, and the files written."""

    run_id: int
    generations: int
    new_generations: int
    written: list[Path]
    markdown: str


def check_folder(cal: Calibration, out: str | Path) -> dict[str, Any] | None:
    """The saved state of the calibration in ``out`` (``None``: none yet, a new one starts there).

    Refuses, changing nothing, a file in the folder's place, a folder holding a calibration of
    another file and a History without its state: what :func:`calibrate` checks first, and the
    command line before it submits any Slurm job.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputFileError(f"{out}: exists and is not a folder; give a folder for the calibration")
    state = _state(out)
    if state is not None and state.get("fingerprint") != cal.fingerprint():
        raise InputFileError(f"{out}: holds a calibration of another file (trial, cohort, priors, statistics or "
                             "population changed); use a new --out folder")  # fmt: skip
    if state is None and (out / DB_NAME).exists():
        raise InputFileError(f"{out / DB_NAME}: exists without {STATE_JSON}; use a new --out folder")
    return state


def _state(out: Path) -> dict[str, Any] | None:
    path = out / STATE_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{path}: unreadable ({exc}); remove the folder to start again") from None


def calibrate(calibration_file: str | Path, out: str | Path, workers: int = 1, backend: str | None = None,
              dask: Any = None, generations: int | None = None, run_check: bool = True,
              reduced: bool = False, settings: list[str] | tuple[str, ...] = ()) -> CalibrationResult:  # fmt: skip
    """Run (or resume) the ABC-SMC calibration of ``calibration_file`` into ``out``.

    A folder that already holds a calibration of the same file continues its History
    (``ABCSMC.load``) until ``abc.generations`` (or ``generations``) populations exist; a
    folder holding another calibration is refused. ``dask`` is a ``distributed.Client``
    (pyabc's ``DaskDistributedSampler``); otherwise ``workers`` local processes
    (``MulticoreEvalParallelSampler``). After the fit the posterior summary, diagnostics and
    posterior-mean sweep file are written and, when ``check.n`` > 0 and ``run_check``, the
    posterior-mean cohort is run into ``out/cohort`` and collected against the trial.
    ``reduced``: use the file's ``reduced:`` section (the workstation form); ``settings``:
    ``--set KEY=VALUE`` changes to the file (a resume must be given the same).
    """
    cal = load_calibration(calibration_file, reduced=reduced, settings=settings)  # a bad file: one line, before pyabc loads
    pyabc = _pyabc()
    out = Path(out)
    state = check_folder(cal, out)
    out.mkdir(parents=True, exist_ok=True)
    target = generations if generations is not None else cal.abc.generations
    if isinstance(target, bool) or not isinstance(target, int) or target < 1:
        raise CarabmError(f"--generations: expected a whole number >= 1, got {target!r}")
    cores = os.cpu_count() or 1
    threads = max(1, cores // workers) if dask is None else None
    model = CohortModel(cal, out, backend, threads)
    # epsilon: the (weighted) median distance of the previous generation, pyabc's default schedule
    eps = pyabc.MedianEpsilon(initial_epsilon=cal.abc.initial_epsilon if cal.abc.initial_epsilon else "from_sample")
    abc = pyabc.ABCSMC(model, _prior(cal), _distance(cal), population_size=cal.abc.population,
                       sampler=make_sampler(workers, dask), eps=eps)  # fmt: skip
    db = f"sqlite:///{(out / DB_NAME).resolve()}"
    if state is not None:
        history = abc.load(db, int(state["run_id"]))
        done = history.max_t + 1
        log.info("resuming calibration run %d in %s: %d generation(s) done", history.id, out, done)
    else:
        observed = {name: float(cal.trial.outcomes[name]) for name in cal.statistics}
        history = abc.new(db, observed, meta_info={"carabm_fingerprint": cal.fingerprint()})
        (out / STATE_JSON).write_text(json.dumps({"fingerprint": cal.fingerprint(), "run_id": int(history.id)}, indent=1) + "\n",
                                      encoding="utf-8")  # fmt: skip
        done = 0
    if cal.path is not None and Path(cal.path).resolve() != (out / "calibration.yaml").resolve():
        shutil.copyfile(cal.path, out / "calibration.yaml")  # provenance: the file as run
    new = 0
    if done < target:
        walltime = datetime.timedelta(hours=cal.abc.max_walltime_h) if cal.abc.max_walltime_h else None
        try:
            history = abc.run(minimum_epsilon=cal.abc.min_epsilon, max_nr_populations=target - done,
                              min_acceptance_rate=cal.abc.min_acceptance_rate, max_walltime=walltime)  # fmt: skip
        except ProcessError as exc:  # pyabc's multicore sampler: a worker raised (its error is on stderr above)
            raise CarabmError(f"a calibration worker stopped ({exc}): its error is printed above; the members' errors are in "
                              f"{out / RUNS}/*/NNNN/error.txt; rerun the same command to resume") from exc  # fmt: skip
        new = history.max_t + 1 - done
    written = write_outputs(cal, history, out)
    markdown = (out / SUMMARY_MD).read_text(encoding="utf-8")
    if run_check and cal.check_n > 0:
        from carabm.hpc.collect import collect  # noqa: PLC0415
        from carabm.hpc.runners import run_workers  # noqa: PLC0415

        run_workers(out / POSTERIOR_MEAN_YAML, out / COHORT, workers, backend)
        collected = collect(out / COHORT)
        written += collected.written
        markdown += "\n" + collected.markdown
    return CalibrationResult(int(history.id), history.max_t + 1, new, written, markdown)


def posterior_table(cal: Calibration, history: Any) -> list[dict[str, Any]]:
    """Weighted posterior quantiles and mean of each fitted quantity (own units) in the last generation.

    A log-uniform prior's quantity is fitted as log10: its quantiles are transformed back
    (exactly, quantiles commute with monotone maps) and its mean is the weighted geometric mean.
    """
    from pyabc.weighted_statistics import weighted_quantile  # noqa: PLC0415

    frame, weights = history.get_distribution(m=0, t=history.max_t)
    rows = []
    for prior in cal.priors:
        points = frame[prior.abc_name].to_numpy(dtype=float)
        mean = float((points * weights).sum() / weights.sum())
        row: dict[str, Any] = {"name": prior.name, "prior": f"{prior.kind} [{prior.a:g}, {prior.b:g}]",
                               "mean": prior.to_value(mean)}  # fmt: skip
        for q in QUANTILES:
            row[f"q{q:g}"] = prior.to_value(float(weighted_quantile(points, weights, alpha=q)))
        rows.append(row)
    return rows


def diagnostics_table(history: Any) -> list[dict[str, Any]]:
    """One row per generation: epsilon, simulations, accepted particles, acceptance rate, effective sample size."""
    from pyabc.weighted_statistics import effective_sample_size  # noqa: PLC0415

    pops = history.get_all_populations()
    rows = []
    for _, pop in pops.iterrows():
        t = int(pop["t"])
        if t < 0:  # pyabc's calibration sample (the prior draws that set the first epsilon)
            continue
        _, weights = history.get_distribution(m=0, t=t)
        samples, particles = int(pop["samples"]), int(pop["particles"])
        rows.append({"generation": t, "epsilon": float(pop["epsilon"]), "simulations": samples, "particles": particles,
                     "acceptance_rate": particles / samples if samples else math.nan,
                     "ess": float(effective_sample_size(weights)), "end_time": str(pop["population_end_time"])})  # fmt: skip
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["generation"], lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    return path


def posterior_mean_sweep(cal: Calibration, posterior: list[dict[str, Any]]) -> str:
    """The posterior-mean cohort as SWEEP.yaml text (``carabm sweep`` runs it; ``carabm collect`` compares it with the trial)."""
    import yaml  # noqa: PLC0415

    values = {row["name"]: float(row["mean"]) for row in posterior}
    spec = cal.sweep(values, n=cal.check_n or cal.n)
    spec["description"] = f"posterior-mean cohort of the calibration {cal.path or ''} against {cal.trial.name}"
    spec["trial"] = cal.trial_data
    head = ("# Written by carabm calibrate: the cohort at the posterior mean of every fitted quantity (a log-uniform\n"
            "# prior's at its weighted geometric mean). Run it with\n"
            "#   carabm sweep posterior_mean.yaml --out cohort --workers N && carabm collect cohort\n")  # fmt: skip
    return head + yaml.safe_dump(spec, sort_keys=False)


def write_outputs(cal: Calibration, history: Any, out: Path) -> list[Path]:
    """posterior.csv, diagnostics.csv, posterior_mean.yaml and calibration.md from the History."""
    posterior = posterior_table(cal, history)
    diagnostics = diagnostics_table(history)
    written = [_write_csv(out / POSTERIOR_CSV, posterior), _write_csv(out / DIAGNOSTICS_CSV, diagnostics)]
    (out / POSTERIOR_MEAN_YAML).write_text(posterior_mean_sweep(cal, posterior), encoding="utf-8")
    written.append(out / POSTERIOR_MEAN_YAML)
    lines = [f"# Calibration against {cal.trial.name}", "",
             f"pyabc ABC-SMC run {history.id} in {out / DB_NAME}: {history.max_t + 1} generation(s) of "
             f"{cal.abc.population} particles; one particle = a virtual cohort of {cal.n} members.",
             f"Fitted statistics: {', '.join(cal.statistics)} (distance: Euclidean, each divided by its scale: "
             + ", ".join(f"{k} {v:.3g}" for k, v in cal.scales.items()) + ").",
             f"Trial grading: {cal.trial.grading}", "",
             "## Posterior (last generation, weighted)", "",
             "| quantity | prior | mean | 2.5 % | 25 % | median | 75 % | 97.5 % |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in posterior:
        qs = " | ".join(f"{row[f'q{q:g}']:.4g}" for q in QUANTILES)
        lines.append(f"| {row['name']} | {row['prior']} | {row['mean']:.4g} | {qs} |")
    lines += ["", "## Diagnostics", "", "| generation | epsilon | simulations | particles | acceptance | ESS |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for row in diagnostics:
        lines.append(f"| {row['generation']} | {row['epsilon']:.4g} | {row['simulations']} | {row['particles']} | "
                     f"{row['acceptance_rate']:.3f} | {row['ess']:.1f} |")  # fmt: skip
    failed = sorted(p.parent.parent.name for p in (out / RUNS).glob("*/*/error.txt"))
    if failed:
        lines += ["", f"Particles with failed members: {len(set(failed))} (see {out / RUNS}/*/NNNN/error.txt)."]
    lines += ["", f"Posterior-mean cohort: {POSTERIOR_MEAN_YAML} (a sweep file)."]
    (out / SUMMARY_MD).write_text("\n".join(lines) + "\n", encoding="utf-8")
    written.append(out / SUMMARY_MD)
    return written


__all__ = ["calibrate", "check_folder", "CohortModel", "CalibrationResult", "make_sampler", "dask_client", "posterior_table",
           "diagnostics_table", "posterior_mean_sweep", "write_outputs", "DB_NAME", "STATE_JSON", "COHORT"]  # fmt: skip
