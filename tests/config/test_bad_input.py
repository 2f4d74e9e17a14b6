"""Bad input: a clear one-paragraph error from `mlx run`, exit status 2, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx.config.locate import CONFIG_NAME, config_tree, register_resolvers
from mlx.config.validate import check_command_line
from mlx.errors import MlxError
from tests.conftest import run_cli

# The bar is 2 s on an idle machine; the assertion leaves room for a loaded CI box.
LIMIT_S = 4.0


def check_error(args: list[str], *needles: str, cwd: Path | None = None) -> str:
    res = run_cli("run", *args, "hydra.run.dir=should_not_exist", cwd=cwd)
    assert res.returncode == 2, res.output
    assert "mlx: error:" in res.stderr
    assert "Traceback" not in res.output
    message = res.stderr.split("mlx: error:", 1)[1].strip()
    assert "\n\n" not in message  # one paragraph
    for needle in needles:
        assert needle in message, message
    assert res.seconds < LIMIT_S, f"took {res.seconds:.2f} s"
    if cwd is not None:
        assert not (cwd / "should_not_exist").exists()
    return message


def config_error(*overrides: str, multirun: bool = False) -> str:
    """The message of the command line's check, in-process (the fast path `mlx` runs first)."""
    register_resolvers()
    with pytest.raises(MlxError) as info:
        check_command_line(config_tree(), CONFIG_NAME, list(overrides), multirun)
    message = str(info.value)
    assert "\n\n" not in message  # one paragraph
    return message


def check_ok(*overrides: str) -> None:
    register_resolvers()
    check_command_line(config_tree(), CONFIG_NAME, list(overrides), False)


def test_unknown_group_option(tmp_path: Path) -> None:
    check_error(["model=cnnn"], "'cnnn'", "'model'", "mlp", "Did you mean 'cnn'", cwd=tmp_path)


def test_unknown_group(tmp_path: Path) -> None:
    check_error(["modle=cnn"], "modle", "Did you mean 'model'", cwd=tmp_path)


def test_misspelled_key(tmp_path: Path) -> None:
    check_error(
        ["trainer.max_epoch=3"], "trainer.max_epoch", "Did you mean 'max_epochs'", cwd=tmp_path
    )


def test_added_unknown_key_is_caught_by_signature(tmp_path: Path) -> None:
    check_error(
        ["+model.net.chanels=[8]"], "model.net.chanels", "Did you mean 'channels'", cwd=tmp_path
    )


def test_out_of_range(tmp_path: Path) -> None:
    check_error(["trainer.max_epochs=-1"], "trainer.max_epochs", ">= 1", "-1", cwd=tmp_path)


def test_wrong_type(tmp_path: Path) -> None:
    check_error(["model.lr=abc"], "model.lr", "float", "'abc'", cwd=tmp_path)


def test_negative_lr(tmp_path: Path) -> None:
    check_error(["model.lr=-0.1"], "model.lr", "> 0", cwd=tmp_path)


def test_bad_literal(tmp_path: Path) -> None:
    check_error(["model.net.activation=relux"], "model.net.activation", "'relu'", cwd=tmp_path)


def test_bad_value_in_multirun_caught_before_any_job(tmp_path: Path) -> None:
    check_error(["-m", "model=cnn,cnnn"], "'cnnn'", cwd=tmp_path)
    assert not (tmp_path / "outputs").exists()


def test_unknown_command() -> None:
    res = run_cli("rnu")
    assert res.returncode == 2
    assert "Did you mean 'run'" in res.stderr


def test_missing_checkpoint(tmp_path: Path) -> None:
    check_error(["ckpt_path=nope.ckpt"], "ckpt_path", "nope.ckpt", cwd=tmp_path)


@pytest.fixture
def csv_dir(tmp_path: Path) -> Path:
    (tmp_path / "good.csv").write_text(
        "x1,x2,color,y\n1,2.5,red,0\n2,3.5,blue,1\n3,,red,0\n4,1.0,blue,1\n"
    )
    (tmp_path / "garbage.csv").write_text("x1,x2,y\n1,2.5,0\n2,abc,1\n3,4.0,0\n4,1.0,1\n5,1.5,0\n")
    return tmp_path


def test_csv_missing_file(csv_dir: Path) -> None:
    check_error(
        ["data=csv", "data.source.path=missing.csv", "data.source.target=y"],
        "missing.csv",
        cwd=csv_dir,
    )


def test_csv_missing_target(csv_dir: Path) -> None:
    check_error(
        ["data=csv", "data.source.path=good.csv", "data.source.target=yy"], "yy", "'y'", cwd=csv_dir
    )


def test_csv_garbage_in_numeric_column(csv_dir: Path) -> None:
    check_error(
        ["data=csv", "data.source.path=garbage.csv", "data.source.target=y"],
        "x2",
        "abc",
        cwd=csv_dir,
    )


def test_csv_path_required(csv_dir: Path) -> None:
    check_error(["data=csv"], "data.source.path", cwd=csv_dir)


def test_debug_flag_keeps_traceback(tmp_path: Path) -> None:
    res = run_cli("run", "model.lr=abc", "--debug", cwd=tmp_path)
    assert res.returncode == 2
    assert "Traceback" in res.stderr
    assert "model.lr" in res.stderr


def test_csv_logger_with_spawned_ddp(tmp_path: Path) -> None:
    check_error(["parallelism=ddp", "tracking=csv"], "tracking=csv", "tracking=wandb", cwd=tmp_path)


def test_progress_bar_switched_off_with_its_callback(tmp_path: Path) -> None:
    check_error(
        ["trainer.enable_progress_bar=false"],
        "trainer.enable_progress_bar=false",
        "progress_bar",
        "callbacks.progress_bar=null",
        cwd=tmp_path,
    )
    message = config_error("+trainer.enable_checkpointing=false")
    assert "checkpoint, last_checkpoint" in message and "callbacks=minimal" in message
    check_ok("trainer.enable_progress_bar=false", "callbacks.progress_bar=null")
    check_ok("trainer.enable_progress_bar=false", "callbacks=minimal")


def test_other_settings_lightning_refuses_are_reported(tmp_path: Path) -> None:
    """A pair Lightning refuses that no static check knows: its own words, as mlx's error,
    before training (no checkpoint, no history)."""
    res = run_cli(
        "run",
        "+callbacks.second_bar._target_=pytorch_lightning.callbacks.TQDMProgressBar",
        "tracking=none",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert res.returncode == 2, res.output
    assert "Traceback" not in res.output
    message = res.stderr.split("mlx: error:", 1)[1]
    assert "Lightning refuses" in message and "progress bar" in message
    assert not (tmp_path / "run" / "history.csv").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()


# -- Hydra's own groups ------------------------------------------------------------------------


def test_unknown_hydra_launcher_lists_the_plugins_options() -> None:
    # hydra/* options come from installed plugins, not from conf/
    message = config_error("hydra/launcher=joblibb")
    assert "'hydra/launcher'" in message
    assert "joblib" in message and "submitit_local" in message and "basic" in message
    assert "Did you mean 'joblib'" in message
    assert "no options yet" not in message


def test_unknown_hydra_sweeper_offers_mlx() -> None:
    assert "Did you mean 'mlx'" in config_error("hydra/sweeper=mlxx", multirun=True)


def test_unknown_deployment_target_names_the_options() -> None:
    message = config_error("deployment=datacentre")
    assert "Available options: datacenter, embedded" in message
    assert "Did you mean 'datacenter'?" in message


def test_deployment_settings_are_checked_before_work() -> None:
    message = config_error("deployment=datacenter", "deployment.formats=[tflite]")
    assert "unknown format(s) tflite" in message
    message = config_error("deployment=embedded", "deployment.budget.max_size_kb=-1")
    assert "deployment.budget.max_size_kb" in message


# -- library parameters that their own annotations leave open ----------------------------------


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("trainer.precision=fp8", ["trainer.precision", "'bf16-mixed'", "'fp8'"]),
        ("trainer.precision=bf16_mixed", ["Did you mean 'bf16-mixed'"]),
        ("trainer.accelerator=tpux", ["trainer.accelerator", "'cpu'", "Did you mean 'tpu'"]),
        ("trainer.strategy=dpp", ["trainer.strategy", "Did you mean 'ddp'"]),
        ("trainer.devices=0", ["trainer.devices", "an int >= 1"]),
        ("trainer.devices=abc", ["trainer.devices", "'abc'"]),
        ("trainer.deterministic=maybe", ["trainer.deterministic", "'warn'"]),
        ("trainer.profiler=simpel", ["trainer.profiler", "Did you mean 'simple'"]),
        ("tracking.mode=nope", ["tracking.mode", "'offline'", "'online'"]),
        ("tracking.mode=ofline", ["Did you mean 'offline'"]),
        ("tracking.tags=abc", ["tracking.tags", "a list of str"]),
        ("model=resnet model.optimizer.momentum=-0.5", ["model.optimizer.momentum", ">= 0"]),
        ("+model.optimizer.betas=[0.9,1.5]", ["model.optimizer.betas", "< 1"]),
        ("model=resnet model.optimizer.momentum=0", ["nesterov", "momentum > 0"]),
        (
            "parallelism=ddp trainer.strategy.process_group_backend=glo",
            ["process_group_backend", "Did you mean 'gloo'"],
        ),
        ("seed=99999999999", ["seed", "<= 4294967295"]),
        ("+trainer.val_check_interval=0", ["trainer.val_check_interval", "an int >= 1"]),
        ("+trainer.val_check_interval=5.5", ["trainer.val_check_interval", "<= 1"]),
    ],
)
def test_library_values(override: str, needles: list[str]) -> None:
    message = config_error(*override.split())
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize(
    "override",
    [
        "trainer.precision=16",
        "trainer.precision=bf16-mixed",
        "trainer.devices=-1",
        "trainer.devices=[0]",
        "trainer.deterministic=warn",
        "trainer.strategy=ddp_spawn",
        "tracking.mode=disabled",
        "tracking.tags=[a,b]",
        "+model.optimizer.betas=[0.9,0.99]",
        "model=resnet",
    ],
)
def test_library_values_that_are_fine(override: str) -> None:
    check_ok(*override.split())


def test_missing_accelerator() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    message = config_error("trainer.accelerator=cuda")
    assert "trainer.accelerator=cuda" in message and "trainer.accelerator=auto" in message


def test_bf16_on_a_gpu_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pre-Ampere GPU (no GPU here: torch's answers are those of such a machine)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100")
    message = config_error("trainer.precision=bf16-mixed")
    assert "Tesla V100" in message and "trainer.precision=16-mixed" in message
    check_ok("trainer.precision=bf16-mixed", "trainer.accelerator=cpu")


def test_precision_from_the_command_line(tmp_path: Path) -> None:
    check_error(["trainer.precision=fp8"], "trainer.precision", "'bf16-mixed'", cwd=tmp_path)


def test_unknown_launcher_from_the_command_line(tmp_path: Path) -> None:
    check_error(["-m", "hydra/launcher=nope"], "hydra/launcher", "joblib", cwd=tmp_path)


# -- data that cannot be split or learned from --------------------------------------------------


def csv_args(path: Path, *more: str) -> list[str]:
    return ["data=csv", f"data.source.path={path}", "data.source.target=y", "model=mlp", *more]


def test_csv_with_one_row(tmp_path: Path) -> None:
    (tmp_path / "one.csv").write_text("x1,x2,y\n1,2,0\n")
    message = config_error(*csv_args(tmp_path / "one.csv"))
    assert "'y'" in message and "1 data row" in message


def test_csv_too_small_to_split(tmp_path: Path) -> None:
    (tmp_path / "three.csv").write_text("x1,x2,y\n1,2,0\n2,3,1\n3,4,0\n")
    message = config_error(*csv_args(tmp_path / "three.csv"))
    assert "3 examples" in message and "val and test split empty" in message


def test_csv_with_a_single_class(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i * 0.5},cat\n" for i in range(30))
    (tmp_path / "cats.csv").write_text("x1,x2,y\n" + rows)
    message = config_error(*csv_args(tmp_path / "cats.csv"))
    assert "'cat'" in message and "at least two classes" in message


def test_csv_with_a_constant_regression_target(tmp_path: Path) -> None:
    rows = "".join(f"{i},1.5\n" for i in range(30))
    (tmp_path / "flat.csv").write_text("x1,y\n" + rows)
    message = config_error(*csv_args(tmp_path / "flat.csv", "data.source.task=regression"))
    assert "'1.5'" in message and "nothing to learn" in message


def test_parquet_with_a_single_class_fails_when_loaded(tmp_path: Path) -> None:
    import pandas as pd

    from mlx.data import DataConfigError, Table

    path = tmp_path / "cats.parquet"
    pd.DataFrame({"x": range(30), "y": ["cat"] * 30}).to_parquet(path)
    table = Table(str(path), "y")  # the schema is read up front, the values only when loaded
    assert table.size == 30
    with pytest.raises(DataConfigError, match="at least two classes"):
        table()


def test_csv_single_class_from_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "one.csv").write_text("x1,x2,y\n1,2,0\n")
    check_error(
        ["data=csv", "data.source.path=one.csv", "data.source.target=y", "model=mlp"],
        "one.csv",
        "nothing to learn",
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        (["data.val_fraction=0.5", "data.test_fraction=0.5"], ["below 0.9"]),
        (["data.val_fraction=0.0001"], ["1797 examples", "val split empty"]),
        (["data=breast_cancer", "model=mlp", "data.test_fraction=0.0005"], ["569 examples"]),
        (["input.persistent_workers=true"], ["input:", "num_workers >= 1"]),
        (["input.prefetch_factor=2"], ["input:", "num_workers >= 1"]),
    ],
)
def test_split_and_loader_settings(overrides: list[str], needles: list[str]) -> None:
    message = config_error(*overrides)
    for needle in needles:
        assert needle in message, message


# -- networks that cannot be built for the data ---------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["model=mlp", "model.net.hidden=[0]"], "model.net.hidden"),
        (["model=mlp", "model.net.hidden=[64,-3]"], "model.net.hidden"),
        (["model=mlp", "model.net.hidden=0"], "model.net.hidden"),
        (["model=cnn", "model.net.channels=[0,8]"], "model.net.channels"),
        (["model=cnn", "model.net.channels=[-1]"], "model.net.channels"),
        (["model=resnet", "model.net.widths=[16,0]"], "model.net.widths"),
        (["compression=distill", "compression.distill.student.hidden=[0]"], "student.hidden"),
        (["latency.batch_sizes=[0]"], "latency.batch_sizes"),
        (["latency.batch_sizes=[]"], "latency.batch_sizes"),
    ],
)
def test_zero_width_layers(overrides: list[str], key: str) -> None:
    message = config_error(*overrides)
    assert key in message and ">= 1" in message, message


def test_cnn_without_hidden_layer_is_fine() -> None:
    check_ok("model=cnn", "model.net.hidden=0")
    check_ok("model=mlp", "model.net.hidden=[]")  # a linear model


@pytest.mark.parametrize("model", ["cnn", "resnet"])
def test_image_network_on_a_table(model: str) -> None:
    message = config_error("data=breast_cancer", f"model={model}")
    assert "(30,)" in message and "model=mlp" in message, message


def test_image_network_on_a_table_from_the_command_line(tmp_path: Path) -> None:
    check_error(["data=breast_cancer"], "model.net", "(30,)", "model=mlp", cwd=tmp_path)


@pytest.mark.slow
def test_too_many_stages_for_the_image(tmp_path: Path) -> None:
    # known only once the network is built; still one paragraph and exit 2, before training
    res = run_cli("run", "model.net.channels=[8,8,8,8]", "trainer.max_epochs=1", cwd=tmp_path)
    assert res.returncode == 2, res.output
    assert "Traceback" not in res.output
    assert "mlx: error:" in res.stderr and "at most 3 entries" in res.stderr


# -- checkpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"junk\n", b"a: 1\n", b""])
def test_checkpoint_that_is_not_one(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.ckpt"
    path.write_bytes(content)
    message = config_error(f"ckpt_path={path}")
    assert "not a PyTorch checkpoint" in message


@pytest.mark.parametrize("command", ["eval", "compress"])
def test_checkpoint_that_is_not_one_from_the_command_line(tmp_path: Path, command: str) -> None:
    (tmp_path / "config.yaml").write_text("a: 1\n")
    res = run_cli(command, "ckpt_path=config.yaml", "compression=prune", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.output, res.output
    assert "not a PyTorch checkpoint" in res.stderr


def test_eval_without_checkpoint(tmp_path: Path) -> None:
    res = run_cli("eval", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.output, res.output
    assert "mlx: error: mlx eval needs a checkpoint" in res.stderr


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch MLP run on digits, for the checks that need a real checkpoint."""
    cwd = tmp_path_factory.mktemp("mlp_run")
    res = run_cli(
        "run",
        "model=mlp",
        "trainer.max_epochs=1",
        "tracking=none",
        "callbacks=minimal",
        "hydra.run.dir=run",
        cwd=cwd,
    )
    assert res.returncode == 0, res.output
    return cwd / "run"


@pytest.mark.slow
def test_eval_on_data_of_another_shape(mlp_run: Path, tmp_path: Path) -> None:
    ckpt = mlp_run / "checkpoints" / "best.ckpt"
    res = run_cli("eval", f"ckpt_path={ckpt}", "data=breast_cancer", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.output, res.output
    assert "holds a network for other data" in res.stderr and "(30,)" in res.stderr


@pytest.mark.slow
@pytest.mark.parametrize("callback", ["checkpoint", "early_stopping"])
def test_callback_monitoring_a_metric_that_is_not_logged(tmp_path: Path, callback: str) -> None:
    # Lightning notices only after the first epoch; mlx before training
    res = run_cli(
        "run",
        f"callbacks.{callback}.monitor=val/accc",
        "callbacks.progress_bar=null",
        "trainer.max_epochs=1",
        "tracking=none",
        cwd=tmp_path,
    )
    assert res.returncode == 2 and "Traceback" not in res.output, res.output
    assert f"callbacks.{callback}.monitor 'val/accc'" in res.stderr and "val/acc" in res.stderr
    assert not list(tmp_path.rglob("history.csv"))  # nothing trained


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        (
            ["objective.metric=train/acc"],
            ["objective.metric is 'train/acc'", "callbacks.checkpoint and", "'val/acc'"],
        ),
        (["objective.metric=test/loss", "objective.mode=min"], ["only after training"]),
        (["callbacks.early_stopping.monitor=train/loss"], ["callbacks.early_stopping compares"]),
    ],
)
def test_monitor_that_is_not_there_when_validation_ends(
    overrides: list[str], needles: list[str]
) -> None:
    message = config_error(*overrides)
    for needle in needles:
        assert needle in message, message


def test_train_metric_checked_at_the_train_epoch_end_is_fine() -> None:
    check_ok(
        "callbacks.early_stopping.monitor=train/loss",
        "callbacks.early_stopping.check_on_train_epoch_end=true",
    )


@pytest.mark.slow
def test_online_tracking_without_a_login(tmp_path: Path) -> None:
    import os

    if os.environ.get("WANDB_MODE"):
        pytest.skip("WANDB_MODE in the environment decides the mode")
    # no key and an empty home: W&B refuses before anything reaches the network
    env = {"WANDB_API_KEY": "", "HOME": str(tmp_path), "WANDB_CONFIG_DIR": str(tmp_path / "wb")}
    res = run_cli(
        "run",
        "tracking.mode=online",
        "callbacks.progress_bar=null",
        "trainer.max_epochs=1",
        cwd=tmp_path,
        env=env,
    )
    assert res.returncode == 2 and "Traceback" not in res.output, res.output
    assert "mlx: error: tracking: W&B cannot start the run" in res.stderr
    assert not list(tmp_path.rglob("history.csv"))  # nothing trained


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        (["model.net=null"], ["model.net", "a callable"]),
        (["model.optimizer=null"], ["model.optimizer", "a callable"]),
        (["model.optimizer._target_=torch.optim.LBFGS"], ["LBFGS", "weight_decay"]),
        (
            ["model=mlp", "model.net.batch_norm=true", "data.batch_size=1"],
            ["batch_norm", "data.batch_size=1"],
        ),
        (  # digits: 1257 training examples, 314 batches of 4 and one of 1
            ["model=mlp", "model.net.batch_norm=true", "data.batch_size=4"],
            ["1257 training examples", "last batch of 1", "such as 5"],
        ),
    ],
)
def test_what_the_model_finds_when_it_is_built(overrides: list[str], needles: list[str]) -> None:
    message = config_error(*overrides)
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.scheduler=null"],
        ["model.optimizer._target_=torch.optim.Adagrad"],
        ["model=mlp", "model.net.batch_norm=true"],
        ["model=mlp", "model.net.batch_norm=true", "data.batch_size=4", "debug=limit"],
    ],
)
def test_what_the_model_takes(overrides: list[str]) -> None:
    check_ok(*overrides)


def test_bad_value_names_the_key_it_was_interpolated_from() -> None:
    # model.scheduler.T_max is ${trainer.max_epochs}: the message says which key to change
    message = config_error("trainer.max_epochs=null")
    assert "'model.scheduler.T_max' (set from 'trainer.max_epochs')" in message


def test_objective_mode_gets_a_close_match() -> None:
    assert "Did you mean 'max'" in config_error("objective.mode=maximum")


def test_typed_hydra_setting() -> None:
    # Hydra's own settings are typed (structured configs); OmegaConf says why it refused
    message = config_error("sweep=digits_tpe", "hydra.sweeper.n_trials=abc", multirun=True)
    assert "Bad value for 'hydra.sweeper.n_trials'" in message and "'abc'" in message


def test_outputs_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "results.csv").write_text("a\n")
    message = config_error(f"paths.outputs={tmp_path / 'results.csv' / 'runs'}")
    assert "paths.outputs" in message and "results.csv is a file" in message


@pytest.mark.slow
def test_report_into_a_folder_that_cannot_be_made(mlp_run: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("a\n")
    res = run_cli("report", str(mlp_run), "--out", "notes.txt/report", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.output, res.output
    assert "mlx: error:" in res.stderr and "notes.txt" in res.stderr


@pytest.mark.slow
def test_prune_budget_no_ratio_reaches(mlp_run: Path, tmp_path: Path) -> None:
    # known only when pruning is tried on the trained network; still mlx: error and exit 2
    res = run_cli(
        "compress",
        f"ckpt_path={mlp_run / 'checkpoints' / 'best.ckpt'}",
        "compression=prune",
        "compression.prune.ratio=null",
        "compression.prune.max_params=10",
        "tracking=none",
        cwd=tmp_path,
    )
    assert res.returncode == 2 and "Traceback" not in res.output, res.output
    assert "mlx: error: compression.prune.max_params" in res.stderr


def test_more_gpus_than_the_machine_has(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    # a machine with one CUDA GPU, as torch sees it
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_ok("trainer.accelerator=gpu", "trainer.devices=1")
    check_ok("trainer.accelerator=cuda", "trainer.devices=-1")
    for devices in ("4", "[0,1]", "[1]"):
        message = config_error("trainer.accelerator=gpu", f"trainer.devices={devices}")
        assert "trainer.devices" in message and "the 1 gpu device(s)" in message, message
