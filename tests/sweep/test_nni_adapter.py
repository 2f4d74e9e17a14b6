"""NNI behind the sweep: search-space compilation, real tuners driven in-process, the
curve-fitting pruner in a real Optuna study, and the experiment registry lock."""

from __future__ import annotations

import json
import math
import pickle
import random
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import optuna
import pytest

from mlx.sweep.nni_adapter import (
    CurveFittingPruner,
    NniAdapter,
    PreemptiveFileLock,
    TunerExhausted,
    fix_nni_registry_lock,
    layer_choice_space,
    nni_search_space,
)
from mlx.sweep.space import Param, SearchSpace, SearchSpaceError

ROOT = Path(__file__).resolve().parents[2]

SPACE = {
    "model.lr": {"type": "loguniform", "low": 1.0e-4, "high": 0.1},
    "model.net.hidden": {"type": "int", "low": 33, "high": 256, "step": 32},
    "model.net.dropout": {"type": "quniform", "low": 0.05, "high": 0.5, "q": 0.1},
    "data.batch_size": {"type": "int", "low": 8, "high": 512, "log": True},
    "model": {"type": "choice", "values": ["mlp", "cnn", "rnn"]},
    "model.net.channels": {
        "type": "choice",
        "values": [[16, 32], [32, 64], None],
        "when": {"model": ["cnn"]},
    },
    "model.net.kernel": {
        "type": "int",
        "low": 3,
        "high": 7,
        "step": 2,
        "when": {"model.net.channels": [[16, 32]]},
    },
    "model.net.cell": {
        "type": "choice",
        "values": ["lstm", "gru"],
        "when": {"model": ["rnn", "cnn"]},
    },
}


def inside(space: SearchSpace, params: dict[str, Any]) -> None:
    """Assert that ``params`` is a point of ``space``: exactly the active parameters, each valid."""
    chosen: dict[str, Any] = {}
    for p in space:
        if not p.active(chosen):
            assert p.name not in params, f"inactive {p.name} in {params}"
            continue
        value = chosen[p.name] = params[p.name]
        if p.type == "choice":
            assert value in p.values, (p.name, value)
            continue
        assert p.low <= value <= p.high, (p.name, value)
        if p.type == "int":
            assert type(value) is int, (p.name, value)
        if p.step is not None and not p.log:
            k = (value - p.low) / p.step
            assert abs(k - round(k)) < 1e-9, (p.name, value)
    assert set(params) == set(chosen)


def objective(params: dict[str, Any]) -> float:
    return -math.log10(params["model.lr"]) / 4 + (0.2 if params["model"] == "cnn" else 0.0)


def evolution(mode: str = "maximize") -> Any:
    from nni.algorithms.hpo.evolution_tuner import EvolutionTuner

    return EvolutionTuner(optimize_mode=mode, population_size=8)


def anneal(mode: str = "maximize") -> Any:
    from nni.algorithms.hpo.hyperopt_tuner import HyperoptTuner

    return HyperoptTuner(algorithm_name="anneal", optimize_mode=mode)


def tpe(mode: str = "maximize") -> Any:
    from nni.algorithms.hpo.tpe_tuner import TpeTuner

    return TpeTuner(optimize_mode=mode, seed=0, tpe_args={"n_startup_jobs": 5})


# ---- compiling -------------------------------------------------------------------------------


def test_import_does_not_import_nni() -> None:
    code = "import sys, mlx.sweep.nni_adapter; print('nni' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_compiles_each_type() -> None:
    space = SearchSpace({k: v for k, v in SPACE.items() if "when" not in v})
    assert nni_search_space(space) == {
        "model.lr": {"_type": "loguniform", "_value": [1.0e-4, 0.1]},
        # 33, 65, ..., 225 does not start on a multiple of 32: searched shifted by 33
        "model.net.hidden": {"_type": "quniform", "_value": [0, 192, 32]},
        "model.net.dropout": {"_type": "quniform", "_value": [0.0, 0.4, 0.1]},
        "data.batch_size": {"_type": "qloguniform", "_value": [8, 512, 1]},
        "model": {"_type": "choice", "_value": ["mlp", "cnn", "rnn"]},
    }
    fixed = SearchSpace({"a": {"type": "uniform", "low": 1.0, "high": 1.0}})
    assert nni_search_space(fixed) == {"a": {"_type": "choice", "_value": [1.0]}}


def test_compiles_conditions_to_nested_choices() -> None:
    compiled = nni_search_space(SearchSpace(SPACE))
    assert list(compiled) == [
        "model.lr",
        "model.net.hidden",
        "model.net.dropout",
        "data.batch_size",
        "model",
    ]
    cell = {"_type": "choice", "_value": ["lstm", "gru"]}
    assert compiled["model"] == {
        "_type": "choice",
        "_value": [
            {"_name": "mlp"},
            {
                "_name": "cnn",
                "model.net.channels": {
                    "_type": "choice",
                    "_value": [
                        {
                            "_name": "[16,32]",
                            "model.net.kernel": {"_type": "quniform", "_value": [0, 4, 2]},
                        },
                        {"_name": "[32,64]"},
                        {"_name": "null"},
                    ],
                },
                "model.net.cell": cell,
            },
            {"_name": "rnn", "model.net.cell": cell},
        ],
    }


@pytest.mark.parametrize(
    "params, words",
    [
        (
            [
                Param("a", "choice", values=(1, 2)),
                Param("b", "choice", values=(1, 2)),
                Param("c", "uniform", low=0, high=1, when={"a": (1,), "b": (2,)}),
            ],
            "one choice only",
        ),
        (
            [
                Param("a", "uniform", low=0, high=1),
                Param("c", "uniform", low=0, high=1, when={"a": (0.5,)}),
            ],
            "only nest under a choice",
        ),
        ([Param("_name", "uniform", low=0, high=1)], "reserves"),
    ],
)
def test_inexpressible_spaces_are_refused(params: list[Param], words: str) -> None:
    with pytest.raises(SearchSpaceError, match=words):
        nni_search_space(SearchSpace.of(params))


def test_strategy_without_nested_spaces_is_named() -> None:
    from nni.algorithms.hpo.batch_tuner import BatchTuner

    with pytest.raises(SearchSpaceError, match="strategy BatchTuner cannot search conditional"):
        NniAdapter(BatchTuner(), SearchSpace(SPACE), "max")


def test_tpe_takes_one_level_of_conditions() -> None:
    with pytest.raises(SearchSpaceError, match="TpeTuner takes one level"):
        NniAdapter(tpe(), SearchSpace(SPACE), "max")


def test_optimize_mode_must_agree() -> None:
    with pytest.raises(ValueError, match="optimize_mode: minimize"):
        NniAdapter(evolution("maximize"), SearchSpace(SPACE), "min")


# ---- proposing and observing -----------------------------------------------------------------


@pytest.mark.parametrize("make", [evolution, anneal], ids=["evolution", "anneal"])
@pytest.mark.parametrize("mode", ["max", "min"])
def test_proposals_stay_inside_the_space(make: Any, mode: str) -> None:
    space = SearchSpace(SPACE)
    adapter = NniAdapter(make(f"{mode}imize"), space, mode)
    seen = set()
    for number in range(30):
        params = adapter.propose(number)
        inside(space, params)
        seen.add(json.dumps(params, sort_keys=True))
        adapter.observe(number, params, None if number % 7 == 3 else objective(params))
    assert len(seen) > 15  # it explores


def test_tpe_on_one_level_of_conditions() -> None:
    space = SearchSpace({k: v for k, v in SPACE.items() if k != "model.net.kernel"})
    adapter = NniAdapter(tpe(), space, "max")
    for number in range(12):
        params = adapter.propose(number)
        inside(space, params)
        adapter.observe(number, params, objective(params))


def test_replay_feeds_each_tuner() -> None:
    space = SearchSpace(SPACE)
    first = NniAdapter(anneal(), space, "max")
    history = []
    for number in range(10):
        params = first.propose(number)
        history.append((params, 0.0 if number == 0 else objective(params)))
    history.append((history[1][0], None))  # a failed trial teaches nothing

    again = NniAdapter(anneal(), space, "max")
    again.replay(history)
    # every finished trial, a result of 0 included (NNI's own import_data drops those)
    assert len(again.tuner.rval.trials) == 10
    inside(space, again.propose(10))

    evolved = NniAdapter(evolution(), space, "max")
    evolved.replay(history)
    results = [ind.result for ind in evolved.tuner.population if ind.result is not None]
    assert sorted(results) == sorted(v for _, v in history if v is not None)
    assert (
        len(evolved.tuner.population) == 10
    )  # the 8 random starters were taken by replayed trials
    for number in range(10, 15):
        params = evolved.propose(number)
        inside(space, params)
        evolved.observe(number, params, objective(params))

    flat = SearchSpace({k: v for k, v in SPACE.items() if k != "model.net.kernel"})
    tuned = NniAdapter(tpe(), flat, "max")
    tuned.replay([(p, v) for p, v in history if "model.net.kernel" not in p])
    assert len(tuned.tuner._history[("model.lr",)]) == sum(
        1 for p, v in history if v is not None and "model.net.kernel" not in p
    )


def test_observe_after_a_restart_replays() -> None:
    space = SearchSpace(SPACE)
    first = NniAdapter(anneal(), space, "max")
    params = first.propose(0)
    again = NniAdapter(anneal(), space, "max")
    again.observe(0, params, 0.5)  # proposed by the process before the restart
    assert len(again.tuner.rval.trials) == 1


def test_exhausted_grid_raises() -> None:
    from nni.algorithms.hpo.gridsearch_tuner import GridSearchTuner

    space = SearchSpace({"model": {"type": "choice", "values": ["mlp", "cnn"]}})
    adapter = NniAdapter(GridSearchTuner(), space, "max")
    assert {adapter.propose(0)["model"], adapter.propose(1)["model"]} == {"mlp", "cnn"}
    with pytest.raises(TunerExhausted, match="GridSearchTuner has no more trials"):
        adapter.propose(2)


# ---- regularized evolution: a flat, finite space -------------------------------------------

FINITE = {
    "model.net.hidden": {"type": "int", "low": 33, "high": 100, "step": 32},
    "model.net.dropout": {"type": "quniform", "low": 0.05, "high": 0.5, "q": 0.1},
    "model.lr": {"type": "choice", "values": [0.003, 0.01, 0.03]},
    "model": {"type": "choice", "values": ["mlp", "cnn"]},
    "model.net.channels": {
        "type": "choice",
        "values": [[16, 32], [32, 64], None],
        "when": {"model": ["cnn"]},
    },
    "model.net.kernel": {
        "type": "int",
        "low": 3,
        "high": 7,
        "step": 2,
        "when": {"model.net.channels": [[16, 32]]},
    },
}


def regularized(mode: str = "maximize", population_size: int = 8, sample_size: int = 4) -> Any:
    from nni.algorithms.hpo.regularized_evolution_tuner import RegularizedEvolutionTuner

    return RegularizedEvolutionTuner(
        optimize_mode=mode, population_size=population_size, sample_size=sample_size
    )


@pytest.fixture
def seeded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tuner draws from the module ``random``: give it (and the adapter) a seeded one."""
    from nni.algorithms.hpo import regularized_evolution_tuner

    from mlx.sweep import nni_adapter

    monkeypatch.setattr(regularized_evolution_tuner, "random", random.Random(0))
    monkeypatch.setattr(nni_adapter, "random", random.Random(1))


def finite_objective(params: dict[str, Any]) -> float:
    return params["model.lr"] * 10 + (0.5 if params.get("model.net.channels") == [16, 32] else 0)


def test_layer_choice_space_lists_every_value() -> None:
    assert layer_choice_space(SearchSpace(FINITE)) == {
        "model.net.hidden": {"_type": "layer_choice", "_value": [33, 65, 97]},
        "model.net.dropout": {"_type": "layer_choice", "_value": [0.05, 0.15, 0.25, 0.35, 0.45]},
        "model.lr": {"_type": "layer_choice", "_value": [0.003, 0.01, 0.03]},
        "model": {"_type": "layer_choice", "_value": ["mlp", "cnn"]},
        # conditional parameters are flat: dropped on decode where their condition fails
        "model.net.channels": {"_type": "layer_choice", "_value": ["[16,32]", "[32,64]", "null"]},
        "model.net.kernel": {"_type": "layer_choice", "_value": [3, 5, 7]},
    }
    fixed = SearchSpace({"a": {"type": "uniform", "low": 1.0, "high": 1.0}})
    assert layer_choice_space(fixed) == {"a": {"_type": "layer_choice", "_value": [1.0]}}


@pytest.mark.parametrize(
    "spec, words",
    [
        (
            {"type": "loguniform", "low": 1e-4, "high": 0.1},
            "continuous loguniform range; give it a step or q",
        ),
        (
            {"type": "uniform", "low": 0.0, "high": 0.5},
            "continuous uniform range; give it a step or q",
        ),
        (
            {"type": "int", "low": 8, "high": 512, "log": True},
            "log int range; drop log and give it a step",
        ),
        ({"type": "int", "low": 0, "high": 10_000}, "holds 10001 values \\(more than 10000\\)"),
    ],
    ids=["loguniform", "uniform", "log-int", "huge"],
)
def test_regularized_evolution_refuses_an_infinite_space(spec: dict[str, Any], words: str) -> None:
    space = SearchSpace({"model": {"type": "choice", "values": ["mlp", "cnn"]}, "model.lr": spec})
    with pytest.raises(SearchSpaceError, match=words) as err:
        NniAdapter(regularized(), space, "max")
    message = str(err.value)
    assert "RegularizedEvolutionTuner" in message and "search_space 'model.lr'" in message
    assert "strategy=evolution" in message


@pytest.mark.parametrize("mode", ["max", "min"])
def test_regularized_evolution_proposals_stay_inside_the_space(mode: str, seeded: None) -> None:
    space = SearchSpace(FINITE)
    adapter = NniAdapter(regularized(f"{mode}imize"), space, mode)
    seen = set()
    for number in range(30):
        params = adapter.propose(number)
        inside(space, params)
        assert isinstance(params.get("model.net.channels", []), list | None)
        seen.add(json.dumps(params, sort_keys=True))
        adapter.observe(number, params, finite_objective(params))
    assert len(seen) > 8


def test_regularized_evolution_observes_failures(seeded: None) -> None:
    space = SearchSpace(FINITE)
    adapter = NniAdapter(regularized(population_size=4), space, "max")
    tuner = adapter.tuner
    for number in range(4):
        params = adapter.propose(number)
        adapter.observe(number, params, None if number < 2 else finite_objective(params))
    # the two failed starters are forgotten and replaced by two fresh random ones
    assert sorted(tuner.history) == [2, 3] and len(tuner.population) == 2
    assert len(tuner.initial_population) == 2
    for number in range(4, 6):
        adapter.propose(number)
        assert tuner._from_initial[number]
    adapter.observe(4, {}, float("nan"))  # NaN counts as a failure too
    assert 4 not in tuner.history and len(tuner.initial_population) == 1
    params = adapter.propose(6)
    adapter.observe(6, params, None)  # a failed mutation is dropped
    adapter.observe(5, {}, 0.5)
    assert [ind.parameter_id for ind in tuner.population] == [2, 3, 5]


def test_regularized_evolution_waits_for_results_past_its_population(seeded: None) -> None:
    space = SearchSpace(FINITE)
    adapter = NniAdapter(regularized(population_size=3), space, "max")
    batch = [adapter.propose(number) for number in range(3)]
    with pytest.raises(TunerExhausted, match="whole starting population \\(population_size=3\\)"):
        adapter.propose(3)
    adapter.observe(0, batch[0], 0.5)
    inside(space, adapter.propose(3))  # a mutation of the one result back


def test_regularized_evolution_replays_after_a_restart(seeded: None) -> None:
    space = SearchSpace(FINITE)
    first = NniAdapter(regularized("minimize", population_size=8), space, "min")
    history = []
    for number in range(5):
        params = first.propose(number)
        history.append((params, None if number == 1 else finite_objective(params)))
        first.observe(number, params, history[-1][1])

    again = NniAdapter(regularized("minimize", population_size=8), space, "min")
    again.replay(history)
    tuner = again.tuner
    finished = [(p, v) for p, v in history if v is not None]
    # the minimizing tuner keeps negated results; the replayed trials took the places of four
    # random starters, so the restarted sweep proposes only four more before it evolves
    assert sorted(ind.result for ind in tuner.population) == sorted(-v for _, v in finished)
    assert len(tuner.initial_population) == 8 - len(finished)
    for ind, (params, _) in zip(tuner.population, finished, strict=True):
        assert again._decode(ind.parameters) == params  # encoded and decoded back
    assert not tuner.history  # replayed trials are no running trials

    # a trial proposed before the restart and finished after it is learnt like a replayed one
    again.observe(5, history[0][0], 0.25)
    assert len(tuner.population) == 5 and len(tuner.initial_population) == 3
    for number in range(6, 16):
        params = again.propose(number)
        inside(space, params)
        again.observe(number, params, finite_objective(params))
    assert not tuner.initial_population and len(tuner.population) == 8  # aged out


def test_regularized_evolution_replays_more_trials_than_its_population(seeded: None) -> None:
    space = SearchSpace(FINITE)
    history = [
        ({"model.net.hidden": 33, "model.net.dropout": 0.05, "model.lr": lr, "model": "mlp"}, lr)
        for lr in (0.003, 0.01, 0.03, 0.01, 0.003)
    ]
    adapter = NniAdapter(regularized(population_size=3), space, "max")
    adapter.replay(history)
    assert [ind.result for ind in adapter.tuner.population] == [0.03, 0.01, 0.003]
    assert not adapter.tuner.initial_population
    inside(space, adapter.propose(0))  # straight to mutations


def test_regularized_evolution_evolves_towards_the_best(seeded: None) -> None:
    space = SearchSpace(
        {
            "model": {"type": "choice", "values": ["mlp", "cnn", "rnn", "vit"]},
            "model.net.hidden": {"type": "int", "low": 32, "high": 256, "step": 32},
        }
    )

    def score(params: dict[str, Any]) -> float:
        return (1.0 if params["model"] == "cnn" else 0.0) + params["model.net.hidden"] / 1000

    starters, late = [], []
    for _ in range(8):  # eight sweeps, so that one without a cnn starter cannot decide the test
        adapter = NniAdapter(regularized(population_size=8, sample_size=4), space, "max")
        finished: list[dict[str, Any]] = []
        for number in range(64):
            params = adapter.propose(number)
            if number >= 8:
                # a mutation changes one parameter of an earlier configuration (or none)
                assert any(sum(params[k] != old[k] for k in params) <= 1 for old in finished)
            adapter.observe(number, params, score(params))
            finished.append(params)
        starters += finished[:8]
        late += finished[-24:]
    share = sum(p["model"] == "cnn" for p in late) / len(late)
    assert share > 0.35  # random proposals would give a quarter (about 0.57 over 200 seeds)
    assert sum(map(score, late)) / len(late) > sum(map(score, starters)) / len(starters) + 0.1


# ---- pruning ---------------------------------------------------------------------------------


def curve(final: float, start: float, steps: int) -> list[float]:
    """A learning curve rising from ``start`` towards ``final``."""
    return [final - (final - start) * math.exp(-0.35 * (s + 1)) for s in range(steps)]


def run_trial(study: optuna.Study, values: list[float]) -> tuple[bool, int]:
    """Report ``values`` one step at a time; return whether the trial was pruned, and when."""
    trial = study.ask()
    for step, value in enumerate(values):
        trial.report(value, step)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return True, step
    study.tell(trial, values[-1])
    return False, len(values)


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_curve_fitting_prunes_a_bad_curve_only(direction: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = CurveFittingPruner(epoch_num=20, start_step=6, threshold=0.95, gap=2)
    study = optuna.create_study(direction=direction, pruner=pruner)
    sign = 1 if direction == "maximize" else -1

    def shaped(final: float, start: float, steps: int) -> list[float]:
        # accuracy rises; a loss (1.2 - accuracy) falls
        return [v if sign > 0 else 1.2 - v for v in curve(final, start, steps)]

    assert run_trial(study, shaped(0.95, 0.3, 8)) == (False, 8)  # nothing to compare with yet
    pruned, step = run_trial(study, shaped(0.4, 0.1, 10))
    assert pruned and step >= 5
    assert run_trial(study, shaped(0.94, 0.3, 8)) == (False, 8)


def test_curve_fitting_pruner_pickles() -> None:
    pruner = CurveFittingPruner(epoch_num=10, start_step=3)
    study = optuna.create_study(pruner=pruner, direction="maximize")
    run_trial(study, curve(0.9, 0.2, 3))
    run_trial(study, curve(0.9, 0.2, 4))
    copy = pickle.loads(pickle.dumps(pruner))
    assert copy._assessor is None and (copy.epoch_num, copy.start_step) == (10, 3)
    with pytest.raises(ValueError, match="epoch_num"):
        CurveFittingPruner(epoch_num=0)


# ---- the registry lock -----------------------------------------------------------------------


def test_preemptive_lock(tmp_path: Path) -> None:
    import filelock

    path = str(tmp_path / ".experiment.lock")
    first, second = PreemptiveFileLock(path, stale=0.5), PreemptiveFileLock(path, stale=0.5)
    with first, first:  # re-entrant
        with pytest.raises(filelock.Timeout):
            second.acquire(timeout=0.1)
        assert first.is_locked and len(list(tmp_path.iterdir())) == 1
    assert not list(tmp_path.iterdir())
    first.acquire()
    with second.acquire(timeout=2):  # the first holder went stale: preempted
        assert second.is_locked
    first.release()
    assert not list(tmp_path.iterdir())


def test_registry_with_installed_filelock(tmp_path: Path) -> None:
    fix_nni_registry_lock()
    fix_nni_registry_lock()  # idempotent
    from nni.tools.nnictl import common_utils
    from nni.tools.nnictl.config_utils import Experiments

    assert common_utils.SimplePreemptiveLock is PreemptiveFileLock
    registry = Experiments(home_dir=str(tmp_path))
    registry.add_experiment("x1", 8080, 0, "local", "test")
    assert registry.update_experiment("x1", "status", "DONE")
    assert Experiments(home_dir=str(tmp_path)).get_all_experiments()["x1"]["status"] == "DONE"
    registry.remove_experiment("x1")
    assert [p.name for p in tmp_path.iterdir()] == [".experiment"]


NEW_FILELOCK = """
import os, sys, filelock
from packaging.version import Version
assert Version(filelock.__version__) >= Version("3.24"), filelock.__file__
from nni.tools.nnictl.common_utils import get_file_lock
home = sys.argv[1]
lock = get_file_lock(os.path.join(home, ".experiment"), stale=2)
lock.timeout = 1
try:
    with lock:
        pass
    print("nni's own lock: taken")
except filelock.Timeout:
    print("nni's own lock: hangs")
for name in os.listdir(home):
    os.remove(os.path.join(home, name))

from mlx.sweep.nni_adapter import fix_nni_registry_lock
fix_nni_registry_lock()
from nni.tools.nnictl.config_utils import Experiments
registry = Experiments(home_dir=home)
registry.add_experiment("x1", 8080, 0, "local", "test")
registry.update_experiment("x1", "status", "DONE")
print("patched:", Experiments(home_dir=home).get_all_experiments()["x1"]["status"], filelock.__version__)
"""


def test_registry_with_filelock_3_24(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
            + ["-d", str(wheels), "filelock>=3.24,<3.25"],
            check=True,
            capture_output=True,
            timeout=90,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"no filelock>=3.24 wheel from pip's cache or index: {exc}")
    (wheel,) = wheels.glob("filelock-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    home = tmp_path / "home"
    home.mkdir()
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(NEW_FILELOCK), str(home)],
        cwd=ROOT,
        env={"PYTHONPATH": f"{site}:{ROOT}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "nni's own lock: hangs" in out.stdout  # the bug is real with this filelock
    assert "patched: DONE 3.24" in out.stdout
