"""What the tests of several processes share: one launcher per module."""

from __future__ import annotations

import pytest

from ..distributed_children import Launcher


@pytest.fixture(scope="module")
def launcher():
    """A server that forks groups of training processes (``distributed_children.py serve``)."""
    server = Launcher()
    yield server
    server.close()
