"""Where the example DAGs live; their fixtures (``output_dir``, ``load_example``) are in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"
