from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.compression.digits_tools import digits


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine two threads spin against each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    return digits()
