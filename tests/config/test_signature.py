"""Static signatures: targets resolve from source without importing."""

from __future__ import annotations

import ast
import importlib.machinery
import inspect
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from hydra.utils import get_object

from mlx.config.signature import (
    Param,
    StaticSignature,
    TargetNotFoundError,
    static_signature,
)
from mlx.config.values import check_value

MakePkg = Callable[[dict[str, str]], str]


def sig_of(target: str) -> StaticSignature:
    sig = static_signature(target)
    assert sig is not None, target
    return sig


@pytest.fixture
def make_pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MakePkg:
    """Write a throwaway package under tmp_path and put it on sys.path; returns its name.

    Every package gets a fresh name because module lookups are cached per process.
    """

    def make(files: dict[str, str]) -> str:
        name = f"sigtest_{uuid.uuid4().hex[:10]}"
        for rel, text in {"__init__.py": "", **files}.items():
            path = tmp_path / name / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).replace("PKG", name))
        monkeypatch.syspath_prepend(str(tmp_path))
        return name

    return make


# ---------------------------------------------------------------------------------------------
# real libraries in the venv

LIBRARY = [
    (
        "pytorch_lightning.Trainer",
        "pytorch_lightning.trainer.trainer.Trainer",
        {"max_epochs", "accelerator", "devices", "callbacks", "logger", "precision"},
        False,
    ),
    (
        "pytorch_lightning.callbacks.ModelCheckpoint",
        "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
        {"dirpath", "filename", "monitor", "save_top_k", "mode"},
        False,
    ),
    (
        "pytorch_lightning.callbacks.EarlyStopping",
        "pytorch_lightning.callbacks.early_stopping.EarlyStopping",
        {"monitor", "patience", "mode", "min_delta"},
        False,
    ),
    (
        "pytorch_lightning.callbacks.RichProgressBar",
        "pytorch_lightning.callbacks.progress.rich_progress.RichProgressBar",
        {"refresh_rate", "leave", "theme"},
        False,
    ),
    (
        "pytorch_lightning.loggers.WandbLogger",
        "pytorch_lightning.loggers.wandb.WandbLogger",
        {"name", "project", "save_dir", "log_model"},
        True,
    ),
    (
        "pytorch_lightning.loggers.CSVLogger",
        "pytorch_lightning.loggers.csv_logs.CSVLogger",
        {"save_dir", "name", "version"},
        False,
    ),
    (
        "pytorch_lightning.strategies.DDPStrategy",
        "pytorch_lightning.strategies.ddp.DDPStrategy",
        {"process_group_backend", "timeout", "start_method"},
        True,
    ),
    (
        "torch.optim.AdamW",
        "torch.optim.adamw.AdamW",
        {"params", "lr", "betas", "weight_decay"},
        False,
    ),
    ("torch.optim.SGD", "torch.optim.sgd.SGD", {"params", "lr", "momentum", "nesterov"}, False),
    (
        "torch.optim.lr_scheduler.CosineAnnealingLR",
        "torch.optim.lr_scheduler.CosineAnnealingLR",
        {"optimizer", "T_max", "eta_min"},
        False,
    ),
    (
        "torch.optim.lr_scheduler.StepLR",
        "torch.optim.lr_scheduler.StepLR",
        {"optimizer", "step_size", "gamma"},
        False,
    ),
    (
        "sklearn.datasets.load_digits",
        "sklearn.datasets._base.load_digits",
        {"n_class", "return_X_y", "as_frame"},
        False,
    ),
]


@pytest.mark.parametrize(("target", "qualname", "names", "var_kwargs"), LIBRARY)
def test_library_targets(target: str, qualname: str, names: set[str], var_kwargs: bool) -> None:
    sig = static_signature(target)
    assert sig is not None
    assert sig.target == target
    assert sig.qualname == qualname
    assert names <= set(sig.names)
    assert sig.var_kwargs is var_kwargs
    assert "self" not in sig.names


def test_library_details() -> None:
    trainer = static_signature("pytorch_lightning.Trainer")
    assert trainer is not None
    max_epochs = trainer.get("max_epochs")
    assert max_epochs == Param("max_epochs", "keyword_only", "Optional[int]", "None")
    assert check_value(max_epochs.annotation, 3) is None
    assert check_value(max_epochs.annotation, "three") == "an int or None"

    adamw = static_signature("torch.optim.AdamW")
    assert adamw is not None
    assert adamw.names[:2] == ["params", "lr"]
    assert not adamw.get("params").has_default
    assert adamw.get("lr").has_default

    early = static_signature("pytorch_lightning.callbacks.EarlyStopping")
    assert early is not None and not early.get("monitor").has_default

    digits = static_signature("sklearn.datasets.load_digits")
    assert digits is not None
    assert {p.kind for p in digits.params} == {"keyword_only"}


def test_nothing_heavy_is_imported() -> None:
    targets = [t for t, *_ in LIBRARY]
    code = (
        "import sys\n"
        "from mlx.config.signature import static_signature\n"
        "from mlx.config.values import check_value\n"
        f"for t in {targets!r}:\n"
        "    assert static_signature(t) is not None, t\n"
        "assert check_value('Optional[Annotated[int, Ge(1)]]', 0) == 'an int >= 1 or None'\n"
        "heavy = {'torch', 'pytorch_lightning', 'lightning_fabric', 'sklearn', 'numpy',\n"
        "         'hydra', 'omegaconf'} & {m.split('.')[0] for m in sys.modules}\n"
        "assert not heavy, heavy\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


# ---------------------------------------------------------------------------------------------
# resolution rules, on tiny packages


def test_reexport_qualname_and_aliases(make_pkg: MakePkg) -> None:
    pkg = make_pkg(
        {
            "__init__.py": """
                from .impl import Thing
                from PKG.impl import Other as Renamed
                import PKG.impl as impl_module
                Alias = Thing
                Dotted = impl_module.Other
                try:
                    from .impl import Thing as Fast
                except ImportError:
                    Fast = None
                Built = type("Built", (), {})
            """,
            "impl.py": """
                class Thing:
                    def __init__(self, a: int, b: "Optional[str]" = None) -> None:
                        pass

                class Other:
                    def __init__(self, c: float) -> None:
                        pass
            """,
        }
    )
    sig = static_signature(f"{pkg}.Thing")
    assert sig == StaticSignature(
        target=f"{pkg}.Thing",
        qualname=f"{pkg}.impl.Thing",
        params=(
            Param("a", "positional_or_keyword", "int", None),
            Param("b", "positional_or_keyword", "Optional[str]", "None"),
        ),
        var_kwargs=False,
    )
    for name in ("Alias", "Fast"):
        assert sig_of(f"{pkg}.{name}").qualname == f"{pkg}.impl.Thing"
    for name in ("Renamed", "Dotted", "impl_module.Other"):
        assert sig_of(f"{pkg}.{name}").qualname == f"{pkg}.impl.Other"
    assert static_signature(f"{pkg}.Built") is None  # made at run time


def test_function_parameter_kinds(make_pkg: MakePkg) -> None:
    pkg = make_pkg(
        {
            "fns.py": """
                from typing import overload

                def f(a, /, b: int, *args: int, c: float = 1.0, d, **kw) -> None:
                    pass

                @overload
                def g(x: int) -> int: ...
                @overload
                def g(x: str) -> str: ...
                def g(x, y=0):
                    return x

                async def h(q: "list[int]") -> None:
                    pass
            """
        }
    )
    sig = static_signature(f"{pkg}.fns.f")
    assert sig is not None
    assert [(p.name, p.kind, p.has_default) for p in sig.params] == [
        ("a", "positional_only", False),
        ("b", "positional_or_keyword", False),
        ("args", "var_positional", False),
        ("c", "keyword_only", True),
        ("d", "keyword_only", False),
        ("kw", "var_keyword", False),
    ]
    assert sig.names == ["b", "c", "d"]
    assert sig.var_kwargs
    assert sig.get("a") is None  # positional-only: not passable by keyword
    assert sig.get("c") == Param("c", "keyword_only", "float", "1.0")
    assert sig_of(f"{pkg}.fns.g").names == ["x", "y"]
    assert sig_of(f"{pkg}.fns.h").get("q").annotation == "list[int]"


def test_dataclass_fields(make_pkg: MakePkg) -> None:
    pkg = make_pkg(
        {
            "dc.py": """
                import dataclasses
                from dataclasses import KW_ONLY, InitVar, dataclass, field
                from typing import ClassVar

                @dataclass
                class Base:
                    x: int
                    y: float = 1.0

                @dataclass(frozen=True)
                class Child(Base):
                    registry: ClassVar[dict] = {}
                    z: "list[int]" = field(default_factory=list)
                    cache: dict = field(init=False, default_factory=dict)
                    y: float = 2.0
                    _: KW_ONLY
                    k: str = "a"
                    seed: InitVar[int] = 0

                @dataclasses.dataclass(kw_only=True)
                class Options:
                    depth: int
                    note: str = field(default="", kw_only=False)

                class Plain(Child):
                    pass

                @dataclass
                class Explicit:
                    a: int

                    def __init__(self, b: str) -> None:
                        self.a = len(b)

                @dataclass(init=False)
                class NoInit(Base):
                    w: int = 0
            """
        }
    )
    child = static_signature(f"{pkg}.dc.Child")
    assert child is not None
    assert child.params == (
        Param("x", "positional_or_keyword", "int", None),
        Param("y", "positional_or_keyword", "float", "2.0"),
        Param("z", "positional_or_keyword", "list[int]", "field(default_factory=list)"),
        Param("k", "keyword_only", "str", "'a'"),
        Param("seed", "keyword_only", "int", "0"),
    )
    assert not child.var_kwargs
    # a plain subclass inherits the generated __init__
    assert sig_of(f"{pkg}.dc.Plain").params == child.params
    options = static_signature(f"{pkg}.dc.Options")
    assert options is not None
    assert [(p.name, p.kind) for p in options.params] == [
        ("note", "positional_or_keyword"),
        ("depth", "keyword_only"),
    ]
    assert sig_of(f"{pkg}.dc.Explicit").names == ["b"]
    # init=False: the generated __init__ is not written, so the base's applies
    assert sig_of(f"{pkg}.dc.NoInit").names == ["x", "y"]


def test_inherited_init_and_bases(make_pkg: MakePkg) -> None:
    pkg = make_pkg(
        {
            "base.py": """
                class Base:
                    def __init__(self, width: int, depth: int = 2) -> None:
                        pass
            """,
            "models.py": """
                import abc
                from typing import Generic, NamedTuple, TypeVar

                from nowhere_at_all import Mystery
                from .base import Base
                from . import base as base_module

                T = TypeVar("T")

                class Child(Base):
                    pass

                class GrandChild(Child):
                    '''No __init__ of its own.'''

                class Mixin:
                    def helper(self) -> None:
                        pass

                class Multi(Mixin, base_module.Base):
                    pass

                class Plain:
                    pass

                class Typed(Generic[T], abc.ABC):
                    pass

                class FromBuiltin(dict):
                    pass

                class FromUnknown(Mystery):
                    pass

                class OwnInitUnknownBase(Mystery):
                    def __init__(self, k: int) -> None:
                        pass

                class Point(NamedTuple):
                    x: int
                    y: int = 0

                class Loop1(Loop2):
                    pass

                class Loop2(Loop1):
                    pass
            """,
        }
    )
    for name in ("Child", "GrandChild", "Multi"):
        sig = static_signature(f"{pkg}.models.{name}")
        assert sig is not None, name
        assert sig.names == ["width", "depth"]
        assert sig.qualname == f"{pkg}.models.{name}"
    for name in ("Plain", "Typed"):
        sig = static_signature(f"{pkg}.models.{name}")
        assert sig is not None and sig.params == () and not sig.var_kwargs, name
    # bases we cannot read: no guessing
    for name in ("FromBuiltin", "FromUnknown", "Loop1"):
        assert static_signature(f"{pkg}.models.{name}") is None, name
    assert sig_of(f"{pkg}.models.OwnInitUnknownBase").names == ["k"]
    point = static_signature(f"{pkg}.models.Point")
    assert point is not None
    assert [(p.name, p.default) for p in point.params] == [("x", None), ("y", "0")]


def test_lazy_getattr_reexport(make_pkg: MakePkg) -> None:
    pkg = make_pkg(
        {
            "__init__.py": """
                from typing import Any

                __all__ = ["Heavy", "Light"]

                from .light import Light

                def __getattr__(name: str) -> Any:
                    if name == "Heavy":
                        from .heavy import Heavy

                        return Heavy
                    raise AttributeError(name)
            """,
            "heavy.py": """
                raise RuntimeError("importing this module is what we avoid")

                class Heavy:
                    def __init__(self, n: int) -> None:
                        pass
            """,
            "light.py": """
                def Light(m: int) -> None:
                    pass
            """,
        }
    )
    sig = static_signature(f"{pkg}.Heavy")
    assert sig is not None
    assert sig.qualname == f"{pkg}.heavy.Heavy"
    assert sig.names == ["n"]
    assert f"{pkg}.heavy" not in sys.modules
    # __getattr__ may make names up, but one missing from a literal __all__ next to a real one
    # is a typo
    with pytest.raises(TargetNotFoundError) as err:
        static_signature(f"{pkg}.Heavyy")
    assert err.value.suggestions[0] == f"{pkg}.Heavy"
    assert static_signature(f"{pkg}.Zzz") is None  # nothing close: maybe made at run time


def test_type_checking_reexport(make_pkg: MakePkg) -> None:
    pkg = make_pkg(
        {
            "__init__.py": """
                import importlib
                from typing import TYPE_CHECKING, Any

                if TYPE_CHECKING:
                    from .impl import Model

                def __getattr__(name: str) -> Any:
                    return getattr(importlib.import_module(".impl", __name__), name)
            """,
            "impl.py": """
                class Model:
                    def __init__(self, hidden: list[int]) -> None:
                        pass
            """,
        }
    )
    sig = static_signature(f"{pkg}.Model")
    assert sig is not None
    assert sig.qualname == f"{pkg}.impl.Model"
    assert sig.get("hidden").annotation == "list[int]"


def test_star_imports_respect_all(make_pkg: MakePkg) -> None:
    pkg = make_pkg(
        {
            "__init__.py": "from .stars import *\nfrom .noall import *\n",
            "stars.py": """
                __all__ = ["Exported"]

                def Exported(a: int) -> None:
                    pass

                def Hidden(b: int) -> None:
                    pass
            """,
            "noall.py": """
                def public(c: int) -> None:
                    pass

                def _private(d: int) -> None:
                    pass
            """,
        }
    )
    assert sig_of(f"{pkg}.Exported").qualname == f"{pkg}.stars.Exported"
    assert sig_of(f"{pkg}.public").qualname == f"{pkg}.noall.public"
    for hidden in ("Hidden", "_private"):
        with pytest.raises(TargetNotFoundError):
            static_signature(f"{pkg}.{hidden}")


def test_import_cycle_ends(make_pkg: MakePkg) -> None:
    pkg = make_pkg({"a.py": "from .b import Loop\n", "b.py": "from .a import Loop\n"})
    # bound by an import we cannot follow: unreadable rather than missing, since an import we
    # cannot follow statically (six.moves, os.path) may still work at run time
    assert static_signature(f"{pkg}.a.Loop") is None


def test_nested_class_and_class_methods(make_pkg: MakePkg) -> None:
    pkg = make_pkg(
        {
            "mod.py": """
                class Outer:
                    class Inner:
                        def __init__(self, q: int) -> None:
                            pass

                    @classmethod
                    def build(cls, size: int) -> "Outer":
                        return cls()

                    @staticmethod
                    def make(n: int) -> "Outer":
                        return Outer()
            """
        }
    )
    inner = static_signature(f"{pkg}.mod.Outer.Inner")
    assert inner is not None and inner.qualname == f"{pkg}.mod.Outer.Inner"
    assert inner.names == ["q"]
    assert sig_of(f"{pkg}.mod.Outer.build").names == ["size"]
    assert sig_of(f"{pkg}.mod.Outer.make").names == ["n"]


def test_package_rebinding_a_submodule_name(make_pkg: MakePkg) -> None:
    pkg = make_pkg(
        {
            "__init__.py": "from .tool import tool\n",
            "tool.py": "def tool(a: int) -> int:\n    return a\n",
        }
    )
    sig = static_signature(f"{pkg}.tool")
    assert sig is not None and sig.qualname == f"{pkg}.tool.tool" and sig.names == ["a"]


def test_compiled_module_is_unreadable(make_pkg: MakePkg) -> None:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    pkg = make_pkg({f"fast{suffix}": "", "mod.py": "from .fast import Thing\n"})
    assert static_signature(f"{pkg}.fast.Thing") is None
    assert static_signature(f"{pkg}.mod.Thing") is None


# ---------------------------------------------------------------------------------------------
# targets that do not exist


def test_missing_top_level_module() -> None:
    with pytest.raises(TargetNotFoundError) as err:
        static_signature("torchh.optim.AdamW")
    assert isinstance(err.value, LookupError)
    assert err.value.target == "torchh.optim.AdamW"
    assert "torchh" in err.value.reason
    assert "torch" in err.value.suggestions


@pytest.mark.parametrize(
    ("target", "suggestion"),
    [
        ("torch.optim.Adamw", "torch.optim.AdamW"),
        ("pytorch_lightning.Trainr", "pytorch_lightning.Trainer"),
        ("pytorch_lightning.callback.ModelCheckpoint", "pytorch_lightning.callbacks"),
        ("torch.optim.lr_schedular.StepLR", "torch.optim.lr_scheduler"),
        ("torch.optimm.AdamW", "torch.optim"),  # torch's __init__ is dynamic; still a typo
        ("sklearn.datasets.load_digit", "sklearn.datasets.load_digits"),
    ],
)
def test_missing_attribute_suggests(target: str, suggestion: str) -> None:
    with pytest.raises(TargetNotFoundError) as err:
        static_signature(target)
    assert suggestion in err.value.suggestions, err.value.suggestions
    assert err.value.reason


def test_missing_local_attribute(make_pkg: MakePkg) -> None:
    pkg = make_pkg({"__init__.py": "class Thing:\n    pass\n"})
    with pytest.raises(TargetNotFoundError) as err:
        static_signature(f"{pkg}.Thingg")
    assert err.value.reason == f"module '{pkg}' has no attribute 'Thingg'"
    assert err.value.suggestions == [f"{pkg}.Thing"]
    assert f"did you mean '{pkg}.Thing'" in str(err.value)


@pytest.mark.parametrize("target", ["torch.optim", "torch.optim.adamw", "not..a.path"])
def test_not_a_callable_target(target: str) -> None:
    with pytest.raises(TargetNotFoundError):
        static_signature(target)


# ---------------------------------------------------------------------------------------------
# the static reader against the imported objects

REPO = Path(__file__).resolve().parents[2]


def _yaml_targets(node: object) -> Iterator[str]:
    """Every ``_target_`` value in a YAML document, at any depth. A search space's choice of
    target (``model.optimizer._target_: {type: choice, values: [...]}``) counts its values."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_" or str(key).endswith("._target_"):
                choices = value.get("values", []) if isinstance(value, dict) else [value]
                yield from (c for c in choices if isinstance(c, str))
            yield from _yaml_targets(value)
    elif isinstance(node, list):
        for item in node:
            yield from _yaml_targets(item)


def config_targets() -> list[str]:
    """The ``_target_``s of every YAML file under conf/, experiments/ and sweeps/."""
    # conf/experiment and conf/sweep link to experiments/ and sweeps/: read each file once
    files = {
        p.resolve() for d in ("conf", "experiments", "sweeps") for p in (REPO / d).rglob("*.yaml")
    }
    targets: set[str] = set()
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            targets.update(_yaml_targets(doc))
    return sorted(targets)


def _constructor(cls: type) -> Callable[..., object] | None:
    """The function a call to ``cls`` binds its arguments to, by the static reader's rule: the
    first ``__init__`` in the MRO, else the first ``__new__``; None when only object's.

    inspect.signature would take whichever of ``__new__`` and ``__init__`` comes first in the MRO,
    but a ``__new__`` is usually a pass-through (``*args, **kwargs``, as in NNI's
    ``MutableModule``) while the same arguments must also bind to ``__init__``.
    """
    for name in ("__init__", "__new__"):
        for klass in cls.__mro__[:-1]:
            if name not in vars(klass):
                continue
            fn = getattr(klass, name)
            if name == "__init__" and "_init_wrapped" in vars(klass):
                # NNI's ModelSpace swaps each subclass's __init__ for an (*args, **kwargs)
                # wrapper without __wrapped__ that forwards every argument to the original, kept
                # as _init_wrapped; a subclass without an __init__ of its own wraps a wrapper
                fn = vars(klass)["_init_wrapped"]
                if fn.__qualname__.startswith("model_space_init_wrapper."):
                    continue
            return fn
    return None


def runtime_params(obj: object) -> list[inspect.Parameter]:
    """The parameters of the imported ``obj`` that the static reader should have found."""
    if isinstance(obj, type) and type(obj).__call__ is type.__call__:  # no metaclass __call__
        fn = _constructor(obj)
        if fn is None:
            return []
        params = list(inspect.signature(fn).parameters.values())  # follows functools.wraps
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        return params[1:] if params and params[0].kind in positional else params  # self, cls
    return list(inspect.signature(obj).parameters.values())


def _plain_literal(text: str | None) -> tuple[bool, object]:
    """(True, value) when a default's source text is a literal (``1e-3``, ``'l1'``, ``(1, 64)``,
    ``None``); a name, a call or an expression is compared by presence only."""
    if text is None:
        return False, None
    try:
        return True, ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def assert_static_matches_runtime(target: str) -> None:
    static = static_signature(target)
    assert static is not None, f"{target}: the static reader cannot read it"
    live = runtime_params(get_object(target))
    read = [(p.name, p.kind, p.has_default) for p in static.params]
    real = [(p.name, p.kind.name.lower(), p.default is not p.empty) for p in live]
    assert read == real, f"{target}: read {read}, imported {real}"
    for p, q in zip(static.params, live, strict=True):
        literal, value = _plain_literal(p.default)
        if literal:
            assert type(q.default) is type(value) and q.default == value, (
                f"{target}: {p.name} defaults to {q.default!r}, read as {p.default}"
            )


# cheap to import (no torch), and between them: a dataclass, keyword defaults of several types,
# required parameters, a library class with keyword-only parameters
REPRESENTATIVE = [
    "mlx.data.LoaderSettings",
    "mlx.compression.Prune",
    "mlx.measure.LatencyMeter",
    "mlx.sweep.MultiFidelity",
    "optuna.pruners.MedianPruner",
]


@pytest.mark.parametrize("target", REPRESENTATIVE)
def test_static_matches_runtime(target: str) -> None:
    assert target in config_targets()
    assert_static_matches_runtime(target)


@pytest.mark.slow
@pytest.mark.parametrize("target", config_targets())
def test_static_matches_runtime_for_every_config_target(target: str) -> None:
    assert_static_matches_runtime(target)


def test_static_matches_runtime_on_constructor_rules(make_pkg: MakePkg) -> None:
    pkg = make_pkg(
        {
            "mod.py": """
                import functools
                from dataclasses import dataclass, field
                from typing import NamedTuple

                def logged(fn):
                    @functools.wraps(fn)
                    def wrapper(*args, **kwargs):
                        return fn(*args, **kwargs)
                    return wrapper

                @logged
                def build(width: int, depth: int = 2, *, act: str = "relu") -> None:
                    pass

                class Base:
                    def __init__(self, a: int, b: float = 0.5) -> None:
                        pass

                class PassThroughNew(Base):
                    def __new__(cls, *args, **kwargs):
                        return super().__new__(cls)

                class OnlyNew:
                    def __new__(cls, n: int = 3):
                        return super().__new__(cls)

                class Wrapped:
                    @logged
                    def __init__(self, x: int, /, y: "list[int]" = (1, 2)) -> None:
                        pass

                @dataclass
                class Fields:
                    x: int
                    tags: list = field(default_factory=list)
                    rate: float = field(default=1e-3)

                class Point(NamedTuple):
                    x: int
                    y: int = -1

                class Nothing:
                    pass
            """
        }
    )
    for name in ("build", "PassThroughNew", "OnlyNew", "Wrapped", "Fields", "Point", "Nothing"):
        assert_static_matches_runtime(f"{pkg}.mod.{name}")
    # inspect.signature itself would report PassThroughNew's (*args, **kwargs)
    assert sig_of(f"{pkg}.mod.PassThroughNew").names == ["a", "b"]
