"""Parallelism modes against one process: throughput, per-process memory, parity.

Every mode (``parallelism=single|ddp|deepspeed_zero1|2|3|fsdp|pipeline``, plus ZeRO 3 with the
optimizer and the parameters offloaded) trains through the real mlx, on the same data, network
and global batch:

- throughput: ``mlx.run.run`` of the default CNN on digits (1,257 training images) for
  ``--epochs`` epochs, no checkpoints, no tracking. ``data.batch_size`` is per process in the
  data-parallel modes (each rank reads its own shard), so they run 2 processes at batch B
  against one process at 2B; the pipeline's stages read the same batches, so it runs at 2B
  (split into 4 micro-batches). Timing comes from the run record: ``history.csv`` seconds per
  epoch (training and the validation pass), the first epoch dropped; start-up is the train
  stage's time less its epochs (spawning, imports, process group, the final test).
- memory: the parameter, gradient and optimizer-state bytes each process recorded
  (``metrics.json`` ``memory``, measured at the first optimizer step), against one process,
  against the ZeRO paper's per-process formula in fp32 (parameters 4 bytes, gradients 4,
  Adam's two moments 8; stage 1 divides the optimizer state by N, stage 2 the gradients too,
  stage 3 the parameters too) and against DeepSpeed's own estimators, adjusted to fp32 on CPU
  as the tests do (``tests/engine/test_deepspeed.py::_check_against_estimators``).
- parity: the network's weights after ``STEPS`` optimizer steps in each data-parallel mode (2
  processes at batch B) against one process at batch 2B over the same examples in the same
  order; the pipeline (batch 2B in 4 micro-batches) against one process accumulating 4
  batches of B/2. The MLP without dropout (each rank would draw its own masks) and without
  batch normalization (each rank would normalize by its own shard's statistics), AdamW.

A GPU section runs the same with ``trainer.accelerator=gpu``, nccl and min(2, GPUs) devices when
CUDA is available.

    python benchmarks/parallelism.py [--epochs 4] [--rounds 3]

Writes reports/benchmarks/parallelism.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytorch_lightning as pl  # noqa: E402

from mlx.data.datamodule import ArrayDataModule  # noqa: E402

BATCH = 64  # per process in the data-parallel modes; the global batch is 2 x BATCH
MICRO = 4  # the pipeline's micro-batches
STEPS = 4  # optimizer steps of the parity check
PARITY_BATCH = 16  # per process in the parity check
MODES = {
    "single": ["parallelism=single"],
    "ddp": ["parallelism=ddp"],
    "deepspeed_zero1": ["parallelism=deepspeed_zero1"],
    "deepspeed_zero2": ["parallelism=deepspeed_zero2"],
    "deepspeed_zero3": ["parallelism=deepspeed_zero3"],
    "deepspeed_zero3 offload": [
        "parallelism=deepspeed_zero3",
        "trainer.strategy.offload_optimizer=true",
        "trainer.strategy.offload_parameters=true",
    ],
    "fsdp": ["parallelism=fsdp"],
    "pipeline": ["parallelism=pipeline", f"trainer.strategy.micro_batches={MICRO}"],
}
LEAN = [
    "tracking=none",
    "callbacks=minimal",
    "callbacks.checkpoint=null",
    "callbacks.last_checkpoint=null",
    "+trainer.enable_checkpointing=false",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def mode_overrides(mode: str, gpu: bool, devices: int) -> list[str]:
    over = list(MODES[mode])
    if gpu:
        over.append("trainer.accelerator=gpu")
        if mode != "single":
            over += [f"trainer.devices={devices}", "trainer.strategy.process_group_backend=nccl"]
    return over


def processes(mode: str, devices: int) -> int:
    return 1 if mode == "single" else devices


def batch_for(mode: str, devices: int, per_process: int) -> int:
    """``data.batch_size`` giving every mode the global batch ``devices * per_process``."""
    return per_process * devices if mode in ("single", "pipeline") else per_process


# -- throughput and memory: whole mlx runs -------------------------------------------------------


def mlx_run(mode: str, epochs: int, gpu: bool, devices: int, out: Path) -> dict[str, Any]:
    """One ``mlx run`` of ``mode``; its timings and memory figures, from its run record."""
    import csv

    from mlx import run
    from tests.conftest import compose_cfg

    over = [
        *LEAN,
        *mode_overrides(mode, gpu, devices),
        f"data.batch_size={batch_for(mode, devices, BATCH)}",
        f"trainer.max_epochs={epochs}",
    ]
    run.run(compose_cfg(over, out))
    record = json.loads((out / "metrics.json").read_text())
    if record["status"] != "completed":
        raise RuntimeError(f"{mode}: run {record['status']}: {record.get('error')}")
    with (out / "history.csv").open() as f:
        seconds = [float(r["seconds"]) for r in csv.DictReader(f)]
    return {
        "epochs": seconds,
        "train_stage": record["stages"]["train"],
        "memory": record["memory"],
        "params": record["metrics"]["model/params"],
        "train_size": record["data"]["split_sizes"]["train"],
    }


def largest_layer(epochs: int) -> int:
    """Parameters of the default CNN's largest layer (DeepSpeed's stage 3 estimator asks)."""
    from hydra.utils import instantiate

    from tests.conftest import compose_cfg

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_cfg([*LEAN, f"trainer.max_epochs={epochs}"], Path(tmp))
        dm = instantiate(cfg.data)
        dm.setup("fit")
        net = instantiate(cfg.model)(
            input_shape=dm.input_shape, num_outputs=dm.num_outputs, task=dm.task
        ).net
    return max(sum(p.numel() for p in m.parameters(recurse=False)) for m in net.modules())


# -- memory against the formulas -----------------------------------------------------------------


def zero_formula(mode: str, psi: int, n: int) -> tuple[float, float, float] | None:
    """The ZeRO paper's bytes per process (params, grads, optimizer) in fp32 with Adam."""
    p, g, o = 4.0 * psi, 4.0 * psi, 8.0 * psi
    if mode in ("single", "ddp"):
        return p, g, o
    if mode == "deepspeed_zero1":
        return p, g, o / n
    if mode == "deepspeed_zero2":
        return p, g / n, o / n
    if mode.startswith("deepspeed_zero3") or mode == "fsdp":
        return p / n, g / n, o / n
    return None  # the pipeline is model parallelism, which ZeRO does not describe


def deepspeed_estimate(mode: str, psi: int, largest: int, n: int) -> tuple[float, str] | None:
    """DeepSpeed's estimate of the bytes per process, less what exists only in mixed precision
    on GPUs (16-bit parameters and gradients) and stage 3's one gathered layer, plus the fp32
    parameters a stage 1/2 process keeps whole (as ``_check_against_estimators`` adjusts it);
    and which estimator gave it."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    if mode in ("deepspeed_zero1", "deepspeed_zero2"):
        _, est = estimate_zero2_model_states_mem_needs(psi, n, cpu_offload=False)
        return est - 2 * psi - 2 * psi / n + 4 * psi, "zero2"
    if mode in ("deepspeed_zero3", "fsdp"):
        _, est, _ = estimate_zero3_model_states_mem_needs(
            psi, largest, n, cpu_offload=False, cpu_offload_params=False
        )
        return est - 4 * largest - 2 * psi / n, "zero3"
    if mode == "deepspeed_zero3 offload":
        # everything offloaded: the estimate is the node's CPU memory, times a buffer factor
        buffer = 1.5
        est, _, _ = estimate_zero3_model_states_mem_needs(
            psi, largest, n, cpu_offload=True, cpu_offload_params=True,
            additional_buffer_factor=buffer,
        )  # fmt: skip
        return est / buffer / n - 2 * psi / n, "zero3 (offload, CPU)"
    return None


# -- parity: a few optimizer steps over the same examples ----------------------------------------


class InOrder(ArrayDataModule):
    """Training batches in file order: 2 ranks reading batch B through DistributedSampler
    (rank r takes examples r, r+2, ...) see together what one process sees with batch 2B."""

    def train_dataloader(self):  # noqa: ANN201
        return self._loader("train", shuffle=False)


class SaveAtEnd(pl.Callback):
    """Saves the weights when fitting ends; every rank calls it (the sharded modes gather the
    full weights collectively)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.save_checkpoint(self.path)


def fit_steps(
    mode: str, batch: int, accumulate: int, steps: int, gpu: bool, devices: int, out: Path
) -> dict[str, Any]:
    """The network's weights after ``steps`` optimizer steps of ``mode``, from a Trainer built
    from the mode's config (its strategy instantiated from the ``parallelism`` option)."""
    import torch
    from hydra.utils import instantiate

    from tests.conftest import compose_cfg

    cfg = compose_cfg(
        [
            *LEAN,
            *mode_overrides(mode, gpu, devices),
            "model=mlp",
            "model.net.dropout=0",
            f"data.batch_size={batch}",
        ],
        out,
    )
    pl.seed_everything(0, workers=True, verbose=False)
    dm = instantiate(cfg.data, _target_=f"{__name__}.InOrder")
    dm.setup("fit")
    model = instantiate(cfg.model)(
        input_shape=dm.input_shape, num_outputs=dm.num_outputs, task=dm.task
    )
    start = {k: v.detach().clone() for k, v in model.net.state_dict().items()}
    strategy = cfg.trainer.strategy
    path = out / "final.ckpt"
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        strategy=strategy if isinstance(strategy, str) else instantiate(strategy),
        max_steps=steps,
        accumulate_grad_batches=accumulate,
        limit_val_batches=0,
        use_distributed_sampler=False,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[SaveAtEnd(path)],
    )
    trainer.fit(model, datamodule=dm)
    state = torch.load(path, weights_only=True, map_location="cpu")["state_dict"]
    net = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    return {"start": start, "end": net}


def differences(a: dict[str, Any], b: dict[str, Any], start: dict[str, Any]) -> dict[str, float]:
    """Largest absolute difference of ``a`` from ``b``; the same relative to each tensor's
    largest value; and the largest change training made (so that a small difference means
    something)."""
    if a.keys() != b.keys():
        raise RuntimeError(f"different tensors: {sorted(a)} vs {sorted(b)}")
    abs_diff = rel = moved = 0.0
    for k in b:
        x, y = a[k].double().cpu(), b[k].double().cpu()
        d = float((x - y).abs().max())
        abs_diff = max(abs_diff, d)
        rel = max(rel, d / max(float(y.abs().max()), 1e-12))
        moved = max(moved, float((y - start[k].double().cpu()).abs().max()))
    return {"abs": abs_diff, "rel": rel, "moved": moved}


# -- the report ----------------------------------------------------------------------------------


def fmt_bytes(n: float) -> str:
    return f"{n:,.0f}"


def pct(measured: float, expected: float) -> str:
    return f"{(measured - expected) / expected * 100:+.1f}%"


def steady_of(run: dict[str, Any]) -> float:
    """A run's steady epoch: its median epoch after the first."""
    epochs = run["epochs"]
    return statistics.median(epochs[1:]) if len(epochs) > 1 else epochs[0]


def run_section(epochs: int, rounds: int, gpu: bool, devices: int, tmp: Path) -> dict[str, Any]:
    """Every mode's throughput runs (``rounds`` each, interleaved) and its parity check."""
    results: dict[str, Any] = {"runs": {m: [] for m in MODES}, "errors": {}, "parity": {}}
    where = f"{'GPU' if gpu else 'CPU'}, {devices} processes"
    for r in range(rounds):
        # one process runs right before every other mode, which is compared with that run:
        # the shared machine's load changes by the minute, and a paired ratio sees it on both
        for mode in [m for m in MODES if m != "single"]:
            for which in ("single", mode):
                if which in results["errors"]:
                    continue
                name = f"run-{which}-{mode}-{r}".replace(" ", "_")
                t0 = time.perf_counter()
                try:
                    res = mlx_run(which, epochs, gpu, devices, tmp / name)
                except (Exception, SystemExit) as e:  # one failing mode must not hide the others
                    traceback.print_exc()
                    results["errors"][which] = f"{type(e).__name__}: {e}".splitlines()[0][:200]
                    print(f"[{where}] round {r + 1}: {which} FAILED: {results['errors'][which]}")
                    continue
                res["pair"], res["round"] = mode, r
                results["runs"][which].append(res)
                print(
                    f"[{where}] round {r + 1}/{rounds}: {which}: {steady_of(res) * 1000:.0f} "
                    f"ms/epoch steady, {time.perf_counter() - t0:.1f} s in all",
                    flush=True,
                )
    # parity
    b = PARITY_BATCH
    t0 = time.perf_counter()
    try:
        single = fit_steps("single", devices * b, 1, STEPS, gpu, devices, tmp / "par-single")
        accum = fit_steps(
            "single", devices * b // MICRO, MICRO, STEPS, gpu, devices, tmp / "par-accum"
        )
    except Exception as e:
        traceback.print_exc()
        results["errors"]["parity"] = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        return results
    print(f"[{where}] parity: single-process references in {time.perf_counter() - t0:.1f} s")
    for mode in MODES:
        if mode == "single":
            continue
        t0 = time.perf_counter()
        ref = accum if mode == "pipeline" else single
        try:
            got = fit_steps(
                mode,
                batch_for(mode, devices, b),
                1,
                STEPS,
                gpu,
                devices,
                tmp / f"par-{mode}".replace(" ", "_"),
            )
            results["parity"][mode] = differences(got["end"], ref["end"], ref["start"])
        except (Exception, SystemExit) as e:
            traceback.print_exc()
            results["parity"][mode] = {"error": f"{type(e).__name__}: {e}".splitlines()[0][:200]}
        print(
            f"[{where}] parity: {mode}: {results['parity'][mode]} "
            f"({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
    return results


def section_lines(results: dict[str, Any], devices: int, largest: int) -> list[str]:
    runs, errors = results["runs"], results["errors"]
    lines: list[str] = []
    ok = [m for m in MODES if runs[m]]
    if not ok:
        return ["Every run failed: " + "; ".join(f"{k}: {v}" for k, v in errors.items()), ""]
    first = runs[ok[0]][0]
    psi, n_train = first["params"], first["train_size"]

    def steady(mode: str) -> float:
        return statistics.median(steady_of(r) for r in runs[mode])

    def paired_ratio(mode: str) -> str:
        """The median over rounds of the paired single run's steady epoch over the mode's."""
        ratios = [
            steady_of(one) / steady_of(run)
            for run in runs[mode]
            for one in runs["single"]
            if (one["pair"], one["round"]) == (mode, run["round"])
        ]
        if mode == "single" or not ratios:
            return "1.00" if mode == "single" else "n/a"
        return f"{statistics.median(ratios):.2f}"

    def startup(mode: str) -> float:
        return statistics.median(r["train_stage"] - sum(r["epochs"]) for r in runs[mode])

    lines += [
        "### Throughput",
        "",
        f"Global batch {devices * BATCH} in every mode; {n_train:,} training images per epoch.",
        "",
        "| mode | processes x data.batch_size | steady epoch (ms) | samples/s | ratio to single "
        "| first epoch (ms) | start-up and final test (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for mode in MODES:
        if mode in errors:
            lines.append(f"| {mode} | | failed: {errors[mode]} | | | | |")
            continue
        s = steady(mode)
        ratio = paired_ratio(mode)
        first_epoch = statistics.median(r["epochs"][0] for r in runs[mode])
        lines.append(
            f"| {mode} | {processes(mode, devices)} x {batch_for(mode, devices, BATCH)} "
            f"| {s * 1000:.0f} | {n_train / s:,.0f} | {ratio} | {first_epoch * 1000:.0f} "
            f"| {startup(mode):.1f} |"
        )
    lines += [
        "",
        "Ratio to single: the steady epoch of the single-process run made just before the "
        "mode's run over the mode's (above 1: faster than one process); the single row is the "
        "median over those runs: "
        + ", ".join(f"{steady_of(r) * 1000:.0f}" for r in runs["single"])
        + " ms.",
        "",
        "### Memory per process",
        "",
        f"Bytes of model state each process held at the first optimizer step (Ψ = {psi:,} "
        f"parameters, N = {devices} processes, fp32, AdamW). Where the processes differ, each "
        "is shown.",
        "",
        "| mode | rank | params | grads | optimizer | total | vs single |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    single_total = None
    if runs["single"]:
        single_total = sum(runs["single"][0]["memory"]["0"].values())
    for mode in ok:
        memory = runs[mode][0]["memory"]
        distinct = {json.dumps(v, sort_keys=True) for v in memory.values()}
        ranks = sorted(memory, key=int) if len(distinct) > 1 else [sorted(memory, key=int)[0]]
        for rank in ranks:
            f = memory[rank]
            total = sum(f.values())
            label = rank if len(ranks) > 1 else f"all {len(memory)}"
            vs = f"{total / single_total:.2f}x" if single_total else "n/a"
            lines.append(
                f"| {mode} | {label} | {fmt_bytes(f['params_bytes'])} | "
                f"{fmt_bytes(f['grads_bytes'])} | {fmt_bytes(f['optimizer_bytes'])} | "
                f"{fmt_bytes(total)} | {vs} |"
            )
    lines += [
        "",
        "Against the ZeRO paper's formula (fp32: parameters 4Ψ, gradients 4Ψ, Adam 8Ψ; stage 1 "
        "divides the optimizer state by N, stage 2 the gradients too, stage 3 (and FSDP) the "
        "parameters too) and DeepSpeed's own estimator, fp32-adjusted (the estimate less its "
        "16-bit parameters and gradients and stage 3's gathered layer, plus the whole fp32 "
        "parameters for stages 1 and 2), for the largest process:",
        "",
        "| mode | formula params / grads / optimizer | measured vs formula: params / grads / "
        "optimizer | total vs formula | DeepSpeed estimator | total vs estimate |",
        "|---|---|---|---:|---|---:|",
    ]
    for mode in ok:
        memory = runs[mode][0]["memory"]
        f = max(memory.values(), key=lambda v: sum(v.values()))
        measured = (f["params_bytes"], f["grads_bytes"], f["optimizer_bytes"])
        formula = zero_formula(mode, psi, devices)
        est = deepspeed_estimate(mode, psi, largest, devices)
        if formula is None:
            cells = ["n/a (model parallel)", "", ""]
        else:
            cells = [
                " / ".join(fmt_bytes(x) for x in formula),
                " / ".join(pct(m, e) for m, e in zip(measured, formula, strict=True)),
                pct(sum(measured), sum(formula)),
            ]
        est_cells = (
            [f"{est[1]}: {fmt_bytes(est[0])}", pct(sum(measured), est[0])]
            if est
            else [
                "",
                "",
            ]
        )
        lines.append(f"| {mode} | " + " | ".join(cells + est_cells) + " |")
    lines += [
        "",
        "### Parity",
        "",
        f"Weights of the MLP (no dropout, no batch norm, AdamW) after {STEPS} optimizer steps, "
        f"against one process: the data-parallel modes at {devices} x {PARITY_BATCH} against "
        f"one process at batch {devices * PARITY_BATCH} over the same examples in the same "
        f"order; the pipeline at batch {devices * PARITY_BATCH} in {MICRO} micro-batches against "
        f"one process accumulating {MICRO} batches of {devices * PARITY_BATCH // MICRO}.",
        "",
        "| mode | reference | max abs difference | max relative difference | largest weight "
        "change in training |",
        "|---|---|---:|---:|---:|",
    ]
    if "parity" in errors:
        lines.append(f"| all | | failed: {errors['parity']} | | |")
    for mode, d in results["parity"].items():
        ref = f"1 process, accumulate {MICRO}" if mode == "pipeline" else "1 process, 2x batch"
        if "error" in d:
            lines.append(f"| {mode} | {ref} | failed: {d['error']} | | |")
        else:
            lines.append(f"| {mode} | {ref} | {d['abs']:.2e} | {d['rel']:.2e} | {d['moved']:.2e} |")
    lines.append("")
    return lines


NOTES = [
    "## Notes",
    "",
    "- **Throughput is overhead here, not speed-up.** The machine has 2 CPU cores shared with "
    "other users: 2 processes cannot beat one process that already uses both cores (Lightning "
    "gives each spawned process 1 thread; the single process has 2), and the network is tiny "
    "(10 steps an epoch), so every collective and every per-step bookkeeping cost shows. The "
    "ratios say what each mode costs on top of the same work, under the noise of the shared "
    "machine (see the load average below), which the paired single runs and the median over rounds damp. "
    "Start-up (spawning 2 processes that import torch, Lightning and DeepSpeed, the process "
    "group, and the final test) is paid once per run and is not in the epoch times.",
    "- **ZeRO 1 and 2 gradient buckets are capped at the model's size.** Lightning asks "
    "DeepSpeed for 2e8-element buckets (800 MB in fp32), which stages 1 and 2 allocate with "
    "`torch.empty` on every backward pass, and under `trainer.deterministic=true` (mlx's "
    "default) torch fills every uninitialized tensor: before the cap, these two modes took "
    "about 15 s an epoch here instead of under 1 s. `mlx.engine.DeepSpeedStrategy` now caps "
    "both buckets at the number of trainable parameters (a larger bucket is never filled), so "
    "small models no longer pay for it and large ones keep Lightning's size.",
    "- **ZeRO 1 and 2 keep a fp32 master copy of their optimizer partition.** DeepSpeed "
    "stages 1 and 2 step a separate fp32 copy of each process's parameter partition even when "
    "training is fp32, so their optimizer state is 12Ψ/N (master 4 + moments 8), not the "
    "paper's 8Ψ/N for fp32 Adam (+50%); DeepSpeed's estimator counts it (its 4_params_32bit), "
    "so the totals match the estimator exactly. Stage 3 in fp32 steps its partitions in place "
    "(no copy): 8Ψ/N, as the formula says.",
    "- **ZeRO 1 measures like ZeRO 2.** DeepSpeed 0.19 runs stages 1 and 2 through the same "
    "optimizer, which reduces gradients into per-process partitions by the time of the step, "
    "so stage 1 holds 4Ψ/N of gradients at the step (the formula's 4Ψ: -50%); with the +50% "
    "optimizer copy its total happens to equal the formula's. DeepSpeed has no stage 1 "
    "estimator; its stage 2 one is shown.",
    "- **ZeRO 3 with everything offloaded** holds what stage 3 holds, in CPU memory: its "
    "gradient partitions live in one flat CPU buffer (`grad_partitions_flat_buffer` in "
    "DeepSpeed's `stage3.py`), which `mlx.engine.memory` counts. On CPU processes offloading "
    "moves nothing (the memory was CPU memory already); its point is GPU memory.",
    "- **FSDP matches stage 3**; its optimizer state has a few bytes more than the formula: "
    "AdamW's step counter, one scalar per parameter tensor (also in single and ddp).",
    "- **The pipeline is model parallelism, outside the ZeRO formulas.** Every process holds "
    "the whole network (the README says why), but gradients and optimizer state only for its "
    "own stage; the stages are balanced by parameter count plus one per layer, hence the "
    "uneven split between ranks.",
    "- **Parity.** The data-parallel modes reduce the mean of 2 shards' gradients where one "
    "process takes the mean of the whole batch: the same sum in another order, so the weights "
    "differ by float32 rounding, against weight changes of about 1e-2. The pipeline's "
    "micro-batches sum like gradient accumulation, so it matches accumulation more closely. The "
    "CNN's batch normalization would normalize each process's shard by its own statistics "
    "(no SyncBatchNorm), which is why parity uses the MLP.",
    "",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch

    t_start = time.perf_counter()
    load = os.getloadavg()
    largest = largest_layer(args.epochs)
    sections: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="mlx-parallelism-"))
    try:
        sections["cpu"] = run_section(args.epochs, args.rounds, False, 2, tmp / "cpu")
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus:
            sections["gpu"] = run_section(args.epochs, args.rounds, True, min(2, gpus), tmp / "gpu")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    minutes = (time.perf_counter() - t_start) / 60

    command = "python benchmarks/parallelism.py"
    if (args.epochs, args.rounds) != (4, 3):
        command += f" --epochs {args.epochs} --rounds {args.rounds}"
    lines = [
        "# Parallelism modes against one process",
        "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `{command}` "
        f"({minutes:.1f} minutes).",
        "",
        f"Default CNN on digits, {args.epochs} epochs per run, {args.rounds} round(s) of every "
        "mode (interleaved), no checkpoints or tracking. Every mode but single runs 2 processes "
        "(gloo on CPU, nccl on GPU); `data.batch_size` is per process in the data-parallel "
        "modes and the whole batch in the pipeline, so every mode trains at the same global "
        "batch. A steady epoch is the median epoch of a run after its first (`history.csv` "
        "seconds: training and the validation pass), then the median over rounds.",
        "",
        "## CPU",
        "",
        *section_lines(sections["cpu"], 2, largest),
        "## GPU",
        "",
    ]
    if "gpu" in sections:
        gpus = torch.cuda.device_count()
        lines += [
            f"{torch.cuda.get_device_name(0)}, {min(2, gpus)} process(es).",
            "",
            *section_lines(sections["gpu"], min(2, gpus), largest),
        ]
    else:
        lines += [
            "No GPU was available when this report was made; run "
            "`python benchmarks/parallelism.py` on a CUDA machine to fill this section.",
            "",
        ]
    lines += NOTES
    lines.append(
        f"Load average of the machine (1 minute) at the start and the end: {load[0]:.1f}, "
        f"{os.getloadavg()[0]:.1f} ({os.cpu_count()} cores).\n"
    )
    out = ROOT / "reports" / "benchmarks" / "parallelism.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join(lines)
    out.write_text(body)
    print(body)


if __name__ == "__main__":
    main()
