"""The ``mlx`` command. It imports nothing heavy: ``mlx --help`` must stay instant.

Each sub-command is a Hydra application over the same config tree; this module checks the
command line first (so that a typo fails in about a second, with a close match, before torch or
Lightning load), then hands the arguments to Hydra unchanged.
"""

from __future__ import annotations

import difflib
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from mlx.errors import UsageError

USAGE = """\
usage: mlx COMMAND [overrides...] [--debug]

An experiment is a composition of Hydra config groups; change anything with key=value.

commands:
  run     compose an experiment and run its stages (train, test; later stages when their
          groups are set). `mlx run --help` lists the groups and their options.
  eval    evaluate a checkpoint on the test split: mlx eval ckpt_path=PATH
  sweep   run a sweep file of sweeps/: mlx sweep NAME [overrides] (= mlx run -m sweep=NAME);
          mlx sweep status DIR prints a sweep folder's trials and best trial(s)
  compress
          compress a trained checkpoint and measure each stage:
          mlx compress ckpt_path=PATH compression=[distill,prune]
  report  build a published report (index.html, report.md, figures, tables) from run records:
          mlx report PATH... [--name NAME] [--out reports/NAME]; `mlx report --help`
  compare compare runs in the terminal: metric deltas and config differences:
          mlx compare RUN_A RUN_B [RUN_C...] [--metric NAME...]
  deploy  export a saved model to a model repository (ONNX, TorchScript, signature, container
          and cluster files): mlx deploy ckpt_path=PATH [deployment=embedded]
  serve   serve a model repository over the Open Inference Protocol (REST and gRPC):
          mlx serve REPO [--http-port 8000] [--grpc-port 8001]; `mlx serve --help`
  predict batch inference over CSV, Parquet or NPY files with a repository's model:
          mlx predict REPO/NAME[:VERSION] INPUT OUTPUT; `mlx predict --help`
  nas     search an architecture: mlx nas search_space=NAME strategy=NAME [estimation=NAME];
          multi-trial strategies run a sweep of candidates, one-shot ones train a supernet;
          the best architecture is written to the project's experiments/nas_<name>.yaml
  init    start a project of your own: mlx init DIR writes mlx.yaml, an example model, an
          experiment and a sweep; run mlx in DIR and its conf/, experiments/ and sweeps/
          join mlx's config groups

examples:
  mlx run                                    train the default experiment (CNN on digits)
  mlx run model=mlp data=breast_cancer trainer.max_epochs=3 seed=7
  mlx run experiment=mnist_cnn
  mlx run -m seed=1,2,3 model=mlp,cnn        a multirun
  mlx run ckpt_path=outputs/run/runs/DATE/checkpoints/last.ckpt trainer.max_epochs=30
  mlx run resume=outputs/run/runs/DATE       continue a killed or interrupted run in its folder
  mlx eval ckpt_path=outputs/run/runs/DATE/checkpoints/best.ckpt
  mlx sweep digits_tpe                       a TPE search; re-run the same command to resume
  mlx run -m hydra/sweeper=mlx strategy=tpe model.lr='tag(log,interval(1e-4,1e-1))'
  mlx sweep status outputs/sweeps/digits_tpe
  mlx nas search_space=cell strategy=regularized_evolution estimation=low_fidelity
  mlx nas search_space=macro_cnn strategy=darts trainer.max_epochs=10
  mlx run model=mlp compression=[pca,distill,prune]   train, then compress in that order
  mlx compress ckpt_path=outputs/run/runs/DATE/checkpoints/best.ckpt compression=prune
  mlx report outputs/sweeps/digits_tpe       reports/digits_tpe/index.html and report.md
  mlx compare outputs/run/runs/DATE_A outputs/run/runs/DATE_B
  mlx run deployment=datacenter              train, then export to outputs/models/digits_cnn/1
  mlx serve outputs/models                   REST on :8000, gRPC on :8001
  mlx init myproject && cd myproject && mlx run experiment=mynet_digits

options:
  --debug        show full tracebacks (same as HYDRA_FULL_ERROR=1)
  --trust-checkpoint
                 load a checkpoint that needs arbitrary unpickling (it can run code the file
                 carries; mlx refuses such files otherwise): only for files you trust
  --version      print mlx's version
  -h, --help     this message
"""


COMMAND_LINE_ENV = "MLX_COMMAND_LINE"


@dataclass(frozen=True)
class Command:
    module: str  # the module holding the Hydra task function `main`
    summary: str
    preset: tuple[str, ...] = ()  # overrides put before the user's (the user's win)


COMMANDS = {
    "run": Command("mlx.run", "compose an experiment and run its stages"),
    "eval": Command("mlx.evaluate", "evaluate a checkpoint on the test split", ("task_name=eval",)),
    "sweep": Command("mlx.run", "run a sweep file: mlx sweep NAME (= mlx run -m sweep=NAME)"),
    "compress": Command(
        "mlx.compression.command",
        "compress a trained checkpoint: mlx compress ckpt_path=PATH compression=[...]",
        ("task_name=compress",),
    ),
    "deploy": Command(
        "mlx.deploy.command",
        "export a saved model to a model repository: mlx deploy ckpt_path=PATH deployment=datacenter",
        ("task_name=deploy", "deployment=datacenter"),
    ),
    "nas": Command(
        "mlx.run",
        "search an architecture: mlx nas search_space=NAME strategy=NAME",
        ("model=nas", "task_name=nas"),
    ),
}
# commands that read run records rather than compose an experiment: plain argparse programs
TOOLS = {
    "report": "mlx.report.command",
    "compare": "mlx.report.compare",
    "serve": "mlx.deploy.serve",
    "predict": "mlx.deploy.predict",
}
# a multi-trial `mlx nas` is a sweep of candidates in a folder named after its question, so
# that running the same command again resumes it
NAS_SWEEP = (
    "hydra/sweeper=mlx",
    "hydra.sweep.dir=${paths.outputs}/nas/${hydra.runtime.choices.search_space}_${hydra.runtime.choices.strategy}",
)

# Hydra flags after which no work is done, so there is nothing to check
_INFO_FLAGS = {
    "-h",
    "--help",
    "--hydra-help",
    "--info",
    "-i",
    "-sc",
    "--shell-completion",
    "--version",
}


def _check(argv: list[str], command: str) -> None:
    """Compose and validate every job of the command line over the search path the launch
    uses (mlx's configs, the project's, --config-dir), then every stage's own check; raises an
    MlxError."""
    from hydra._internal.utils import get_args_parser

    from mlx.config.locate import CONFIG_NAME, config_tree, register_resolvers
    from mlx.config.validate import check_command_line

    args = get_args_parser().parse_args(argv)
    if args.config_path or args.experimental_rerun:
        return  # another primary tree: the task checks it once Hydra has composed it
    register_resolvers()
    tree = config_tree([args.config_dir] if args.config_dir else [])
    name = args.config_name or CONFIG_NAME
    check_command_line(tree, name, list(args.overrides), bool(args.multirun), command)


def _completion(argv: list[str]) -> list[str]:
    """Hydra's completion reads COMP_LINE as `APP overrides...`; drop mlx's sub-command word."""
    line = os.environ.get("COMP_LINE", "")
    words = line.split(" ")
    if len(words) > 1 and words[1] in COMMANDS:
        os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]])
        os.environ["COMP_POINT"] = str(len(os.environ["COMP_LINE"]))
        return [words[1], *argv]
    return ["run", *argv]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mlx`` console script: bad input of any area ends in one
    ``mlx: error:`` paragraph and exit status 2."""
    from mlx.errors import MlxError, report

    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except MlxError as e:
        return report(e)


def _main(argv: list[str]) -> int:
    typed = ["mlx", *argv]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    if argv[0] == "--version":
        from mlx import __version__

        print(f"mlx {__version__}")
        return 0
    if argv[0] in ("-sc", "--shell-completion"):
        argv = _completion(argv)
    name, rest = argv[0], argv[1:]
    if name == "init":
        return _init(rest)
    if name in TOOLS:
        import importlib

        return int(importlib.import_module(TOOLS[name]).main(rest))
    if name not in COMMANDS:
        names = [*COMMANDS, *TOOLS, "init"]
        match = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean '{match[0]}'?" if match else ""
        raise UsageError(f"unknown command '{name}'. Commands: {', '.join(names)}.{hint}")
    if name == "sweep":
        if rest[:1] == ["status"]:
            return _sweep_status(rest[1:])
        if not rest or rest[0].startswith("-") or "=" in rest[0]:
            raise UsageError(
                f"mlx sweep needs a sweep name first: mlx sweep NAME [overrides] ({', '.join(_sweep_names())})."
            )
        rest = ["-m", f"sweep={rest[0]}", *rest[1:]]
    if name == "run" and any(a.startswith("resume=") for a in rest):
        rest = _resume_args(rest)
    nas_sweep = name == "nas" and not _INFO_FLAGS.intersection(rest) and not _one_shot(rest)
    if nas_sweep:
        rest = [*NAS_SWEEP, *[a for a in rest if a not in ("-m", "--multirun")]]
    if "--debug" in rest:
        rest = [a for a in rest if a != "--debug"]
        os.environ["HYDRA_FULL_ERROR"] = "1"
    if "--trust-checkpoint" in rest:
        rest = [*(a for a in rest if a != "--trust-checkpoint"), "trust_checkpoint=true"]
    rest = [*COMMANDS[name].preset, *rest]
    if nas_sweep:
        rest = ["-m", *rest]  # Hydra's flags come before the overrides
    from mlx.config.locate import use_project

    use_project()  # the project's configs join mlx's groups; its modules become importable
    if not _INFO_FLAGS.intersection(rest):
        _check(rest, name)
    # the command as the user typed it, for every run's provenance (Hydra sees a rewritten one);
    # an environment variable reaches the jobs of launchers that start other processes too
    os.environ[COMMAND_LINE_ENV] = shlex.join(typed)
    try:
        return _launch(COMMANDS[name], rest)
    finally:
        os.environ.pop(COMMAND_LINE_ENV, None)


def _resume_args(args: list[str]) -> list[str]:
    """``mlx run resume=DIR``: the overrides DIR's run was started with (its
    ``provenance.json``, which a refused attempt does not rewrite, unlike Hydra's
    ``.hydra/overrides.yaml``), in DIR; nothing else may change its config."""
    import json

    resume = [a for a in args if a.startswith("resume=")]
    others = [
        a
        for a in args
        if not a.startswith("resume=") and a not in ("--debug", "--trust-checkpoint")
    ]
    if len(resume) > 1 or others:
        raise UsageError(
            "mlx run resume=DIR continues the run in DIR with its own config and takes no other "
            f"overrides (got {' '.join(resume[1:] + others)}); to change the config, start a "
            "new run."
        )
    run_dir = Path(resume[0].partition("=")[2]).expanduser()
    saved = run_dir / "provenance.json"
    try:
        overrides = [str(o) for o in json.loads(saved.read_text())["overrides"]]
    except (OSError, ValueError, KeyError, TypeError):
        what = "does not exist" if not run_dir.exists() else "has no readable provenance.json"
        raise UsageError(
            f"resume={run_dir}: {run_dir} {what}, so it is not a folder mlx run wrote; give the "
            "output folder of a run (outputs/<task_name>/runs/<time>)."
        ) from None
    overrides = [o for o in overrides if not o.startswith("hydra.run.dir=")]
    flags = [a for a in args if a in ("--debug", "--trust-checkpoint")]
    return [*overrides, f"hydra.run.dir={run_dir}", *flags]


def _one_shot(args: list[str]) -> bool:
    """Whether `mlx nas`'s strategy is a one-shot (supernet) one, decided by mlx.nas from the
    composed config: a one-shot `mlx nas` is a single run, any other a sweep of candidates."""
    from mlx.config.locate import CONFIG_NAME, config_tree
    from mlx.config.validate import compose_checked
    from mlx.nas.stage import one_shot

    # Hydra's own keys (the sweeper's, say) cannot change the strategy
    overrides = [a for a in args if "=" in a and not a.startswith(("-", "hydra.", "hydra/"))]
    return one_shot(compose_checked(config_tree(), CONFIG_NAME, ["model=nas", *overrides]))


def _sweep_names() -> list[str]:
    from mlx.config.locate import config_tree

    return config_tree().options("sweep")


def _init(args: list[str]) -> int:
    if len(args) != 1 or args[0].startswith("-"):
        raise UsageError("usage: mlx init DIR (a new or empty folder for your project)")
    from mlx.project import init_project

    init_project(args[0])
    return 0


def _sweep_status(args: list[str]) -> int:
    if len(args) != 1:
        raise UsageError(
            "usage: mlx sweep status DIR (a sweep folder, e.g. outputs/sweeps/digits_tpe)"
        )
    from mlx.sweep.results import status

    status(args[0])
    return 0


def _launch(command: Command, rest: list[str]) -> int:
    import importlib

    import hydra

    from mlx.config.locate import CONFIG_NAME, config_dir, register_resolvers

    register_resolvers()
    task = importlib.import_module(command.module).main
    sys.argv = ["mlx", *rest]
    app = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=CONFIG_NAME)(
        task
    )
    app()
    return 0


if __name__ == "__main__":
    sys.exit(main())
