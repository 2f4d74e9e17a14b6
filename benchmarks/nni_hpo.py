"""NNI 3.0's own HPO, run the way its users run it: an ``nni.experiment.Experiment('local')``
with a built-in tuner, one trial process at a time. Benchmarks compare mlx's sweep with it.

    from benchmarks.nni_hpo import run_nni_experiment
    result = run_nni_experiment(
        3,
        {"lr": {"_type": "loguniform", "_value": [1e-3, 0.3]},
         "hidden": {"_type": "choice", "_value": [16, 32, 64]}},
        f"{sys.executable} nni_trial.py",
        Path("benchmarks"),
        port=8089,
    )

The experiment's working folder (logs, database, checkpoint) is a temporary folder, removed at the
end, and the experiment is taken out of NNI's registry (``~/nni-experiments/.experiment``, which
NNI creates if need be).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Literal

_FINISHED = ("DONE", "STOPPED", "ERROR")


def run_nni_experiment(
    n_trials: int,
    search_space: dict[str, Any],
    trial_command: str,
    trial_code_dir: Path,
    port: int,
    tuner: Literal["TPE", "Random"] = "TPE",
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Run an NNI experiment to its end and return what it found.

    Args:
        n_trials: trials to run (``max_trial_number``), one at a time.
        search_space: NNI's search-space JSON.
        trial_command: the command NNI runs for each trial, in ``trial_code_dir``
            (e.g. ``f"{sys.executable} nni_trial.py"``); it must report a final result.
        trial_code_dir: the folder the trial command runs in.
        port: the port of NNI's manager and web server.
        tuner: NNI's built-in tuner, maximizing the reported result.
        timeout_s: give up waiting after this many seconds.

    Returns:
        ``status`` (NNI's final status), ``wall_s`` (from creating the experiment until every
        trial had ended), ``start_s`` (until NNI's manager was up), ``stop_s`` (stopping it), and
        ``trials``: one ``{"trial_job_id", "parameter", "value"}`` per trial with a final result.

    Raises:
        TimeoutError: the experiment did not end within ``timeout_s``.
    """
    from nni.experiment import Experiment
    from nni.tools.nnictl.config_utils import Experiments

    from mlx.sweep.nni_adapter import fix_nni_registry_lock

    fix_nni_registry_lock()  # with filelock >= 3.12 NNI would wait forever on its registry
    with tempfile.TemporaryDirectory(prefix="mlx-nni-", ignore_cleanup_errors=True) as work:
        began = time.perf_counter()
        experiment = Experiment("local")
        config = experiment.config
        config.experiment_name = "mlx-benchmark"
        config.experiment_working_directory = work
        config.trial_command = trial_command
        config.trial_code_directory = str(trial_code_dir)
        config.search_space = search_space
        config.tuner.name = tuner
        config.tuner.class_args = {"optimize_mode": "maximize"}
        config.max_trial_number = n_trials
        config.trial_concurrency = 1
        try:
            experiment.start(port)
            started = time.perf_counter()
            status = _wait(experiment, began + timeout_s)
            ended = time.perf_counter()
            trials = [
                {"trial_job_id": t.trialJobId, "parameter": t.parameter, "value": t.value}
                for t in experiment.export_data()
            ]
        finally:
            stopping = time.perf_counter()
            experiment.stop()  # also when waiting failed: no NNI manager is left behind
            stopped = time.perf_counter()
            # its working folder goes with this block: drop it from NNI's registry too
            Experiments().remove_experiment(experiment.id)
    return {
        "status": status,
        "wall_s": ended - began,
        "start_s": started - began,
        "stop_s": stopped - stopping,
        "trials": trials,
    }


def _wait(experiment: Any, deadline: float) -> str:
    """Poll until every trial has ended (NNI's own ``run`` polls every 10 s)."""
    while True:
        status = experiment.get_status()
        if status in _FINISHED:
            return status
        if status == "NO_MORE_TRIAL":  # the tuner ran out; done once the last trial ends
            stats = {
                s["trialJobStatus"]: s["trialJobNumber"] for s in experiment.get_job_statistics()
            }
            if not any(stats.get(s) for s in ("WAITING", "RUNNING", "UNKNOWN")):
                return status
        if time.perf_counter() > deadline:
            raise TimeoutError(f"NNI experiment {experiment.id} still {status} at the deadline.")
        time.sleep(0.25)
