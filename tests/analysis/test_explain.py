"""Explanations: Captum's attributions checked against closed forms and hand computations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from mlx.analysis.evidence import DataInfo, Evidence
from mlx.analysis.explain import Explain, attribute, class_maps, patches, raw_groups
from mlx.errors import ConfigError


def _evidence(net: nn.Module, x: np.ndarray, y: np.ndarray, **extra) -> Evidence:
    """A classification Evidence of ``net`` on ``x`` (probabilities from its logits)."""
    net.eval()

    def predict(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(net(torch.as_tensor(rows, dtype=torch.float32)), 1).numpy()

    return Evidence(
        task="classification", x=x, y=y, outputs=predict(x), predict=predict, net=net, **extra
    )


def _forward(net: nn.Module):
    return lambda t: net(t)


@pytest.fixture(scope="module")
def table() -> dict:
    """Rows with raw columns ``age``, ``income`` (numeric) and ``color`` (one-hot in x); the
    class is planted in ``income`` alone, and the network reads only ``income``."""
    rng = np.random.default_rng(0)
    n = 400
    raw = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "income": rng.normal(0, 1, n),
            "color": rng.choice(["red", "green", "blue"], n),
        }
    )
    onehot = np.stack([raw.color == c for c in ("blue", "green", "red")], axis=1)
    x = np.column_stack([(raw.age - 40) / 10, raw.income, onehot]).astype(np.float32)
    y = (raw.income > 0).to_numpy().astype(np.int64)
    net = nn.Linear(5, 2)
    with torch.no_grad():
        net.weight.zero_()
        net.weight[1, 1], net.weight[0, 1] = 3.0, -3.0
        net.bias.zero_()
    names = ["age", "income", "color_blue", "color_green", "color_red"]
    return {"x": x, "y": y, "raw": raw, "net": net, "names": names}


def test_integrated_gradients_are_complete(tmp_path: Path) -> None:
    """On a small smooth network the attributions of each example sum to f(x) - f(baseline)
    (hand-computed) within 1e-3, and the section reports the check as sound."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
    net.eval()
    x = np.random.default_rng(1).normal(size=(60, 6)).astype(np.float32)
    target = np.random.default_rng(2).integers(0, 3, 60)
    baseline = np.full((1, 6), 0.5, dtype=np.float32)
    attr, delta = attribute(_forward(net), x, target, "integrated_gradients", baseline, steps=64)
    with torch.no_grad():
        fx = net(torch.as_tensor(x))[np.arange(60), target].double().numpy()
        fb = net(torch.as_tensor(baseline))[0, target].double().numpy()
    assert attr.shape == x.shape
    np.testing.assert_allclose(attr.sum(axis=1), fx - fb, atol=1e-3)
    assert np.abs(delta).max() < 1e-3

    evidence = _evidence(net, x, target, seed=3)
    section = Explain(steps=64, samples=40, permutation=False).run(evidence, tmp_path)
    done = section["completeness"]
    assert section["samples"] == 40 and section["output"] == "logit"
    assert done["max_abs_delta"] < 1e-3 and done["sound"] and not section["warnings"]
    assert done["mean_relative"] < 1e-3


def test_few_steps_warn_with_the_fix(tmp_path: Path) -> None:
    """A ReLU network integrated in 2 steps misses completeness: the section says so and
    suggests more steps."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3))
    x = np.random.default_rng(1).normal(size=(40, 6)).astype(np.float32) * 3
    evidence = _evidence(net, x, np.zeros(40, dtype=np.int64))
    section = Explain(steps=2, tolerance=1e-4, permutation=False).run(evidence, tmp_path)
    assert not section["completeness"]["sound"]
    assert section["completeness"]["mean_relative"] > 1e-4
    assert "raise steps" in section["warnings"][0]


def test_saliency_of_a_linear_model_is_its_absolute_weights() -> None:
    torch.manual_seed(0)
    net = nn.Linear(5, 3)
    x = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    target = np.random.default_rng(1).integers(0, 3, 20)
    attr, delta = attribute(_forward(net), x, target, "saliency", np.zeros((1, 5), np.float32))
    weights = net.weight.detach().abs().numpy()  # (3, 5)
    np.testing.assert_allclose(attr, weights[target], rtol=1e-6)
    assert delta is None


def test_feature_ablation_of_a_linear_model_is_weight_times_change() -> None:
    """Setting feature j of x to the baseline moves a linear output by w_j (x_j - b_j)."""
    torch.manual_seed(0)
    net = nn.Linear(4, 2)
    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    target = np.array([0, 1] * 5)
    baseline = np.full((1, 4), 0.25, dtype=np.float32)
    attr, _ = attribute(_forward(net), x, target, "feature_ablation", baseline)
    w = net.weight.detach().numpy()[target]  # (10, 4)
    np.testing.assert_allclose(attr, w * (x - baseline), atol=1e-5)


def test_permutation_importance_ranks_the_planted_feature_first(
    table: dict, tmp_path: Path
) -> None:
    """The model reads only ``income``: it ranks first by permutation importance and by
    attribution, and shuffling any other column changes nothing (importance exactly 0)."""
    evidence = _evidence(
        table["net"],
        table["x"],
        table["y"],
        raw=table["raw"],
        feature_names=table["names"],
        class_names=["low", "high"],
        seed=5,
    )
    section = Explain(samples=300, repeats=4).run(evidence, tmp_path)
    perm = section["permutation"]["columns"]
    assert [d["column"] for d in perm][0] == "income"
    assert {d["column"] for d in perm} == {"age", "income", "color"}
    assert perm[0]["value"] > 0.3 and perm[0]["low"] <= perm[0]["value"] <= perm[0]["high"]
    assert all(d["value"] == 0 and d["std"] == 0 for d in perm[1:])
    assert section["importance_columns"][0]["column"] == "income"
    assert section["importance_columns"][1]["value"] == 0
    first = section["examples"][0]  # predicted class, strongest raw column first
    assert first["predicted"] in ("low", "high") and first["strongest"][0]["column"] == "income"
    # attributions.csv: one row per sampled example, one column per encoded feature
    lines = (tmp_path / "attributions.csv").read_text().splitlines()
    assert lines[0] == "row,prediction,age,income,color_blue,color_green,color_red"
    assert len(lines) == 301
    # the same seed gives the same numbers
    again = Explain(samples=300, repeats=4).run(evidence, tmp_path)
    assert again["permutation"] == section["permutation"]


def test_one_hot_columns_sum_back_onto_their_raw_column() -> None:
    names = ["age", "sex_F", "sex_M", "work_class_private", "work_private", "x9"]
    groups = raw_groups(names, ["age", "sex", "work", "work_class"])
    assert groups == [
        ("age", [0]),
        ("sex", [1, 2]),
        ("work_class", [3]),
        ("work", [4]),
        ("x9", [5]),
    ]
    assert raw_groups(["a", "b"], None) == [("a", [0]), ("b", [1])]


def test_image_class_maps_have_the_input_shape(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)
    )
    net.eval()
    x = np.random.default_rng(0).normal(size=(50, 1, 8, 8)).astype(np.float32)
    target = np.random.default_rng(1).integers(0, 3, 50)
    attr, _ = attribute(_forward(net), x, target, "integrated_gradients", np.zeros((1, 1, 8, 8)))
    maps = class_maps(attr, target, 4)
    assert maps.shape == (4, 1, 8, 8)
    np.testing.assert_allclose(maps[1], attr[target == 1].mean(axis=0))
    assert np.isnan(maps[3]).all()  # no example of class 3

    evidence = _evidence(net, x, target, class_names=["a", "b", "c"], seed=1)
    section = Explain(samples=30, examples=2, steps=16).run(evidence, tmp_path)
    assert sum(c["examples"] for c in section["classes"]) == 30
    assert section["figures"] == ["attribution_classes.svg", "attribution_examples.svg"]
    assert (tmp_path / "attribution_classes.svg").read_text().count("<image") == sum(
        c["examples"] > 0 for c in section["classes"]
    )


def test_gradient_methods_are_refused_on_a_model_without_gradients(
    table: dict, tmp_path: Path
) -> None:
    info = DataInfo(
        task="classification",
        columns=["age"],
        categorical=[],
        feature_names=["age"],
        class_names=["a", "b"],
        input_shape=[1],
        gradients=False,
    )
    for method in ("integrated_gradients", "saliency"):
        with pytest.raises(ConfigError, match="feature_ablation"):
            Explain(method=method).check(info)
    Explain(method="feature_ablation").check(info)
    # without a network, feature ablation explains the probabilities the model gives
    evidence = _evidence(
        table["net"], table["x"], table["y"], raw=table["raw"], feature_names=table["names"]
    )
    evidence.net = None
    section = Explain(method="feature_ablation", samples=50, permutation=False).run(
        evidence, tmp_path
    )
    assert section["output"] == "probability"
    assert section["importance_columns"][0]["column"] == "income"
    with pytest.raises(ConfigError, match="feature_ablation"):
        Explain().run(evidence, tmp_path)


def test_feature_ablation_patches_cover_an_image() -> None:
    """Patches of 4x4 pixels on 28x28 (7 x 7 = 49 features), single pixels on 8x8; every
    channel of a pixel in the same patch."""
    mask = patches((2, 28, 28))
    assert mask.shape == (1, 2, 28, 28) and int(mask.max()) == 48
    assert (mask[0, 0, :4, :4] == 0).all() and int(mask[0, 1, 27, 27]) == 48
    assert int(mask[0, 0, 0, 4]) == 1 and int(mask[0, 0, 4, 0]) == 7
    assert patches((1, 8, 8)).flatten().tolist() == list(range(64))


def test_a_linear_regression_is_attributed_in_closed_form(tmp_path: Path) -> None:
    """For f(x) = w.x + c, integrated gradients give w_j (x_j - b_j) exactly, here from the
    training split's mean; permutation importance scores R² and ranks the heaviest weight
    first."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    train = rng.normal(1.0, 1.0, size=(500, 3)).astype(np.float32)
    net = nn.Linear(3, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.5, -4.0, 0.0]]))
        net.bias.fill_(1.0)
    net.eval()

    def predict(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.as_tensor(rows, dtype=torch.float32))[:, 0].numpy()

    evidence = Evidence(
        task="regression",
        x=x,
        y=predict(x),
        outputs=predict(x),
        predict=predict,
        net=net,
        feature_names=["a", "b", "c"],
        train=(train, np.zeros(500, np.float32)),
        seed=2,
    )
    section = Explain(baseline="mean", samples=200, examples=1).run(evidence, tmp_path)
    assert section["output"] == "prediction" and section["target"] == "prediction"
    expected = np.abs((x - train.mean(axis=0)) * [0.5, -4.0, 0.0]).mean(axis=0)
    got = {d["feature"]: d["value"] for d in section["importance"]}
    np.testing.assert_allclose([got["a"], got["b"], got["c"]], expected, rtol=1e-4)
    assert section["completeness"]["max_abs_delta"] < 1e-4
    assert section["permutation"]["score"] == "r2"
    assert [d["column"] for d in section["permutation"]["columns"]] == ["b", "a", "c"]
    assert "predicted" not in section["examples"][0]
