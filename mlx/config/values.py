"""Check a plain config value against a parameter's annotation text, without evaluating it.

:mod:`mlx.config.signature` keeps annotations as source text, so nothing they name has to be
imported. :func:`check_value` parses that text with :mod:`ast` into a small description of what
it accepts (scalars, ``None``, ``Optional``/``Union``/``X | Y``, ``Literal``, lists, tuples, sets,
dicts, paths, and ``Annotated[X, Ge(1)]``-style bounds from ``annotated_types``) and tests the
value against it. Any name it does not know accepts anything, so an unusual annotation never
rejects a valid config.

This module imports only the standard library.
"""

from __future__ import annotations

import ast
import functools
import os
from collections.abc import Sized
from dataclasses import dataclass
from typing import Any

__all__ = ["check_value", "literal_options", "plain_value"]


class _Spec:
    """What an annotation accepts; the base class accepts anything."""

    def accepts(self, value: object) -> bool:
        return True

    def describe(self) -> str:
        """With an article: "an int"."""
        return "anything"

    def noun(self) -> str:
        """Without one, for "a list of int"."""
        return "anything"


_ANY = _Spec()


@dataclass(frozen=True)
class _Scalar(_Spec):
    name: str  # int, float, bool, str, bytes, None, path

    def accepts(self, value: object) -> bool:
        if self.name == "int":
            return isinstance(value, int) and not isinstance(value, bool)
        if self.name == "float":
            return isinstance(value, int | float) and not isinstance(value, bool)
        if self.name == "bool":
            return isinstance(value, bool)
        if self.name == "str":
            return isinstance(value, str)
        if self.name == "bytes":
            return isinstance(value, bytes)
        if self.name == "path":
            return isinstance(value, str | os.PathLike)
        return value is None

    def describe(self) -> str:
        return {"int": "an int", "str": "a string", "bytes": "bytes", "None": "None"}.get(
            self.name, f"a {self.name}"
        )

    def noun(self) -> str:
        return self.name


_NONE = _Scalar("None")


@dataclass(frozen=True)
class _Callable(_Spec):
    """A callable: in a config, a ``_target_`` node (which is not checked as a value); only
    null is certainly wrong."""

    def accepts(self, value: object) -> bool:
        return value is not None

    def describe(self) -> str:
        return "a callable (a node with a _target_)"

    def noun(self) -> str:
        return "callable"


_CALLABLE = _Callable()


@dataclass(frozen=True)
class _Union(_Spec):
    options: tuple[_Spec, ...]

    def accepts(self, value: object) -> bool:
        return any(o.accepts(value) for o in self.options)

    def describe(self) -> str:
        return " or ".join(dict.fromkeys(o.describe() for o in self.options))

    def noun(self) -> str:
        return " or ".join(dict.fromkeys(o.noun() for o in self.options))


@dataclass(frozen=True)
class _Literal(_Spec):
    values: tuple[object, ...]

    def accepts(self, value: object) -> bool:
        # type-exact: Literal[1] takes neither True nor 1.0
        return any(type(value) is type(v) and value == v for v in self.values)

    def describe(self) -> str:
        shown = ", ".join(repr(v) for v in self.values)
        return shown if len(self.values) == 1 else f"one of {shown}"

    def noun(self) -> str:
        return " or ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class _Seq(_Spec):
    item: _Spec  # _ANY when unparameterised

    def accepts(self, value: object) -> bool:
        return isinstance(value, list | tuple | set | frozenset) and all(
            self.item.accepts(v) for v in value
        )

    def describe(self) -> str:
        return "a list" if self.item is _ANY else f"a list of {self.item.noun()}"

    def noun(self) -> str:
        return self.describe().removeprefix("a ")


@dataclass(frozen=True)
class _FixedTuple(_Spec):
    items: tuple[_Spec, ...]

    def accepts(self, value: object) -> bool:
        return (
            isinstance(value, list | tuple)
            and len(value) == len(self.items)
            and all(s.accepts(v) for s, v in zip(self.items, value, strict=True))
        )

    def describe(self) -> str:
        nouns = [s.noun() for s in self.items]
        if len(set(nouns)) == 1:
            return f"a list of {len(nouns)} {nouns[0]}"
        return f"a list of {len(nouns)} items ({', '.join(nouns)})"

    def noun(self) -> str:
        return self.describe().removeprefix("a ")


@dataclass(frozen=True)
class _Map(_Spec):
    key: _Spec
    value: _Spec

    def accepts(self, value: object) -> bool:
        return isinstance(value, dict) and all(
            self.key.accepts(k) and self.value.accepts(v) for k, v in value.items()
        )

    def describe(self) -> str:
        if self.key is _ANY and self.value is _ANY:
            return "a dict"
        return f"a dict of {self.key.noun()} to {self.value.noun()}"

    def noun(self) -> str:
        return self.describe().removeprefix("a ")


_OPS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


@dataclass(frozen=True)
class _Constrained(_Spec):
    base: _Spec
    bounds: tuple[tuple[str, float], ...]  # ("ge", 1): the value must be >= 1
    lengths: tuple[tuple[str, int], ...]  # ("ge", 1): len(value) must be >= 1

    def accepts(self, value: object) -> bool:
        if not self.base.accepts(value):
            return False
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and not all(_compare(value, op, b) for op, b in self.bounds)
        ):
            return False
        if isinstance(value, Sized):
            n = len(value)
            if not all(_compare(n, op, bound) for op, bound in self.lengths):
                return False
        return True

    def _limits(self) -> str:
        parts = [f"{_OPS[op]} {_number(b)}" for op, b in self.bounds]
        # MinLen(0) documents that an empty list is fine; it is no limit
        parts += [f"of length {_OPS[op]} {n}" for op, n in self.lengths if (op, n) != ("ge", 0)]
        return " and ".join(parts)

    def describe(self) -> str:
        base = "a value" if self.base is _ANY else self.base.describe()
        return f"{base} {self._limits()}".strip()

    def noun(self) -> str:
        base = "value" if self.base is _ANY else self.base.noun()
        return f"{base} {self._limits()}".strip()


def _compare(value: float, op: str, bound: float) -> bool:
    return {
        "gt": value > bound,
        "ge": value >= bound,
        "lt": value < bound,
        "le": value <= bound,
    }[op]


def _number(x: float) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() and abs(x) < 1e15 else str(x)


# module prefixes whose last attribute names a typing construct: typing.Optional, t.List, ...
_TYPING_PREFIXES = {
    "typing",
    "t",
    "typing_extensions",
    "te",
    "collections.abc",
    "abc",
    "collections",
    "builtins",
    "pathlib",
    "os",
    "types",
    "annotated_types",
    "at",
}
_SCALARS = {"int", "float", "bool", "str", "bytes"}
_SEQUENCES = {
    "list",
    "List",
    "Sequence",
    "MutableSequence",
    "Iterable",
    "Collection",
    "set",
    "Set",
    "MutableSet",
    "AbstractSet",
    "frozenset",
    "FrozenSet",
}
_TUPLES = {"tuple", "Tuple"}
_MAPPINGS = {"dict", "Dict", "Mapping", "MutableMapping", "OrderedDict", "DefaultDict"}
_PATHS = {"Path", "PurePath", "PosixPath", "WindowsPath", "PathLike"}


def _type_name(node: ast.expr) -> str | None:
    """``Optional`` for ``Optional``, ``typing.Optional`` or ``t.Optional``; None otherwise."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        prefix = ast.unparse(node.value)
        return node.attr if prefix in _TYPING_PREFIXES else None
    return None


def _literal_value(node: ast.expr) -> tuple[bool, object]:
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None
    return isinstance(value, str | int | float | bool | bytes | type(None)), value


def _union(options: list[_Spec]) -> _Spec:
    flat: list[_Spec] = []
    for option in options:
        if option is _ANY:
            return _ANY  # one branch we cannot read: anything may be right
        flat += option.options if isinstance(option, _Union) else [option]
    return flat[0] if len(flat) == 1 else _Union(tuple(dict.fromkeys(flat)))


def _constrained(base: _Spec, metadata: list[ast.expr]) -> _Spec:
    bounds: list[tuple[str, float]] = []
    lengths: list[tuple[str, int]] = []
    for meta in metadata:
        if not isinstance(meta, ast.Call):
            continue
        kind = _type_name(meta.func)
        args = [_literal_value(a) for a in meta.args]
        kwargs = {k.arg: _literal_value(k.value) for k in meta.keywords if k.arg}
        numeric = {
            key: v
            for key, (ok, v) in [*zip(("pos",), args, strict=False), *kwargs.items()]
            if ok and isinstance(v, int | float) and not isinstance(v, bool)
        }
        if kind in ("Gt", "Ge", "Lt", "Le"):
            bound = numeric.get("pos", numeric.get(kind.lower()))
            if bound is not None:
                bounds.append((kind.lower(), bound))
        elif kind == "Interval":
            bounds += [(op, numeric[op]) for op in _OPS if op in numeric]
        elif kind in ("MinLen", "MaxLen"):
            n = numeric.get("pos", numeric.get("min_length" if kind == "MinLen" else "max_length"))
            if isinstance(n, int):
                lengths.append(("ge" if kind == "MinLen" else "le", n))
    if not bounds and not lengths:
        return base
    return _Constrained(base, tuple(bounds), tuple(lengths))


def _spec(node: ast.expr, depth: int = 0) -> _Spec:
    if depth > 30:
        return _ANY
    if isinstance(node, ast.Constant):
        if node.value is None:
            return _NONE
        if isinstance(node.value, str):  # a string (forward-reference) annotation
            try:
                return _spec(ast.parse(node.value.strip(), mode="eval").body, depth + 1)
            except SyntaxError:
                return _ANY
        return _ANY
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union([_spec(node.left, depth + 1), _spec(node.right, depth + 1)])
    if isinstance(node, ast.Call):  # type(None)
        if ast.unparse(node) == "type(None)":
            return _NONE
        return _ANY
    if isinstance(node, ast.Subscript):
        return _subscript_spec(node, depth)
    name = _type_name(node)
    if name is not None and name in _SCALARS:
        return _Scalar(name)
    if name in ("None", "NoneType"):
        return _NONE
    if name in _SEQUENCES or name in _TUPLES:
        return _Seq(_ANY)
    if name in _MAPPINGS:
        return _Map(_ANY, _ANY)
    if name in _PATHS:
        return _Scalar("path")
    if name == "Callable":
        return _CALLABLE
    return _ANY  # Any, object, type aliases, TypeVars, library classes


def _subscript_spec(node: ast.Subscript, depth: int) -> _Spec:
    head = _type_name(node.value)
    args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]

    def sub(i: int) -> _Spec:
        return _spec(args[i], depth + 1) if i < len(args) else _ANY

    if head == "Optional":
        return _union([sub(0), _NONE])
    if head == "Union":
        return _union([_spec(a, depth + 1) for a in args])
    if head == "Literal":
        values: list[object] = []
        for arg in args:
            if isinstance(arg, ast.Subscript) and _type_name(arg.value) == "Literal":
                nested = _subscript_spec(arg, depth + 1)
                if not isinstance(nested, _Literal):
                    return _ANY
                values += nested.values
                continue
            ok, value = _literal_value(arg)
            if not ok:
                return _ANY  # an enum member or similar
            values.append(value)
        return _Literal(tuple(values))
    if head == "Annotated":
        return _constrained(sub(0), args[1:])
    if head in _TUPLES:
        if len(args) == 2 and isinstance(args[1], ast.Constant) and args[1].value is Ellipsis:
            return _Seq(sub(0))
        if len(args) == 1 and isinstance(args[0], ast.Tuple) and not args[0].elts:
            return _FixedTuple(())  # tuple[()]
        return _FixedTuple(tuple(_spec(a, depth + 1) for a in args))
    if head in _SEQUENCES:
        return _Seq(sub(0))
    if head in _MAPPINGS:
        return _Map(sub(0), sub(1)) if len(args) == 2 else _Map(_ANY, _ANY)
    if head in _PATHS:
        return _Scalar("path")
    if head == "Callable":
        return _CALLABLE
    if head in ("Final", "Required", "NotRequired", "ReadOnly"):
        return sub(0)
    return _ANY


@functools.lru_cache(maxsize=2048)
def _spec_of(annotation: str) -> _Spec:
    try:
        return _spec(ast.parse(annotation.strip(), mode="eval").body)
    except (SyntaxError, ValueError, RecursionError):
        return _ANY


def check_value(annotation: str | None, value: object) -> str | None:
    """Whether ``value`` fits the annotation text ``annotation``.

    Understands builtin scalars, ``None``, ``Any``, ``Optional``/``Union``/``X | Y``, lists,
    tuples, sets and dicts with their ``typing`` and ``collections.abc`` names, ``Literal``,
    paths (which take strings), string annotations and ``Annotated[X, Gt(0)]``-style bounds
    from ``annotated_types``. Any name it does not know accepts anything, so it never rejects
    what it cannot read.

    Args:
        annotation: Annotation source text, e.g. ``"Optional[int]"``; None accepts anything.
        value: A plain value from the config (containers as lists, tuples or dicts).

    Returns:
        None if the value fits; otherwise what was expected, e.g. ``"an int >= 1 or None"``.
    """
    if not annotation:
        return None
    try:
        spec = _spec_of(annotation)
        return None if spec.accepts(value) else spec.describe()
    except Exception:  # a weird annotation or value must never break validation
        return None


def plain_value(node: Any, key: str) -> tuple[bool, Any]:
    """(resolvable, plain value) of a config node's ``node[key]``; values that need a running
    Hydra job (the output folder, say) cannot be resolved before it and are skipped."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    try:
        value = node[key]
        if isinstance(value, DictConfig | ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
    except Exception:
        return False, None
    return True, value


def literal_options(annotation: str | None) -> list[object]:
    """The values that the ``Literal`` parts of an annotation allow, through ``Optional``,
    unions and ``Annotated``; for "did you mean" hints. Empty when there are none.

    Args:
        annotation: Annotation source text, e.g. ``"Optional[Literal['min', 'max']]"``.
    """
    if not annotation:
        return []

    def walk(spec: _Spec) -> list[object]:
        if isinstance(spec, _Literal):
            return list(spec.values)
        if isinstance(spec, _Union):
            return [v for option in spec.options for v in walk(option)]
        if isinstance(spec, _Constrained):
            return walk(spec.base)
        return []

    try:
        return walk(_spec_of(annotation))
    except Exception:
        return []
