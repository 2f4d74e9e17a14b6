"""Overhead of `mlx run` against a hand-written PyTorch loop doing the same work.

Both train the same network (the default CNN) on the same data (digits, same split, same batch
size and batch order), for the same epochs from the same seed, validating after every epoch. Runs
are interleaved (mlx, loop, mlx, loop, ...) so that the shared machine's noise hits both alike;
the median epoch time of each is compared. The per-epoch training losses of the two must agree to
1e-5, which shows that the two really did the same work.

    python benchmarks/overhead.py [--rounds 5] [--epochs 8]

Writes reports/benchmarks/overhead.md.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED = 42
SETTINGS = {
    # what `mlx run` does out of the box (rich progress bar, W&B offline, checkpoints, history),
    # without early stopping so that both sides train every epoch
    "default": ["callbacks.early_stopping=null"],
    "lean": [
        "callbacks=minimal",
        "tracking=none",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ],
    # exactly the loop's work: the lean run without its two checkpoint saves per epoch, so the
    # ratio is the engine's own overhead
    "same_work": [
        "callbacks=minimal",
        "callbacks.checkpoint=null",
        "callbacks.last_checkpoint=null",
        "+trainer.enable_checkpointing=false",
        "tracking=none",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ],
}


def mlx_run(epochs: int, setting: str, out: Path) -> tuple[list[float], list[float]]:
    """Per-epoch seconds and train losses of one `mlx run`, from its run record."""
    from mlx import run
    from tests.conftest import compose_cfg

    cfg = compose_cfg([f"trainer.max_epochs={epochs}", f"seed={SEED}", *SETTINGS[setting]], out)
    run.main(cfg)
    with (out / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    return [float(r["seconds"]) for r in rows], [float(r["train/loss"]) for r in rows]


def hand_loop(epochs: int) -> tuple[list[float], list[float]]:
    """The same training written by hand: seed, data, model, AdamW + cosine schedule, val."""
    import pytorch_lightning as pl
    import torch
    import torch.nn.functional as F

    from mlx.data import ArrayDataModule, Digits
    from mlx.models import CNN

    pl.seed_everything(SEED, workers=True, verbose=False)
    torch.use_deterministic_algorithms(True)
    dm = ArrayDataModule(Digits(), batch_size=64)
    dm.setup("fit")
    net = CNN(dm.input_shape, dm.num_outputs, channels=[32, 64], hidden=128, dropout=0.2)
    opt = torch.optim.AdamW(net.parameters(), lr=0.003, weight_decay=0.0001)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    train, val = dm.train_dataloader(), dm.val_dataloader()
    seconds, losses = [], []
    for _ in range(epochs):
        t0 = time.perf_counter()
        net.train()
        total, count = 0.0, 0
        for x, y in train:
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
            count += len(y)
        net.eval()
        with torch.no_grad():
            correct = sum(int((net(x).argmax(1) == y).sum()) for x, y in val)
        assert correct >= 0
        sched.step()
        seconds.append(time.perf_counter() - t0)
        losses.append(total / count)
    return seconds, losses


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()

    times: dict[str, list[float]] = {"loop": [], **{s: [] for s in SETTINGS}}
    max_diff = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            loop_s, loop_loss = hand_loop(args.epochs)
            times["loop"].append(statistics.median(loop_s[1:]))  # epoch 0 pays one-off warm-up
            for setting in SETTINGS:
                mlx_s, mlx_loss = mlx_run(args.epochs, setting, Path(tmp) / f"{setting}{r}")
                times[setting].append(statistics.median(mlx_s[1:]))
                max_diff = max(
                    max_diff, max(abs(a - b) for a, b in zip(mlx_loss, loop_loss, strict=True))
                )
            print(
                f"round {r + 1}/{args.rounds}: "
                + ", ".join(f"{k} {v[-1] * 1000:.1f} ms/epoch" for k, v in times.items()),
                flush=True,
            )

    loop = statistics.median(times["loop"])
    lines = [
        "# Overhead of `mlx run` against a hand-written loop",
        "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `python benchmarks/overhead.py --rounds {args.rounds} --epochs {args.epochs}`.",
        "",
        f"Default CNN on digits (1,257 training images, batch 64, 20 steps per epoch), {args.epochs} epochs, seed {SEED},",
        f"validation after every epoch; {args.rounds} interleaved rounds, median epoch time (epoch 0 excluded) per round,",
        "then the median over rounds.",
        "",
        "The ratio is the median over rounds of each round's mlx/loop ratio: rounds are paired, so",
        "noise from the shared machine that hits one round hits both sides of its ratio.",
        "",
        "| trainer | median epoch (ms) | ratio to hand loop | per-round ratios |",
        "|---|---:|---:|---|",
        f"| hand-written PyTorch loop | {loop * 1000:.1f} | 1.00 | |",
    ]
    labels = {
        "default": "`mlx run` (defaults: rich progress bar, W&B offline, checkpoints, early stopping off)",
        "lean": "`mlx run callbacks=minimal tracking=none` (no bar; best and last checkpoints)",
        "same_work": "`mlx run` doing only the loop's work (lean, checkpoints off)",
    }
    for setting in SETTINGS:
        med = statistics.median(times[setting])
        ratios = [m / lp for m, lp in zip(times[setting], times["loop"], strict=True)]
        lines.append(
            f"| {labels[setting]} | {med * 1000:.1f} | {statistics.median(ratios):.2f} | "
            + ", ".join(f"{r:.2f}" for r in ratios)
            + " |"
        )
    verdict = "match" if max_diff <= 1e-5 else "DO NOT match"
    lines += [
        "",
        f"Per-epoch training losses of every mlx run and the hand loop {verdict}: largest difference {max_diff:.2e} (bar: 1e-5).",
        "Target: mlx <= 1.15x the hand-written loop on the same work (last row); the rows above add",
        "what the loop does not do (two checkpoint saves per epoch, W&B, history, progress bar).",
        "",
    ]
    out = ROOT / "reports" / "benchmarks" / "overhead.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    if max_diff > 1e-5:
        sys.exit("loss curves differ: the comparison is not like for like")


if __name__ == "__main__":
    main()
