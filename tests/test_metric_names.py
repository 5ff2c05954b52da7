"""docs/metrics.md lists exactly the metrics the code defines, and every name is Airflow-safe."""

from __future__ import annotations

import re
from pathlib import Path

from airflow_provider_lotimage.client import metric_names

DOC = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"


def documented_names() -> list[str]:
    """Return the first cell of each row of the table (the names, in backquotes)."""
    return re.findall(r"^\| `(lotimage\.[^`]+)` \|", DOC.read_text(), flags=re.MULTILINE)


def test_the_table_lists_every_name_once_and_nothing_else() -> None:
    names = documented_names()
    assert len(names) == len(set(names))
    assert set(names) == metric_names.ALL_NAMES


def test_all_names_holds_every_name_the_module_defines() -> None:
    defined = {
        value
        for key, value in vars(metric_names).items()
        if key.isupper()
        and key != "PREFIX"
        and isinstance(value, str)
        and value.startswith(metric_names.PREFIX)
    }
    assert defined == metric_names.ALL_NAMES


def test_names_and_tag_values_are_what_statsd_and_airflow_accept() -> None:
    # Airflow's stat name rule: ASCII letters, digits, "_", "." and "-"; tags add "," and "=".
    for name in metric_names.ALL_NAMES:
        assert re.fullmatch(r"lotimage\.[a-z_.]+", name), name
    for value in (*metric_names.OUTCOMES, *metric_names.REASONS):
        assert re.fullmatch(r"[a-z0-9_]+", value), value
