"""Model analysis: what each analysis costs against training, and how wide its intervals are.

1. Cost. One ``mlx run`` per data set with the default analysis list for its kind of data,
   each at the data set's usual training length: digits (the default CNN), MNIST 5k (the
   default CNN) and a 30,000-row table with categorical and numeric columns (``model=mlp``; the
   table is drawn once from a seeded logistic model, written as a CSV, and read by
   ``data=csv``). Per analysis, its wall time (the record's ``analysis_seconds``) against the
   train stage's wall time; the whole analyse stage against training. Target: the default list
   adds at most half the training time.
2. Interval widths. The 95% intervals of ``mlx.analysis.metrics.metric_table`` on the
   predictions of a synthetic classifier (10 classes, each prediction right with probability
   0.9) for test splits of 100 to 10,000 rows: the width of accuracy's Wilson interval and of
   the bootstrap intervals of macro F1 and ROC AUC. A width that shrinks like 1/sqrt(n) keeps
   width x sqrt(n) about constant.

    python benchmarks/analysis.py [--epochs-scale 1.0]

Writes reports/benchmarks/analysis.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

TABLE_ROWS = 30_000
# the default analysis list for each kind of data, with the options it needs there; an analysis
# whose config option does not exist in this mlx is left out (and the report says so)
DEFAULTS: dict[str, list[tuple[str, list[str]]]] = {
    "images": [
        ("metrics", []),
        ("slices", ["analysis.slices.intensity_buckets=4", "analysis.slices.min_size=20"]),
        ("debug", []),
        ("introspection", []),
        ("explain", []),
    ],
    "table": [
        ("metrics", []),
        (
            "slices",
            [
                "analysis.slices.columns=[region]",
                "analysis.slices.buckets={age:4}",
                "analysis.slices.per_class=false",
            ],
        ),
        ("debug", []),
        ("introspection", []),
        ("explain", []),
        ("fairness", ["analysis.fairness.sensitive=[sex]"]),
    ],
}
DATASETS = {
    "digits": ("images", ["data=digits"]),
    "mnist5k": ("images", ["data=mnist5k"]),
    "table30k": ("table", ["data=csv", "model=mlp"]),
}
LEAN = [
    "tracking=none",
    "callbacks.progress_bar=null",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def available() -> set[str]:
    return {p.stem for p in (ROOT / "conf" / "analysis").glob("*.yaml")}


def write_table(path: Path, rows: int, seed: int = 0) -> None:
    """A table with categorical (``sex``, ``region``) and numeric columns whose binary target
    follows a logistic model of them."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, rows),
            "income": rng.lognormal(10, 0.5, rows).round(2),
            "hours": rng.integers(5, 70, rows),
            "sex": rng.choice(["F", "M"], rows),
            "region": rng.choice(["north", "south", "east", "west"], rows, p=[0.4, 0.3, 0.2, 0.1]),
            **{f"x{i}": rng.normal(size=rows).round(4) for i in range(8)},
        }
    )
    logit = (
        0.04 * (frame["age"] - 50)
        + 0.8 * (np.log(frame["income"]) - 10)
        + 0.5 * (frame["sex"] == "M")
        - 0.7 * (frame["region"] == "west")
        + frame[[f"x{i}" for i in range(8)]].to_numpy() @ rng.normal(0, 0.5, 8)
    )
    frame["target"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame.to_csv(path, index=False)


def analysed_run(name: str, out: Path, table: Path) -> dict[str, Any]:
    """One run of data set ``name`` with its default analysis list; its timings."""
    from mlx import run as mlx_run
    from tests.conftest import compose_cfg

    kind, data = DATASETS[name]
    have = available()
    listed = [(a, extra) for a, extra in DEFAULTS[kind] if a in have]
    overrides = [
        *LEAN,
        *data,
        f"analysis=[{','.join(a for a, _ in listed)}]",
        *(o for _, extra in listed for o in extra),
    ]
    if name == "table30k":
        overrides += [f"data.source.path={table}", "data.source.target=target"]
    t0 = time.perf_counter()
    mlx_run.run(compose_cfg(overrides, out))
    wall = time.perf_counter() - t0
    record = json.loads((out / "metrics.json").read_text())
    return {
        "name": name,
        "kind": kind,
        "listed": [a for a, _ in listed],
        "missing": [a for a, _ in DEFAULTS[kind] if a not in have],
        "train": record["stages"]["train"],
        "analyse": record["stages"].get("analyse"),
        "per_analysis": record.get("analysis_seconds", {}),
        "failed": record.get("analysis_failed", {}),
        "test_size": record["data"]["split_sizes"]["test"],
        "epochs": record.get("epochs_trained"),
        "wall": wall,
        "test_acc": record["metrics"].get("test/acc"),
    }


def interval_widths(sizes: list[int], repeats: int, n_boot: int) -> list[dict[str, Any]]:
    """Median 95% interval widths of acc, f1_macro and roc_auc at each test size."""
    from mlx.analysis.metrics import metric_table

    rows = []
    k = 10
    for n in sizes:
        widths: dict[str, list[float]] = {"acc": [], "f1_macro": [], "roc_auc": []}
        t0 = time.perf_counter()
        for r in range(repeats):
            rng = np.random.default_rng(1000 * n + r)
            y = rng.integers(0, k, n)
            right = rng.random(n) < 0.9
            pred = np.where(right, y, (y + rng.integers(1, k, n)) % k)
            logits = rng.normal(0, 1, (n, k))
            logits[np.arange(n), pred] += 3.0
            probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            table = metric_table("classification", y, probs, n_boot=n_boot, seed=r)
            for key in widths:
                widths[key].append(table[key]["high"] - table[key]["low"])
        seconds = (time.perf_counter() - t0) / repeats
        row = {"n": n, "seconds": seconds}
        for key, values in widths.items():
            w = float(np.median(values))
            row[key] = w
            row[f"{key}_sqrt_n"] = w * math.sqrt(n)
        rows.append(row)
        print(f"widths n={n}: {row}", flush=True)
    return rows


def report(runs: list[dict[str, Any]], widths: list[dict[str, Any]], minutes: float) -> str:
    lines = [
        "# Model analysis: cost against training, and interval widths",
        "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by "
        f"`python benchmarks/analysis.py` ({minutes:.1f} minutes) on a shared 2-core CPU machine.",
        "",
        "## Cost of the default analysis list against training",
        "",
        "Each data set trained at its default length (`trainer.max_epochs=20`, early stopping "
        "on), then analysed on its test split by the default list for its kind of data. Times "
        "are wall seconds from the run record (`stages`, `analysis_seconds`).",
        "",
        "| data | test rows | epochs | train (s) | analyses | analyse (s) | analyse / train | "
        "target (<= 0.5) |",
        "|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in runs:
        ratio = r["analyse"] / r["train"] if r["analyse"] is not None else float("nan")
        lines.append(
            f"| {r['name']} | {r['test_size']:,} | {r['epochs']} | {r['train']:.1f} | "
            f"{', '.join(r['listed'])} | {r['analyse']:.1f} | {ratio:.2f} | "
            f"{'met' if ratio <= 0.5 else 'missed'} |"
        )
    lines += ["", "Per analysis (seconds, and share of the training time):", ""]
    names = list(dict.fromkeys(a for r in runs for a in r["per_analysis"]))
    lines.append("| data | " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    for r in runs:
        cells = [
            f"{r['per_analysis'][a]:.1f} ({r['per_analysis'][a] / r['train']:.2f})"
            if a in r["per_analysis"]
            else ""
            for a in names
        ]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    failed = {f"{r['name']}: {k}": v for r in runs for k, v in r["failed"].items()}
    missing = sorted({a for r in runs for a in r["missing"]})
    if failed:
        lines += ["", "Failed analyses: " + "; ".join(f"{k}: {v}" for k, v in failed.items())]
    if missing:
        lines += [
            "",
            f"Not in this version of mlx, so not in the list: {', '.join(missing)}.",
        ]
    lines += [
        "",
        "## Interval widths against the size of the test split",
        "",
        "Median width of the 95% interval over 20 synthetic test splits per size (10 classes, "
        "each prediction right with probability 0.9): accuracy's Wilson interval, and the "
        "percentile bootstrap (1,000 resamples) of macro F1 and ROC AUC. Width x sqrt(n) stays "
        "about constant: quadrupling the test split halves the interval.",
        "",
        "| n | acc width | acc width x sqrt(n) | f1_macro width | f1_macro x sqrt(n) | "
        "roc_auc width | roc_auc x sqrt(n) | seconds per table |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in widths:
        lines.append(
            f"| {w['n']:,} | {w['acc']:.4f} | {w['acc_sqrt_n']:.3f} | {w['f1_macro']:.4f} | "
            f"{w['f1_macro_sqrt_n']:.3f} | {w['roc_auc']:.4f} | {w['roc_auc_sqrt_n']:.3f} | "
            f"{w['seconds']:.2f} |"
        )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    args = parser.parse_args()
    t0 = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory(prefix="mlx-analysis-bench-") as tmp:
        table = Path(tmp) / "table30k.csv"
        write_table(table, TABLE_ROWS)
        for name in args.datasets:
            result = analysed_run(name, Path(tmp) / name, table)
            print(json.dumps(result), flush=True)
            runs.append(result)
    widths = interval_widths([100, 400, 1600, 6400], repeats=20, n_boot=1000)
    text = report(runs, widths, (time.perf_counter() - t0) / 60)
    out = ROOT / "reports" / "benchmarks" / "analysis.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
