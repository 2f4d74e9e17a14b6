"""Stopping a run cleanly when its scheduler asks: SIGTERM (Kubernetes, SLURM preemption or
``scancel``) and, under SLURM, SIGUSR1 (``#SBATCH --signal=SIGUSR1@90``: the time limit is near,
the job is requeued).

Every process of the run stops after the same batch: a signal only marks the process that got
it, and after each training batch the processes agree (one all-reduce of a flag: any marked
process stops them all). Lightning then abandons the partial epoch (``SIGTERMException``):
``checkpoints/last.ckpt``, taken when the last whole epoch ended, is where the same command
continues exactly. A process that spawned the run's processes (``parallelism=ddp``) forwards
the signal to them (Kubernetes signals the main process only; SLURM signals all of them, which
is the same). After SIGUSR1 the run's record is written (status ``interrupted``) and global
rank 0 requeues the job with ``scontrol requeue``: the requeued job runs the same script, and
the same command in the same folder continues the run.

Lightning's own handlers are not used: its SIGTERM handler broadcasts from inside the signal
handler, at whatever point each process is (another collective may be under way there), and
its SLURM requeue handler saves a mid-epoch checkpoint, which cannot continue exactly.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from functools import partial
from types import FrameType
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher

log = logging.getLogger("mlx")

# the stop signals this process got during the current fit (names, in arrival order)
_received: list[str] = []


def stop_signals() -> tuple[signal.Signals, ...]:
    """SIGTERM always; SIGUSR1 as well under SLURM (elsewhere its default action is kept)."""
    if "SLURM_JOB_ID" in os.environ:
        return (signal.SIGTERM, signal.SIGUSR1)
    return (signal.SIGTERM,)


def received() -> list[str]:
    """The stop signals this process got during its last fit (e.g. ``["SIGUSR1"]``)."""
    return list(_received)


def _note(signum: int, frame: FrameType | None = None) -> None:
    name = signal.Signals(signum).name
    if name not in _received:
        _received.append(name)
        log.warning("%s received: training stops after the current batch", name)


class GracefulStop(pl.Callback):
    """Marks the process on SIGTERM (and SIGUSR1 under SLURM) and, after every training batch,
    stops every process of the run when any one is marked (see the module's docstring)."""

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        _received.clear()
        # Lightning registers its SIGTERM handler after this hook: it calls this connector's
        # notifier, which here only marks the process. SIGUSR1 is registered here, first, so
        # Lightning's requeue handler is not (it registers one only where none is). Only a
        # training batch stops the run: a signal during testing lets the test finish.
        trainer._signal_connector._sigterm_notifier_fn = _note  # type: ignore[method-assign]
        for signum in stop_signals():
            if signum != signal.SIGTERM:
                self._previous[signum] = signal.signal(signum, _note)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        # one flag all-reduced: every process takes the same decision after the same batch
        if trainer.strategy.reduce_boolean_decision(bool(_received), all=False):
            # Lightning raises SIGTERMException when this batch's bookkeeping is done
            trainer._signal_connector.received_sigterm = True


class ForwardingLauncher(_MultiProcessingLauncher):
    """Lightning's launcher of spawned processes, which forwards stop signals the main process
    gets to them and brings an interruption back as ``SIGTERMException`` (the processes end
    their fit cleanly, so their process group closes and rank 0 returns its results).

    A spawned process whose work succeeded leaves without C++'s exit-time destructors: torch's
    communication threads are sometimes still joinable then, and C++ aborts the process
    (``terminate called without an active exception``, SIGABRT), failing a run whose work and
    results were complete. Python's own exit work still runs first (see ``_leave``)."""

    def _wrapping_function(self, *args: Any, **kwargs: Any) -> None:
        super()._wrapping_function(*args, **kwargs)
        _leave()

    def launch(self, function: Any, *args: Any, trainer: Any = None, **kwargs: Any) -> Any:
        from pytorch_lightning.trainer.states import TrainerStatus
        from pytorch_lightning.utilities.exceptions import SIGTERMException

        _received.clear()
        previous = {s: signal.signal(s, self._forward) for s in stop_signals()}
        try:
            output = super().launch(
                partial(_stopped_cleanly, function), *args, trainer=trainer, **kwargs
            )
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if trainer is not None and trainer.state.status == TrainerStatus.INTERRUPTED:
            raise SIGTERMException
        return output

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        _note(signum)
        self.kill(signum)


def _leave() -> None:
    """End a spawned process whose work is done (rank 0's results already sent back): close
    the process group, run what a normal exit runs in Python (multiprocessing's finalizers,
    ``atexit`` handlers such as W&B's and logging's), flush, and exit 0 without the C++
    destructors."""
    import atexit
    import multiprocessing.util
    import sys

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    multiprocessing.util._exit_function()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _stopped_cleanly(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Runs ``function`` (a trainer's ``_fit_impl``) in a spawned process; an interruption
    ends it as Lightning ends one in a single process (exception hooks, loggers finalized,
    teardown), and the trainer's status, INTERRUPTED, goes back to the main process."""
    from pytorch_lightning.trainer import call
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    try:
        return function(*args, **kwargs)
    except SIGTERMException as e:
        trainer = function.__self__
        call._interrupt(trainer, e)
        trainer._teardown()
        call._call_teardown_hook(trainer)
        return None


def signals_forwarded(trainer: pl.Trainer) -> None:
    """Make a strategy that spawns its processes forward stop signals to them (and end them
    cleanly, see ForwardingLauncher); mlx's own launchers already derive from it."""
    strategy = trainer.strategy
    launcher = strategy.launcher
    if type(launcher) is _MultiProcessingLauncher:
        strategy._launcher = ForwardingLauncher(strategy, start_method=launcher._start_method)


def requeue_if_asked() -> bool:
    """Requeue this SLURM job (``scontrol requeue``) when SIGUSR1 stopped the run; returns
    whether it was asked. Called by global rank 0 once the run's record is written."""
    if "SIGUSR1" not in _received or "SLURM_JOB_ID" not in os.environ:
        return False
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None:
        job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    else:
        job = os.environ["SLURM_JOB_ID"]
    try:
        code = subprocess.call(["scontrol", "requeue", job])
    except OSError as e:
        log.error("SLURM job %s not requeued: scontrol could not run (%s)", job, e)
        return True
    if code == 0:
        log.warning("SLURM job %s requeued: it continues this run when it starts again", job)
    else:
        log.error("SLURM job %s not requeued: scontrol requeue exited with %d", job, code)
    return True
