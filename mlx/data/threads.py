"""``input.workers=thread``: batches built by worker threads, with torchdata's nodes.

The pipeline is torchdata's own nodes, chained: the batch sampler (iterated in one thread, so
its draws from the data module's generator come in the same order as with a DataLoader) ->
``ParallelMapper`` (``num_workers`` threads build the batches; ``in_order=True`` keeps the
sampler's order) -> ``PinMemory`` (with ``pin_memory`` and a GPU) -> ``Prefetcher``
(``prefetch_factor`` batches per worker, as a DataLoader counts them) -> ``Loader``.

Threads share the training process's memory: no copy of the data set per worker and no start-up
cost, but Python code in a transform holds the GIL, so threads pay off when the work releases
it (torch operations, file reads). ``persistent_workers`` has no effect: threads are restarted
each epoch, which costs well under a millisecond.

This module imports torch and torchdata; ``mlx.data.datamodule`` imports it when threads are
asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torchdata.nodes import IterableWrapper, Loader, ParallelMapper, PinMemory, Prefetcher

from mlx.data.sources import LoaderSettings

# a DataLoader's prefetch_factor when workers are set and it is not
DEFAULT_PREFETCH = 2


class ThreadLoader:
    """Batches of ``dataset`` indexed by ``batch_sampler``'s items, built by worker threads.

    Like a DataLoader with ``batch_size=None``: each item of ``batch_sampler`` (a list of
    indices, or whatever ``dataset`` is indexed with) gives one batch, ``dataset[item]``.
    It has a length, and a ``batch_sampler`` attribute through which Lightning sets the
    epoch of a distributed sampler. It keeps no random state of its own: the order is the
    sampler's, and is restored by restoring the sampler's generator.

    Args:
        dataset: indexed with the batch sampler's items.
        batch_sampler: yields one item per batch.
        settings: ``num_workers`` (>= 1), ``prefetch_factor`` and ``pin_memory`` are used.
    """

    def __init__(self, dataset: Any, batch_sampler: Any, settings: LoaderSettings) -> None:
        self.dataset = dataset
        self.batch_sampler = batch_sampler
        # IterableWrapper rather than SamplerWrapper: the epoch of a distributed sampler is
        # Lightning's to set (as with a DataLoader), not a counter of torchdata's
        node: Any = IterableWrapper(batch_sampler)
        node = ParallelMapper(
            node, dataset.__getitem__, settings.num_workers, in_order=True, method="thread"
        )
        if settings.pin_memory and torch.cuda.is_available():
            node = PinMemory(node)
        per_worker = settings.prefetch_factor or DEFAULT_PREFETCH
        node = Prefetcher(node, prefetch_factor=per_worker * settings.num_workers)
        # composed, not subclassed: a Loader has state_dict(), which Lightning would save in
        # checkpoints as the loader's position; the data module's generator is the one state
        self._loader = Loader(node)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._loader)

    def __len__(self) -> int:
        return len(self.batch_sampler)
