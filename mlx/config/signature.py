"""Read a ``_target_``'s call signature from its source, without importing it.

``mlx run`` validates every ``_target_`` of the composed config before any work starts and must
answer within about two seconds, while importing torch alone takes longer than that. So
signatures are read with :mod:`ast`: the module is found on disk without importing its package
(only the top-level name goes through :func:`importlib.util.find_spec`, which does not import
it), the name is followed through re-exports (``from .x import Y``, star imports, aliases, lazy
``__getattr__`` imports, ``TYPE_CHECKING`` blocks), and a class falls back to the ``__init__``
of its bases or to its dataclass fields. Annotations stay text; :func:`check_value` interprets
the common forms and accepts anything it cannot read, so an unusual annotation never rejects a
valid config.

This module imports only the standard library.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import functools
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Iterator, Sized
from dataclasses import dataclass

__all__ = [
    "Param",
    "StaticSignature",
    "TargetNotFoundError",
    "check_value",
    "literal_options",
    "static_signature",
]

_KEYWORD_KINDS = ("positional_or_keyword", "keyword_only")


@dataclass(frozen=True)
class Param:
    """One parameter of a signature, as written in the source.

    Attributes:
        name: The parameter's name.
        kind: One of ``positional_only``, ``positional_or_keyword``, ``keyword_only``,
            ``var_positional``, ``var_keyword`` (the names of :class:`inspect.Parameter` kinds).
        annotation: The annotation's source text (quotes stripped from a string annotation),
            or None when there is none.
        has_default: Whether the parameter has a default value.
    """

    name: str
    kind: str
    annotation: str | None
    has_default: bool


@dataclass(frozen=True)
class StaticSignature:
    """The parameters a ``_target_`` accepts when called.

    Attributes:
        target: The dotpath that was asked for, e.g. ``pytorch_lightning.Trainer``.
        qualname: Where the object is defined, e.g. ``pytorch_lightning.trainer.trainer.Trainer``.
        params: The parameters in order, without ``self``/``cls``; ``*args`` and ``**kwargs``
            appear with their kinds.
        var_kwargs: Whether it accepts ``**kwargs`` (any keyword then binds).
    """

    target: str
    qualname: str
    params: tuple[Param, ...]
    var_kwargs: bool

    def get(self, name: str) -> Param | None:
        """The parameter that the keyword ``name`` binds to, or None."""
        for p in self.params:
            if p.name == name and p.kind in _KEYWORD_KINDS:
                return p
        return None

    @property
    def names(self) -> list[str]:
        """The names that can be passed by keyword, in order."""
        return [p.name for p in self.params if p.kind in _KEYWORD_KINDS]


class TargetNotFoundError(LookupError):
    """The module or the attribute that a dotpath names does not exist.

    Attributes:
        target: The dotpath that was asked for.
        reason: What is missing, e.g. ``module 'torch.optim' has no attribute 'AdamX'``.
        suggestions: Close matches as full dotpaths, best first (may be empty).
    """

    def __init__(self, target: str, reason: str, suggestions: list[str] | None = None) -> None:
        self.target = target
        self.reason = reason
        self.suggestions = list(suggestions or [])
        hint = f" (did you mean '{self.suggestions[0]}'?)" if self.suggestions else ""
        super().__init__(f"{target}: {reason}{hint}")


# ---------------------------------------------------------------------------------------------
# finding modules on disk


@dataclass(frozen=True)
class _Module:
    name: str
    path: str | None  # the .py source; None for a namespace package or a compiled module
    locations: tuple[str, ...]  # folders holding its submodules; () for a plain module
    compiled: bool = False  # an extension, built-in or bytecode-only module: no source to read


_COMPILED_SUFFIXES = (*importlib.machinery.EXTENSION_SUFFIXES, ".pyc")


@functools.cache  # an unbounded lru_cache
def _find_module(name: str) -> _Module | None:
    """The module ``name`` on disk, or None. Imports nothing."""
    parent_name, _, tail = name.rpartition(".")
    if not parent_name:
        return _find_top_level(name)
    parent = _find_module(parent_name)
    if parent is None or not parent.locations:
        return None
    # FileFinder's order within each folder: a package, then extension, source, bytecode;
    # a namespace package only when no folder has a regular one.
    namespace: list[str] = []
    for folder in parent.locations:
        base = os.path.join(folder, tail)
        is_dir = os.path.isdir(base)
        if is_dir:
            init = os.path.join(base, "__init__.py")
            if os.path.isfile(init):
                return _Module(name, init, (base,))
            if any(os.path.isfile(os.path.join(base, "__init__" + s)) for s in _COMPILED_SUFFIXES):
                return _Module(name, None, (base,), compiled=True)
        if any(os.path.isfile(base + s) for s in importlib.machinery.EXTENSION_SUFFIXES):
            return _Module(name, None, (), compiled=True)
        if os.path.isfile(base + ".py"):
            return _Module(name, base + ".py", ())
        if os.path.isfile(base + ".pyc"):
            return _Module(name, None, (), compiled=True)
        if is_dir:
            namespace.append(base)
    return _Module(name, None, tuple(namespace)) if namespace else None


def _find_top_level(name: str) -> _Module | None:
    # find_spec on a top-level name consults the finders without importing anything; on a
    # dotted name it would import the parents, which is the whole cost we are avoiding.
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # ValueError: in sys.modules with no __spec__
        return None
    if spec is None:
        return None
    locations = tuple(spec.submodule_search_locations or ())
    origin = spec.origin
    if origin == "frozen":  # stdlib modules frozen into the interpreter still ship their source
        origin = getattr(spec.loader_state, "filename", None)
    if origin and origin.endswith(".py") and os.path.isfile(origin):
        return _Module(name, origin, locations)
    if origin is None and locations:
        return _Module(name, None, locations)  # namespace package
    return _Module(name, None, locations, compiled=True)


def _submodule_names(module: _Module) -> set[str]:
    names: set[str] = set()
    for folder in module.locations:
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for entry in entries:
            stem = entry.partition(".")[0]
            is_module = entry.endswith((".py", *_COMPILED_SUFFIXES)) or "." not in entry
            if is_module and stem.isidentifier() and stem != "__init__":
                names.add(stem)
    return names


# ---------------------------------------------------------------------------------------------
# reading a module's namespace


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


@functools.cache  # an unbounded lru_cache
def _parse(path: str) -> ast.Module | None:
    source = _read(path)
    if source is None:
        return None
    try:
        return ast.parse(source, filename=path)
    except (SyntaxError, ValueError):
        return None


@dataclass
class _Index:
    """What a module binds, from one pass over its syntax tree."""

    # name -> (statement, whether it only runs conditionally), in source order; statements at
    # module level, including those inside module-level if/try/with blocks
    top: dict[str, list[tuple[ast.stmt, bool]]]
    stars: list[ast.ImportFrom]
    exports: tuple[str, ...] | None  # a literal __all__
    # names may appear at run time that no statement binds (module __getattr__, globals()
    # writes), so a miss proves nothing
    dynamic: bool


_TRY_TYPES = tuple(t for t in (ast.Try, getattr(ast, "TryStar", None)) if t is not None)


def _flatten(body: list[ast.stmt], conditional: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """Statements executed at this block's level, descending into if/try/with blocks."""
    for stmt in body:
        yield stmt, conditional
        if isinstance(stmt, ast.If):
            yield from _flatten(stmt.body, True)
            yield from _flatten(stmt.orelse, True)
        elif isinstance(stmt, _TRY_TYPES):
            yield from _flatten(stmt.body, True)
            for handler in stmt.handlers:
                yield from _flatten(handler.body, True)
            yield from _flatten(stmt.orelse, True)
            yield from _flatten(stmt.finalbody, conditional)
        elif isinstance(stmt, ast.With | ast.AsyncWith):
            yield from _flatten(stmt.body, conditional)


def _target_names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [n for elt in target.elts for n in _target_names(elt)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


def _bound_names(stmt: ast.AST) -> list[str]:
    if isinstance(stmt, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        return [stmt.name]
    if isinstance(stmt, ast.Import):
        return [a.asname or a.name.partition(".")[0] for a in stmt.names]
    if isinstance(stmt, ast.ImportFrom):
        return [a.asname or a.name for a in stmt.names if a.name != "*"]
    if isinstance(stmt, ast.Assign):
        return [n for t in stmt.targets for n in _target_names(t)]
    if isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        return _target_names(stmt.target)
    return []


def _literal_strings(node: ast.expr) -> list[str] | None:
    if isinstance(node, ast.List | ast.Tuple) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
    ):
        return [e.value for e in node.elts if isinstance(e, ast.Constant)]
    return None


@functools.cache  # an unbounded lru_cache
def _index(path: str) -> _Index | None:
    tree = _parse(path)
    if tree is None:
        return None
    top: dict[str, list[tuple[ast.stmt, bool]]] = {}
    stars: list[ast.ImportFrom] = []
    exports: list[str] | None = []
    has_all = False
    for stmt, conditional in _flatten(tree.body, False):
        if isinstance(stmt, ast.ImportFrom) and any(a.name == "*" for a in stmt.names):
            stars.append(stmt)
        for name in _bound_names(stmt):
            top.setdefault(name, []).append((stmt, conditional))
        # __all__ = [...] and __all__ += [...]; anything cleverer makes the export list unknown
        if isinstance(stmt, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                has_all = True
                listed = _literal_strings(stmt.value) if stmt.value is not None else None
                if listed is None or exports is None:
                    exports = None
                else:
                    exports = listed if isinstance(stmt, ast.Assign) else [*exports, *listed]
    # A text search is enough to flag globals() writes and sys.modules[__name__] tricks, and
    # far cheaper than walking the whole tree.
    source = _read(path) or b""
    dynamic = "__getattr__" in top or b"globals()" in source or b"sys.modules[__name__]" in source
    exported = tuple(exports) if has_all and exports is not None else None
    return _Index(top, stars, exported, dynamic)


@functools.cache  # an unbounded lru_cache
def _nested_imports(path: str) -> dict[str, list[ast.stmt]]:
    """Imports below module level (a lazy ``def __getattr__``), by the name they bind; only
    walked when a name is bound nowhere else."""
    tree = _parse(path)
    if tree is None:
        return {}
    top = {id(stmt) for stmt, _ in _flatten(tree.body, False)}
    nested: dict[str, list[ast.stmt]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top:
            for name in _bound_names(node):
                nested.setdefault(name, []).append(node)
    return nested


# ---------------------------------------------------------------------------------------------
# following names


@dataclass(frozen=True)
class _Def:
    """A class or function definition found in a module."""

    module: _Module
    node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
    qualname: str  # within the module, e.g. "Outer.method"
    in_class: bool = False  # a function defined in a class body


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_MISSING = _Marker("missing")  # nothing of that name
_UNKNOWN = _Marker("unknown")  # exists (or may), but is not a definition we can read
_PLAIN_BASE = _Marker("plain base")  # object, ABC, Generic, Protocol: no __init__ of their own
_NAMEDTUPLE = _Marker("NamedTuple")

_Found = _Module | _Def | _Marker
_Seen = frozenset[tuple[str, str]]

# Bases whose meaning is known, so their (sometimes frozen or C-backed) modules are never read.
_KNOWN: dict[tuple[str, str], _Marker] = {
    ("builtins", "object"): _PLAIN_BASE,
    ("abc", "ABC"): _PLAIN_BASE,
    ("typing", "Generic"): _PLAIN_BASE,
    ("typing", "Protocol"): _PLAIN_BASE,
    ("typing_extensions", "Generic"): _PLAIN_BASE,
    ("typing_extensions", "Protocol"): _PLAIN_BASE,
    ("typing", "NamedTuple"): _NAMEDTUPLE,
    ("typing_extensions", "NamedTuple"): _NAMEDTUPLE,
}


def _absolute(module: _Module, stmt: ast.ImportFrom) -> str | None:
    """The absolute module name of ``from <...> import``, relative ones included."""
    if not stmt.level:
        return stmt.module
    parts = module.name.split(".")
    if not module.locations:  # a plain module: relative to its package
        parts = parts[:-1]
    if stmt.level - 1 >= len(parts):  # beyond the top-level package
        return None
    parts = parts[: len(parts) - (stmt.level - 1)]
    if stmt.module:
        parts.append(stmt.module)
    return ".".join(parts) or None


def _is_dynamic(module: _Module) -> bool:
    if module.compiled:
        return True
    index = _index(module.path) if module.path else None
    return module.path is not None and (index is None or index.dynamic)


def _attr(module: _Module, name: str, seen: _Seen) -> _Found:
    """What ``module.name`` is: a submodule first (cheap, and nearly always what a package's
    attribute of that name is), else the module's own binding."""
    if (known := _KNOWN.get((module.name, name))) is not None:
        return known
    if module.locations and (sub := _find_module(f"{module.name}.{name}")) is not None:
        return sub
    found = _lookup(module, name, seen)
    if found is _MISSING and _is_dynamic(module):
        return _UNKNOWN
    return found


def _lookup(module: _Module, name: str, seen: _Seen) -> _Found:
    """What ``name`` is bound to in ``module``'s own namespace (submodules not counted)."""
    key = (module.name, name)
    if key in seen:  # an import cycle: this path leads nowhere
        return _MISSING
    seen = seen | {key}
    if module.compiled:
        return _UNKNOWN
    if module.path is None:  # namespace package: nothing but submodules
        return _MISSING
    index = _index(module.path)
    if index is None:
        return _UNKNOWN
    bindings = index.top.get(name, [])
    # The last unconditional binding is what the name holds after import; conditional ones
    # (try/except ImportError, if TYPE_CHECKING, version checks) are tried in source order.
    ordered = [s for s, cond in reversed(bindings) if not cond] + [s for s, c in bindings if c]
    for stmt in ordered:
        if (found := _follow(module, stmt, name, seen)) is not _MISSING:
            return found
    # A star import from a module we cannot read might supply the name, but a readable one
    # that does is a better answer, so keep looking.
    maybe = False
    for star in reversed(index.stars):
        found = _follow_star(module, star, name, seen)
        if found is _UNKNOWN:
            maybe = True
        elif found is not _MISSING:
            return found
    for stmt in _nested_imports(module.path).get(name, []):
        if (found := _follow(module, stmt, name, seen)) is not _MISSING:
            return found
    return _UNKNOWN if maybe else _MISSING


def _follow(module: _Module, stmt: ast.AST, name: str, seen: _Seen) -> _Found:
    """What the binding statement ``stmt`` binds ``name`` to."""
    if isinstance(stmt, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        return _Def(module, stmt, stmt.name)
    if isinstance(stmt, ast.Import):
        for alias in stmt.names:
            if alias.asname == name:
                return _find_module(alias.name) or _MISSING
            if alias.asname is None and alias.name.partition(".")[0] == name:
                return _find_module(name) or _MISSING
        return _MISSING
    if isinstance(stmt, ast.ImportFrom):
        source_name = _absolute(module, stmt)
        source = _find_module(source_name) if source_name else None
        for alias in stmt.names:
            if (alias.asname or alias.name) == name:
                return _MISSING if source is None else _attr(source, alias.name, seen)
        return _MISSING
    if isinstance(stmt, ast.Assign | ast.AnnAssign):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        value = stmt.value
        simple = any(isinstance(t, ast.Name) and t.id == name for t in targets)
        if simple and isinstance(value, ast.Name | ast.Attribute):  # an alias: C = Other
            return _resolve_expr(module, value, seen)
        return _UNKNOWN  # assigned at run time
    return _MISSING


def _follow_star(module: _Module, stmt: ast.ImportFrom, name: str, seen: _Seen) -> _Found:
    source_name = _absolute(module, stmt)
    source = _find_module(source_name) if source_name else None
    if source is None:
        return _MISSING
    if source.compiled:
        return _UNKNOWN  # we cannot know what it exports
    index = _index(source.path) if source.path else None
    if index is not None and index.exports is not None:
        if name not in index.exports:
            return _MISSING
        return _attr(source, name, seen)  # __all__ may list submodules
    if name.startswith("_"):
        return _MISSING
    found = _lookup(source, name, seen)
    return _UNKNOWN if found is _MISSING and _is_dynamic(source) else found


def _resolve_expr(module: _Module, expr: ast.expr, seen: _Seen) -> _Found:
    """What a name or attribute chain in ``module``'s code refers to (aliases and bases)."""
    if isinstance(expr, ast.Subscript):  # Generic[T], Base[int]
        return _resolve_expr(module, expr.value, seen)
    if isinstance(expr, ast.Name):
        found = _lookup(module, expr.id, seen)
        if found is not _MISSING:
            return found
        if hasattr(builtins, expr.id):
            return _KNOWN.get(("builtins", expr.id), _UNKNOWN)
        return _UNKNOWN if _is_dynamic(module) else _MISSING
    if isinstance(expr, ast.Attribute):
        owner = _resolve_expr(module, expr.value, seen)
        if isinstance(owner, _Module):
            return _attr(owner, expr.attr, seen)
        if isinstance(owner, _Def) and isinstance(owner.node, ast.ClassDef):
            return _class_member(owner, expr.attr)
        return _MISSING if owner is _MISSING else _UNKNOWN
    return _UNKNOWN


def _class_member(cls: _Def, name: str) -> _Found:
    """A nested class or a method of ``cls``; unknown when not in its own body."""
    found: _Found = _UNKNOWN  # maybe inherited or assigned: do not claim it is missing
    for stmt, _ in _flatten(cls.node.body, False):
        if (
            isinstance(stmt, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and stmt.name == name
        ):
            is_function = not isinstance(stmt, ast.ClassDef)
            found = _Def(cls.module, stmt, f"{cls.qualname}.{name}", in_class=is_function)
    return found


# ---------------------------------------------------------------------------------------------
# signatures from definitions

_Params = tuple[tuple[Param, ...], bool]


def _annotation_text(node: ast.expr | None) -> str | None:
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.strip()  # a string annotation
    return ast.unparse(node)


def _function_params(fn: ast.FunctionDef | ast.AsyncFunctionDef, drop_first: bool) -> _Params:
    a = fn.args
    positional = [*a.posonlyargs, *a.args]
    first_default = len(positional) - len(a.defaults)
    params: list[Param] = []
    for i, arg in enumerate(positional):
        kind = "positional_only" if i < len(a.posonlyargs) else "positional_or_keyword"
        params.append(Param(arg.arg, kind, _annotation_text(arg.annotation), i >= first_default))
    if drop_first and positional:
        params.pop(0)
    if a.vararg:
        params.append(
            Param(a.vararg.arg, "var_positional", _annotation_text(a.vararg.annotation), False)
        )
    for arg, default in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        text = _annotation_text(arg.annotation)
        params.append(Param(arg.arg, "keyword_only", text, default is not None))
    if a.kwarg:
        params.append(
            Param(a.kwarg.arg, "var_keyword", _annotation_text(a.kwarg.annotation), False)
        )
    return tuple(params), a.kwarg is not None


def _last_name(node: ast.expr) -> str:
    """``dataclasses.dataclass(frozen=True)`` -> ``dataclass``."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _dataclass_options(cls: ast.ClassDef) -> dict[str, bool] | None:
    """``{"init": ..., "kw_only": ...}`` when ``cls`` is decorated as a dataclass, else None."""
    for dec in cls.decorator_list:
        if _last_name(dec) == "dataclass":
            options = {"init": True, "kw_only": False}
            if isinstance(dec, ast.Call):
                for kw in dec.keywords:
                    if kw.arg in options and isinstance(kw.value, ast.Constant):
                        options[kw.arg] = bool(kw.value.value)
            return options
    return None


# attrs and its relatives write __init__ from fields in ways we do not model
_INIT_WRITING_DECORATORS = {"s", "attrs", "define", "frozen", "mutable"}


def _methods(cls: ast.ClassDef, name: str) -> list[ast.stmt]:
    """Statements in the class body that bind ``name`` (the last one wins at run time)."""
    return [s for s, _ in _flatten(cls.body, False) if name in _bound_names(s)]


def _class_node(cls: _Def) -> ast.ClassDef:
    assert isinstance(cls.node, ast.ClassDef), cls
    return cls.node


def _bases(cls: _Def) -> list[_Def | _Marker] | None:
    out: list[_Def | _Marker] = []
    for base in _class_node(cls).bases:
        found = _resolve_expr(cls.module, base, frozenset())
        if found is _PLAIN_BASE:
            continue
        if isinstance(found, _Def) and isinstance(found.node, ast.ClassDef):
            out.append(found)
        elif found is _NAMEDTUPLE:
            out.append(_NAMEDTUPLE)
        else:
            return None  # a C extension, a class built at run time, a missing import: do not guess
    return out


def _mro(cls: _Def, visiting: frozenset[int] = frozenset()) -> list[_Def | _Marker] | None:
    """C3 linearisation over statically resolved bases; None if any base is unreadable."""
    if id(cls.node) in visiting:
        return None
    visiting = visiting | {id(cls.node)}
    bases = _bases(cls)
    if bases is None:
        return None
    seqs: list[list[_Def | _Marker]] = []
    for base in bases:
        if isinstance(base, _Def):
            base_mro = _mro(base, visiting)
            if base_mro is None:
                return None
            seqs.append(base_mro)
        else:
            seqs.append([base])
    seqs.append(list(bases))
    merged: list[_Def | _Marker] = []
    seqs = [s for s in seqs if s]
    while seqs:
        for seq in seqs:
            head = seq[0]
            if not any(head in s[1:] for s in seqs):
                break
        else:  # inconsistent hierarchy (Python would refuse it): depth-first is close enough
            merged += [c for s in seqs for c in s if c not in merged]
            break
        merged.append(head)
        seqs = [s[1:] if s[0] == head else s for s in seqs]
        seqs = [s for s in seqs if s]
    return [cls, *merged]


def _field_info(value: ast.expr | None) -> tuple[bool, bool, bool | None]:
    """(has a default, takes part in __init__, kw_only override) of a dataclass field."""
    if value is None:
        return False, True, None
    if isinstance(value, ast.Call) and _last_name(value.func) == "field":
        kw = {k.arg: k.value for k in value.keywords if k.arg}
        init = kw.get("init")
        kw_only = kw.get("kw_only")
        return (
            "default" in kw or "default_factory" in kw,
            not (isinstance(init, ast.Constant) and init.value is False),
            bool(kw_only.value) if isinstance(kw_only, ast.Constant) else None,
        )
    return True, True, None


def _annotation_head(text: str) -> tuple[str, ast.expr | None]:
    """(``ClassVar``, ``int``) for ``typing.ClassVar[int]``; the head's name and its argument."""
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return "", None
    if isinstance(node, ast.Subscript):
        return _last_name(node.value), node.slice
    return _last_name(node), None


def _own_fields(cls: ast.ClassDef, kw_only_default: bool) -> dict[str, Param | None]:
    """Fields declared in the class body; None marks a field left out of __init__."""
    fields: dict[str, Param | None] = {}
    kw_only = kw_only_default
    for stmt in cls.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        text = _annotation_text(stmt.annotation) or ""
        head, arg = _annotation_head(text)
        if head == "ClassVar":
            continue
        if head == "KW_ONLY":  # `_: KW_ONLY` makes the fields after it keyword-only
            kw_only = True
            continue
        if head == "InitVar" and arg is not None:
            text = ast.unparse(arg)
        has_default, init, field_kw_only = _field_info(stmt.value)
        name = stmt.target.id
        if not init:
            fields[name] = None
            continue
        keyword = kw_only if field_kw_only is None else field_kw_only
        kind = "keyword_only" if keyword else "positional_or_keyword"
        fields[name] = Param(name, kind, text, has_default)
    return fields


def _dataclass_params(cls: _Def) -> _Params | None:
    mro = _mro(cls)
    if mro is None:
        return None
    # as dataclasses does: fields of dataclass bases first (most basic first), a redefinition
    # keeping its original position
    fields: dict[str, Param | None] = {}
    for klass in reversed(mro):
        if isinstance(klass, _Def):
            options = _dataclass_options(_class_node(klass))
            if options is not None:
                fields.update(_own_fields(_class_node(klass), options["kw_only"]))
    params = [p for p in fields.values() if p is not None]
    # keyword-only fields move behind the others in the generated __init__
    ordered = [p for p in params if p.kind != "keyword_only"] + [
        p for p in params if p.kind == "keyword_only"
    ]
    return tuple(ordered), False


def _namedtuple_params(cls: ast.ClassDef) -> _Params:
    params = [
        Param(
            s.target.id,
            "positional_or_keyword",
            _annotation_text(s.annotation),
            s.value is not None,
        )
        for s in cls.body
        if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
    ]
    return tuple(params), False


_NOT_HERE = _Marker("not here")


def _own_init(klass: _Def) -> _Params | None | _Marker:
    """The parameters of the __init__ that ``klass`` itself defines or generates; _NOT_HERE
    when it leaves __init__ to its bases."""
    node = _class_node(klass)
    inits = _methods(node, "__init__")
    if inits:
        init = inits[-1]  # after any @overload stubs
        if isinstance(init, ast.FunctionDef | ast.AsyncFunctionDef):
            return _function_params(init, drop_first=True)
        return None  # __init__ = something: built at run time
    options = _dataclass_options(node)
    if options is not None and options["init"]:
        return _dataclass_params(klass)
    if any(_last_name(b) == "NamedTuple" for b in node.bases) and _NAMEDTUPLE in (
        _bases(klass) or []
    ):
        return _namedtuple_params(node)
    if any(_last_name(d) in _INIT_WRITING_DECORATORS for d in node.decorator_list):
        return None
    return _NOT_HERE


def _class_params(cls: _Def) -> _Params | None:
    # the class's own __init__ needs no bases: most targets stop here, cheaply
    own = _own_init(cls)
    if not isinstance(own, _Marker):
        return own
    mro = _mro(cls)
    if mro is None:
        return None
    for klass in mro[1:]:
        if isinstance(klass, _Def) and not isinstance(found := _own_init(klass), _Marker):
            return found
    # no __init__ anywhere: a custom __new__ takes the arguments, else none are accepted
    for klass in mro:
        if isinstance(klass, _Def):
            news = _methods(_class_node(klass), "__new__")
            if news:
                new = news[-1]
                if isinstance(new, ast.FunctionDef | ast.AsyncFunctionDef):
                    return _function_params(new, drop_first=True)
                return None
    return (), False


def _params_of(found: _Def) -> _Params | None:
    node = found.node
    if isinstance(node, ast.ClassDef):
        return _class_params(found)
    if not found.in_class:
        return _function_params(node, drop_first=False)
    decorators = {_last_name(d) for d in node.decorator_list}
    if "staticmethod" in decorators:
        return _function_params(node, drop_first=False)
    if "classmethod" in decorators:
        return _function_params(node, drop_first=True)
    return None  # a plain method called through its class would need an instance


# ---------------------------------------------------------------------------------------------
# the entry point


def _close(word: str, options: set[str] | list[str], prefix: str = "") -> list[str]:
    """Close matches to ``word``, ignoring case, as dotpaths under ``prefix``."""
    by_lower: dict[str, str] = {}
    for option in sorted(options):
        by_lower.setdefault(option.lower(), option)
    matches = difflib.get_close_matches(word.lower(), list(by_lower), n=3, cutoff=0.6)
    return [f"{prefix}.{by_lower[m]}" if prefix else by_lower[m] for m in matches]


def _public_names(module: _Module, private: bool = False) -> set[str]:
    names = set(_submodule_names(module))
    index = _index(module.path) if module.path else None
    if index is not None:
        names |= set(index.top) | set(index.exports or ())
        for star in index.stars:
            source_name = _absolute(module, star)
            source = _find_module(source_name) if source_name else None
            source_index = _index(source.path) if source is not None and source.path else None
            if source_index is not None:
                names |= set(source_index.exports or source_index.top)
    return {n for n in names if private or not n.startswith("_")}


def _top_level_names() -> set[str]:
    import pkgutil  # only when a top-level name is missing

    names = {m.name for m in pkgutil.iter_modules()}
    return names | set(sys.builtin_module_names) | set(getattr(sys, "stdlib_module_names", ()))


def _not_found(dotpath: str, module: _Module, name: str, is_last: bool) -> TargetNotFoundError:
    kind = "attribute" if is_last else "attribute or submodule"
    options = _public_names(module, private=name.startswith("_"))
    return TargetNotFoundError(
        dotpath,
        f"module '{module.name}' has no {kind} '{name}'",
        _close(name, options, module.name),
    )


def _binds(module: _Module, name: str) -> bool:
    """Whether some statement of ``module`` binds ``name`` (compiled modules: maybe)."""
    if module.compiled:
        return True
    index = _index(module.path) if module.path else None
    return index is not None and (name in index.top or name in _nested_imports(module.path))


def _missing_attribute(
    dotpath: str, module: _Module, name: str, is_last: bool, missing: bool
) -> TargetNotFoundError | None:
    """The error for a name that no statement of ``module`` binds, or None when the name may
    still appear at run time (module ``__getattr__``, ``globals()`` writes, star imports from
    compiled modules)."""
    if missing and not _is_dynamic(module):
        return _not_found(dotpath, module, name, is_last)
    # Such modules may make up names, but a name used as a package that is one typo away from
    # a real submodule is a typo, and so is a name near a public one of a module whose literal
    # __all__ does not list it.
    near_submodule = _close(name, _submodule_names(module), module.name)
    if not is_last and near_submodule:
        return TargetNotFoundError(
            dotpath, f"module '{module.name}' has no submodule '{name}'", near_submodule
        )
    index = _index(module.path) if module.path else None
    if index is not None and index.exports is not None and name not in index.exports:
        error = _not_found(dotpath, module, name, is_last)
        return error if error.suggestions else None
    return None


def _resolve_target(dotpath: str) -> _Found:
    parts = dotpath.split(".")
    if not all(p.isidentifier() for p in parts):
        raise TargetNotFoundError(dotpath, f"'{dotpath}' is not a dotted path")
    module = _find_module(parts[0])
    if module is None:
        raise TargetNotFoundError(
            dotpath, f"no module named '{parts[0]}'", _close(parts[0], _top_level_names())
        )
    # the longest prefix that is a module on disk
    i = 1
    while i < len(parts) and module.locations:
        sub = _find_module(".".join(parts[: i + 1]))
        if sub is None:
            break
        module, i = sub, i + 1
    if i == len(parts):
        # a package may rebind a submodule's name to a function or class (`from .f import f`)
        if i > 1 and (parent := _find_module(".".join(parts[:-1]))) is not None:
            found = _lookup(parent, parts[-1], frozenset())
            if isinstance(found, _Def):
                return found
        return module
    found: _Found = module
    for j in range(i, len(parts)):
        part, is_last = parts[j], j == len(parts) - 1
        if isinstance(found, _Module):
            owner = found
            found = _lookup(owner, part, frozenset())
            if found is _MISSING and owner.locations:
                found = _find_module(f"{owner.name}.{part}") or _MISSING
            if (found is _MISSING or found is _UNKNOWN) and not _binds(owner, part):
                error = _missing_attribute(dotpath, owner, part, is_last, found is _MISSING)
                if error is not None:
                    raise error
                found = _UNKNOWN
        elif isinstance(found, _Def) and isinstance(found.node, ast.ClassDef):
            found = _class_member(found, part)
        else:
            return _UNKNOWN
    return found


@functools.lru_cache(maxsize=1024)
def static_signature(dotpath: str) -> StaticSignature | None:
    """The call signature of the class or function at ``dotpath``, read from source.

    Nothing is imported: the module is found on disk and parsed (each file once per process).
    A class's signature is its ``__init__``, its bases' ``__init__`` or its dataclass fields.

    Args:
        dotpath: A ``_target_`` such as ``torch.optim.AdamW``.

    Returns:
        The signature, or None when the object exists but cannot be read statically (defined
        in a C extension, assigned at run time, a base class that cannot be followed).

    Raises:
        TargetNotFoundError: The module or the attribute does not exist.
    """
    try:
        found = _resolve_target(dotpath)
        if isinstance(found, _Module):
            raise TargetNotFoundError(
                dotpath,
                f"'{dotpath}' is a module, not a class or function",
                _close(dotpath.rpartition(".")[2], _public_names(found), found.name),
            )
        if not isinstance(found, _Def):
            return None
        result = _params_of(found)
    except RecursionError:
        return None
    if result is None:
        return None
    params, var_kwargs = result
    return StaticSignature(dotpath, f"{found.module.name}.{found.qualname}", params, var_kwargs)


# ---------------------------------------------------------------------------------------------
# checking a value against annotation text


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
