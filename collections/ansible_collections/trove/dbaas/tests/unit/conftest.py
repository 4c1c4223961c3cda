from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Make `ansible_collections.trove.dbaas` importable: put the `collections` dir on sys.path.
_COLLECTIONS_DIR = next(p for p in Path(__file__).resolve().parents if p.name == "collections")
if str(_COLLECTIONS_DIR) not in sys.path:
    sys.path.insert(0, str(_COLLECTIONS_DIR))


@pytest.fixture(autouse=True)
def _private_trove_home(tmp_path, monkeypatch):
    """Keep the controller's real TROVE_HOME (keys, secrets) out of unit tests."""
    monkeypatch.setenv("TROVE_HOME", str(tmp_path / "trove-home"))
