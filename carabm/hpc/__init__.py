"""HPC: parameter sweeps and virtual cohorts (Slurm index, MPI, local workers)."""
