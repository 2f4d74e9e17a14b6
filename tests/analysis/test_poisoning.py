"""The poisoning analysis: ART's triggers land where they should on channels-first images, the
poisoned rows are a seeded share of the other classes relabelled to the target, a backdoored twin
obeys the trigger while the clean model ignores it, the defences find the planted rows, precision
and recall are counted right, every gate key is a number of the section, bad input is refused
before any training, and a real run records it all."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mlx.analysis.evidence import DataInfo, Evidence
from mlx.analysis.gather import predictor
from mlx.analysis.metrics import proportion
from mlx.analysis.poisoning import (
    Poisoning,
    backdoor,
    detection_scores,
    hidden_layer,
    paired_difference,
    poison_rows,
    trigger_function,
)
from mlx.analysis.validation import flatten
from mlx.errors import ConfigError
from tests.conftest import QUIET

CLASSES = ["a", "b", "c"]


def images(n: int, seed: int, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """8x8 one-channel images of ``k`` classes: class c is a bright vertical bar in column c over
    faint noise (the bottom-right corner, where the triggers go, holds only noise)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = rng.uniform(0.0, 0.3, (n, 1, 8, 8)).astype(np.float32)  # (N, C, H, W)
    x[np.arange(n), 0, :, y] = rng.uniform(0.7, 1.0, (n, 1)).astype(np.float32)
    return x, y.astype(np.int64)


def tiny_net(k: int = 3) -> nn.Module:
    # 48 hidden units: ART warns that 32 or fewer activations are too few to cluster
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, k))


def fit(x: np.ndarray, y: np.ndarray, epochs: int | None = None) -> nn.Module:
    """A fresh tiny network trained on ``(x, y)`` (what Evidence.fit does with the run's
    engine), seeded; in eval mode."""
    torch.manual_seed(0)
    net = tiny_net(int(y.max()) + 1)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    g = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a network this small only waits on other threads (10x slower)
    try:
        for _ in range(epochs or 40):
            for batch in torch.randperm(len(xt), generator=g).split(64):
                opt.zero_grad()
                nn.functional.cross_entropy(net(xt[batch]), yt[batch]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()


def evidence(seed: int = 0, k: int = 3, **kwargs) -> Evidence:
    """A clean model's evidence on 150 test images of ``k`` classes, with 600 training images
    and ``fit``."""
    x_train, y_train = images(600, seed=1, k=k)
    x, y = images(150, seed=2, k=k)
    net = fit(x_train, y_train)
    predict = predictor(net, "classification")
    fields = {
        "task": "classification",
        "x": x,
        "y": y,
        "outputs": predict(x),
        "predict": predict,
        "class_names": CLASSES[:k],
        "net": net,
        "seed": seed,
        "train": (x_train, y_train),
        "fit": fit,
        **kwargs,
    }
    return Evidence(**fields)


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    folder = tmp_path_factory.mktemp("poisoning")
    section = Poisoning(target="b", fraction=0.1, n_boot=200).run(evidence(seed=3), folder)
    return section, folder


def test_the_backdoor_works_on_the_twin_and_not_on_the_clean_model(
    poisoned: tuple[dict, Path],
) -> None:
    section, folder = poisoned
    assert section["target"] == "b" and section["target_id"] == 1
    assert section["poisoned"] == 60 and section["train_size"] == 600  # 10% of the rows
    assert section["attacked"] == int((images(150, seed=2)[1] != 1).sum())
    assert section["attack_success_rate"]["value"] >= 0.9
    assert section["attack_success_rate"]["low"] > 0.8
    # the clean model never saw the trigger: it keeps classifying the bars
    assert section["reference"]["attack_success_rate"]["value"] <= 0.1
    # both models are accurate on clean rows; the loss is their difference on the same rows
    twin, ref = section["clean_acc"]["value"], section["reference"]["clean_acc"]["value"]
    assert twin >= 0.9 and ref >= 0.9
    loss = section["clean_acc_loss"]
    assert loss["value"] == pytest.approx(ref - twin)
    assert loss["low"] <= loss["value"] <= loss["high"] and loss["value"] <= 0.05
    assert section["pixel_value"] == float(images(600, seed=1)[0].max())  # the training max
    rows = {r["metric"]: r for r in csv.DictReader((folder / "poisoning.csv").open())}
    assert float(rows["attack_success_rate"]["value"]) == section["attack_success_rate"]["value"]
    assert "activation.recall" in rows and "reference.clean_acc" in rows
    assert (folder / "poisoning_examples.svg").read_text().startswith("<?xml")


def test_the_defences_find_the_planted_rows(poisoned: tuple[dict, Path]) -> None:
    section, _ = poisoned
    activation = section["activation"]
    # the target class splits into two clusters far better than the others, and what it
    # splits off is poison (here the poison of one source class: the bars a and c differ
    # more than triggered and clean rows do, so recall depends on the data)
    assert activation["suspect"] == "b"
    scores = activation["silhouette"]
    assert scores[1] == max(scores)
    assert activation["precision"]["value"] >= 0.9 and activation["recall"]["value"] >= 0.3
    assert activation["layer"] == "input of the output layer (48 features)"
    spectral = section["spectral"]
    # spectral signatures flag 1.5 * 0.33 of every class: most of the poison, many clean rows
    assert spectral["recall"]["value"] >= 0.8
    assert 0.4 * 600 <= spectral["flagged"] <= 0.6 * 600
    for entry in (activation, spectral):
        for m in ("precision", "recall"):
            assert entry[m]["low"] <= entry[m]["value"] <= entry[m]["high"]
        assert entry["found"] == round(entry["recall"]["value"] * section["poisoned"])
        assert entry["seconds"] >= 0


@pytest.mark.parametrize("seed", [3, 4])
def test_activation_clustering_finds_poison_from_one_source_class(
    seed: int, tmp_path: Path
) -> None:
    """Two classes: every poisoned row is a triggered ``a`` labelled ``b``, and the class ``b``
    splits cleanly into its own rows and the poison."""
    analysis = Poisoning(target="b", fraction=0.1, defences=["activation"], examples=0)
    section = analysis.run(evidence(seed=seed, k=2), tmp_path)
    assert section["attack_success_rate"]["value"] >= 0.9
    activation = section["activation"]
    assert activation["suspect"] == "b"
    assert activation["recall"]["value"] >= 0.9 and activation["precision"]["value"] >= 0.9
    assert activation["recall"]["low"] > 0.8


def test_smaller_flags_a_cluster_of_every_class(tmp_path: Path) -> None:
    analysis = Poisoning(
        target=1, fraction=0.1, defences=["activation"], cluster_analysis="smaller"
    )
    entry = analysis.run(evidence(seed=3, k=2), tmp_path)["activation"]
    assert "suspect" not in entry
    # the clean class gives up its smaller cluster too: many more rows than the 60 poisoned
    assert entry["flagged"] > 90 and entry["recall"]["value"] >= 0.9
    assert entry["precision"]["value"] < 0.7


def test_every_gate_key_is_a_number_of_the_section(poisoned: tuple[dict, Path]) -> None:
    section, _ = poisoned
    info = DataInfo("classification", None, [], None, CLASSES, [1, 8, 8])
    keys = Poisoning(target="b").provides(info)
    numbers = flatten(section)
    assert set(keys) <= set(numbers), sorted(set(keys) - set(numbers))
    for key in ("attack_success_rate.low", "clean_acc_loss.high", "activation.recall"):
        assert key in keys
    assert "spectral.precision" in keys and "activation.flagged" in keys
    only = Poisoning(defences=["spectral"]).provides(info)
    assert not any(k.startswith("activation.") for k in only)


def test_same_seed_same_section_other_seed_other_rows(tmp_path: Path) -> None:
    analysis = Poisoning(target=0, fraction=0.05, defences=[], examples=0, n_boot=50)
    runs = [analysis.run(evidence(seed=s), tmp_path) for s in (4, 4, 5)]
    for section in runs:
        assert section.pop("train_seconds") >= 0
    assert runs[0] == runs[1]
    y = images(600, seed=1)[1]
    assert not np.array_equal(poison_rows(y, 0, 0.05, 4), poison_rows(y, 0, 0.05, 5))
    assert runs[0]["figures"] == {} and not (tmp_path / "poisoning_examples.svg").exists()


# -- the attack --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "pixels"),
    [
        ("pattern", [(5, 4), (4, 3), (5, 2), (3, 4)]),  # H=7, W=6, distance 2
        ("pixel", [(5, 4)]),
    ],
)
def test_the_trigger_lands_near_the_bottom_right_corner_of_every_channel(
    trigger: str, pixels: list[tuple[int, int]]
) -> None:
    x = np.zeros((2, 3, 7, 6), dtype=np.float32)  # (N, C, H, W): not square, three channels
    out = trigger_function(trigger, 2, 0.75)(x)
    assert out.shape == x.shape and out.dtype == np.float32
    expected = np.zeros((7, 6), dtype=np.float32)
    for r, c in pixels:
        expected[r, c] = 0.75
    assert np.array_equal(out, np.broadcast_to(expected, x.shape))
    assert not x.any()  # the originals are untouched


def test_poisoned_rows_are_a_seeded_share_of_the_other_classes() -> None:
    x, y = images(600, seed=1)
    rows = poison_rows(y, 2, 0.1, seed=7)
    assert len(rows) == 60 and len(np.unique(rows)) == 60
    assert not (y[rows] == 2).any()
    assert np.array_equal(rows, poison_rows(y, 2, 0.1, seed=7))
    add = trigger_function("pattern", 2, 1.0)
    xp, yp = backdoor(x, y, rows, 2, 3, add)
    assert (yp[rows] == 2).all() and np.array_equal(np.delete(yp, rows), np.delete(y, rows))
    assert np.array_equal(xp[rows], add(x[rows]))
    assert np.array_equal(np.delete(xp, rows, axis=0), np.delete(x, rows, axis=0))
    with pytest.raises(ConfigError, match="only 2 training rows"):
        poison_rows(np.array([0, 0, 0, 1, 2]), 0, 0.6, seed=0)
    with pytest.raises(ConfigError, match="poisons no row"):
        poison_rows(y, 0, 0.0001, seed=0)


# -- the numbers -------------------------------------------------------------------------------


def test_precision_and_recall_against_known_rows() -> None:
    # flagged 1 2 3 10; poisoned 2 3 4 5 6: two found, of four flagged and five poisoned
    scores = detection_scores(np.array([3, 1, 2, 10, 10]), np.array([2, 3, 4, 5, 6]))
    assert scores["flagged"] == 4 and scores["found"] == 2
    assert scores["precision"] == proportion(2, 4)
    assert scores["recall"] == proportion(2, 5)
    assert scores["precision"]["value"] == 0.5 and scores["recall"]["value"] == 0.4
    none = detection_scores(np.array([], dtype=np.int64), np.array([1, 2]))
    assert none["precision"]["value"] is None and none["recall"]["value"] == 0.0
    everything = detection_scores(np.arange(10), np.array([4, 7]))
    assert everything["recall"]["value"] == 1.0 and everything["precision"]["value"] == 0.2


def test_paired_difference_interval() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(400) < 0.9
    b = a & (rng.random(400) < 0.95)  # b loses about 4.5 points on the same rows
    diff = paired_difference(a, b, 500, 0.95, seed=1)
    assert diff["value"] == pytest.approx(a.mean() - b.mean())
    assert 0 < diff["low"] < diff["value"] < diff["high"]
    # paired: far narrower than the two accuracies' own intervals
    assert diff["high"] - diff["low"] < 0.06
    assert diff == paired_difference(a, b, 500, 0.95, seed=1)
    assert paired_difference(a, b, 0, 0.95, seed=1)["low"] is None


def test_hidden_layer_reads_the_input_of_the_output_layer() -> None:
    from mlx.analysis.toolbox import classifier

    net = tiny_net().eval()
    x = images(20, seed=0)[0]
    tapped, handle, layer = hidden_layer(net, x[:1])
    try:
        clf = classifier(evidence(), net=tapped, clip=(0.0, 1.0))
        assert clf.layer_names[-1] == "hidden"
        acts = clf.get_activations(x, layer=len(clf.layer_names) - 1)
        with torch.no_grad():
            expected = net[:3](torch.as_tensor(x)).numpy()  # (N, 48): after the ReLU
        assert np.allclose(acts, expected, atol=1e-6)
        assert np.allclose(clf.predict(x), net(torch.as_tensor(x)).detach().numpy(), atol=1e-5)
    finally:
        handle.remove()
    assert layer == "input of the output layer (48 features)"
    # outputs that come from no linear layer are read as they are
    bare = nn.Sequential(nn.Flatten(), nn.Linear(64, 3), nn.Tanh())
    same, none, where = hidden_layer(bare, x[:1])
    assert same is bare and none is None and where == "outputs"


# -- refusals ----------------------------------------------------------------------------------

IMAGES = DataInfo("classification", None, [], None, CLASSES, [1, 8, 8], split_sizes={"train": 600})
TABLE = DataInfo("classification", ["age", "sex"], ["sex"], ["age", "sex_F"], ["n", "y"], [2])


@pytest.mark.parametrize(
    ("kwargs", "info", "needles"),
    [
        ({"fraction": 0.0}, IMAGES, ["fraction=0.0", "strictly between 0 and 1"]),
        ({"fraction": 1.0}, IMAGES, ["fraction=1.0"]),
        ({"fraction": 1.5}, IMAGES, ["fraction=1.5"]),
        ({"fraction": 0.0001}, IMAGES, ["poisons no row of the 600"]),
        ({"target": 3}, IMAGES, ["target=3 is not a class", "0..2", "a, b, c"]),
        ({"target": "bb"}, IMAGES, ["not a class", "Did you mean 'b'"]),
        ({}, TABLE, ["image pattern", "table"]),
        ({}, DataInfo("regression", None, [], None, None, [1, 8, 8]), ["regression"]),
        (
            {},
            DataInfo("classification", None, [], None, CLASSES, [1, 8, 8], gradients=False),
            ["no gradients", "activations"],
        ),
        ({"distance": 7}, IMAGES, ["distance=7", "choose distance <= 6"]),
        ({"trigger": "star"}, IMAGES, ["trigger='star'", "pattern"]),
        ({"defences": ["spectral", "spectral"]}, IMAGES, ["at most once"]),
        ({"defences": ["roni"]}, IMAGES, ["activation, spectral"]),
        ({"cluster_analysis": "distance"}, IMAGES, ["silhouette, smaller"]),
        ({"confidence": 1.0}, IMAGES, ["confidence=1.0"]),
    ],
)
def test_check_refuses(kwargs: dict, info: DataInfo, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        Poisoning(**kwargs).check(info)
    message = str(e.value)
    assert message.startswith("analysis.poisoning"), message
    for needle in needles:
        assert needle in message


def test_good_settings_pass_and_a_run_without_fit_is_refused(tmp_path: Path) -> None:
    Poisoning().check(IMAGES)
    Poisoning(target="c", trigger="pixel", distance=8, fraction=0.5).check(IMAGES)
    ev = evidence()
    ev.fit = None
    with pytest.raises(ConfigError, match="cannot train one"):
        Poisoning().run(ev, tmp_path)


# -- a real run --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_on_digits_records_the_section_and_gates_on_it(cli, tmp_path: Path) -> None:
    """The real command: the twin trains through the run's engine, the gate reads the keys."""
    run = tmp_path / "run"
    res = cli(
        "run",
        *QUIET,
        "tracking=none",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=2",
        "analysis=[poisoning,validation]",
        "analysis.poisoning.epochs=2",
        "analysis.poisoning.target=7",
        "analysis.poisoning.n_boot=100",
        'analysis.validation.thresholds=["poisoning.attack_success_rate >= 0",'
        '"poisoning.activation.recall.low >= 0","poisoning.clean_acc_loss <= 1"]',
        f"hydra.run.dir={run}",
    )
    assert res.returncode == 0, res.output
    record = json.loads((run / "metrics.json").read_text())
    assert not record.get("analysis_failed"), record.get("analysis_failed")
    section = record["analysis"]["poisoning"]
    assert (
        section["target"] == "7" and section["train_size"] == record["data"]["split_sizes"]["train"]
    )
    assert section["poisoned"] == round(0.05 * section["train_size"])
    assert section["reference"]["clean_acc"]["value"] == pytest.approx(
        record["metrics"]["test/acc"], abs=1e-6
    )
    assert section["activation"]["layer"] == "input of the output layer (128 features)"
    assert record["validation"]["verdict"] == "blessed"
    assert (run / "analysis" / "poisoning" / "poisoning.csv").is_file()
    assert (run / "analysis" / "poisoning" / "poisoning_examples.svg").is_file()
