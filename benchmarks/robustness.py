"""Robustness and privacy on MNIST 5k with the default CNN: what hardening buys, what a backdoor
does and whether it is found, how fast a thief copies the model, and what each attack costs.

Each part compares two models trained the same way in one run, so the shared machine's noise
cancels out of the comparison:

1. Hardening. ``mlx run data=mnist5k compression=[harden] analysis=[robustness] analysis.on=all``:
   the naturally trained CNN against the same CNN after PGD adversarial training (eps=0.1,
   inputs in [0, 1]), attacked by FGSM, PGD (20 steps), Square, Carlini-Wagner L2 and
   HopSkipJump. Targets: robust accuracy under PGD at eps=0.1 >= 0.80 after hardening, with at
   most 3 points of clean accuracy lost (Madry et al. report 89% at eps=0.3 on full MNIST with a
   larger network). Each attack's seconds per 1,000 examples on the natural model.
2. Poisoning. ``analysis=[poisoning]`` with 5% and 10% of the training split poisoned: the
   backdoored twin (trained by the run's engine) against the clean model. Targets: attack
   success >= 90% with <= 10% poisoned and <= 1 point of clean accuracy lost; activation
   clustering recall >= 0.8.
3. Extraction and membership. ``analysis=[privacy]`` with ``data.val_fraction=0.45`` (2,250
   validation images the victim never trains on, which the thief may query): CopycatCNN and
   KnockoffNets fidelity (agreement with the victim on the test split) against 250-2,000
   queries. Target: CopycatCNN >= 0.90 fidelity within 2,000 queries. The membership attacks'
   advantage beside the generalisation gap.

    python benchmarks/robustness.py [--parts hardening poisoning privacy]

Writes reports/benchmarks/robustness.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LEAN = [
    "tracking=none",
    "callbacks.progress_bar=null",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "data=mnist5k",
]
EPS = [0, 0.05, 0.1, 0.2, 0.3]
ATTACKS = ["fgsm", "pgd", "square", "cw", "hopskipjump"]
HARDENING = [
    *LEAN,
    "compression=[harden]",
    "compression.harden.epochs=3",
    "analysis=[robustness]",
    "analysis.on=all",
    f"analysis.robustness.attacks=[{','.join(ATTACKS)}]",
    f"analysis.robustness.eps=[{','.join(str(e) for e in EPS)}]",
    "analysis.robustness.pgd_steps=20",
    "analysis.robustness.samples=200",
    # HopSkipJump's default budget (10 steps, up to 500 queries a gradient estimate) costs about
    # a million forward passes of the CNN per network here; a fifth of it still finds most
    "analysis.robustness.hsj_steps=5",
    "analysis.robustness.hsj_evals=100",
]


# --quick: the same parts on digits with two epochs, to try the script (not a result)
QUICK: list[str] = []


def mlx_run(overrides: list[str], out: Path) -> dict[str, Any]:
    """One run in this process; its record."""
    from mlx import run as runner
    from tests.conftest import compose_cfg

    t0 = time.perf_counter()
    runner.run(compose_cfg([*overrides, *QUICK], out))
    record = json.loads((out / "metrics.json").read_text())
    record["_wall"] = time.perf_counter() - t0
    return record


def hardening(tmp: Path) -> dict[str, Any]:
    record = mlx_run(HARDENING, tmp / "hardening")
    rows = record["compression"]
    return {
        "wall": record["_wall"],
        "train": record["stages"]["train"],
        "compress": record["stages"].get("compress"),
        "details": rows[-1]["details"],
        "clean": {"natural": rows[0]["test/acc"], "hardened": rows[-1]["test/acc"]},
        "natural": record["analysis"]["baseline"]["robustness"],
        "hardened": record["analysis"]["1_harden"]["robustness"],
        "seconds": record.get("analysis_seconds", {}),
        "failed": record.get("analysis_failed", {}),
    }


def _acc(entry: dict[str, Any]) -> str:
    return _share(entry["robust_acc"])


def hardening_lines(h: dict[str, Any]) -> list[str]:
    nat, hard = h["natural"], h["hardened"]
    pgd = (
        nat["pgd"]["eps_0.1"]["robust_acc"]["value"],
        hard["pgd"]["eps_0.1"]["robust_acc"]["value"],
    )
    lost = h["clean"]["natural"] - h["clean"]["hardened"]
    d = h["details"]
    lines = [
        "## 1. Hardening: PGD adversarial training",
        "",
        f"`mlx run {' '.join(HARDENING)}` ({h['wall'] / 60:.1f} min: training {h['train']:.0f} s, "
        f"hardening {h['compress'] or 0:.0f} s for {d['epochs']} epochs at eps={d['eps']:g}, "
        f"{d['steps']} PGD steps a batch).",
        "",
        "| | natural | hardened | target | result |",
        "|---|---:|---:|---|---|",
        f"| clean test accuracy (the whole test split) | {h['clean']['natural']:.4f} | "
        f"{h['clean']['hardened']:.4f} | <= 3 points lost | "
        f"{'met' if lost <= 0.03 else 'missed'} ({100 * lost:+.2f} points) |",
        f"| robust accuracy, PGD-20 eps=0.1 ({nat['samples']} test images) | {pgd[0]:.3f} | "
        f"{pgd[1]:.3f} | >= 0.80 | {'met' if pgd[1] >= 0.80 else 'missed'} |",
        f"| the stage's own measure ({d.get('eval', '')}) | "
        f"{d.get('robust_acc_before', float('nan')):.3f} | "
        f"{d.get('robust_acc_after', float('nan')):.3f} | | gain {d.get('robust_gain', 0):+.3f} |",
        "",
        "Robust accuracy [95% Wilson interval] by attack and budget; natural -> hardened:",
        "",
        "| attack | budget | natural | hardened |",
        "|---|---|---|---|",
    ]
    for attack in ATTACKS:
        if attack not in nat:
            continue
        if nat[attack]["norm"] == "linf":
            for e in EPS:
                key = f"eps_{e:g}"
                lines.append(
                    f"| {attack} | L-inf {e:g} | {_acc(nat[attack][key])} | "
                    f"{_acc(hard[attack][key])} |"
                )
        else:
            for key in (k for k in nat[attack] if k.startswith("radius_")):
                lines.append(
                    f"| {attack} | L2 {key.split('_')[1]} | {_acc(nat[attack][key])} | "
                    f"{_acc(hard[attack][key])} |"
                )
            lines.append(
                f"| {attack} | median L2 found | {nat[attack]['median_l2'] or float('nan'):.3f} | "
                f"{hard[attack]['median_l2'] or float('nan'):.3f} |"
            )
    lines += [
        "",
        "Runtime per 1,000 attacked examples (seconds, natural model; L-infinity attacks: the "
        "mean over their non-zero epsilons):",
        "",
        "| attack | s / 1,000 (natural) | s / 1,000 (hardened) |",
        "|---|---:|---:|",
    ]
    for attack in ATTACKS:
        if attack in nat:
            lines.append(
                f"| {attack} | {nat[attack]['seconds_per_1000']:.1f} | "
                f"{hard[attack]['seconds_per_1000']:.1f} |"
            )
    if h["failed"]:
        lines += ["", f"Failed analyses: {h['failed']}"]
    return lines


POISON_FRACTIONS = (0.02, 0.05)


def poisoning(tmp: Path) -> list[dict[str, Any]]:
    results = []
    for fraction in POISON_FRACTIONS:
        overrides = [*LEAN, "analysis=[poisoning]", f"analysis.poisoning.fraction={fraction}"]
        record = mlx_run(overrides, tmp / f"poisoning_{fraction}")
        results.append(
            {
                "fraction": fraction,
                "overrides": overrides,
                "wall": record["_wall"],
                "train": record["stages"]["train"],
                "section": record["analysis"]["poisoning"],
                "failed": record.get("analysis_failed", {}),
            }
        )
    return results


def _share(value: dict[str, Any]) -> str:
    return f"{value['value']:.3f} [{value['low']:.3f}, {value['high']:.3f}]"


def poisoning_lines(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## 2. Poisoning: a backdoor and activation clustering",
        "",
        f"`mlx run {' '.join(results[0]['overrides'][:-1])} analysis.poisoning.fraction=F`: the "
        "pattern trigger, target class 0, a poisoned twin trained like the model (same "
        "config, epochs and seed). Targets: attack success >= 0.90 with <= 10% poisoned and "
        "<= 1 point of clean accuracy lost; activation clustering recall >= 0.8.",
        "",
        "| poisoned | rows | attack success (twin) | attack success (clean model) | clean acc "
        "(clean -> twin) | loss (points) | activation precision | activation recall | "
        "spectral recall | targets |",
        "|---:|---:|---|---|---|---:|---|---|---|---|",
    ]
    for r in results:
        s = r["section"]
        if "attack_success_rate" not in s:
            lines.append(f"| {r['fraction']:.0%} | failed: {r['failed']} |||||||||")
            continue
        asr, loss = s["attack_success_rate"]["value"], s["clean_acc_loss"]["value"]
        act = s.get("activation", {})
        recall = act.get("recall", {}).get("value")
        met = asr >= 0.9 and loss <= 0.01 and recall is not None and recall >= 0.8
        lines.append(
            f"| {r['fraction']:.0%} | {s['poisoned']:,} of {s['train_size']:,} | "
            f"{_share(s['attack_success_rate'])} | "
            f"{_share(s['reference']['attack_success_rate'])} | "
            f"{s['reference']['clean_acc']['value']:.4f} -> {s['clean_acc']['value']:.4f} | "
            f"{100 * loss:+.2f} | {_share(act['precision']) if act else '-'} | "
            f"{_share(act['recall']) if act else '-'} | "
            f"{_share(s['spectral']['recall']) if 'spectral' in s else '-'} | "
            f"{'met' if met else 'missed'} |"
        )
    lines += [
        "",
        "Seconds: the twin's training, and each defence on the poisoned training split:",
        "",
        "| poisoned | model's training | twin's training | activation | spectral |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        s = r["section"]
        if "train_seconds" in s:
            lines.append(
                f"| {r['fraction']:.0%} | {r['train']:.0f} | {s['train_seconds']:.0f} | "
                f"{s.get('activation', {}).get('seconds', float('nan')):.1f} | "
                f"{s.get('spectral', {}).get('seconds', float('nan')):.1f} |"
            )
    return lines


QUERIES = [250, 500, 1000, 2000]


def privacy(tmp: Path) -> dict[str, Any]:
    overrides = [
        *LEAN,
        "data.val_fraction=0.45",
        "analysis=[privacy]",
        f"analysis.privacy.queries=[{','.join(str(q) for q in QUERIES)}]",
    ]
    record = mlx_run(overrides, tmp / "privacy")
    return {
        "overrides": overrides,
        "wall": record["_wall"],
        "train": record["stages"]["train"],
        "sizes": record["data"]["split_sizes"],
        "section": record["analysis"].get("privacy", {}),
        "seconds": record.get("analysis_seconds", {}),
        "failed": record.get("analysis_failed", {}),
    }


def privacy_lines(p: dict[str, Any]) -> list[str]:
    s, sizes = p["section"], p["sizes"]
    lines = [
        "## 3. Privacy: extraction and membership inference",
        "",
        f"`mlx run {' '.join(p['overrides'])}` ({p['wall'] / 60:.1f} min; the victim trains on "
        f"{sizes['train']:,} images, the thief may query the {sizes['val']:,} validation images "
        f"it never trained on, fidelity and accuracy are read on the {sizes['test']:,} test "
        "images). Target: CopycatCNN fidelity >= 0.90 within 2,000 queries.",
        "",
    ]
    if p["failed"] or "extraction" not in s:
        return [*lines, f"Failed: {p['failed'] or s.get('failed')}", ""]
    ext = s["extraction"]
    lines += [
        f"Victim test accuracy {_share(ext['victim_acc'])}.",
        "",
        "| thief | queries | fidelity | thief accuracy | s / 1,000 queries |",
        "|---|---:|---|---|---:|",
    ]
    for thief in ("copycat", "knockoff"):
        for q in QUERIES:
            e = ext.get(thief, {}).get(f"queries_{q}")
            if e:
                lines.append(
                    f"| {thief} | {q:,} | {_share(e['fidelity'])} | {_share(e['acc'])} | "
                    f"{e['seconds_per_1000']:.1f} |"
                )
    best = ext.get("copycat", {}).get(f"queries_{QUERIES[-1]}", {}).get("fidelity", {})
    first = next(
        (q for q in QUERIES if ext["copycat"][f"queries_{q}"]["fidelity"]["value"] >= 0.9), None
    )
    lines += [
        "",
        f"CopycatCNN: fidelity {best.get('value', float('nan')):.3f} at {QUERIES[-1]:,} queries "
        f"(target >= 0.90: {'met' if best.get('value', 0) >= 0.9 else 'missed'}"
        + (f"; first reached at {first:,} queries)." if first else ")."),
        "",
    ]
    m = s.get("membership")
    if m:
        lines += [
            "| membership attack | advantage (TPR - FPR) | AUC |",
            "|---|---|---|",
            f"| rule-based (member iff correct) | {_share(m['rule']['advantage'])} | - |",
            f"| learned ({m['learned'].get('input', 'loss')}) | "
            f"{_share(m['learned']['advantage'])} | {_share(m['learned']['auc'])} |",
            "",
            f"Generalisation gap (train - test): accuracy {_share(m['gap']['acc'])}, loss "
            f"{_share(m['gap']['loss'])}.",
            "",
        ]
    if "inversion" in s:
        inv = s["inversion"]
        lines.append(
            f"MIFace: {_share(inv['recognised'])} of the classes' reconstructions recognised "
            f"(nearest to their own class's mean image), {inv['seconds']:.1f} s for all classes."
        )
    lines.append(f"Analysis seconds: {p['seconds']}.")
    return lines


def commit() -> str:
    from mlx.record import git_state

    return (git_state(ROOT)["sha"] or "unknown")[:7]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parts = ["hardening", "poisoning", "privacy"]
    parser.add_argument("--parts", nargs="+", default=parts, choices=parts)
    parser.add_argument("--quick", action="store_true", help="digits, 2 epochs: tries the script")
    parser.add_argument("--out", type=Path, default=None, help="the report's path")
    args = parser.parse_args()
    if args.quick:
        QUICK.extend(["data=digits", "trainer.max_epochs=2"])
        QUERIES[:] = [25, 100, 250]
    t0 = time.perf_counter()
    body: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mlx-robustness-bench-") as tmp:
        if "hardening" in args.parts:
            h = hardening(Path(tmp))
            print(json.dumps({k: v for k, v in h.items() if k not in ("natural", "hardened")}))
            body += hardening_lines(h) + [""]
        if "poisoning" in args.parts:
            p = poisoning(Path(tmp))
            print(json.dumps([{k: v for k, v in r.items() if k != "section"} for r in p]))
            body += poisoning_lines(p) + [""]
        if "privacy" in args.parts:
            q = privacy(Path(tmp))
            print(json.dumps({k: v for k, v in q.items() if k != "section"}))
            body += privacy_lines(q) + [""]
    minutes = (time.perf_counter() - t0) / 60
    head = [
        "# Robustness and privacy under attack (ART) on MNIST 5k",
        "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from commit {commit()} by "
        f"`python benchmarks/robustness.py --parts {' '.join(args.parts)}` ({minutes:.1f} "
        "minutes) on a shared 2-core CPU "
        "machine; the default CNN, MNIST 5k's split (3,500 train, 500 val, 1,000 test) unless "
        "a part says otherwise.",
        "",
    ]
    if args.quick:
        head[0] += " (--quick: digits, 2 epochs; a trial of the script, not a result)"
    text = "\n".join(head + body)
    out = args.out or ROOT / "reports" / "benchmarks" / (
        "robustness_quick.md" if args.quick else "robustness.md"
    )
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
