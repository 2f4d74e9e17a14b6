"""The rl strategy (REINFORCE over a factorised softmax): it learns, in either direction, from
stored trials after a resume and from trials told out of order, with conditional parameters;
it refuses what it cannot search; and it runs a real sweep through the `mlx` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest

from mlx.sweep.rl import PolicyGradientSampler, candidates, check_space
from mlx.sweep.space import SearchSpace, SearchSpaceError
from tests.conftest import run_cli
from tests.sweep.test_sweeper import sweep_args, trials

optuna.logging.set_verbosity(optuna.logging.WARNING)

VALUES = ["a", "b", "c", "d"]
GOOD = "c"
NAMES = ["x0", "x1", "x2"]
SEEDS = [0, 1, 2]
N_TRIALS = 60


def rl(seed: int, **kwargs) -> PolicyGradientSampler:
    # the values conf/strategy/rl.yaml gives a sweep
    return PolicyGradientSampler(
        **{"learning_rate": 0.2, "n_startup_trials": 4, "seed": seed, **kwargs}
    )


def toy(sampler: optuna.samplers.BaseSampler, seed: int, direction: str = "maximize"):
    """3 parameters with 4 values each; the reward counts those set to GOOD, plus noise."""
    noise = np.random.RandomState(1000 + seed)

    def objective(trial: optuna.Trial) -> float:
        hits = sum(trial.suggest_categorical(n, VALUES) == GOOD for n in NAMES)
        score = hits + noise.normal(0, 0.1)
        return score if direction == "maximize" else 3 - score

    study = optuna.create_study(direction=direction, sampler=sampler)
    study.optimize(objective, n_trials=N_TRIALS)
    return study


def p_best(sampler: PolicyGradientSampler) -> float:
    return float(np.prod([sampler.probabilities(n)[GOOD] for n in NAMES]))


def hits_of(study: optuna.Study, last: int = 20) -> float:
    return float(np.mean([sum(t.params[n] == GOOD for n in NAMES) for t in study.trials[-last:]]))


def test_policy_learns_the_best_joint_choice_and_beats_random():
    uniform = (1 / len(VALUES)) ** len(NAMES)  # 1/64
    learned, random = [], []
    for seed in SEEDS:
        sampler = rl(seed)
        study = toy(sampler, seed)
        sampler.learn(study)
        # each seed on its own: well above uniform (typically 0.5 to 0.9)
        assert p_best(sampler) > 10 * uniform, seed
        learned.append(np.mean([t.value for t in study.trials[-20:]]))
        baseline = toy(optuna.samplers.RandomSampler(seed=seed), seed)
        random.append(np.mean([t.value for t in baseline.trials[-20:]]))
    # random draws average 0.75 hits; the policy typically 2.2 or more in its last 20 trials
    assert np.mean(learned) > np.mean(random) + 0.75, (learned, random)


def test_minimize_learns_the_same_choice():
    sampler = rl(0)
    study = toy(sampler, 0, direction="minimize")
    sampler.learn(study)
    assert p_best(sampler) > 10 / 64
    assert hits_of(study) > 1.5
    # minimising 3 - score is maximising score - 3, and a shift leaves the advantages alone
    maximizer = rl(0)
    maximizer.learn(toy(maximizer, 0))
    for n in NAMES:
        np.testing.assert_allclose(sampler.logits(n), maximizer.logits(n), atol=1e-9)


def test_same_seed_gives_the_same_trials():
    a, b = toy(rl(7), 7), toy(rl(7), 7)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    c = toy(rl(8), 7)
    assert [t.params for t in a.trials] != [t.params for t in c.trials]


def test_reward_scale_does_not_change_the_policy():
    def study_of(scale: float) -> optuna.Study:
        # the same trials for both scales
        sampler = optuna.samplers.RandomSampler(seed=0)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        for i in range(20):
            t = study.ask()
            hits = sum(t.suggest_categorical(n, VALUES) == GOOD for n in NAMES)
            study.tell(t, scale * (hits + 0.01 * i))
        return study

    small, large = rl(0), rl(0)
    small.learn(study_of(1.0))
    large.learn(study_of(1000.0))
    for n in NAMES:
        np.testing.assert_allclose(small.logits(n), large.logits(n), rtol=1e-9)


def test_continuous_parameter_is_refused_with_its_name():
    study = optuna.create_study(sampler=rl(0))
    with pytest.raises(ValueError, match=r"'lr' is a continuous range.*tpe or random"):
        study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-1, log=True), n_trials=1)
    # stepped and integer ranges are finite, and huge ones are refused as such
    assert candidates("d", optuna.distributions.FloatDistribution(0.0, 0.5, step=0.1)) == [
        pytest.approx(v) for v in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    ]
    assert candidates("w", optuna.distributions.IntDistribution(32, 128, step=32)) == [
        32,
        64,
        96,
        128,
    ]
    with pytest.raises(ValueError, match=r"'n' has 1000001 values"):
        candidates("n", optuna.distributions.IntDistribution(0, 1_000_000))


def test_check_space_refuses_continuous_parameters_before_a_sweep():
    finite = SearchSpace(
        {
            "model.lr": {"type": "choice", "values": [0.001, 0.01]},
            "model.net.dropout": {"type": "quniform", "low": 0.0, "high": 0.5, "q": 0.1},
            "data.batch_size": {"type": "int", "low": 16, "high": 256, "log": True},
        }
    )
    check_space(finite)
    continuous = SearchSpace({"model.lr": {"type": "loguniform", "low": 1e-4, "high": 0.1}})
    with pytest.raises(SearchSpaceError, match="'model.lr' is a continuous range"):
        check_space(continuous)


def test_int_and_quniform_parameters_learn():
    sampler = rl(0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(
        lambda t: (
            -abs(t.suggest_int("width", 16, 128, step=16) - 96)
            - abs(t.suggest_float("dropout", 0.0, 0.5, step=0.1) - 0.2) * 100
        ),
        n_trials=N_TRIALS,
    )
    sampler.learn(study)
    width, dropout = sampler.probabilities("width"), sampler.probabilities("dropout")
    assert max(width, key=width.get) in (80, 96, 112)
    assert max(dropout, key=dropout.get) == pytest.approx(0.2, abs=0.11)


def test_resume_from_sqlite_reproduces_the_policy(tmp_path: Path):
    storage = f"sqlite:///{tmp_path / 'sweep.db'}"
    first = rl(0)
    study = optuna.create_study(
        study_name="s", storage=storage, direction="maximize", sampler=first
    )
    noise = np.random.RandomState(0)
    study.optimize(
        lambda t: (
            sum(t.suggest_categorical(n, VALUES) == GOOD for n in NAMES) + noise.normal(0, 0.1)
        ),
        n_trials=30,
    )
    # a pruned trial with an intermediate value counts, a failed one does not
    t = study.ask()
    for n in NAMES:
        t.suggest_categorical(n, VALUES)
    t.report(0.5, step=1)
    study.tell(t, state=optuna.trial.TrialState.PRUNED)
    t = study.ask()
    study.tell(t, state=optuna.trial.TrialState.FAIL)
    first.learn(study)

    # the sweeper reloads the ledger with a new sampler, seeded differently
    reloaded = optuna.load_study(study_name="s", storage=storage, sampler=rl(30))
    fresh = reloaded.sampler
    assert isinstance(fresh, PolicyGradientSampler)
    fresh.learn(reloaded)
    for n in NAMES:
        np.testing.assert_array_equal(fresh.logits(n), first.logits(n))
    assert fresh.learned_trials == list(range(31))  # 30 complete, the pruned one; not the failed
    reloaded.optimize(lambda t: sum(t.suggest_categorical(n, VALUES) == GOOD for n in NAMES), 5)
    assert len(reloaded.trials) == 37


def test_out_of_order_tells_give_the_in_order_policy():
    def batch_study(order: list[int]) -> optuna.Study:
        study = optuna.create_study(direction="maximize", sampler=rl(3))
        for _ in range(5):
            asked = [study.ask() for _ in range(4)]  # n_jobs=4: asked before any is told
            values = [sum(t.suggest_categorical(n, VALUES) == GOOD for n in NAMES) for t in asked]
            for i in order:
                study.tell(asked[i], values[i])
                study.sampler.learn(study)  # learns from each trial as soon as it is told
        return study

    forward, backward = batch_study([0, 1, 2, 3]), batch_study([3, 1, 0, 2])
    # the draws of later batches depend on the policy: same trials means same policy
    assert [t.params for t in forward.trials] == [t.params for t in backward.trials]
    replayed = rl(99)
    replayed.learn(backward)
    for n in NAMES:
        np.testing.assert_allclose(replayed.logits(n), backward.sampler.logits(n), rtol=1e-12)


def test_conditional_parameters_learn_only_where_they_appear():
    sampler = rl(0)
    seen = {"channels": 0, "hidden": 0}

    def objective(trial: optuna.Trial) -> float:
        model = trial.suggest_categorical("model", ["mlp", "cnn"])
        if model == "cnn":
            seen["channels"] += 1
            return 1.0 + (trial.suggest_categorical("channels", [16, 32, 64]) == 64)
        seen["hidden"] += 1
        return 0.5 * (trial.suggest_int("hidden", 32, 128, step=32) == 128)

    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=N_TRIALS)
    assert seen["channels"] and seen["hidden"]
    # only "model" is in every trial, so only it is drawn jointly
    assert list(sampler.infer_relative_search_space(study, study.trials[-1])) == ["model"]
    assert sampler.probabilities("model")["cnn"] > 0.8
    assert max(sampler.probabilities("channels").items(), key=lambda kv: kv[1])[0] == 64
    # a parameter learns only from the trials that set it: with no trials that set it since
    # its policy was made, replaying the mlp trials alone leaves channels at its prior
    mlp_only = optuna.create_study(direction="maximize")
    for t in study.trials:
        if t.params["model"] == "mlp":
            mlp_only.add_trial(t)
    alone = rl(0)
    alone.learn(mlp_only)
    with pytest.raises(KeyError):
        alone.logits("channels")
    assert np.any(alone.logits("hidden") != 0)


def test_entropy_bonus_keeps_the_policy_spread():
    peaked, spread = rl(0), rl(0, entropy_weight=0.5)
    study = toy(peaked, 0)
    peaked.learn(study)
    spread.learn(study)  # the same trials, learned with the bonus
    assert p_best(spread) < p_best(peaked)
    assert min(spread.probabilities("x0").values()) > min(peaked.probabilities("x0").values())


def test_multi_objective_is_refused():
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=rl(0))
    with pytest.raises(ValueError, match="one objective.*nsga2"):
        study.optimize(lambda t: (t.suggest_categorical("x", VALUES) == GOOD, 0.0), n_trials=1)


def test_bad_settings_are_refused():
    for bad in ({"learning_rate": 0}, {"baseline_decay": 1.0}, {"entropy_weight": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            PolicyGradientSampler(**bad)


def test_sampler_survives_a_deep_copy():
    import copy

    sampler = rl(0)
    toy(sampler, 0)
    clone = copy.deepcopy(sampler)
    for n in NAMES:
        np.testing.assert_array_equal(clone.logits(n), sampler.logits(n))


# ---- a real sweep ----------------------------------------------------------------------------


def test_rl_strategy_runs_a_sweep_through_the_cli(tmp_path: Path):
    folder = tmp_path / "rl"
    r = run_cli(
        "sweep",
        "digits_grid",  # a finite space: 3 learning rates x 3 widths
        *sweep_args(
            folder, "strategy=rl", "strategy.n_startup_trials=2", "hydra.sweeper.n_trials=4"
        ),
    )
    assert r.returncode == 0, r.output[-3000:]
    rows = trials(folder)
    assert len(rows) == 4
    assert [t["state"] for t in rows] == ["complete"] * 4, rows
    assert "strategy rl" in r.output
