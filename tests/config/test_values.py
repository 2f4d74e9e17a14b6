"""Value checks: plain config values against annotation text, never evaluated."""

from __future__ import annotations

import pytest

from mlx.config.values import check_value

CASES = [
    # scalars: bool is not an int, int is a float
    ("int", 3, None),
    ("int", True, "an int"),
    ("int", 3.0, "an int"),
    ("float", 3, None),
    ("float", 0.5, None),
    ("float", True, "a float"),
    ("float", "x", "a float"),
    ("bool", False, None),
    ("bool", 1, "a bool"),
    ("str", "a", None),
    ("str", 1, "a string"),
    ("None", None, None),
    ("None", 0, "None"),
    ("NoneType", None, None),
    ("Any", object(), None),
    ("typing.Any", [1], None),
    ("object", "x", None),
    (None, "anything", None),
    # unions
    ("Optional[int]", None, None),
    ("Optional[int]", "a", "an int or None"),
    ("typing.Optional[int]", 1, None),
    ("Union[int, str]", "a", None),
    ("Union[int, str]", 1.5, "an int or a string"),
    ("t.Union[int, str]", 1.5, "an int or a string"),
    ("int | None", "x", "an int or None"),
    ("float | str | None", [1], "a float or a string or None"),
    # containers come in as lists, tuples and dicts
    ("list[int]", [1, 2], None),
    ("list[int]", (1, 2), None),
    ("list[int]", [1, "a"], "a list of int"),
    ("list[int]", 1, "a list of int"),
    ("List[float]", [1, 2.5], None),
    ("typing.List[float]", ["x"], "a list of float"),
    ("Sequence[str]", ["a"], None),
    ("Sequence[str]", "abc", "a list of str"),
    ("Iterable[int]", [1], None),
    ("list", [1, "a"], None),
    ("list", "a", "a list"),
    ("tuple[int, ...]", [1, 2, 3], None),
    ("tuple[int, ...]", [1, 2.5], "a list of int"),
    ("tuple[int, int]", [1, 2], None),
    ("tuple[int, int]", [1, 2, 3], "a list of 2 int"),
    ("Tuple[int, str]", [1, 2], "a list of 2 items (int, str)"),
    ("Tuple", [1, "a"], None),
    ("dict[str, float]", {"a": 1}, None),
    ("dict[str, float]", {"a": "b"}, "a dict of str to float"),
    ("Dict", [1], "a dict"),
    ("Mapping[str, int]", {}, None),
    ("typing.Dict[str, Any]", {"a": object()}, None),
    # literals are type-exact
    ("Literal['sum', 'mean']", "mean", None),
    ("Literal['sum', 'mean']", "max", "one of 'sum', 'mean'"),
    ("Literal['min', 'max']", 1, "one of 'min', 'max'"),
    ("Literal[1, 2]", True, "one of 1, 2"),
    ("Literal[-1]", -1, None),
    ("typing.Literal['a']", "b", "'a'"),
    ("Optional[Union[bool, Literal['link']]]", "x", "a bool or 'link' or None"),
    # paths take strings
    ("Path", "a/b", None),
    ("pathlib.Path", "a", None),
    ("os.PathLike", "a", None),
    ("Path", 3, "a path"),
    ("Union[str, Path]", 3, "a string or a path"),
    # string annotations, whole or in part
    ('"Optional[int]"', "x", "an int or None"),
    ("Optional['int']", 2, None),
    ("Optional['int']", "x", "an int or None"),
    # Annotated with annotated_types metadata
    ("Annotated[float, Gt(0)]", 0.1, None),
    ("Annotated[float, Gt(0)]", 0, "a float > 0"),
    ("Annotated[int, Ge(1)]", 1, None),
    ("Annotated[int, Ge(1)]", 0, "an int >= 1"),
    ("Annotated[int, Ge(1)]", 1.5, "an int >= 1"),
    ("Annotated[int, Lt(10)]", 10, "an int < 10"),
    ("Annotated[float, Le(1)]", 1.0, None),
    ("Annotated[float, annotated_types.Gt(0)]", -1, "a float > 0"),
    ("Annotated[float, Gt(gt=0)]", -1, "a float > 0"),
    ("Annotated[float, Interval(ge=0, le=1)]", 0.5, None),
    ("Annotated[float, Interval(ge=0, le=1)]", 1.5, "a float >= 0 and <= 1"),
    ("Annotated[float, Interval(gt=0, lt=1)]", 0, "a float > 0 and < 1"),
    ("Annotated[float, Gt(0), Lt(1)]", 2, "a float > 0 and < 1"),
    ("Annotated[str, MinLen(1)]", "", "a string of length >= 1"),
    ("Annotated[list[int], MaxLen(2)]", [1, 2, 3], "a list of int of length <= 2"),
    ("Annotated[int, Ge(1), 'other metadata', Foo(3)]", 0, "an int >= 1"),
    ("Annotated[int, Foo(-3)]", -5, None),
    ("Optional[Annotated[int, Ge(1)]]", None, None),
    ("Optional[Annotated[int, Ge(1)]]", -1, "an int >= 1 or None"),
    ("Union[bool, Annotated[int, Ge(0)]]", True, None),
    ("Union[bool, Annotated[int, Ge(0)]]", -1, "a bool or an int >= 0"),
    ("list[Annotated[float, Gt(0)]]", [1, 0], "a list of float > 0"),
    # unknown names accept anything, also inside unions
    ("ParamsT", 1, None),
    ("_PATH", 1, None),
    ("Tensor", "x", None),
    ("Union[int, Tensor]", "x", None),
    ("float | Tensor", "x", None),
    ("Optional[Accelerator]", 3, None),
    ("np.ndarray", 1, None),
    ("Callable[..., int]", 1, None),
    ("list[Tensor]", ["x"], None),
    ("list[Tensor]", "x", "a list"),
]


@pytest.mark.parametrize(("annotation", "value", "expected"), CASES)
def test_check_value(annotation: str | None, value: object, expected: str | None) -> None:
    assert check_value(annotation, value) == expected


@pytest.mark.parametrize(
    "annotation",
    ["list[", "Optional", "Literal", "Annotated[int]", "Dict[str]", "1 +", "lambda: 0", "", " "],
)
def test_check_value_never_raises_on_weird_annotations(annotation: str) -> None:
    assert check_value(annotation, object()) is None or isinstance(
        check_value(annotation, object()), str
    )
