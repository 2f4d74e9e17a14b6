"""Runs whose processes another program starts: torchrun (one command per node) and SLURM (``srun``
starts one task per device). Each process runs the whole ``mlx run``; Lightning's cluster
environment (TorchElasticEnvironment, SLURMEnvironment) joins them into one process group.

Only the process of global rank 0 writes the run record; every process must write into the same
folder, so such a run needs its output folder named on the command line (the default folder
carries the start time, which differs between nodes). Imports nothing heavy.
"""

from __future__ import annotations

import os

from mlx.errors import ConfigError

# where each launcher puts a process's global rank, in the order Lightning reads them
# (lightning_fabric.utilities.rank_zero), so that mlx and Lightning agree on who is rank 0
_RANK_KEYS = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
_WORLD_KEYS = ("WORLD_SIZE", "SLURM_NTASKS")


def global_rank() -> int:
    """This process's global rank as its launcher set it (0 when nothing launched it)."""
    for key in _RANK_KEYS:
        if (value := os.environ.get(key, "")).isdigit():
            return int(value)
    return 0


def external_world_size() -> int:
    """How many processes an outside launcher started for this run (1 when none did)."""
    for key in _WORLD_KEYS:
        if (value := os.environ.get(key, "")).isdigit():
            return int(value)
    return 1


def launched_externally() -> bool:
    """Whether torchrun or SLURM started this run's processes (then none may be spawned)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or external_world_size() > 1


def launcher_name() -> str:
    if "TORCHELASTIC_RUN_ID" in os.environ or "RANK" in os.environ:
        return "torchrun"
    if "SLURM_PROCID" in os.environ:
        return "SLURM"
    return "the launcher"


def check_shared_output(run_dir_overridden: bool) -> None:
    """A run started as several processes by an outside launcher needs one output folder that
    every process names the same way.

    Raises:
        ConfigError: more than one process and ``hydra.run.dir`` left at its dated default.
    """
    world = external_world_size()
    if world > 1 and not run_dir_overridden:
        raise ConfigError(
            f"this run is {world} processes started by {launcher_name()}, and each would make its "
            "own dated output folder (the default hydra.run.dir holds the start time); name one "
            "folder for all of them, e.g. hydra.run.dir=outputs/run/${oc.env:SLURM_JOB_ID} under "
            "SLURM or hydra.run.dir=outputs/run/two_nodes under torchrun."
        )
