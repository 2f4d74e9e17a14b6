"""Search spaces: parsing, bad input, Optuna compilation, the grid and Hydra's sweep grammar."""

from __future__ import annotations

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from mlx.sweep.space import SearchSpace, SearchSpaceError, from_override, override_value

SPACE = {
    "model.lr": {"type": "loguniform", "low": 1e-4, "high": 0.1},
    "model.net.hidden": {"type": "choice", "values": [[64], [128, 64]]},
    "model.net.dropout": {"type": "quniform", "low": 0.0, "high": 0.5, "q": 0.1},
    "data.batch_size": {"type": "int", "low": 32, "high": 128, "step": 32},
    "model.optimizer._target_": {
        "type": "choice",
        "values": ["torch.optim.AdamW", "torch.optim.SGD"],
    },
    "+model.optimizer.momentum": {
        "type": "uniform",
        "low": 0.5,
        "high": 0.99,
        "when": {"model.optimizer._target_": "torch.optim.SGD"},
    },
}


def test_suggest_respects_types_ranges_and_conditions():
    space = SearchSpace(SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_sgd = seen_adam = False
    for _ in range(40):
        trial = study.ask()
        values = space.suggest(trial)
        assert 1e-4 <= values["model.lr"] <= 0.1
        assert values["model.net.hidden"] in ([64], [128, 64])
        assert round(values["model.net.dropout"] * 10, 6) == int(
            round(values["model.net.dropout"] * 10)
        )
        assert values["data.batch_size"] in (32, 64, 96, 128)
        sgd = values["model.optimizer._target_"] == "torch.optim.SGD"
        assert ("+model.optimizer.momentum" in values) == sgd
        seen_sgd |= sgd
        seen_adam |= not sgd
        study.tell(trial, 0.0)
    assert seen_sgd and seen_adam


def test_grid_is_finite_and_refuses_continuous_and_conditional():
    space = SearchSpace(
        {
            "a": {"type": "choice", "values": [1, 2, 3]},
            "b": {"type": "int", "low": 1, "high": 9, "step": 4},
            "c": {"type": "quniform", "low": 0.0, "high": 0.2, "q": 0.1},
        }
    )
    assert space.grid() == {"a": [1, 2, 3], "b": [1, 5, 9], "c": [0.0, 0.1, 0.2]}
    assert space.grid_size() == 27
    with pytest.raises(SearchSpaceError, match="'model.lr' is a continuous"):
        SearchSpace({"model.lr": SPACE["model.lr"]}).grid()
    with pytest.raises(SearchSpaceError, match="conditional"):
        SearchSpace(SPACE).grid()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"x": {"type": "lognormal", "low": 1, "high": 2}}, "unknown type 'lognormal'.*loguniform"),
        ({"x": {"type": "uniform", "low": 2.0, "high": 1.0}}, "'x': low .* greater than high"),
        ({"x": {"type": "choice", "values": []}}, "'x': choice needs a non-empty"),
        (
            {"x": {"type": "loguniform", "low": 0.0, "high": 1.0}},
            "'x': a log range must be above 0",
        ),
        (
            {"x": {"type": "int", "low": 0, "high": 10, "log": True}},
            "'x': a log range must be above 0",
        ),
        ({"x": {"type": "uniform", "low": 0.0}}, "'x' \\(uniform\\) needs 'high'"),
        ({"x": {"type": "uniform", "low": 0.0, "high": 1.0, "q": 0.1}}, "does not take q"),
        (
            {"x": {"type": "uniform", "low": 0, "high": 1, "when": {"y": "a"}}},
            "'x': its condition names 'y'",
        ),
        ({"x": 3}, "'x' must be a mapping"),
    ],
)
def test_bad_parameters_are_named(spec, message):
    with pytest.raises(SearchSpaceError, match=message):
        SearchSpace(spec)


@pytest.mark.parametrize(
    ("text", "type_", "fields"),
    [
        ("model.lr=tag(log,interval(1e-4,1e-1))", "loguniform", {"low": 1e-4, "high": 0.1}),
        ("model.lr=interval(0.1,0.5)", "uniform", {"low": 0.1, "high": 0.5}),
        ("model.lr=interval(0,1)", "uniform", {"low": 0.0, "high": 1.0}),
        ("data.batch_size=int(interval(16,128))", "int", {"low": 16, "high": 128}),
        ("data.batch_size=range(16,80,16)", "int", {"low": 16, "high": 64, "step": 16}),
        ("model=choice(mlp,cnn)", "choice", {"values": ("mlp", "cnn")}),
        ("seed=1,2,3", "choice", {"values": (1, 2, 3)}),
    ],
)
def test_hydra_sweep_grammar(text, type_, fields):
    (override,) = OverridesParser.create().parse_overrides([text])
    param = from_override(override)
    assert param.type == type_
    for key, value in fields.items():
        assert getattr(param, key) == value


def test_hydra_grammar_bad_ranges():
    parse = OverridesParser.create().parse_overrides
    with pytest.raises(SearchSpaceError, match="low .* greater than high"):
        from_override(parse(["model.lr=interval(0.5,0.1)"])[0])
    with pytest.raises(SearchSpaceError, match="above 0"):
        from_override(parse(["model.lr=tag(log,interval(0.0,0.1))"])[0])


def test_override_values_round_trip_through_hydra():
    values = [0.001, 3, "torch.optim.SGD", [128, 64], None, True, "a b", "x'y"]
    parser = OverridesParser.create()
    for value in values:
        (o,) = parser.parse_overrides([f"k={override_value(value)}"])
        assert o.value() == value
