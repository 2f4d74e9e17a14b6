"""Input pipeline: serial vs parallel + prefetch vs cached epochs, against the training step alone.

The data set is digits (1,257 training images of 8x8) with a deterministic per-sample transform
of known cost: a 3x3 box blur plus a wait of ``--sample-ms`` per image. The wait is a sleep, so
it stands for work that releases the GIL and needs no core of the training process (reading a
file or a remote object, decoding in native code on another core): this machine has 2 cores
shared with other users, on which 2 CPU-bound workers and a CPU-bound training step could not
run at once, and the parallel target would measure the neighbours rather than the pipeline.

The training step is a real one (a wide MLP, AdamW, one thread), repeated to cost about
``--step-ms`` per batch; its pure compute time is measured by an epoch over batches already in
memory (the limit). Each measured path uses the real ``mlx.data.ArrayDataModule`` and
``LoaderSettings`` (the ``input`` group), under one seed, so every path trains on the same
batches in the same order (checked):

- serial: ``input.num_workers=0``; the transform runs in the loader (the train split's dataset
  is one that transforms the rows of each batch when indexed), so every epoch pays it;
- parallel + prefetch: the same, with 2 worker processes (``input=parallel``: persistent, 4
  batches ahead per worker) and with 2 worker threads (``input=threads``, torchdata nodes);
- cached: the transform is part of the source, done once, and ``input.cache=disk`` keeps its
  result; the measured epochs read the cache entry (a hit in a new data module).

Rounds are interleaved so the shared machine's noise hits every path alike; in each round each
path runs ``--epochs`` epochs, each right after an epoch of pure compute that gives its limit,
the first dropped (worker start-up); a round's ratio is the median of its epochs' ratios, and
the reported ratio the median over rounds.

    python benchmarks/input_pipeline.py [--rounds 4] [--epochs 4] [--sample-ms 1.0] [--step-ms 25]

Writes reports/benchmarks/input_pipeline.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mlx.data import ArrayDataModule, Digits, Loaded, LoaderSettings  # noqa: E402

SEED = 42
BATCH = 32
WORKERS = 2


def blur(x: torch.Tensor, per_sample_s: float) -> torch.Tensor:
    """The deterministic transform: a 3x3 box blur of ``x`` (N, 1, H, W), costing
    ``per_sample_s`` of waiting per image."""
    time.sleep(per_sample_s * len(x))
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class BlurredDigits(Digits):
    """Digits with the transform applied to every image when loaded: what the cache keeps."""

    def __init__(self, per_sample_s: float) -> None:
        self.per_sample_s = per_sample_s

    def __call__(self) -> Loaded:
        data = super().__call__()
        data.features = blur(torch.from_numpy(data.features), self.per_sample_s).numpy()
        return data


class TransformedRows(torch.utils.data.Dataset):
    """The raw train split, transformed when a batch of rows is read (in the loader)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, per_sample_s: float) -> None:
        self.x, self.y, self.per_sample_s = x, y, per_sample_s

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return blur(self.x[rows], self.per_sample_s), self.y[rows]


def data_module(settings: LoaderSettings, source: Any = None, in_loader_s: float = 0.0):
    """A set-up data module; with ``in_loader_s`` its train split is transformed per batch."""
    torch.manual_seed(SEED)  # the data module seeds its one generator from this
    dm = ArrayDataModule(source or Digits(), batch_size=BATCH, loader=settings)
    dm.setup("fit")
    if in_loader_s:
        dm.datasets["train"] = TransformedRows(*dm.datasets["train"].tensors, in_loader_s)
    return dm


class Step:
    """A training step of a known compute time: ``repeat`` AdamW steps of an MLP."""

    def __init__(self, step_s: float) -> None:
        torch.manual_seed(0)
        # wide layers: most of a step is in torch kernels, which release the GIL, as in a
        # real training step (a narrow MLP would be mostly Python, holding the GIL)
        self.net = torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Linear(64, 1024),
            torch.nn.ReLU(),
            torch.nn.Linear(1024, 1024),
            torch.nn.ReLU(),
            torch.nn.Linear(1024, 10),
        )
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=1e-3)
        self.repeat = 1
        x, y = torch.rand(BATCH, 1, 8, 8), torch.randint(0, 10, (BATCH,))
        # calibrate: the repeat count that costs step_s, from the fastest of a few timings (the
        # least disturbed by the shared machine's other work)
        timings = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(10):
                self(x, y)
            timings.append((time.perf_counter() - t0) / 10)
        self.repeat = max(1, round(step_s / min(timings)))

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        for _ in range(self.repeat):
            loss = F.cross_entropy(self.net(x), y)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()


def epochs(loader: Any, step: Step | None, n: int) -> tuple[list[float], list[tuple[float, int]]]:
    """Seconds of each of ``n`` epochs over ``loader`` (training with ``step``, or only
    loading), and a checksum of each epoch's batches (sum of inputs, order of targets)."""
    seconds, sums = [], []
    for _ in range(n):
        total, order = 0.0, 0
        t0 = time.perf_counter()
        for i, (x, y) in enumerate(loader):
            if step is not None:
                step(x, y)
            total += float(x.sum())
            order = (order * 31 + int(y[0]) + i) % 1_000_003
        seconds.append(time.perf_counter() - t0)
        sums.append((round(total, 2), order))
    return seconds, sums


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--sample-ms", type=float, default=1.0)
    parser.add_argument("--step-ms", type=float, default=25.0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core for the training step; the other is the neighbours'
    per_sample = args.sample_ms / 1000
    step = Step(args.step_ms / 1000)

    serial = LoaderSettings()
    parallel = {
        kind: LoaderSettings(
            num_workers=WORKERS,
            prefetch_factor=4,
            persistent_workers=kind == "process",
            workers=kind,  # type: ignore[arg-type]
        )
        for kind in ("process", "thread")
    }
    times: dict[str, list[float]] = {
        k: [] for k in ("compute", "load", "serial", "process", "thread", "cached")
    }
    checks: dict[str, list[Any]] = {k: [] for k in ("serial", "process", "thread", "cached")}
    ratios: dict[str, list[float]] = {k: [] for k in checks}
    with tempfile.TemporaryDirectory() as tmp:
        disk = LoaderSettings(cache="disk", cache_dir=tmp)
        t0 = time.perf_counter()
        data_module(disk, BlurredDigits(per_sample))  # a miss: transforms and writes the entry
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        cached_dm = data_module(disk, BlurredDigits(per_sample))  # a hit
        hit_s = time.perf_counter() - t0
        n_train = len(cached_dm.datasets["train"])
        loaders = {
            "serial": data_module(serial, in_loader_s=per_sample).train_dataloader(),
            **{
                kind: data_module(s, in_loader_s=per_sample).train_dataloader()
                for kind, s in parallel.items()
            },
            "cached": cached_dm.train_dataloader(),
        }
        load_only = data_module(serial, in_loader_s=per_sample).train_dataloader()
        # the limit: the same steps over the same batches, already in memory
        batches = list(data_module(disk, BlurredDigits(per_sample)).train_dataloader())

        def compute_epoch() -> float:
            t0 = time.perf_counter()
            for x, y in batches:
                step(x, y)
            return time.perf_counter() - t0

        limits = {
            "serial": lambda c, load: c,
            "process": lambda c, load: max(load / WORKERS, c),
            "thread": lambda c, load: max(load / WORKERS, c),
            "cached": lambda c, load: c,
        }
        for r in range(args.rounds):
            s, _ = epochs(load_only, None, 1)
            times["load"].append(s[0])
            computes = []
            for name, loader in loaders.items():
                # each epoch right after a compute epoch, so that the machine's drifts hit both
                pairs = []
                for e in range(args.epochs):
                    c = compute_epoch()
                    (t,), sums = epochs(loader, step, 1)
                    checks[name].append(sums)
                    if e:  # the first epoch starts the workers
                        pairs.append((t, limits[name](c, times["load"][-1])))
                        computes.append(c)
                times[name].append(statistics.median(t for t, _ in pairs))
                ratios[name].append(statistics.median(t / lim for t, lim in pairs))
            times["compute"].append(statistics.median(computes))
            print(
                f"round {r + 1}/{args.rounds}: "
                + ", ".join(f"{k} {v[-1] * 1000:.0f} ms" for k, v in times.items()),
                flush=True,
            )
    same = all(c == checks["serial"] for c in checks.values())

    rows = [
        ("serial (`num_workers=0`), transform in the loader", "serial", "compute", None),
        (
            f"parallel + prefetch: {WORKERS} worker processes (`input=parallel`)",
            "process",
            f"max(load / {WORKERS}, compute)",
            1.15,
        ),
        (
            f"parallel + prefetch: {WORKERS} worker threads (`input=threads`, torchdata nodes)",
            "thread",
            f"max(load / {WORKERS}, compute)",
            1.15,
        ),
        ("cached (`input.cache=disk`, a hit), 0 workers", "cached", "compute", 1.05),
    ]
    med = {k: statistics.median(v) for k, v in times.items()}
    n_batches = -(-n_train // BATCH)
    command = (
        f"python benchmarks/input_pipeline.py --rounds {args.rounds} --epochs {args.epochs} "
        f"--sample-ms {args.sample_ms:g} --step-ms {args.step_ms:g}"
    )
    lines = [
        "# Input pipeline: serial, parallel + prefetch and cached epochs",
        "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `{command}`.",
        "",
        f"Digits, {n_train} training images, batch {BATCH} ({n_batches} steps per epoch), seed "
        f"{SEED}. Deterministic transform: a 3x3 box blur plus a {args.sample_ms:g} ms wait per "
        "image (a sleep: it stands for work that releases the GIL and needs no core of the "
        "training process, such as reading files; this machine has 2 cores shared with other "
        "users, too few for 2 CPU-bound workers beside a CPU-bound step). Training step: an MLP "
        f"(64-1024-1024-10) with AdamW on one thread, repeated {step.repeat}x (asked: about {args.step_ms:g} ms "
        f"per batch; measured below: {med['compute'] / n_batches * 1000:.1f} ms). {args.rounds} interleaved rounds; in each, every path runs {args.epochs} "
        "epochs, each right after a pure-compute epoch that gives its limit, the first dropped "
        "(worker start-up); a round's ratio is the median of its epochs' ratios, the ratio "
        "below the median over rounds.",
        "",
        f"- compute (the limit: the same steps over batches already in memory): "
        f"{med['compute'] * 1000:.0f} ms per epoch",
        f"- load (the serial loader alone, no step): {med['load'] * 1000:.0f} ms per epoch; "
        f"load / {WORKERS} workers = {med['load'] / WORKERS * 1000:.0f} ms; a serial epoch does "
        f"both one after the other: load + compute = {(med['load'] + med['compute']) * 1000:.0f} ms",
        f"- cache: the transform once and the entry written {build_s * 1000:.0f} ms; "
        f"a hit (read, new data module) {hit_s * 1000:.0f} ms",
        "",
        "| epoch | median (ms) | limit | ratio to limit | target | met | per-round ratios |",
        "|---|---:|---|---:|---:|---|---|",
    ]
    for label, name, limit, target in rows:
        r = statistics.median(ratios[name])
        lines.append(
            f"| {label} | {med[name] * 1000:.0f} | {limit} | {r:.2f} | "
            + (f"<= {target:.2f} | {'yes' if r <= target else 'no'}" if target else "| ")
            + " | "
            + ", ".join(f"{x:.2f}" for x in ratios[name])
            + " |"
        )
    verdict = "are identical" if same else "DIFFER"
    lines += [
        "",
        f"The batches of every measured path (input sums and target order, every epoch) {verdict}:",
        "the paths did the same work on the same batches. The machine is shared (2 cores, other",
        "users): a ratio below 1 is its noise (a limit epoch and its measured epoch run one after",
        "the other, not at once), which is why each ratio is a median of paired epochs.",
        "",
    ]
    out = ROOT / "reports" / "benchmarks" / "input_pipeline.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    if not same:
        sys.exit("the paths' batches differ: the comparison is not like for like")


if __name__ == "__main__":
    main()
