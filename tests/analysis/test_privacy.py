"""Privacy attacks (ART): the rule-based attack's advantage is the model's accuracy gap on the
samples (Yeom et al.), an overfit model leaks membership and a generalising one barely does,
MIFace's reconstructions look like their classes, a thief's fidelity rises with its query
budget, the gate's keys are the section's, and what cannot run is refused before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mlx import run as mlx_run
from mlx.analysis.evidence import DataInfo, Evidence
from mlx.analysis.privacy import Privacy
from mlx.analysis.validation import flatten
from mlx.errors import ConfigError
from tests.conftest import QUIET, compose_cfg


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def _train(x: np.ndarray, y: np.ndarray, steps: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = _mlp()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    return net.eval()


def _evidence(net: nn.Module, data: dict, *, gradients: bool = True, **extra) -> Evidence:
    def predict(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(net(torch.as_tensor(rows, dtype=torch.float32)), 1).numpy()

    return Evidence(
        task="classification",
        x=data["x"],
        y=data["y"],
        outputs=predict(data["x"]),
        predict=predict,
        net=net if gradients else None,
        seed=3,
        train=data["train"],
        val=data["val"],
        build=_mlp,
        class_names=[str(c) for c in range(10)],
        **extra,
    )


@pytest.fixture(scope="module")
def digits() -> dict:
    """scikit-learn's digits in [0, 1]: 600 training, 900 validation, 297 test images; an MLP
    that generalises (trained on the 600, ~1 s) and one that memorised random labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    y = data.target.astype(np.int64)
    split = {
        "train": (x[:600], y[:600]),
        "val": (x[600:1500], y[600:1500]),
        "x": x[1500:],
        "y": y[1500:],
    }
    noise = np.random.default_rng(0).integers(0, 10, 600)
    return {
        **split,
        "net": _train(x[:600], y[:600], 150),
        # the training rows with random labels, learned by heart: members are recognised
        "memorised": _train(x[:600], noise, 600),
        "noise": noise,
    }


def _info(**changes) -> DataInfo:
    base = dict(
        task="classification",
        columns=None,
        categorical=[],
        feature_names=None,
        class_names=[str(c) for c in range(10)],
        input_shape=[1, 8, 8],
        value_range=(0.0, 1.0),
        split_sizes={"train": 600, "val": 900, "test": 297},
    )
    return DataInfo(**{**base, **changes})


def _accuracy(ev: Evidence, x: np.ndarray, y: np.ndarray) -> float:
    return float((ev.predict(x).argmax(axis=1) == y).mean())


@pytest.mark.parametrize("model", ["net", "memorised"])
def test_rule_advantage_is_the_accuracy_gap_on_the_samples(
    digits: dict, model: str, tmp_path: Path
) -> None:
    """Yeom et al.: member iff correct, so TPR is the accuracy on the members and FPR the
    accuracy on the non-members, exactly."""
    data = dict(digits)
    if model == "memorised":
        data["train"] = (digits["train"][0], digits["noise"])
    ev = _evidence(digits[model], data)
    analysis = Privacy(attacks=["membership"], members=200, n_boot=50)
    entry = analysis.run(ev, tmp_path)["membership"]
    # the same seeded draw the analysis makes
    rng = np.random.default_rng(ev.seed)
    members = np.sort(rng.choice(600, 200, replace=False))
    outsiders = np.sort(rng.choice(len(ev.x), 200, replace=False))
    acc_m = _accuracy(ev, data["train"][0][members], data["train"][1][members])
    acc_n = _accuracy(ev, ev.x[outsiders], ev.y[outsiders])
    rule = entry["rule"]
    assert rule["tpr"]["value"] == acc_m and rule["fpr"]["value"] == acc_n
    assert rule["advantage"]["value"] == acc_m - acc_n
    low, high = rule["advantage"]["low"], rule["advantage"]["high"]
    assert low <= rule["advantage"]["value"] <= high
    # the whole splits' gap beside it
    train_acc = _accuracy(ev, *data["train"])
    assert entry["gap"]["acc"]["value"] == pytest.approx(train_acc - _accuracy(ev, ev.x, ev.y))
    assert entry["train"]["acc"] == pytest.approx(train_acc)


def test_an_overfit_model_leaks_membership_far_more_than_a_generalising_one(
    digits: dict, tmp_path: Path
) -> None:
    analysis = Privacy(attacks=["membership"], members=200, n_boot=100)
    overfit = dict(digits, train=(digits["train"][0], digits["noise"]))
    leaky = analysis.run(_evidence(digits["memorised"], overfit), tmp_path)["membership"]
    fair = analysis.run(_evidence(digits["net"], digits), tmp_path)["membership"]
    assert leaky["gap"]["acc"]["value"] > 0.8  # random labels: right on members only
    assert leaky["rule"]["advantage"]["low"] > 0.7
    assert leaky["learned"]["auc"]["value"] > 0.9 and leaky["learned"]["auc"]["low"] > 0.8
    assert leaky["learned"]["advantage"]["value"] > 0.5
    assert leaky["learned"]["input"] == "loss" and leaky["learned"]["judged_on"] == 100
    # the generalising model (test accuracy ~0.87): a small gap, an attack nearer guessing
    assert fair["gap"]["acc"]["value"] < 0.2
    assert fair["learned"]["auc"]["value"] < 0.75
    assert fair["learned"]["auc"]["high"] < leaky["learned"]["auc"]["low"]
    assert fair["rule"]["advantage"]["high"] < leaky["rule"]["advantage"]["low"]
    assert fair["gap"]["loss"]["value"] > leaky["gap"]["loss"]["value"]  # train - test loss
    rows = (tmp_path / "membership.csv").read_text().splitlines()
    assert rows[0] == "attack,metric,value,low,high" and len(rows) == 1 + 3 + 4 + 2
    assert (tmp_path / "membership_roc.svg").read_text().startswith("<?xml")


@pytest.mark.parametrize("attack_model", ["gb", "nn"])
def test_learned_attack_on_predictions_without_gradients(
    digits: dict, attack_model: str, tmp_path: Path
) -> None:
    """A model without gradients (an ONNX graph): learned=null reads its predictions, inversion
    is skipped with a note, and every attack model finds the memorised members."""
    overfit = dict(digits, train=(digits["train"][0], digits["noise"]))
    ev = _evidence(digits["memorised"], overfit, gradients=False)
    analysis = Privacy(attack_model=attack_model, members=200, queries=[100], thief_epochs=5)
    info = _info(gradients=False)
    analysis.check(info)
    section = analysis.run(ev, tmp_path)
    assert section["attacks"] == ["membership", "extraction"]
    assert "inversion skipped" in section["notes"][0]
    learned = section["membership"]["learned"]
    assert learned["input"] == "prediction" and learned["attack_model"] == attack_model
    # ART's small network learns less from 100 members than gradient boosting
    assert learned["auc"]["value"] > {"gb": 0.8, "nn": 0.65}[attack_model]
    assert "inversion" not in section and "extraction" in section
    missing = [k for k in analysis.provides(info) if k not in flatten(section)]
    assert not missing, missing
    assert not any(k.startswith("inversion") for k in analysis.provides(info))


def test_the_same_seed_gives_the_same_numbers(digits: dict, tmp_path: Path) -> None:
    analysis = Privacy(attacks=["membership"], members=100, n_boot=30)
    runs = []
    for seed in (4, 4, 5):
        ev = _evidence(digits["net"], digits)
        ev.seed = seed
        runs.append(analysis.run(ev, tmp_path)["membership"]["learned"])
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_membership_on_a_table(tmp_path: Path) -> None:
    """Rows of a table (N, F): an overfit MLP on 60 noisy rows leaks its members."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 6)).astype(np.float32)
    y = (x[:, 0] + rng.normal(scale=1.5, size=400) > 0).astype(np.int64)  # noisy labels
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 128), nn.ReLU(), nn.Linear(128, 2))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(400):
        opt.zero_grad()
        nn.functional.cross_entropy(
            net(torch.as_tensor(x[:60])), torch.as_tensor(y[:60])
        ).backward()
        opt.step()
    net.eval()

    def predict(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(net(torch.as_tensor(rows)), 1).numpy()

    ev = Evidence(
        "classification",
        x[200:],
        y[200:],
        predict(x[200:]),
        predict,
        net=net,
        train=(x[:60], y[:60]),
    )
    info = _info(columns=[f"c{i}" for i in range(6)], input_shape=[6], class_names=["0", "1"])
    analysis = Privacy(attacks=["membership"], members=100, n_boot=50)
    analysis.check(info)
    entry = analysis.run(ev, tmp_path)["membership"]
    assert entry["members"] == 60  # the training split is smaller than members
    assert entry["gap"]["acc"]["value"] > 0.2
    assert entry["rule"]["advantage"]["value"] == pytest.approx(
        entry["gap"]["acc"]["value"], abs=0.1
    )
    assert entry["learned"]["auc"]["value"] > 0.7
    # attacks=null on a table: membership and extraction, no inversion
    assert Privacy().chosen(info) == ["membership", "extraction"]


def test_inversion_reconstructs_each_class(digits: dict, tmp_path: Path) -> None:
    ev = _evidence(digits["net"], digits)
    analysis = Privacy(attacks=["inversion"], inversion_steps=100)
    analysis.check(_info())
    entry = analysis.run(ev, tmp_path)["inversion"]
    assert entry["mean_confidence"] > 0.9  # the model sees each class in its reconstruction
    assert entry["recognised"]["value"] >= 0.7  # and most lie nearest their class's mean
    assert [c["class"] for c in entry["classes"]] == [str(c) for c in range(10)]
    # the start (the training mean) is no class's reconstruction: the model was climbed
    start = ev.predict(digits["train"][0].mean(axis=0, keepdims=True))[0]
    assert entry["mean_confidence"] > float(start.mean()) + 0.5
    assert len((tmp_path / "inversion.csv").read_text().splitlines()) == 11
    assert (tmp_path / "inversion.svg").read_text().startswith("<?xml")


def test_fidelity_rises_with_the_query_budget(digits: dict, tmp_path: Path) -> None:
    """Thieves trained on 50 and on 800 of the victim's answers to validation images: the
    larger budget agrees with the victim on far more test images, for both thieves."""
    ev = _evidence(digits["net"], digits)
    analysis = Privacy(attacks=["extraction"], queries=[50, 800], thief_epochs=10)
    analysis.check(_info())
    section = analysis.run(ev, tmp_path)
    entry = section["extraction"]
    for thief in ("copycat", "knockoff"):
        small, large = entry[thief]["queries_50"], entry[thief]["queries_800"]
        assert large["fidelity"]["value"] > small["fidelity"]["value"] + 0.2, (thief, entry)
        assert large["fidelity"]["low"] > small["fidelity"]["high"]
        assert large["fidelity"]["value"] > 0.85
        assert large["acc"]["value"] > small["acc"]["value"]
        assert large["seconds_per_1000"] > 0
    victim = entry["victim_acc"]["value"]
    assert victim == pytest.approx(float((ev.predictions == ev.y).mean()))
    assert len((tmp_path / "extraction.csv").read_text().splitlines()) == 1 + 2 * 2
    assert "extraction.svg" in section["figures"] and (tmp_path / "extraction.svg").is_file()


def test_every_gate_key_is_in_the_section(digits: dict, tmp_path: Path) -> None:
    analysis = Privacy(members=60, queries=[30, 60], thief_epochs=2, inversion_steps=5, n_boot=20)
    section = analysis.run(_evidence(digits["net"], digits), tmp_path)
    assert section["attacks"] == ["membership", "inversion", "extraction"]
    keys = analysis.provides(_info())
    for key in (
        "membership.rule.advantage",
        "membership.learned.auc.low",
        "membership.gap.acc.high",
        "inversion.recognised",
        "extraction.copycat.queries_60.fidelity",
        "extraction.knockoff.queries_30.acc.high",
    ):
        assert key in keys
    flat = flatten(section)
    missing = [k for k in keys if k not in flat]
    assert not missing, missing
    assert set(section["figures"]) == {"membership_roc.svg", "inversion.svg", "extraction.svg"}


def test_extraction_without_a_model_builder_is_refused_when_it_runs(
    digits: dict, tmp_path: Path
) -> None:
    ev = _evidence(digits["net"], digits)
    ev.build = None
    with pytest.raises(ConfigError, match="analysis.privacy: extraction trains a fresh network"):
        Privacy(attacks=["extraction"], queries=[10]).run(ev, tmp_path)


TABLE = {"columns": ["a", "b"], "input_shape": [2]}


@pytest.mark.parametrize(
    ("kwargs", "info", "needles"),
    [
        ({}, {"task": "regression"}, ["classification attacks", "regression"]),
        ({"attacks": ["inversion"]}, TABLE, ["this data is a table", "[membership,extraction]"]),
        ({"attacks": ["inversion"]}, {"gradients": False}, ["has none", "analysis.on=baseline"]),
        ({"learned": "loss"}, {"gradients": False}, ["learned=prediction"]),
        (
            {"queries": [100, 1000]},
            {},
            [
                "[1000] is a query budget larger than the data the thief may use",
                "900 rows",
                "data.val_fraction",
            ],
        ),
    ],
)
def test_check_refuses(kwargs: dict, info: dict, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        Privacy(**kwargs).check(_info(**info))
    assert str(e.value).startswith("analysis.privacy: ")
    for needle in needles:
        assert needle in str(e.value)


def test_what_applies_is_not_refused() -> None:
    Privacy().check(_info(gradients=False))  # attacks=null: inversion skipped, not refused
    Privacy().check(_info(**TABLE))
    Privacy(attacks=["membership"], queries=[5000]).check(_info())  # no extraction: no limit
    assert Privacy().chosen(_info(gradients=False)) == ["membership", "extraction"]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"attacks": "membership"}, "give a list"),
        ({"attacks": ["membership", "stealing"]}, "choose from membership"),
        ({"attacks": ["membership", "membership"]}, "twice"),
        ({"queries": [0, 10]}, "1 or more"),
        ({"queries": [10, 10]}, "twice"),
        ({"members": 2}, "members=2"),
        ({"attack_model": "svm"}, "choose rf"),
        ({"learned": "logits"}, "choose loss or prediction"),
        ({"confidence": 1.0}, "confidence=1.0"),
    ],
)
def test_settings_refused(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match="^analysis.privacy: ") as e:
        Privacy(**kwargs)
    assert needle in str(e.value)


def test_privacy_in_a_run(cli, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = cli(
        "run",
        *QUIET,
        "tracking=none",
        "trainer.max_epochs=3",
        "analysis=[privacy,validation]",
        "analysis.privacy.members=100",
        "analysis.privacy.queries=[50,200]",
        "analysis.privacy.thief_epochs=5",
        "analysis.privacy.inversion_steps=20",
        "analysis.privacy.n_boot=20",
        'analysis.validation.thresholds=["privacy.membership.learned.auc.low <= 1",'
        '"privacy.extraction.copycat.queries_200.fidelity >= 0"]',
        f"hydra.run.dir={run}",
    )
    assert result.returncode == 0, result.output
    record = json.loads((run / "metrics.json").read_text())
    assert not record.get("analysis_failed"), record.get("analysis_failed")
    section = record["analysis"]["privacy"]
    assert section["attacks"] == ["membership", "inversion", "extraction"]
    assert section["membership"]["members"] == 100
    assert record["validation"]["verdict"] == "blessed"
    for name in section["figures"]:
        assert (run / "analysis" / "privacy" / name).is_file(), name


def test_a_budget_beyond_the_validation_split_stops_a_run_before_training(tmp_path: Path) -> None:
    cfg = compose_cfg(
        [*QUIET, "tracking=none", "analysis=[privacy]", "analysis.privacy.queries=[100,300]"],
        tmp_path,
    )
    with pytest.raises(ConfigError, match="which has 270 rows"):
        mlx_run.run(cfg)
    assert not (tmp_path / "checkpoints").exists()


def test_a_failing_attack_keeps_the_other_attacks_results(
    digits: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("the thief ran out of memory")

    monkeypatch.setattr(Privacy, "_extraction", broken)
    evidence = _evidence(digits["net"], digits)
    section = Privacy(attacks=["membership", "extraction"], n_boot=0).run(evidence, tmp_path)
    assert section["failed"] == {"extraction": "RuntimeError: the thief ran out of memory"}
    assert "extraction" not in section
    assert section["membership"]["rule"]["advantage"]["value"] is not None
