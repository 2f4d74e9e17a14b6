"""Safe loading: every loader of mlx reads checkpoints without running code a file carries, and
every unreadable file ends in one `mlx: error:` paragraph (exit 2) before work starts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from mlx import run
from mlx.compression.pipeline import load_net
from mlx.engine.checkpoint import CheckpointError, load
from tests.conftest import TINY


class _Payload:
    """Unpickling this creates a file: proof that loading ran code from the checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A real checkpoint from a tiny run."""
    from tests.conftest import compose_cfg

    out = tmp_path_factory.mktemp("trained")
    run.main(compose_cfg([*TINY, "debug=limit", "trainer.max_epochs=1"], out / "run"))
    return out / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture
def malicious(tmp_path: Path, trained: Path) -> tuple[Path, Path]:
    marker = tmp_path / "code-ran"
    ckpt = torch.load(trained, weights_only=True)
    ckpt["extra"] = _Payload(marker)
    path = tmp_path / "evil.ckpt"
    torch.save(ckpt, path)
    return path, marker


def _refused(result, marker: Path) -> None:
    assert result.returncode == 2, result.output[-2000:]
    assert "mlx: error:" in result.stderr and "Traceback" not in result.output
    assert "--trust-checkpoint" in result.stderr
    assert not marker.exists(), "loading the checkpoint ran the code it carries"


@pytest.mark.parametrize(
    "command",
    [
        ["eval"],
        ["run", "trainer.max_epochs=2"],
        ["compress", "compression=prune"],
    ],
    ids=["eval", "run-resume", "compress"],
)
def test_a_malicious_checkpoint_runs_nothing(cli, malicious, tmp_path, command):
    path, marker = malicious
    result = cli(*command, f"ckpt_path={path}", *TINY, f"hydra.run.dir={tmp_path}/out")
    _refused(result, marker)
    assert not (tmp_path / "out").exists()  # refused before the run began


def test_a_malicious_teacher_runs_nothing(cli, malicious, tmp_path):
    path, marker = malicious
    result = cli(
        "run",
        "model=mlp",
        "compression=distill",
        f"compression.distill.teacher_ckpt={path}",
        *TINY,
        f"hydra.run.dir={tmp_path}/out",
    )
    _refused(result, marker)
    assert not (tmp_path / "out" / "checkpoints").exists()  # nothing trained


def test_python_loaders_refuse_it_too(malicious):
    path, marker = malicious
    for loader in (load, load_net):
        with pytest.raises(CheckpointError, match="arbitrary unpickling"):
            loader(path)
    assert not marker.exists()


def test_trusting_a_file_loads_objects_the_safe_loader_refuses(cli, trained, tmp_path):
    # older Lightning checkpoints keep hyperparameters as an argparse.Namespace
    ckpt = torch.load(trained, weights_only=True)
    ckpt["hyper_parameters"] = argparse.Namespace(lr=0.1)
    path = tmp_path / "old.ckpt"
    torch.save(ckpt, path)
    refused = cli("eval", f"ckpt_path={path}", *TINY, f"hydra.run.dir={tmp_path}/a")
    assert refused.returncode == 2 and "argparse.Namespace" in refused.stderr
    trusted = cli(
        "eval", f"ckpt_path={path}", "--trust-checkpoint", *TINY, f"hydra.run.dir={tmp_path}/b"
    )
    assert trusted.returncode == 0, trusted.output[-2000:]
    record = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert record["status"] == "completed" and "test/acc" in record["metrics"]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"not a checkpoint at all" * 4, "not a PyTorch checkpoint"),
        (None, "not a Lightning checkpoint"),  # a tensor saved with torch.save
        (b"\xff\xff\xff\xff", "not a readable ONNX model"),
    ],
    ids=["garbage", "a tensor", "bad onnx"],
)
def test_files_that_are_no_checkpoint(cli, tmp_path, content, words):
    path = tmp_path / ("model.onnx" if words.endswith("ONNX model") else "model.ckpt")
    if content is None:
        torch.save(torch.zeros(3), path)
    else:
        path.write_bytes(content)
    for command in (["eval"], ["compress", "compression=prune"]):
        result = cli(*command, f"ckpt_path={path}", *TINY)
        assert result.returncode == 2, result.output[-2000:]
        assert words in result.stderr and "Traceback" not in result.output


def test_a_truncated_checkpoint(trained, tmp_path):
    path = tmp_path / "cut.ckpt"
    path.write_bytes(trained.read_bytes()[:4000])
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load(path)


def test_mlx_checkpoints_load_safely_with_their_config(trained):
    loaded = load(trained)
    assert loaded.config["model"]["net"]["_target_"] == "mlx.models.CNN"
    assert loaded.network is None and "net.features.0.weight" in loaded.state_dict


@pytest.mark.parametrize("command", [["eval"], ["compress", "compression=prune"]])
def test_commands_that_test_a_saved_network_need_one(cli, command):
    result = cli(*command)
    assert result.returncode == 2 and "Traceback" not in result.output
    assert f"mlx {command[0]} needs a checkpoint" in result.stderr
    assert result.seconds < 30
