"""Evasion attacks (ART): the properties a robustness curve must have, the budget and clip range
every adversarial input keeps, the gate's keys, and what is refused before any attack runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mlx import run as mlx_run
from mlx.analysis.evidence import DataInfo, Evidence
from mlx.analysis.robustness import Robustness
from mlx.analysis.toolbox import classifier, clip_range
from mlx.analysis.validation import flatten
from mlx.errors import ConfigError, MlxError
from tests.conftest import QUIET, compose_cfg


def _evidence(net: nn.Module, x: np.ndarray, y: np.ndarray, train: np.ndarray, **extra) -> Evidence:
    net.eval()

    def predict(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(net(torch.as_tensor(rows, dtype=torch.float32)), 1).numpy()

    return Evidence(
        task="classification",
        x=x,
        y=y,
        outputs=predict(x),
        predict=predict,
        net=net,
        seed=3,
        train=(train, np.zeros(len(train), dtype=np.int64)),
        **extra,
    )


@pytest.fixture(scope="module")
def digits() -> dict:
    """scikit-learn's digits in [0, 1] and a small MLP trained on 1,400 of them (~1 s)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    y = data.target.astype(np.int64)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    xt, yt = torch.as_tensor(x[:1400]), torch.as_tensor(y[:1400])
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    return {"x": x[1400:], "y": y[1400:], "train": x[:1400], "net": net}


def _info(**changes) -> DataInfo:
    base = dict(
        task="classification",
        columns=None,
        categorical=[],
        feature_names=None,
        class_names=None,
        input_shape=[1, 8, 8],
        value_range=(0.0, 1.0),
        split_sizes={"train": 1400, "val": 100, "test": 297},
    )
    return DataInfo(**{**base, **changes})


def test_robust_accuracy_starts_at_the_clean_accuracy_and_falls_with_epsilon(
    digits: dict, tmp_path: Path
) -> None:
    ev = _evidence(digits["net"], digits["x"], digits["y"], digits["train"])
    analysis = Robustness(attacks=["fgsm", "pgd"], eps=[0, 0.05, 0.1, 0.2, 0.3], samples=150)
    analysis.check(_info())
    section = analysis.run(ev, tmp_path)
    clean = section["clean_acc"]["value"]
    assert clean > 0.85
    for attack in ("fgsm", "pgd"):
        curve = [section[attack][f"eps_{e:g}"]["robust_acc"]["value"] for e in analysis.eps]
        assert curve[0] == clean  # eps = 0 changes nothing
        assert all(b <= a for a, b in zip(curve, curve[1:], strict=False)), curve
        assert curve[-1] < clean - 0.3
        assert section[attack]["eps_0.1"]["mean_linf"] == pytest.approx(0.1, abs=1e-4)
    # PGD is the stronger attack at the same budget
    assert (
        section["pgd"]["eps_0.1"]["robust_acc"]["value"]
        <= (section["fgsm"]["eps_0.1"]["robust_acc"]["value"])
    )
    assert (tmp_path / "robustness_curve.svg").is_file()
    assert (tmp_path / "adversarial_examples.svg").is_file()
    rows = (tmp_path / "robustness.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * len(analysis.eps)
    # every key the gate may name is in the section
    flat = flatten(section)
    missing = [k for k in analysis.provides(_info()) if k not in flat]
    assert not missing, missing


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "square"])
def test_every_adversarial_input_stays_within_epsilon_and_the_clip_range(
    digits: dict, attack: str
) -> None:
    ev = _evidence(digits["net"], digits["x"][:40], digits["y"][:40], digits["train"])
    clip = (0.0, 1.0)
    analysis = Robustness(attacks=[attack], square_queries=30)
    clf = classifier(ev, clip=clip, black_box=attack == "square")
    for eps in (0.05, 0.3):
        adv = analysis._attack(attack, clf, eps).generate(ev.x, y=ev.y)
        delta = np.abs(adv - ev.x)
        assert delta.max() <= eps + 1e-5
        assert adv.min() >= 0.0 and adv.max() <= 1.0
        assert delta.max() > eps / 2  # it did move


def test_a_table_keeps_its_one_hot_columns_and_its_column_ranges(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 300
    numeric = rng.normal(0, 1, (n, 2)).astype(np.float32)
    onehot = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    x = np.column_stack([numeric, onehot])
    y = (numeric[:, 0] + 0.5 * numeric[:, 1] > 0).astype(np.int64)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(net(torch.as_tensor(x)), torch.as_tensor(y)).backward()
        opt.step()
    ev = _evidence(net, x[200:], y[200:], x[:200], numeric=[True, True, False, False, False])
    ev.train = (x[:200], y[:200])
    analysis = Robustness(attacks=["pgd"], eps=[0, 0.5], samples=100)
    info = _info(input_shape=[5], value_range=(float(x.min()), float(x.max())))
    info.numeric = [True, True, False, False, False]
    analysis.check(info)
    with pytest.raises(ConfigError, match="one-hot columns of this table"):
        Robustness(attacks=["cw"]).check(info)
    with pytest.raises(ConfigError, match="square perturbs square patches of an image"):
        Robustness(attacks=["square"]).check(info)
    low, high = clip_range(x)  # the training rows' and the attacked rows' range
    clf = classifier(ev, clip=(low, high))
    adv = analysis._attack("pgd", clf, 0.5).generate(
        ev.x, y=ev.y, mask=np.asarray(ev.numeric, dtype=np.float32)
    )
    assert np.array_equal(adv[:, 2:], ev.x[:, 2:])
    assert (adv >= low - 1e-6).all() and (adv <= high + 1e-6).all()
    section = analysis.run(ev, tmp_path)
    assert section["fixed_columns"] == 3
    assert section["pgd"]["eps_0.5"]["robust_acc"]["value"] < section["clean_acc"]["value"]


def test_black_box_attacks_run_on_a_model_without_gradients(digits: dict, tmp_path: Path) -> None:
    ev = _evidence(digits["net"], digits["x"], digits["y"], digits["train"])
    ev.net = None  # an ONNX graph: outputs only
    analysis = Robustness(
        attacks=["square", "hopskipjump"],
        eps=[0, 0.2],
        radii=[1.0, 3.0],
        samples=30,
        square_queries=50,
        hsj_steps=3,
        hsj_evals=100,
    )
    analysis.check(_info(gradients=False))
    section = analysis.run(ev, tmp_path)
    assert section["square"]["eps_0.2"]["robust_acc"]["value"] < section["clean_acc"]["value"]
    hsj = section["hopskipjump"]
    assert hsj["success_rate"]["value"] > 0.5
    assert hsj["radius_1"]["robust_acc"]["value"] >= hsj["radius_3"]["robust_acc"]["value"]


@pytest.mark.parametrize(
    ("analysis", "info", "message"),
    [
        (Robustness(eps=[0, 1.5]), {}, r"outside the data's range.*between 0 and 1"),
        (Robustness(attacks=["pgd"]), {"gradients": False}, "attacks=\\[square,hopskipjump\\]"),
        (Robustness(attacks=["deepfool"]), {}, "choose from fgsm"),
        (Robustness(), {"task": "regression"}, "classification measure"),
        (Robustness(eps=[-0.1]), {}, "must be >= 0"),
    ],
)
def test_bad_settings_are_refused_before_any_attack(
    analysis: Robustness, info: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        analysis.check(_info(**info))


# a digits run: a few quick epochs, then hardening and the robustness of both networks
HARDENED = [
    *QUIET,
    "tracking=none",
    "trainer.max_epochs=4",
    "compression=[harden]",
    "compression.harden.epochs=2",
    "compression.harden.eval_samples=150",
    "analysis=[robustness,validation]",
    "analysis.on=all",
    "analysis.robustness.attacks=[fgsm,pgd]",
    "analysis.robustness.eps=[0,0.1]",
    "analysis.robustness.samples=150",
    'analysis.validation.thresholds=["robustness.pgd.eps_0.1.robust_acc >= 0.0"]',
]


def test_hardening_gains_robust_accuracy_in_a_run(tmp_path: Path) -> None:
    mlx_run.run(compose_cfg(HARDENED, tmp_path))
    (run,) = (p.parent for p in tmp_path.rglob("metrics.json"))
    record = json.loads((run / "metrics.json").read_text())
    details = record["compression"][-1]["details"]
    assert details["robust_acc_after"] > details["robust_acc_before"] + 0.05
    assert details["robust_gain"] == pytest.approx(
        details["robust_acc_after"] - details["robust_acc_before"]
    )
    assert details["clean_cost"] < 0.05
    before, after = (record["analysis"][k]["robustness"] for k in ("baseline", "1_harden"))
    key = "eps_0.1"
    assert after["pgd"][key]["robust_acc"]["value"] > before["pgd"][key]["robust_acc"]["value"]
    assert record["validation"]["verdict"] == "blessed"
    assert (run / "analysis" / "1_harden" / "robustness" / "robustness_curve.svg").is_file()


def test_hardening_after_quantize_is_refused_before_training(tmp_path: Path) -> None:
    cfg = compose_cfg([*QUIET, "tracking=none", "compression=[quantize,harden]"], tmp_path)
    with pytest.raises(MlxError, match="harden after quantize"):
        mlx_run.run(cfg)
    assert not list(tmp_path.rglob("*.ckpt"))


def test_white_box_attacks_on_a_final_int8_model_are_refused_before_training(
    tmp_path: Path,
) -> None:
    cfg = compose_cfg(
        [*QUIET, "tracking=none", "compression=[quantize]", "analysis=[robustness]"], tmp_path
    )
    with pytest.raises(ConfigError, match=r"fgsm, pgd, cw need the model's gradients.*square"):
        mlx_run.run(cfg)
    assert not list(tmp_path.rglob("*.ckpt"))


def test_a_failing_attack_keeps_the_other_attacks_results(
    digits: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("the attack ran out of memory")

    monkeypatch.setattr(Robustness, "_minimal", broken)
    ev = _evidence(digits["net"], digits["x"], digits["y"], digits["train"])
    section = Robustness(attacks=["cw", "fgsm"], eps=[0, 0.1], samples=50).run(ev, tmp_path)
    assert section["failed"] == {"cw": "RuntimeError: the attack ran out of memory"}
    assert "cw" not in section
    assert section["fgsm"]["eps_0.1"]["robust_acc"]["value"] is not None
    assert (tmp_path / "robustness_curve.svg").is_file()


def test_a_table_run_attacks_only_its_numeric_columns(tmp_path: Path) -> None:
    overrides = [
        *QUIET,
        "tracking=none",
        "data=german_credit",
        "model=mlp",
        "analysis=[robustness]",
        "analysis.robustness.attacks=[fgsm,pgd,hopskipjump]",
        "analysis.robustness.eps=[0,0.5,1.0]",
        "analysis.robustness.samples=60",
        "analysis.robustness.hsj_steps=2",
        "analysis.robustness.hsj_evals=50",
    ]
    mlx_run.run(compose_cfg(overrides, tmp_path))
    (run,) = (p.parent for p in tmp_path.rglob("metrics.json"))
    section = json.loads((run / "metrics.json").read_text())["analysis"]["robustness"]
    assert "failed" not in section
    assert section["fixed_columns"] > 0  # the one-hot columns of the categorical features
    assert section["clip"] == "per column: the training split's minimum and maximum"
    pgd = [section["pgd"][f"eps_{e:g}"]["robust_acc"]["value"] for e in (0, 0.5, 1.0)]
    assert pgd[0] >= pgd[1] >= pgd[2] and pgd[2] < pgd[0]
    assert section["hopskipjump"]["success_rate"]["value"] > 0
