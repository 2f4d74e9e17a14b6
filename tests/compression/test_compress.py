"""The compress stage end to end (mlx run compression=[...], mlx compress, mlx eval of a
compressed file), the distillation loss, PCA fitted on the training split, and bad input."""

from __future__ import annotations

import json
import math

import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlx.compression import CompressionError, StageInput
from mlx.compression.distill import Distill, distillation_loss
from mlx.compression.pca import PCA
from mlx.compression.pipeline import check_stages
from mlx.compression.quantize import OnnxRuntimeNet
from mlx.engine.checkpoint import load
from mlx.models import MLP
from tests.conftest import QUIET

MLP_TINY = ["model=mlp", "trainer.max_epochs=2", "latency.repeats=3", "latency.warmup=1"]


def record_of(folder) -> dict:
    """The run record (metrics.json) a run wrote to ``folder``."""
    return json.loads((folder / "metrics.json").read_text())


def run_and_read(make_cfg, tmp_path, overrides: list[str]) -> tuple:
    """``mlx run`` in this process with ``overrides``: its folder, record and compression rows."""
    from mlx import run

    run.main(make_cfg(overrides))
    out = tmp_path / "run"
    record = record_of(out)
    return out, record, record["compression"]


def test_distillation_loss_by_hand():
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0]])
    y = torch.tensor([0])
    T, alpha = 2.0, 0.25
    # soft targets at T=2: softmax([0, 0.5]) and softmax([0.5, 0]) for the student
    p_t = [1 / (1 + math.exp(0.5)), math.exp(0.5) / (1 + math.exp(0.5))]
    p_s = [p_t[1], p_t[0]]
    kl = sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s, strict=True))
    ce = -math.log(math.exp(1) / (math.exp(1) + 1))
    expected = alpha * T * T * kl + (1 - alpha) * ce
    got = distillation_loss(s, t, y, T, alpha, "classification")
    assert float(got) == pytest.approx(expected, rel=1e-6)
    # alpha=0 is plain cross-entropy; regression mixes two MSEs
    assert float(distillation_loss(s, t, y, T, 0.0, "classification")) == pytest.approx(
        float(F.cross_entropy(s, y))
    )
    r = distillation_loss(
        torch.tensor([[1.0]]), torch.tensor([[3.0]]), torch.tensor([0.0]), 1, 0.5, "regression"
    )
    assert float(r) == pytest.approx(0.5 * 4 + 0.5 * 1)


def test_student_with_other_outputs_is_refused():
    teacher = MLP((64,), 10)
    stage = Distill(student=lambda input_shape, num_outputs: nn.Linear(64, 3))
    with pytest.raises(
        CompressionError, match=r"teacher's output shape \(10,\) differs from the student's \(3,\)"
    ):
        stage.check(StageInput(teacher, (64,), 10, "classification", []))


def test_bad_pca_and_order():
    net = MLP((64,), 10)
    with pytest.raises(
        CompressionError, match="n_components=65 is more than the 64 input features"
    ):
        PCA(n_components=65, variance=None).check(StageInput(net, (64,), 10, "classification", []))
    with pytest.raises(CompressionError, match="exactly one of"):
        PCA(n_components=4, variance=0.9).check(StageInput(net, (64,), 10, "classification", []))
    with pytest.raises(CompressionError, match="list pca first"):
        check_stages([Distill(student=MLP), PCA()], net, (64,), 10, "classification")
    with pytest.raises(CompressionError, match="lists distill twice"):
        check_stages([Distill(student=MLP), Distill(student=MLP)], net, (64,), 10, "classification")


def test_run_pca_then_distill_records_each_stage(make_cfg, tmp_path):
    out, record, rows = run_and_read(
        make_cfg,
        tmp_path,
        [
            *MLP_TINY,
            "compression=[pca,distill]",
            "compression.pca.epochs=2",
            "compression.distill.epochs=2",
        ],
    )
    assert [r["stage"] for r in rows] == ["baseline", "pca", "distill"]
    base, pca, distill = rows
    # the baseline row is the tested model: same test accuracy as the run's own test stage
    metrics = record["metrics"]
    assert base["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert pca["details"]["components"] < 64
    assert pca["details"]["fitted_on"] == "train split (1257 examples)"
    assert distill["params"] < base["params"]  # the student MLP([64]) is smaller
    for row in rows:
        assert row["size_bytes"] > 0 and row["latency_b64_p50_ms"] > 0 and row["macs"] > 0
        assert row["latency_b1_p95_ms"] >= row["latency_b1_p50_ms"]
    # each stage's network is saved as ONNX with the run's config and the stages that made it
    loaded = load(out / "compressed" / "2_distill.onnx")
    assert isinstance(loaded.network, OnnxRuntimeNet) and loaded.state_dict is None
    assert [s["name"] for s in loaded.info["stages"]] == ["pca", "distill"]
    assert loaded.config["model"]["net"]["_target_"] == "mlx.models.MLP"
    assert metrics["compressed/test/acc"] == distill["test/acc"]


def test_pca_is_fitted_on_the_train_split_only(make_cfg):
    from hydra.utils import instantiate

    cfg = make_cfg(
        [
            *MLP_TINY,
            "compression=pca",
            "compression.pca.epochs=1",
            "compression.pca.n_components=5",
            "compression.pca.variance=null",
        ]
    )
    dm = instantiate(cfg.data)
    dm.setup("fit")
    model = instantiate(cfg.model)(
        input_shape=dm.input_shape, num_outputs=dm.num_outputs, task=dm.task
    )
    stage = instantiate(cfg.compression.pca)
    from mlx.compression.pipeline import make_tools

    tools = make_tools(
        model,
        dm,
        progress_bar=False,
        initial_state=None,
        early_state=None,
        rebuild=lambda shape: instantiate(cfg.model.net)(
            input_shape=tuple(shape), num_outputs=dm.num_outputs
        ),
    )
    compressed = stage.apply(model.net, tools)
    x_train = torch.cat([x.reshape(x.shape[0], -1) for x, _ in dm.train_dataloader()])
    x_all = torch.cat([x_train, *[x.reshape(x.shape[0], -1) for x, _ in dm.test_dataloader()]])
    # the projection centres on the train mean: the train projections average to zero
    assert compressed.pca(x_train).mean(0).abs().max() < 1e-4
    assert compressed.pca(x_all).mean(0).abs().max() > 1e-3
    assert compressed.pca(x_train).shape == (len(x_train), 5)
    assert not any(p.requires_grad for p in compressed.pca.parameters())


def test_compress_a_checkpoint_and_eval_the_result(cli, tmp_path):
    first = cli(
        "run",
        *MLP_TINY,
        *QUIET,
        "tracking=none",
        f"hydra.run.dir={tmp_path}/train",
    )
    assert first.returncode == 0, first.output
    best = tmp_path / "train" / "checkpoints" / "best.ckpt"
    res = cli(
        "compress",
        f"ckpt_path={best}",
        "compression=distill",
        "compression.distill.epochs=1",
        "tracking=none",
        "latency.repeats=3",
        f"hydra.run.dir={tmp_path}/c",
    )
    assert res.returncode == 0, res.output
    assert "compression: each stage against the baseline" in res.output
    m, t = record_of(tmp_path / "c")["metrics"], record_of(tmp_path / "train")["metrics"]
    assert m["test/acc"] == pytest.approx(t["test/acc"])  # the checkpoint's weights, untrained
    ev = cli(
        "eval",
        f"ckpt_path={tmp_path}/c/compressed/1_distill.onnx",
        "tracking=none",
        f"hydra.run.dir={tmp_path}/e",
    )
    assert ev.returncode == 0, ev.output
    e = record_of(tmp_path / "e")["metrics"]
    assert e["test/acc"] == pytest.approx(m["compressed/test/acc"], abs=1e-6)


def test_bad_compression_input_is_refused_before_training(cli, tmp_path):
    res = cli("run", "trainer.max_epochs=1", "compression=pca", f"hydra.run.dir={tmp_path}/a")
    assert res.returncode == 2
    assert "pca hands the network 64 flat features" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "a" / "checkpoints").exists()
    res = cli("compress", "compression=pca")
    assert res.returncode == 2 and "mlx compress needs a checkpoint" in res.output
    res = cli("run", "model=mlp", "compression=distill", "compression.distill.alpha=2")
    assert res.returncode == 2 and "alpha" in res.output


@pytest.mark.slow
def test_run_prune_then_quantize_and_eval_the_int8_file(make_cfg, cli, tmp_path):
    out, _, rows = run_and_read(
        make_cfg,
        tmp_path,
        [
            *MLP_TINY,
            "model=cnn",
            "compression=[prune,quantize]",
            "compression.prune.fine_tune_epochs=1",
            "compression.quantize.calibration_batches=2",
        ],
    )
    assert [r["stage"] for r in rows] == ["baseline", "prune", "quantize"]
    base, pruned, quantized = rows
    assert pruned["params"] < base["params"] and pruned["macs"] < base["macs"]
    # int8 keeps the pruned structure: the same MACs, its weights (batch norms folded) on a
    # quarter of the bytes, and the accuracy of the float network it came from
    assert quantized["macs"] == pruned["macs"]
    assert 0.8 * pruned["params"] < quantized["params"] <= pruned["params"]
    assert quantized["size_bytes"] < pruned["size_bytes"] / 2.5
    assert quantized["test/acc"] >= pruned["test/acc"] - 0.03
    details = quantized["details"]
    graph = onnx.load(str(out / "compressed" / "1_prune.onnx")).graph
    convs = sum(node.op_type == "Conv" for node in graph.node)
    assert details["mode"] == "static" and details["kernels"].get("QLinearConv") == convs
    net = load(out / "compressed" / "2_quantize.onnx").network
    assert isinstance(net, OnnxRuntimeNet)

    # a fresh process reloads the int8 network and measures what the table says
    ev = cli(
        "eval",
        f"ckpt_path={out}/compressed/2_quantize.onnx",
        "tracking=none",
        f"hydra.run.dir={tmp_path}/e",
    )
    assert ev.returncode == 0, ev.output
    e = record_of(tmp_path / "e")["metrics"]
    assert e["test/acc"] == pytest.approx(quantized["test/acc"], abs=1e-6)
    assert e["model/params"] == quantized["params"]


def test_stage_training_stretches_the_run_schedule_to_its_epochs():
    import functools

    from mlx.compression.pipeline import stage_scheduler

    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    cosine = functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=20)
    assert stage_scheduler(cosine, opt, 3)["scheduler"].T_max == 3
    linear = functools.partial(torch.optim.lr_scheduler.LinearLR, total_iters=20)
    assert stage_scheduler(linear, opt, 4)["scheduler"].total_iters == 4
    # a scheduler without a horizon is built as the run configured it
    step = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=5)
    assert stage_scheduler(step, opt, 3)["scheduler"].step_size == 5
