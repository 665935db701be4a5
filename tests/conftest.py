import os

import pytest

# Never touch a hub in tests (a miss costs 24-48 s).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (two threads on a loaded 2-core machine are many times slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
