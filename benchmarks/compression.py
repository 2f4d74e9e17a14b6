"""What does each compression stage cost and save? Every figure comes from the real `mlx run` /
`mlx compress` commands and their run records; each ratio compares two networks measured in the
same process (same data, same thread count, one after the other).

1. Structural pruning (digits CNN, the default experiment): the trained CNN is pruned with L1
   importance to half its MACs (``max_macs``) in two steps, fine-tuned 3 epochs after each, then
   quantized to int8 (static).
   Target: >= 2x fewer MACs, <= 1.0 point test-accuracy drop, a batch-64 latency speed-up.
2. Int8 quantization (``experiment=mnist_mlp``: a 784-512-256 MLP on MNIST 5k): dynamic, static
   and quantization-aware int8 on ONNX Runtime. Target: >= 3.5x smaller, >= 1.5x faster at
   batch 64, <= 0.5 point drop.
3. Knowledge distillation (MNIST 5k): the ``experiment=mnist_cnn`` CNN teaches a small CNN; the
   same student trained alone (same epochs, optimizer and schedule) is the reference. Target: the
   distilled student closes >= 50% of the gap between the student alone and the teacher.
4. PCA (MNIST MLP): inputs projected to 95% explained variance (fitted on the train split), a
   fresh MLP trained on them. Target: test accuracy within 1 point of the MLP on raw pixels.

The tables are as ``mlx compress`` measured them (p50/p95 of ``--repeats`` timed calls after
warm-up, one thread, each network timed once). The speed-ups in the summary are measured again
here, paired: the saved baseline and compressed networks are timed in alternating blocks
(``--rounds`` rounds of 20 calls each, one thread), and the median of the per-round ratios is
reported, so a burst of load on the shared machine hits both sides of a ratio.

    python benchmarks/compression.py [--seeds 3] [--repeats 100] [--rounds 15]

Writes reports/benchmarks/compression.md and compression.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MLX = str(Path(sys.executable).with_name("mlx"))
QUIET = ["tracking=none", "callbacks.progress_bar=null", "trainer.enable_model_summary=false"]
# the student of the distillation benchmark (and, trained alone, its reference)
STUDENT = {"channels": "[4,8]", "hidden": 32, "dropout": 0.2}
DISTILL_EPOCHS = 20


def mlx(*args: str) -> None:
    proc = subprocess.run([MLX, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(
            f"mlx {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )


def record(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def train(folder: Path, *overrides: str) -> dict:
    mlx("run", *overrides, *QUIET, f"hydra.run.dir={folder}")
    return record(folder)


def compress(folder: Path, ckpt: Path, repeats: int, *overrides: str) -> list[dict]:
    """The compression table's rows (baseline first) of ``mlx compress`` on a checkpoint; each
    row also gets ``ckpt`` (the baseline's file) and ``input_shape``."""
    mlx(
        "compress",
        f"ckpt_path={ckpt}",
        *overrides,
        f"latency.repeats={repeats}",
        "latency.warmup=10",
        "latency.threads=1",
        *QUIET,
        f"hydra.run.dir={folder}",
    )
    rec = record(folder)
    return [
        {**r, "ckpt": ckpt, "input_shape": rec["data"]["input_shape"]} for r in rec["compression"]
    ]


def paired_speedups(base: Path, compressed: Path, shape: list[int], rounds: int) -> dict:
    """Batch-1 and batch-64 speed-ups of ``compressed`` over ``base`` (saved networks), timed
    in alternating blocks; the median over rounds of each round's ratio of p50s."""
    import torch

    from mlx.compression.pipeline import load_net
    from mlx.measure import LatencyMeter

    nets = [load_net(base), load_net(compressed)]
    meter = LatencyMeter(threads=1, warmup=3, repeats=20, batch_sizes=[1, 64])
    example = torch.rand(64, *shape, generator=torch.Generator().manual_seed(0))
    for net in nets:  # warm both before the first round
        meter(net, example)
    ratios: dict[int, list[float]] = {1: [], 64: []}
    for _ in range(rounds):
        a, b = meter(nets[0], example), meter(nets[1], example)
        for n in ratios:
            ratios[n].append(a[f"latency_b{n}_p50_ms"] / b[f"latency_b{n}_p50_ms"])
    return {f"b{n}_x": statistics.median(r) for n, r in ratios.items()}


def ratios(base: dict, row: dict, rounds: int) -> dict:
    """One stage against its baseline: accuracy drop in points, how many times smaller, and
    how many times faster (timed again, paired: ``paired_speedups``)."""
    paired = paired_speedups(base["ckpt"], Path(row["file"]), base["input_shape"], rounds)
    return {
        "drop_pts": 100 * (base["test/acc"] - row["test/acc"]),
        "acc": row["test/acc"],
        "base_acc": base["test/acc"],
        "params_x": base["params"] / row["params"],
        "macs_x": base["macs"] / row["macs"] if row.get("macs") else float("nan"),
        "size_x": base["size_bytes"] / row["size_bytes"],
        **paired,
        "b64_ms": row["latency_b64_p50_ms"],
        "base_b64_ms": base["latency_b64_p50_ms"],
        "size_kib": row["size_bytes"] / 1024,
    }


def mean_sd(values: list[float], digits: int = 2) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def one_seed(seed: int, repeats: int, rounds: int, tmp: Path) -> dict:
    out: dict = {"tables": {}}
    # 1. digits CNN: prune to half the MACs, then int8
    cnn = train(tmp / f"cnn{seed}", f"seed={seed}")
    ckpt = tmp / f"cnn{seed}" / "checkpoints" / "best.ckpt"
    half = int(cnn["metrics"]["model/macs"]) // 2
    rows = compress(
        tmp / f"prune{seed}",
        ckpt,
        repeats,
        "compression=[prune,quantize]",
        "compression.prune.importance=l1",
        "compression.prune.steps=2",
        "compression.prune.ratio=null",
        f"compression.prune.max_macs={half}",
    )
    out["tables"]["digits CNN: prune (L1, half the MACs, 2 steps) -> int8 static"] = rows
    out["prune"] = ratios(rows[0], rows[1], rounds)
    out["prune+int8"] = ratios(rows[0], rows[2], rounds)
    print(f"seed {seed} prune: {fmt(out['prune'])}", flush=True)

    # 2. MNIST MLP: int8 in three modes; 4. PCA
    train(tmp / f"mlp{seed}", "experiment=mnist_mlp", f"seed={seed}")
    ckpt = tmp / f"mlp{seed}" / "checkpoints" / "best.ckpt"
    for mode in ("dynamic", "static", "qat"):
        rows = compress(
            tmp / f"q{mode}{seed}",
            ckpt,
            repeats,
            "compression=quantize",
            f"compression.quantize.mode={mode}",
        )
        out["tables"][f"MNIST MLP 784-512-256: int8 {mode}"] = rows
        out[f"int8 {mode}"] = ratios(rows[0], rows[1], rounds)
        print(f"seed {seed} int8 {mode}: {fmt(out[f'int8 {mode}'])}", flush=True)
    rows = compress(
        tmp / f"pca{seed}", ckpt, repeats, "compression=pca", "compression.pca.variance=0.95"
    )
    out["tables"]["MNIST MLP: PCA to 95% variance"] = rows
    out["pca"] = ratios(rows[0], rows[1], rounds)
    out["pca_components"] = rows[1]["details"]["components"]
    print(f"seed {seed} pca: {fmt(out['pca'])}", flush=True)

    # 3. distillation: MNIST CNN teacher, small CNN student, against the student alone
    train(tmp / f"teacher{seed}", "experiment=mnist_cnn", f"seed={seed}")
    alone = train(
        tmp / f"alone{seed}",
        "experiment=mnist_cnn",
        f"seed={seed}",
        f"trainer.max_epochs={DISTILL_EPOCHS}",
        f"model.net.channels={STUDENT['channels']}",
        f"model.net.hidden={STUDENT['hidden']}",
        f"model.net.dropout={STUDENT['dropout']}",
    )
    rows = compress(
        tmp / f"distill{seed}",
        tmp / f"teacher{seed}" / "checkpoints" / "best.ckpt",
        repeats,
        "compression=distill",
        "compression.distill.student._target_=mlx.models.CNN",
        f"+compression.distill.student.channels={STUDENT['channels']}",
        f"compression.distill.student.hidden={STUDENT['hidden']}",
        f"compression.distill.student.dropout={STUDENT['dropout']}",
        f"compression.distill.epochs={DISTILL_EPOCHS}",
    )
    out["tables"]["MNIST CNN teacher -> small CNN student (distilled)"] = rows
    teacher, student = rows[0]["test/acc"], rows[1]["test/acc"]
    alone_acc = alone["metrics"]["test/acc"]
    out["distill"] = {
        **ratios(rows[0], rows[1], rounds),
        "teacher": teacher,
        "alone": alone_acc,
        "distilled": student,
        "closed": (student - alone_acc) / (teacher - alone_acc)
        if teacher != alone_acc
        else float("nan"),
    }
    print(
        f"seed {seed} distill: teacher {teacher:.4f}, alone {alone_acc:.4f}, distilled {student:.4f}",
        flush=True,
    )
    return out


def fmt(r: dict) -> str:
    return (
        f"test/acc {r['base_acc']:.4f} -> {r['acc']:.4f}, {r['macs_x']:.2f}x MACs, "
        f"{r['size_x']:.2f}x size, b64 {r['b64_x']:.2f}x faster"
    )


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    series = [
        ("digits CNN", ["prune", "prune+int8"]),
        ("MNIST MLP", ["int8 dynamic", "int8 static", "int8 qat", "pca"]),
    ]
    for ax, (title, keys) in zip(axes, series, strict=True):
        base = [r[keys[0]] for r in results]
        ax.scatter(
            [statistics.mean(b["base_b64_ms"] for b in base)],
            [statistics.mean(b["base_acc"] for b in base)],
            marker="*",
            s=160,
            label="baseline (float)",
        )
        for key in keys:
            rows = [r[key] for r in results]
            ax.scatter(
                [statistics.mean(x["b64_ms"] for x in rows)],
                [statistics.mean(x["acc"] for x in rows)],
                s=60,
                label=key,
            )
        ax.set_title(f"{title}: test accuracy against batch-64 latency")
        ax.set_xlabel("p50 latency at batch 64, ms (1 thread)")
        ax.set_ylabel("test accuracy (mean over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(rows: list[dict]) -> list[str]:
    """The compression table of one run, as mlx prints it."""
    lines = [
        "| stage | test/acc | params | MACs | size KiB | b1 p50 ms | b1 p95 ms | b64 p50 ms | b64 p95 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        macs = f"{r['macs']:,}" if r.get("macs") else "-"
        lines.append(
            f"| {r['stage']} | {r['test/acc']:.4f} | {r['params']:,} | {macs} | {r['size_bytes'] / 1024:.1f} "
            f"| {r['latency_b1_p50_ms']:.3f} | {r['latency_b1_p95_ms']:.3f} "
            f"| {r['latency_b64_p50_ms']:.3f} | {r['latency_b64_p95_ms']:.3f} |"
        )
    return lines


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def report(results: list[dict], args: argparse.Namespace, seconds: float) -> str:
    def col(key: str, field: str) -> list[float]:
        return [r[key][field] for r in results]

    n = len(results)
    lines = [
        "# Compression benchmark",
        "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `python benchmarks/compression.py "
        f"--seeds {args.seeds} --repeats {args.repeats} --rounds {args.rounds}` in {seconds / 60:.1f} min, on this machine's "
        "CPU (2 cores, shared); latency p50 of "
        f"{args.repeats} timed calls after 10 warm-up calls, one thread, in the tables. The speed-ups "
        "in the summary are paired: the saved float and compressed networks timed again in "
        f"alternating blocks ({args.rounds} rounds of 20 calls), the median of the per-round ratios. "
        f"Means ± standard deviations over {n} seeds (each seed trains its own models).",
        "",
        "## Summary against the targets",
        "",
        "| experiment | stage | test/acc drop (points) | MACs fewer | size smaller | b1 faster | b64 faster |",
        "|---|---|---|---|---|---|---|",
    ]
    for exp, key in (
        ("digits CNN", "prune"),
        ("digits CNN", "prune+int8"),
        ("MNIST MLP", "int8 dynamic"),
        ("MNIST MLP", "int8 static"),
        ("MNIST MLP", "int8 qat"),
        ("MNIST MLP", "pca"),
        ("MNIST CNN", "distill"),
    ):
        lines.append(
            f"| {exp} | {key} | {mean_sd(col(key, 'drop_pts'))} | {mean_sd(col(key, 'macs_x'))}x "
            f"| {mean_sd(col(key, 'size_x'))}x | {mean_sd(col(key, 'b1_x'))}x | {mean_sd(col(key, 'b64_x'))}x |"
        )

    def mean(key: str, field: str) -> float:
        return statistics.mean(col(key, field))

    def per_seed(key: str, field: str, spec: str = "+.2f") -> str:
        return ", ".join(f"{v:{spec}}" for v in col(key, field))

    prune_ok = (
        min(col("prune", "macs_x")) >= 2
        and mean("prune", "drop_pts") <= 1.0
        and mean("prune", "b64_x") > 1
    )
    modes = ("int8 dynamic", "int8 static", "int8 qat")
    int8_ok = {
        k: min(col(k, "size_x")) >= 3.5 and mean(k, "b64_x") >= 1.5 and mean(k, "drop_pts") <= 0.5
        for k in modes
    }
    teacher, alone = mean("distill", "teacher"), mean("distill", "alone")
    closed = (mean("distill", "distilled") - alone) / (teacher - alone)
    pca_ok = abs(mean("pca", "drop_pts")) <= 1.0
    lines += [
        "",
        "Targets, on the means over seeds (per-seed values in brackets; the digits test split "
        "has 270 images, so one image is 0.37 points):",
        "",
        f"- Structural pruning >= 2x fewer MACs, <= 1.0 point drop after fine-tuning, a batch-64 "
        f"speed-up: {verdict(prune_ok)}: {min(col('prune', 'macs_x')):.2f}x fewer MACs, drop "
        f"{mean('prune', 'drop_pts'):.2f} points ({per_seed('prune', 'drop_pts')}), b64 "
        f"{mean('prune', 'b64_x'):.2f}x faster ({per_seed('prune', 'b64_x', '.2f')}).",
        "- Int8 on the MLP >= 3.5x smaller, >= 1.5x faster at batch 64, <= 0.5 point drop: "
        + "; ".join(
            f"{k} {verdict(int8_ok[k])} ({min(col(k, 'size_x')):.2f}x smaller, b64 "
            f"{mean(k, 'b64_x'):.2f}x faster, drop {mean(k, 'drop_pts'):.2f} points "
            f"[{per_seed(k, 'drop_pts')}])"
            for k in modes
        )
        + ".",
        f"- Distilled student closes >= 50% of the gap between the student alone and the teacher: "
        f"{verdict(closed >= 0.5)}: {closed:.0%} of the mean gap (teacher {teacher:.4f}, student "
        f"alone {alone:.4f}, distilled {mean('distill', 'distilled'):.4f} test/acc; per seed "
        f"{', '.join(f'{c:.0%}' for c in col('distill', 'closed'))}).",
        f"- PCA to 95% explained variance within 1 point: {verdict(pca_ok)}: drop "
        f"{mean('pca', 'drop_pts'):.2f} points ({per_seed('pca', 'drop_pts')}), "
        f"{', '.join(str(r['pca_components']) for r in results)} components of 784.",
        "",
        "![accuracy against latency](compression.png)",
        "",
        "## Full tables (seed 0)",
        "",
        "Each as `mlx compress` printed it; ratios above are per seed, then averaged.",
    ]
    for title, rows in results[0]["tables"].items():
        lines += ["", f"### {title}", "", *table(rows)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "benchmarks")
    args = parser.parse_args()
    if args.seeds < 1 or args.repeats < 3 or args.rounds < 1:
        parser.error("--seeds and --rounds must be at least 1, --repeats at least 3")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        results = [
            one_seed(seed, args.repeats, args.rounds, Path(tmp)) for seed in range(args.seeds)
        ]
    text = report(results, args, time.perf_counter() - started)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(results, args.out / "compression.png")
    (args.out / "compression.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
