import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test model is tiny: one thread is faster than two, and on a busy 2-core machine OpenMP's
    spinning barriers made them up to ~30x slower (measured 0.05 s vs 1.5 s per codec training step)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
