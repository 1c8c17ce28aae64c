"""Tests by subject (the algorithm's own tests are test_vpd.py at the top): the repository's modules are imported
from its root, offline."""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    """The tiny randomly initialised Qwen2-architecture model and its locally trained tokenizer."""
    import plumbing
    return plumbing.build_tiny(0)
