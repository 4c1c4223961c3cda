from __future__ import annotations

import sys
from pathlib import Path

# Make `ansible_collections.trove.dbaas` importable: put the `collections` dir on sys.path.
_COLLECTIONS_DIR = next(p for p in Path(__file__).resolve().parents if p.name == "collections")
if str(_COLLECTIONS_DIR) not in sys.path:
    sys.path.insert(0, str(_COLLECTIONS_DIR))
