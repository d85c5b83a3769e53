"""Reference data the tests share, kept in the repository so a clean clone can test.

``STONE_SAMPLES``: real outputs of a Stone prover and cairo-lang 0.14.0.1 (copied from the
team's field reference; see its README.md for how they were made and what they show).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STONE_SAMPLES = ROOT / "tests" / "vectors" / "stone-samples"
