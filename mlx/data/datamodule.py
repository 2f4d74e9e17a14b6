"""``ArrayDataModule``: any in-memory source, split, encoded on the train split only, batched fast.

This module imports torch and Lightning; ``mlx.data`` imports it on first use only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Annotated, Any

import numpy as np
import pytorch_lightning as pl
import torch
from annotated_types import Ge, Interval
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

from mlx.data.sources import DataConfigError, Loaded, LoaderSettings, check_split, split_sizes

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class _EpochBatchSampler(BatchSampler):
    """A BatchSampler that forwards ``set_epoch`` (Lightning calls it on the loader's sampler)
    to a distributed sampler, so that each epoch of a DDP run is shuffled differently."""

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


class ArrayDataModule(pl.LightningDataModule):
    """Splits a source's data into train/val/test and serves whole batches by index.

    Each batch is one fancy-indexing operation on in-memory tensors rather than ``batch_size``
    calls to ``__getitem__`` plus a collate, which keeps small models from waiting on input.
    The train order comes from a generator seeded in :meth:`setup` from ``torch.initial_seed()``,
    so ``seed_everything(s)`` before ``setup`` makes every epoch's batches reproducible. In a
    distributed run (with Lightning's ``use_distributed_sampler=False``, as ``parallelism=ddp``
    sets) each rank reads its own shard of every split.

    After :meth:`setup`: ``input_shape``, ``num_outputs``, ``task``, ``class_names``,
    ``split_sizes``, ``indices`` (row numbers of each split in the source's data),
    ``feature_names`` (tabular) and ``preprocessor`` (the fitted scikit-learn
    ``ColumnTransformer``, tabular) are known; after a disk cache hit (``input.cache=disk``)
    ``preprocessor`` is None, as only the encoded splits are cached (see :mod:`mlx.data.cache`).

    Args:
        source: loads the data (see :mod:`mlx.data.sources`).
        batch_size: examples per batch.
        val_fraction: share of all examples held out for validation.
        test_fraction: share of all examples held out for the test.
        split_seed: seeds the split, independently of the run's seed, so that runs with other
            seeds are compared on the same examples.
        standardize: scale numeric features (tabular) or each channel (images) with the train
            split's mean and standard deviation.
        loader: DataLoader settings (the ``input`` group); None for the defaults.

    Raises:
        DataConfigError: the fractions leave too little to train on.
    """

    def __init__(
        self,
        source: Callable[[], Loaded],
        batch_size: Annotated[int, Ge(1)] = 64,
        val_fraction: Annotated[float, Interval(gt=0, lt=1)] = 0.15,
        test_fraction: Annotated[float, Interval(gt=0, lt=1)] = 0.15,
        split_seed: Annotated[int, Ge(0)] = 0,
        standardize: bool = False,
        loader: LoaderSettings | None = None,
    ) -> None:
        super().__init__()
        problems = []
        if not callable(source):
            problems.append(f"source must be a callable that loads data, not {source!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            problems.append(f"batch_size must be an integer >= 1, not {batch_size!r}")
        for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not isinstance(value, int | float) or not 0 < value < 1:
                problems.append(f"{key} must be a number between 0 and 1, not {value!r}")
        if not problems:
            try:
                check_split(val_fraction, test_fraction)
            except DataConfigError as e:
                problems.append(str(e).rstrip("."))
        if isinstance(split_seed, bool) or not isinstance(split_seed, int) or split_seed < 0:
            problems.append(f"split_seed must be an integer >= 0, not {split_seed!r}")
        if loader is not None and not isinstance(loader, LoaderSettings):
            problems.append(f"loader must be LoaderSettings or None, not {loader!r}")
        if problems:
            raise DataConfigError(f"ArrayDataModule: {'; '.join(problems)}.")
        self.source = source
        self.batch_size = batch_size
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.split_seed = split_seed
        self.standardize = standardize
        self.loader = loader or LoaderSettings()
        self.datasets: dict[str, TensorDataset] = {}
        self.indices: dict[str, np.ndarray] = {}
        self.preprocessor: Any = None
        self.feature_names: list[str] | None = None
        self.channel_stats: dict[str, list[float]] | None = None
        self.generator: torch.Generator | None = None
        self._loaded: Loaded | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self.generator is not None:
            # DDP's spawn pickles the data module with torch's multiprocessing pickler, which
            # cannot share a Generator's state tensor; plain bytes travel fine
            state["generator"] = self.generator.get_state().numpy().tobytes()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("generator"), bytes):
            generator = torch.Generator()
            generator.set_state(torch.frombuffer(bytearray(state["generator"]), dtype=torch.uint8))
            state["generator"] = generator
        self.__dict__.update(state)

    # -- set-up ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The train order's generator state (Lightning stores it in each checkpoint), so that
        a resumed run shuffles its remaining epochs as the uninterrupted run would."""
        return {} if self.generator is None else {"generator": self.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Set the generator saved by :meth:`state_dict` (in place: loaders built already
        follow it)."""
        if "generator" in state_dict:
            if self.generator is None:
                self.generator = torch.Generator()
            self.generator.set_state(state_dict["generator"])

    def setup(self, stage: str | None = None) -> None:
        """Load, split and encode the data once; later calls (Lightning's for test) return."""
        if self.datasets:
            return
        if self.loader.cache == "disk":
            from mlx.data import cache

            cache.setup(self)  # reads the entry, or calls _compute and writes it
        else:
            self._compute()
        shape = tuple(self.datasets["train"].tensors[0].shape[1:])
        if self.loader.augment and len(shape) != 3:
            self.datasets = {}
            raise DataConfigError(
                f"input.augment={self.loader.augment} needs image data (N, C, H, W); "
                f"{type(self.source).__name__} gives inputs of shape {shape}. "
                "Set input.augment=[]."
            )
        # one generator for the whole run: seed_everything before setup fixes every epoch's order
        self.generator = torch.Generator().manual_seed(torch.initial_seed())

    def _compute(self) -> None:
        """Load the source, split it and encode each split (fitted on the train split)."""
        data = self.source()
        _check_loaded(data, self.source)
        stratify = data.target if data.task == "classification" else None
        self.indices = split_indices(
            len(data.target), self.val_fraction, self.test_fraction, self.split_seed, stratify
        )
        encode = self._fit_encoder(data, self.indices["train"])
        y_dtype = torch.int64 if data.task == "classification" else torch.float32
        for split, rows in self.indices.items():
            x = torch.from_numpy(np.ascontiguousarray(encode(rows), dtype=np.float32))
            y = torch.as_tensor(data.target[rows], dtype=y_dtype)  # (N,)
            self.datasets[split] = TensorDataset(x, y)
        self._loaded = data

    def _fit_encoder(self, data: Loaded, train: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """A function from row numbers to encoded features, fitted on the train rows only."""
        features = data.features
        if isinstance(features, np.ndarray):  # images (N, C, H, W)
            if not self.standardize:
                return lambda rows: features[rows]
            axes = (0, *range(2, features.ndim))
            mean = features[train].mean(axis=axes, keepdims=True, dtype=np.float64)  # (1, C, 1, 1)
            std = features[train].std(axis=axes, keepdims=True, dtype=np.float64)
            std[std == 0] = 1.0  # a constant channel stays constant rather than dividing by 0
            self.channel_stats = {"mean": mean.ravel().tolist(), "std": std.ravel().tolist()}
            mean, std = mean.astype(np.float32), std.astype(np.float32)
            return lambda rows: (features[rows] - mean) / std
        return self._fit_table(data, train)

    def _fit_table(self, data: Loaded, train: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        features = data.features.copy()
        categorical = [c for c in data.categorical if c in features.columns]
        numeric = [c for c in features.columns if c not in categorical]
        for col in categorical:
            # one Python type per column (strings, NaN when missing): the encoder sorts categories
            present = features[col].notna()
            values = features[col].astype(object).where(present, np.nan)
            values[present] = [str(v) for v in values[present]]
            features[col] = values
        numeric_steps: list[Any] = [SimpleImputer(strategy="mean")]
        if self.standardize:
            numeric_steps.append(StandardScaler())
        parts: list[tuple[str, Any, list[str]]] = []
        if numeric:
            parts.append(("numeric", make_pipeline(*numeric_steps), numeric))
        if categorical:
            categories = make_pipeline(
                SimpleImputer(strategy="most_frequent"),
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
            )
            parts.append(("categorical", categories, categorical))
        transformer = ColumnTransformer(parts, sparse_threshold=0.0)
        transformer.fit(features.iloc[train])
        self.preprocessor = transformer
        self.feature_names = [
            name.split("__", 1)[1] for name in transformer.get_feature_names_out()
        ]
        return lambda rows: transformer.transform(features.iloc[rows])

    # -- what the model and the run record need ------------------------------------------------

    def _data(self) -> Loaded:
        if self._loaded is None:
            raise RuntimeError(
                "ArrayDataModule: call setup() before reading its shapes or loaders."
            )
        return self._loaded

    def raw_features(self) -> np.ndarray | Any:
        """The source's features before encoding: the image array or the DataFrame of raw
        columns. A disk cache hit keeps only the encoded splits, so the source is loaded again
        (once) to give them."""
        data = self._data()
        if data.features is None:
            self._loaded = dataclasses.replace(data, features=self.source().features)
        return self._data().features

    @property
    def task(self) -> str:
        """``classification`` or ``regression``."""
        return self._data().task

    @property
    def class_names(self) -> list[str] | None:
        """The name of each class id (classification), else None."""
        return self._data().class_names

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one encoded example: ``(C, H, W)`` or ``(n_features,)``."""
        self._data()
        return tuple(self.datasets["train"].tensors[0].shape[1:])

    @property
    def num_outputs(self) -> int:
        """Number of classes (classification) or 1 (regression)."""
        data = self._data()
        if data.task != "classification":
            return 1
        return len(data.class_names) if data.class_names else int(data.target.max()) + 1

    @property
    def split_sizes(self) -> dict[str, int]:
        """Examples in each split: ``{"train": ..., "val": ..., "test": ...}``."""
        self._data()
        return {split: len(rows) for split, rows in self.indices.items()}

    def describe(self) -> dict[str, Any]:
        """The data as set up, in plain types for logs and the run record."""
        return {
            "source": repr(self.source),
            "task": self.task,
            "input_shape": list(self.input_shape),
            "num_outputs": self.num_outputs,
            "class_names": self.class_names,
            "split_sizes": self.split_sizes,
            "split_seed": self.split_seed,
            "batch_size": self.batch_size,
            "standardize": self.standardize,
            "feature_names": self.feature_names,
        }

    # -- loaders --------------------------------------------------------------------------------

    def _loader(self, split: str, shuffle: bool) -> Iterable[Any]:
        """A DataLoader, or with ``input.workers=thread`` torchdata nodes (``ThreadLoader``)."""
        self._data()
        dataset = self.datasets[split]
        trainer = self.trainer
        # a pipeline's stages all read the same batches (its strategy has data_shards = 1)
        shards = getattr(trainer.strategy, "data_shards", trainer.world_size) if trainer else 1
        if trainer is not None and shards > 1:
            # each rank reads its own shard; DistributedSampler pads the shards to equal length
            # by repeating a few examples, so that every rank runs the same number of steps
            sampler: Any = DistributedSampler(
                dataset,
                num_replicas=trainer.world_size,
                rank=trainer.global_rank,
                shuffle=shuffle,
                seed=torch.initial_seed() % 2**63,
            )
        elif trainer is not None and trainer.overfit_batches:
            # Lightning overfits on the first batches in order, and swaps any loader whose
            # sampler is not sequential for one that is, which would drop the batch sampler
            # below: a plain sequential loader instead (one or a few batches, speed is moot)
            return DataLoader(
                dataset, batch_size=self.batch_size, shuffle=False, **self.loader.loader_kwargs()
            )
        elif shuffle:
            sampler = RandomSampler(dataset, generator=self.generator)
        else:
            sampler = SequentialSampler(dataset)
        data: Any = dataset
        if shuffle and self.loader.augment:
            from mlx.data.augment import AugmentedBatches, SeededBatchSampler

            # the augmentation seeds are drawn with the indices from the one generator, in
            # the one thread that iterates the sampler: the same draws with 0 or N workers
            data = AugmentedBatches(*dataset.tensors, self.loader)
            batches: Any = SeededBatchSampler(sampler, self.batch_size, False, self.generator)
        else:
            batches = _EpochBatchSampler(sampler, self.batch_size, drop_last=False)
        if self.loader.workers == "thread" and self.loader.num_workers > 0:
            from mlx.data.threads import ThreadLoader

            return ThreadLoader(data, batches, self.loader)
        # batch_size=None: the sampler yields whole index lists and the dataset indexes with them
        return DataLoader(data, batch_size=None, sampler=batches, **self.loader.loader_kwargs())

    def train_dataloader(self) -> Iterable[Any]:
        """Shuffled train batches (the order follows the generator seeded in setup)."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> Iterable[Any]:
        """Validation batches in a fixed order."""
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> Iterable[Any]:
        """Test batches in a fixed order."""
        return self._loader("test", shuffle=False)


def split_indices(
    n: int,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    stratify: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Row numbers of the train, val and test splits, each sorted.

    Args:
        n: number of examples.
        val_fraction: share of ``n`` for validation (rounded to a whole count).
        test_fraction: share of ``n`` for the test.
        seed: seeds the split.
        stratify: class ids to keep class shares equal across splits; None for regression.

    Raises:
        DataConfigError: a split would be empty.
    """
    from sklearn.model_selection import train_test_split

    check_split(val_fraction, test_fraction, n)
    sizes = split_sizes(n, val_fraction, test_fraction)
    n_val, n_test = sizes["val"], sizes["test"]
    rows = np.arange(n)

    def split(labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rest, test = train_test_split(rows, test_size=n_test, random_state=seed, stratify=labels)
        train, val = train_test_split(
            rest,
            test_size=n_val,
            random_state=seed,
            stratify=None if labels is None else labels[rest],
        )
        return train, val, test

    try:
        train, val, test = split(stratify)
    except ValueError as e:
        if stratify is None:
            raise
        # a class with too few examples (or a split smaller than the class count) cannot be
        # stratified; an unstratified split still runs, so warn and use it
        log.warning("cannot stratify the split (%s); splitting without stratification", e)
        train, val, test = split(None)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def _check_loaded(data: Any, source: Any) -> None:
    """Catch a custom source's mistakes here rather than as a shape error deep in training."""
    if not isinstance(data, Loaded):
        raise TypeError(f"{source!r} returned {type(data).__name__}, not mlx.data.Loaded.")
    if data.task not in ("classification", "regression"):
        raise ValueError(
            f"{source!r}: task must be classification or regression, not {data.task!r}."
        )
    n_features, n_target = len(data.features), len(data.target)
    if n_features != n_target:
        raise ValueError(f"{source!r}: {n_features} feature rows but {n_target} targets.")
    if isinstance(data.features, np.ndarray) and data.features.ndim < 2:
        raise ValueError(
            f"{source!r}: image features must be (N, C, H, W), not {data.features.shape}."
        )
