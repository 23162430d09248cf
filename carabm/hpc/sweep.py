"""Sweeps and virtual cohorts: expand a SWEEP.yaml into members, run them, skip or resume.

A sweep file names a base config, overrides applied to every member and ``axes`` that
vary keys (``list``, ``grid``, ``latin_hypercube``, ``cohort``); several axes combine as
a cartesian product in the order written. A ``sobol`` or ``morris`` axis (a SALib
sensitivity design) must be the only axis; its design is kept in ``DIR/design.json`` so
that ``carabm collect`` can compute the sensitivity indices. The format is documented in
docs/hpc.md.

This module is the public face of :mod:`carabm.hpc`; the work is split by concern:

- :mod:`carabm.hpc.designs` -- axes: designs and samplers
- :mod:`carabm.hpc.derived` -- ``derived:`` expressions over a member's config
- :mod:`carabm.hpc.members` -- expansion into validated members (``expand``, ``load_sweep``)
- :mod:`carabm.hpc.folder` -- the sweep folder (``members.csv``, configs, output status)
- :mod:`carabm.hpc.runners` -- running members: one index, local workers, MPI
"""

from __future__ import annotations

from carabm.hpc.derived import evaluate
from carabm.hpc.designs import AXIS_KINDS, DESIGN_KINDS, DISTRIBUTIONS, sample_distribution
from carabm.hpc.folder import DESIGN_JSON, MEMBERS_CSV, OUTPUT_NAME, members_csv, output_status, prepare, yaml_dump_flow
from carabm.hpc.members import SWEEP_KEYS, Member, Sweep, expand, load_sweep, member_seed
from carabm.hpc.runners import (
    TAG_READY,
    TAG_WORK,
    MemberResult,
    _report,
    run_member,
    run_mpi,
    run_workers,
    slurm_index,
    summary_line,
)

__all__ = ["Member", "Sweep", "MemberResult", "expand", "load_sweep", "prepare", "run_member", "run_workers", "run_mpi",
           "member_seed", "sample_distribution", "evaluate", "output_status", "slurm_index", "summary_line", "members_csv",
           "AXIS_KINDS", "DESIGN_KINDS", "DISTRIBUTIONS", "DESIGN_JSON", "MEMBERS_CSV", "OUTPUT_NAME", "SWEEP_KEYS",
           "TAG_READY", "TAG_WORK", "yaml_dump_flow", "_report"]  # fmt: skip
