"""Pure-ML tests: plain pytest functions on tiny arrays, no Django fixtures.

The project-wide conftest has an autouse fixture that needs pytest-django's
``settings``; these tests touch no media, so it is replaced here by a no-op,
which lets this folder run with ``-p no:django`` too.
"""
import pytest


@pytest.fixture(autouse=True)
def _media_root():
    yield


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors gain nothing from threads, and on a busy machine spinning
    OpenMP threads make them many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
