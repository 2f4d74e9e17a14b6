"""mlx used from a folder of the user's own: the wheel carries the config tree, `mlx init` writes
a project whose conf/, experiments/ and sweeps/ join mlx's groups, the command line is checked
over the same search path the launch uses, and everything mlx writes lands in the project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from mlx.config.locate import MLX_ROOT, Layout
from tests import conftest
from tests.conftest import SHORT, run_cli

REPO = Path(__file__).resolve().parents[1]
TINY = [*SHORT, *conftest.TINY]


def repo_files() -> set[str]:
    """Every file of the repository's experiments/ and sweeps/ (to check nothing is added)."""
    return {str(p) for f in ("experiments", "sweeps") for p in (REPO / f).iterdir()}


@pytest.fixture
def untouched():
    before = repo_files()
    yield
    assert repo_files() == before, "a test wrote into mlx's repository"


# ---- the wheel -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout (no network: the build backend is a dev dependency)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (path,) = out.glob("mlx-*.whl")
    return path


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The wheel installed (not editable) in a scratch folder: the environment that runs it."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return {"PYTHONPATH": str(site)}


def test_the_wheel_carries_the_config_tree_without_links(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        infos = z.infolist()
    names = {i.filename for i in infos}
    links = [i.filename for i in infos if (i.external_attr >> 16) & 0o170000 == 0o120000]
    assert not links
    mlx = Layout(MLX_ROOT)
    for group in mlx.groups():
        for option in mlx.options(group):
            folder = {"experiment": "experiments", "sweep": "sweeps"}.get(group, f"conf/{group}")
            assert f"mlx/_tree/{folder}/{option}.yaml" in names, (group, option)
    assert "mlx/_tree/conf/config.yaml" in names
    assert "hydra_plugins/mlx_project/mlx_project.py" in names
    assert "mlx/project_template/mynet.py" in names
    # the repository has no links either: experiments/ and sweeps/ join through the config source
    assert not [p for p in (REPO / "conf").rglob("*") if p.is_symlink()]


def test_the_installed_wheel_works_from_any_folder(
    installed: dict[str, str], tmp_path: Path
) -> None:
    where = subprocess.run(
        [sys.executable, "-c", "import mlx; print(mlx.__file__)"],
        cwd=tmp_path,
        env={**os.environ, **installed},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where == str(Path(installed["PYTHONPATH"]) / "mlx" / "__init__.py")
    r = run_cli("run", "--cfg", "job", "experiment=mnist_cnn", cwd=tmp_path, env=installed)
    assert r.returncode == 0, r.output
    assert "task_name: mnist_cnn" in r.stdout
    info = run_cli("run", "--info", "searchpath", cwd=tmp_path, env=installed)
    assert f"file://{installed['PYTHONPATH']}/mlx/_tree/conf" in info.stdout, info.stdout
    typo = run_cli("run", "model=mlpp", cwd=tmp_path, env=installed)
    assert typo.returncode == 2 and "Did you mean 'mlp'?" in typo.stderr
    sweep = run_cli("sweep", "nope", cwd=tmp_path, env=installed)
    assert sweep.returncode == 2 and "digits_tpe" in sweep.stderr


@pytest.mark.slow
def test_the_installed_wheel_trains_in_a_project_of_its_own(
    installed: dict[str, str], tmp_path: Path
) -> None:
    assert run_cli("init", "proj", cwd=tmp_path, env=installed).returncode == 0
    project = tmp_path / "proj"
    r = run_cli(
        "run", "model=mynet", *TINY, "hydra.run.dir=outputs/run", cwd=project, env=installed
    )
    assert r.returncode == 0, r.output[-3000:]
    record = json.loads((project / "outputs" / "run" / "metrics.json").read_text())
    assert record["status"] == "completed"


# ---- a project -------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    r = run_cli("init", "proj", cwd=tmp_path)
    assert r.returncode == 0, r.output
    return tmp_path / "proj"


def test_init_writes_a_project_and_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    r = run_cli("init", "proj", cwd=tmp_path)
    assert r.returncode == 0, r.output
    project = tmp_path / "proj"
    for name in (
        "mlx.yaml",
        "README.md",
        ".gitignore",
        "mynet.py",
        "conf/model/mynet.yaml",
        "experiments/mynet_digits.yaml",
        "sweeps/mynet_digits_grid.yaml",
    ):
        assert (project / name).is_file(), name
    again = run_cli("init", "proj", cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr.count("mlx: error:") == 1 and "not empty" in again.stderr
    assert "Traceback" not in again.output
    (tmp_path / "file").write_text("x")
    on_file = run_cli("init", "file", cwd=tmp_path)
    assert on_file.returncode == 2 and "is a file" in on_file.stderr
    usage = run_cli("init", cwd=tmp_path)
    assert usage.returncode == 2 and "mlx init DIR" in usage.stderr


def test_project_options_join_mlx_groups(project: Path, tmp_path: Path) -> None:
    helped = run_cli("run", "--help", cwd=project)
    for line in (
        "model: cnn, mlp, mynet, nas, resnet",
        "mynet_digits",
        "mynet_digits_grid",
        "breast_cancer_mlp",
    ):
        assert line in helped.stdout, helped.stdout
    # from a sub-folder of the project, and from anywhere with MLX_PROJECT
    (project / "notes").mkdir()
    for cwd, env in ((project / "notes", {}), (tmp_path, {"MLX_PROJECT": str(project)})):
        r = run_cli("run", "--cfg", "job", "experiment=mynet_digits", cwd=cwd, env=env)
        assert r.returncode == 0, r.output
        assert "_target_: mynet.MyNet" in r.stdout and "width: 128" in r.stdout


def test_the_check_composes_over_the_search_path_of_the_launch(project: Path) -> None:
    """The fast check (ConfigTree.search_path) and hydra.main list the same sources."""
    extra = project.parent / "extra"
    (extra / "data").mkdir(parents=True)
    code = (
        "import json; from mlx.config.locate import config_tree\n"
        f"sp = config_tree([{str(extra)!r}]).search_path()\n"
        "print(json.dumps([[e.provider, e.path] for e in sp.get_path()]))"
    )
    checked = subprocess.run(
        [sys.executable, "-c", code], cwd=project, capture_output=True, text=True, check=True
    ).stdout
    launched = run_cli("run", "--config-dir", str(extra), "--cfg", "hydra", cwd=project)
    assert launched.returncode == 0, launched.output
    sources = yaml.safe_load(launched.stdout)["hydra"]["runtime"]["config_sources"]
    assert [[s["provider"], f"{s['schema']}://{s['path']}"] for s in sources] == [
        [p, path if "://" in path else f"file://{path}"] for p, path in json.loads(checked)
    ]
    assert ["project", f"mlx://{project}"] in json.loads(checked)


def test_a_typo_in_a_project_option_gets_mlx_s_message(project: Path) -> None:
    cases = {
        "model=mynett": "Did you mean 'mynet'?",
        "experiment=mynet_digit": "Did you mean 'mynet_digits'?",
        # the project's module is read from source: its annotation is enforced
        "model=mynet model.net.width=0": "expected an int >= 1, got 0",
        "model=mynet model.net.widht=3": "Did you mean 'width'?",
    }
    for args, message in cases.items():
        r = run_cli("run", *args.split(), cwd=project)
        assert r.returncode == 2, (args, r.output)
        assert "mlx: error:" in r.stderr and message in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.output
    sweep = run_cli("sweep", "mynet_digits_gird", cwd=project)
    assert sweep.returncode == 2 and "Did you mean 'mynet_digits_grid'?" in sweep.stderr
    # a --config-dir folder is checked the same way (it used to skip mlx's checks)
    extra = project.parent / "extra"
    (extra / "data").mkdir(parents=True)
    (extra / "data" / "digits_small.yaml").write_text(
        (MLX_ROOT / "conf" / "data" / "digits.yaml").read_text()
    )
    ok = run_cli(
        "run", "--config-dir", str(extra), "--cfg", "job", "data=digits_small", cwd=project
    )
    assert ok.returncode == 0, ok.output
    typo = run_cli("run", "--config-dir", str(extra), "data=digits_smal", cwd=project)
    assert typo.returncode == 2 and "Did you mean 'digits_small'?" in typo.stderr, typo.output


def test_what_hydra_would_silently_ignore_is_refused(project: Path) -> None:
    (project / "conf" / "model" / "cnn.yaml").write_text("_target_: mynet.MyNet\n")
    r = run_cli("run", "--cfg", "job", cwd=project)
    assert r.returncode == 2 and "cnn.yaml is hidden by" in r.stderr, r.output
    (project / "conf" / "model" / "cnn.yaml").unlink()
    (project / "mlx.yaml").write_text("outputs: elsewhere\n")
    r = run_cli("run", "--cfg", "job", cwd=project)
    assert r.returncode == 2 and "mlx.yaml holds settings" in r.stderr, r.output


def test_a_project_trains_its_model_and_experiment_and_writes_under_itself(
    project: Path, untouched: None
) -> None:
    notes = project / "notes"
    notes.mkdir()
    r = run_cli("run", "model=mynet", *TINY, cwd=notes)
    assert r.returncode == 0, r.output[-3000:]
    (run,) = (project / "outputs" / "run" / "runs").iterdir()
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["net"]["_target_"] == "mynet.MyNet"
    assert not (notes / "outputs").exists()
    r = run_cli("run", "experiment=mynet_digits", *TINY, cwd=project)
    assert r.returncode == 0, r.output[-3000:]
    (run,) = (project / "outputs" / "mynet_digits" / "runs").iterdir()
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_a_project_sweep_exports_its_best_trial_into_the_project(
    project: Path, untouched: None
) -> None:
    r = run_cli("sweep", "mynet_digits_grid", *TINY, "hydra.sweeper.n_trials=2", cwd=project)
    assert r.returncode == 0, r.output[-3000:]
    assert (project / "outputs" / "sweeps" / "mynet_digits_grid" / "trials.csv").is_file()
    best = project / "experiments" / "mynet_digits_grid_best.yaml"
    assert "override /model: mynet" in best.read_text()
    r = run_cli("run", "experiment=mynet_digits_grid_best", *TINY, cwd=project)
    assert r.returncode == 0, r.output[-3000:]
