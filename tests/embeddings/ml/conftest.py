"""Pure-ML tests: plain pytest functions on tiny arrays, no Django fixtures.

They run with or without pytest-django.  Without it (``-p no:django``), the
project-wide autouse fixtures still ask for pytest-django's ``settings``; a
stand-in takes what they set, since nothing here reads Django settings.
"""

import sys
import types

import pytest

if "pytest_django.plugin" not in sys.modules:

    @pytest.fixture
    def settings():
        return types.SimpleNamespace()


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors gain nothing from threads, and on a busy machine spinning
    OpenMP threads make them many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
