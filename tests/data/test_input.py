"""The input group: image augmentations (effects, determinism with workers) and bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_lightning import seed_everything

from mlx.data import ArrayDataModule, DataConfigError, Digits, LoaderSettings, SklearnTabular
from mlx.data.augment import noise, rotate, shift
from tests.config.test_bad_input import check_error

# ---------------------------------------------------------------------------------------------
# each augmentation's effect


def _images() -> torch.Tensor:
    return torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) + 1.0  # in [1, 2)


def test_shift_moves_pixels_and_fills_zeros() -> None:
    x = _images()
    out = shift(x, 2, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    # every value is an original pixel of the same image or the zero fill
    for a, b in zip(x, out, strict=True):
        assert set(b.unique().tolist()) <= set(a.unique().tolist()) | {0.0}
    # some images moved (they have zero fill), by at most 2 pixels (a 4x4 centre stays filled)
    assert (out == 0).any()
    assert (out[:, :, 2:6, 2:6] > 0).all()
    assert torch.equal(shift(x, 0, torch.Generator()), x)


def test_rotate_keeps_shape_and_range() -> None:
    x = _images()
    out = rotate(x, 30.0, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    assert not torch.allclose(out, x)
    assert out.min() >= 0.0 and out.max() <= x.max() + 1e-5  # bilinear with zero fill
    # the centre of an image is interpolated from its own pixels, never from the fill
    assert (out[:, :, 3:5, 3:5] >= 1.0 - 1e-5).all()
    assert torch.allclose(rotate(x, 1e-9, torch.Generator()), x, atol=1e-5)


def test_noise_has_the_asked_std() -> None:
    x = torch.zeros(64, 1, 28, 28)
    out = noise(x, 0.3, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    assert abs(out.std().item() - 0.3) < 0.01 and abs(out.mean().item()) < 0.01


# ---------------------------------------------------------------------------------------------
# determinism of order and draws, with 0 or 2 workers


def _train_batches(
    seed: int, workers: int, kind: str = "process", epochs: int = 2, augment: bool = True
) -> list[torch.Tensor]:
    settings = LoaderSettings(
        num_workers=workers,
        prefetch_factor=2 if workers else None,
        augment=["shift", "rotate", "noise"] if augment else [],
        workers=kind,  # type: ignore[arg-type]
    )
    dm = ArrayDataModule(Digits(), batch_size=256, loader=settings)
    seed_everything(seed, verbose=False)
    dm.setup("fit")
    batches = []
    for _ in range(epochs):
        loader = dm.train_dataloader()
        assert len(loader) == 5  # type: ignore[arg-type]
        threaded = kind == "thread" and workers > 0
        assert type(loader).__name__ == ("ThreadLoader" if threaded else "DataLoader")
        for x, y in loader:
            batches += [x, y.float()]
    return batches


@pytest.fixture(scope="module")
def serial() -> list[torch.Tensor]:
    return _train_batches(seed=3, workers=0)


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_same_seed_same_batches_with_workers(serial: list[torch.Tensor], kind: str) -> None:
    assert len(serial) == 2 * 2 * 5  # 2 epochs of 5 batches of 256 (x and y)
    with_workers = _train_batches(seed=3, workers=2, kind=kind)
    assert len(with_workers) == len(serial)
    assert all(torch.equal(a, b) for a, b in zip(serial, with_workers, strict=True))
    # the two epochs differ (order and draws)
    assert not torch.equal(serial[0], serial[10])


def test_same_order_without_augmentations_with_threads() -> None:
    plain = _train_batches(seed=5, workers=0, epochs=2, augment=False)
    threads = _train_batches(seed=5, workers=2, kind="thread", epochs=2, augment=False)
    assert all(torch.equal(a, b) for a, b in zip(plain, threads, strict=True))
    assert not torch.equal(plain[1], plain[11])  # each epoch its own order


def test_run_with_threads_augmentations_and_disk_cache(make_cfg, tmp_path: Path) -> None:
    from mlx import run as mlx_run
    from mlx.record import read_record

    overrides = [
        "input=threads",
        "input.cache=disk",
        f"input.cache_dir={tmp_path / 'cache'}",
        "input.augment=[shift,noise]",
        "debug=limit",  # 2 epochs: the thread loader is iterated twice
    ]
    assert mlx_run.main(make_cfg(overrides)) >= 0
    rec = read_record(tmp_path / "run")
    assert rec.status == "completed" and len(rec.history) == 2
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1


def test_other_seed_other_batches(serial: list[torch.Tensor]) -> None:
    other = _train_batches(seed=4, workers=0, epochs=1)
    assert not torch.equal(serial[0], other[0])
    threads = _train_batches(seed=4, workers=2, kind="thread", epochs=1)
    assert all(torch.equal(a, b) for a, b in zip(other, threads, strict=True))


def test_only_train_is_augmented() -> None:
    plain = ArrayDataModule(Digits(), batch_size=256)
    augmented = ArrayDataModule(Digits(), batch_size=256, loader=LoaderSettings(augment=["noise"]))
    for dm in (plain, augmented):
        seed_everything(0, verbose=False)
        dm.setup("fit")
    for split in ("val_dataloader", "test_dataloader"):
        a, b = next(iter(getattr(plain, split)())), next(iter(getattr(augmented, split)()))
        assert torch.equal(a[0], b[0])
    a, b = next(iter(plain.train_dataloader())), next(iter(augmented.train_dataloader()))
    assert a[0].shape == b[0].shape and not torch.equal(a[0], b[0])


# ---------------------------------------------------------------------------------------------
# bad input


def test_unknown_augmentation_did_you_mean() -> None:
    with pytest.raises(DataConfigError, match="unknown augmentation 'shfit'.*Did you mean 'shift'"):
        LoaderSettings(augment=["shfit"])
    with pytest.raises(DataConfigError, match="must be a list"):
        LoaderSettings(augment="shift")  # type: ignore[arg-type]
    with pytest.raises(DataConfigError, match="noise must be a number >= 0"):
        LoaderSettings(augment=["noise"], noise=-1.0)


def test_image_augmentation_on_a_table_in_setup() -> None:
    settings = LoaderSettings(augment=["shift"])
    dm = ArrayDataModule(SklearnTabular("breast_cancer"), batch_size=32, loader=settings)
    with pytest.raises(DataConfigError, match="needs image data"):
        dm.setup("fit")


def test_cli_bad_input(tmp_path: Path) -> None:
    check_error(
        ["data=breast_cancer", "model=mlp", "input.augment=[shift]"],
        "input.augment=['shift']",
        "need image data",
        cwd=tmp_path,
    )
    check_error(["input.augment=[nosie]"], "unknown augmentation 'nosie'", "'noise'", cwd=tmp_path)
    check_error(
        ["input.num_workers=0", "input.prefetch_factor=2"], "prefetch_factor needs", cwd=tmp_path
    )
    check_error(["input=threads", "input.num_workers=-1"], "num_workers", ">= 0", cwd=tmp_path)
    check_error(
        ["input.persistent_workers=true"], "persistent_workers needs num_workers", cwd=tmp_path
    )
    check_error(["input.workers=thraed"], "input.workers", "Did you mean 'thread'?", cwd=tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    check_error(
        ["input.cache=disk", f"input.cache_dir={blocker / 'cache'}"],
        "cache_dir",
        "is under a file",
        cwd=tmp_path,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing written


# ---------------------------------------------------------------------------------------------
# the disk cache


class CountingDigits(Digits):
    """Digits that counts its loads (the expensive, cached part)."""

    calls = 0

    def __call__(self):  # type: ignore[override]
        CountingDigits.calls += 1
        return super().__call__()


def _cached(folder: Path, **kwargs: object) -> ArrayDataModule:
    dm = ArrayDataModule(
        CountingDigits(),
        batch_size=256,
        loader=LoaderSettings(cache="disk", cache_dir=str(folder)),
        **kwargs,  # type: ignore[arg-type]
    )
    dm.setup("fit")
    return dm


def test_disk_cache_hit_reuses_and_changes_invalidate(tmp_path: Path) -> None:
    CountingDigits.calls = 0
    first = _cached(tmp_path)
    assert CountingDigits.calls == 1 and len(list(tmp_path.glob("*.pt"))) == 1
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind
    again = _cached(tmp_path)
    assert CountingDigits.calls == 1  # a hit: nothing recomputed
    for split in ("train", "val", "test"):
        for a, b in zip(first.datasets[split].tensors, again.datasets[split].tensors, strict=True):
            assert torch.equal(a, b)
    assert again.channel_stats == first.channel_stats and again.task == "classification"
    # another encoding (transform config) and another split (data config) are misses
    _cached(tmp_path, standardize=True)
    assert CountingDigits.calls == 2
    _cached(tmp_path, split_seed=7)
    assert CountingDigits.calls == 3 and len(list(tmp_path.glob("*.pt"))) == 3


class _Planted:
    """A pickle that, when unpickled by a full unpickler, creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.path,))


def test_disk_cache_never_runs_a_planted_pickle(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import pickle

    CountingDigits.calls = 0
    first = _cached(tmp_path / "cache")
    (entry,) = (tmp_path / "cache").glob("*.pt")
    marker = tmp_path / "marker"
    # the entry replaced by a malicious pickle, then by a truncated file: each is a miss that is
    # logged, recomputed and replaced atomically, and nothing in the planted file runs
    for planted in (pickle.dumps(_Planted(marker)), entry.read_bytes()[:100]):
        entry.write_bytes(planted)
        with caplog.at_level("WARNING", logger="mlx.data.cache"):
            again = _cached(tmp_path / "cache")
        assert "cannot be used" in caplog.text and "recomputing" in caplog.text
        caplog.clear()
        assert not marker.exists()
        assert torch.equal(again.datasets["train"].tensors[0], first.datasets["train"].tensors[0])
    assert CountingDigits.calls == 3
    # the rewritten entry is whole again: a hit
    _cached(tmp_path / "cache")
    assert CountingDigits.calls == 3 and not marker.exists()
    assert not list((tmp_path / "cache").glob(".*.tmp"))
    # the planted pickle would have run under a full unpickler (the test's own check)
    pickle.loads(pickle.dumps(_Planted(marker)))
    assert marker.exists()


def test_disk_cache_hit_on_a_table(tmp_path: Path) -> None:
    settings = LoaderSettings(cache="disk", cache_dir=str(tmp_path))
    made, read = (
        ArrayDataModule(SklearnTabular("wine"), batch_size=32, loader=settings) for _ in range(2)
    )
    made.setup("fit")
    read.setup("fit")  # a hit
    assert read.describe() == made.describe()
    assert read.num_outputs == made.num_outputs == 3
    assert read.preprocessor is None and made.preprocessor is not None  # not cached
    for split in ("train", "val", "test"):
        assert np.array_equal(read.indices[split], made.indices[split])


def test_cache_dir_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataConfigError, match="under a file"):
        LoaderSettings(cache="disk", cache_dir=str(blocker / "cache"))
    with pytest.raises(DataConfigError, match="Did you mean 'disk'"):
        LoaderSettings(cache="dsik")  # type: ignore[arg-type]
    with pytest.raises(DataConfigError, match="workers must be 'process' or 'thread'.*'thread'"):
        LoaderSettings(workers="threads")  # type: ignore[arg-type]
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        if not os.access(locked, os.W_OK):  # root can write anywhere
            with pytest.raises(DataConfigError, match="cannot be written"):
                LoaderSettings(cache="disk", cache_dir=str(locked / "cache"))
    finally:
        locked.chmod(0o700)
