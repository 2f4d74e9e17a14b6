"""The compress stage: check every stage before any work, apply them in order to the trained
network, and measure the baseline and each stage's result (task metrics, parameters, MACs,
bytes on disk, CPU latency). Each stage's network is saved as ``compressed/<i>_<name>.pt``,
which ``mlx eval ckpt_path=...`` evaluates again.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlx.compression.base import CompressionError, Stage, StageInput, Tools
from mlx.measure import LatencyMeter, count_macs, count_params, serialized_bytes

if TYPE_CHECKING:
    import pytorch_lightning as pl
    from torch import Tensor, nn

log = logging.getLogger("mlx")

FOLDER = "compressed"


def check_stages(
    stages: Sequence[Stage],
    net: nn.Module,
    input_shape: tuple[int, ...],
    num_outputs: int,
    task: str,
    rebuild: Callable[[tuple[int, ...]], nn.Module] | None = None,
) -> None:
    """Every stage's own check, in order, each seeing the stages before it; nothing trains."""
    names = [s.name for s in stages]
    for dup in {n for n in names if names.count(n) > 1}:
        raise CompressionError(f"compression lists {dup} twice: each stage runs once.")
    for i, stage in enumerate(stages):
        stage.check(StageInput(net, tuple(input_shape), num_outputs, task, names[:i], rebuild))


def evaluate_net(net: nn.Module, dm: Any, task: str) -> dict[str, float]:
    """The task's metrics of ``net`` on the val and test splits (``val/acc``, ``test/loss``...)."""
    import torch
    import torch.nn.functional as F

    was = net.training
    net.eval()
    out: dict[str, float] = {}
    with torch.inference_mode():
        for split, loader in (("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
            n, loss, hits, abs_err, ys, preds = 0, 0.0, 0.0, 0.0, [], []
            for x, y in loader:
                pred = net(x)
                b = y.shape[0]
                n += b
                if task == "classification":
                    loss += float(F.cross_entropy(pred, y, reduction="sum"))
                    hits += float((pred.argmax(dim=1) == y).sum())
                else:
                    p = pred.squeeze(-1).float()
                    loss += float(F.mse_loss(p, y, reduction="sum"))
                    abs_err += float((p - y).abs().sum())
                    ys.append(y)
                    preds.append(p)
            out[f"{split}/loss"] = loss / n
            if task == "classification":
                out[f"{split}/acc"] = hits / n
            else:
                y_all, p_all = torch.cat(ys), torch.cat(preds)
                ss_tot = float(((y_all - y_all.mean()) ** 2).sum())
                out[f"{split}/mae"] = abs_err / n
                out[f"{split}/r2"] = 1 - float(((y_all - p_all) ** 2).sum()) / ss_tot
    net.train(was)
    return out


def fit_module(
    net: nn.Module,
    loss_fn: Callable[[nn.Module, Tensor, Tensor], Tensor],
    make_optimizer: Callable[..., Any],
    lr: float,
    weight_decay: float,
    make_scheduler: Callable[..., Any] | None = None,
    epochs: int | None = None,
) -> pl.LightningModule:
    """A LightningModule that trains a bare network with a given loss, with the run's optimizer
    and its epoch-wise scheduler; a scheduler with a horizon (``T_max``, ``total_iters``) gets
    the stage's ``epochs`` instead of the run's, so a cosine schedule ends where the stage does."""
    import pytorch_lightning as pl

    class FitModule(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
            x, y = batch
            loss = loss_fn(self.net, x, y)
            self.log("train/loss", loss.detach(), prog_bar=True, on_step=False, on_epoch=True)
            return loss

        def configure_optimizers(self) -> Any:
            params = [p for p in self.net.parameters() if p.requires_grad]
            opt = make_optimizer(params, lr=lr, weight_decay=weight_decay)
            if make_scheduler is None:
                return opt
            return {"optimizer": opt, "lr_scheduler": stage_scheduler(make_scheduler, opt, epochs)}

    return FitModule()


def stage_scheduler(make: Callable[..., Any], opt: Any, epochs: int | None) -> dict[str, Any]:
    """The run's scheduler for a stage's own training: its horizon set to the stage's epochs."""
    import inspect

    target = getattr(make, "func", make)  # a Hydra partial wraps the scheduler class
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        params = {}
    horizon = {k: epochs for k in ("T_max", "total_iters") if k in params and epochs is not None}
    return {"scheduler": make(opt, **horizon), "interval": "epoch"}


def train_net(
    net: nn.Module,
    model: Any,
    loader: Any,
    epochs: int,
    loss_fn: Callable[..., Tensor],
    lr_scale: float = 1.0,
    *,
    progress_bar: bool = False,
) -> nn.Module:
    """Trains ``net`` in place for ``epochs`` on ``loader``'s batches with ``loss_fn(net, x, y)``
    and the run's optimizer, learning rate (times ``lr_scale``) and scheduler (taken from the
    run's LitModel ``model``), through a Lightning Trainer on CPU without checkpoints or logger.
    ``epochs <= 0`` returns ``net`` untouched."""
    if epochs <= 0:
        return net
    import pytorch_lightning as pl

    module = fit_module(
        net,
        loss_fn,
        model.make_optimizer,
        model.lr * lr_scale,
        model.weight_decay,
        make_scheduler=getattr(model, "make_scheduler", None),
        epochs=epochs,
    )
    callbacks = []
    if progress_bar:
        from pytorch_lightning.callbacks import RichProgressBar

        callbacks.append(RichProgressBar(leave=False, refresh_rate=5))
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress_bar,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=callbacks,
    )
    trainer.fit(module, train_dataloaders=loader)
    return net


def make_tools(
    model: Any,
    dm: Any,
    *,
    progress_bar: bool,
    initial_state: dict[str, Tensor] | None,
    early_state: dict[str, Tensor] | None,
    rebuild: Callable[[tuple[int, ...]], nn.Module],
) -> Tools:
    """The tools a stage borrows, built from the run's LitModel (optimizer, lr, loss) and data."""
    import torch.nn.functional as F

    task = model.task

    def task_loss(out: Tensor, y: Tensor) -> Tensor:
        if task == "classification":
            return F.cross_entropy(out, y)
        return F.mse_loss(out.squeeze(-1), y)

    def fit(
        net: nn.Module, epochs: int, loss_fn: Callable[..., Tensor], lr_scale: float = 1.0
    ) -> nn.Module:
        return train_net(
            net, model, dm.train_dataloader(), epochs, loss_fn, lr_scale, progress_bar=progress_bar
        )

    def fine_tune(net: nn.Module, epochs: int, lr_scale: float = 1.0) -> nn.Module:
        return fit(net, epochs, lambda n, x, y: task_loss(n(x), y), lr_scale)

    return Tools(
        input_shape=tuple(dm.input_shape),
        num_outputs=int(dm.num_outputs),
        task=task,
        train_batches=dm.train_dataloader,
        loss=task_loss,
        fine_tune=fine_tune,
        evaluate=lambda net: evaluate_net(net, dm, task),
        log=log.info,
        initial_state=initial_state,
        early_state=early_state,
        fit=fit,
        rebuild=rebuild,
        test_split=lambda: tuple(dm.datasets["test"].tensors),
    )


def measure(
    label: str,
    net: nn.Module,
    tools: Tools,
    meter: LatencyMeter,
    example: Tensor,
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    """One row of the compression table."""
    row: dict[str, Any] = {"stage": label}
    row.update(tools.evaluate(net))
    row["params"] = count_params(net)
    macs = count_macs(net, tools.input_shape)
    if macs is None and previous is not None:
        # int8 kernels are invisible to the counter; quantizing keeps the float structure's MACs
        macs = previous.get("macs")
    row["macs"] = macs
    row["size_bytes"] = serialized_bytes(net)
    row.update(meter(net, example))
    return row


def save_net(
    path: Path,
    net: nn.Module,
    stages: list[dict[str, Any]],
    config: dict[str, Any],
    input_shape: tuple[int, ...],
    num_outputs: int,
) -> None:
    """The compressed network as ONNX (``<i>_<stage>.onnx``), carrying the run's config and
    what each stage did: a file that loads without unpickling anything, evaluates with
    ``mlx eval`` and serves as it is."""
    from mlx.compression.quantize import OnnxRuntimeNet, export_onnx
    from mlx.engine.checkpoint import onnx_with_metadata
    from mlx.record import write_bytes

    if isinstance(net, OnnxRuntimeNet):
        model = net.model_bytes()
    else:
        was = net.training
        model = export_onnx(net.eval(), tuple(input_shape)).SerializeToString()
        net.train(was)
    info = {"input_shape": list(input_shape), "num_outputs": int(num_outputs), "stages": stages}
    write_bytes(path, onnx_with_metadata(model, config, info))


def load_net(path: str | Path, *, trust: bool = False) -> nn.Module:
    """The network in an mlx file: a compressed (ONNX) network, or a checkpoint's model."""
    from mlx.engine.checkpoint import load, network_of

    return network_of(load(path, trust=trust))


def compress(
    stages: Sequence[Stage],
    net: nn.Module,
    tools: Tools,
    meter: LatencyMeter,
    out: Path,
    config: dict[str, Any],
    keep: list[tuple[str, nn.Module]] | None = None,
) -> tuple[list[dict[str, Any]], nn.Module]:
    """Measure ``net``, then apply and measure each stage in order; returns the table's rows and
    the compressed network. ``net`` itself is left as it was (stages work on a copy). ``keep``,
    when given, receives ``("baseline", net)`` and a copy of each stage's network (for the
    analyses of every stage)."""
    example = example_batch_from(tools)
    rows = [measure("baseline", net, tools, meter, example, None)]
    log.info(_line(rows[-1]))
    current = copy.deepcopy(net)
    if keep is not None:
        keep.append(("baseline", net))
    done: list[dict[str, Any]] = []
    for i, stage in enumerate(stages, start=1):
        tools.log(f"stage compress: {stage.name} ({i}/{len(stages)})")
        current = stage.apply(current, tools)
        done.append({"name": stage.name, **stage.details()})
        path = out / FOLDER / f"{i}_{stage.name}.onnx"
        save_net(path, current, done, config, tools.input_shape, tools.num_outputs)
        row = measure(stage.name, current, tools, meter, example, rows[-1])
        row["file"] = str(path)
        row["details"] = stage.details()
        rows.append(row)
        log.info(_line(row))
        if keep is not None:
            # a later stage may change the network in place (pruning, fine-tuning)
            keep.append(
                (f"{i}_{stage.name}", current if i == len(stages) else copy.deepcopy(current))
            )
    return rows, current


def _copy(net: nn.Module) -> nn.Module:
    """A copy of a network to keep while later stages change theirs; an ONNX Runtime network
    (int8), which no later stage changes and whose session cannot be copied, is kept as is."""
    from mlx.compression.quantize import OnnxRuntimeNet

    return net if isinstance(net, OnnxRuntimeNet) else copy.deepcopy(net)


def example_batch_from(tools: Tools) -> Tensor:
    batch: Iterable[Any] = tools.train_batches()
    x, _ = next(iter(batch))
    return x


def _line(row: dict[str, Any]) -> str:
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith(("val/", "test/")))
    return (
        f"compress {row['stage']}: {metrics}; {row['params']:,} params, "
        f"{row['macs'] or 0:,} MACs, {row['size_bytes'] / 1024:.1f} KiB, "
        f"b1 {row.get('latency_b1_p50_ms', float('nan')):.3f} ms, b64 {row.get('latency_b64_p50_ms', float('nan')):.3f} ms"
    )


def print_table(rows: list[dict[str, Any]], metric: str) -> None:
    """The per-stage table: the task metric, size and latency, each against the baseline."""
    from rich.console import Console
    from rich.table import Table

    base = rows[0]
    table = Table(title="compression: each stage against the baseline")
    lat = [k for k in base if k.startswith("latency_")]
    for col in (
        "stage",
        metric,
        "params",
        "MACs",
        "size KiB",
        *[k.replace("latency_", "").replace("_ms", " ms") for k in lat],
    ):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for row in rows:

        def ratio(key: str, row: dict[str, Any] = row) -> str:
            if row is base or not row.get(key) or not base.get(key):
                return ""
            return f" ({base[key] / row[key]:.2f}x)"

        table.add_row(
            row["stage"],
            f"{row.get(metric, float('nan')):.4f}",
            f"{row['params']:,}{ratio('params')}",
            f"{row['macs']:,}{ratio('macs')}" if row["macs"] else "-",
            f"{row['size_bytes'] / 1024:.1f}{ratio('size_bytes')}",
            *[f"{row[k]:.3f}{ratio(k)}" for k in lat],
        )
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 150)  # a log or pipe: room for every column
    console.print(table)
