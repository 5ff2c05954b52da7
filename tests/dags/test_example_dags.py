"""Every example DAG parses cleanly, and runs end to end under ``dag.test()`` against the emulator."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from PIL import Image

from tests.dags.conftest import EXAMPLE_DAGS

DAG_FILES = sorted(EXAMPLE_DAGS.glob("*.py"))


def test_there_are_example_dags() -> None:
    assert DAG_FILES


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_integrity(path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(path))
    assert not bag.import_errors, bag.import_errors
    assert bag.dags, f"{path.name} defines no DAG"
    for dag in bag.dags.values():
        assert dag.tasks, f"{dag.dag_id} has no tasks"
        assert "lotimage" in dag.tags
        assert dag.description
    # No DAG file reads a key or contacts the service at parse time.
    source = path.read_text()
    assert "password" not in source
    ast.parse(source)


def _pngs(folder: Path) -> list[Path]:
    pictures = sorted(folder.glob("*.png"))
    for picture in pictures:
        with Image.open(picture) as image:
            image.verify()
    return pictures


def test_example_imagine_end_to_end(lotimage_connection, lotimage_emulator, output_dir, load_example) -> None:
    dag = load_example("example_lotimage_imagine")
    run = dag.test()
    assert run.state == "success"
    pictures = _pngs(output_dir)
    assert len(pictures) == 4  # cutting: the four pictures of the grid
    assert len(list(output_dir.glob("*.json"))) == 4
    assert lotimage_emulator.stats()["submissions"] == {"imagine": 1, "button": 0}


def test_example_imagine_deferrable_end_to_end(
    lotimage_connection, lotimage_emulator, output_dir, load_example
) -> None:
    dag = load_example("example_lotimage_imagine_deferrable")
    run = dag.test()
    assert run.state == "success"
    assert len(_pngs(output_dir)) == 4
    assert lotimage_emulator.stats()["submissions"] == {"imagine": 1, "button": 0}


def test_example_upscale_end_to_end(lotimage_connection, lotimage_emulator, output_dir, load_example) -> None:
    """One grid, two upscales of it (mapped over the buttons), one save of all three."""
    import json

    dag = load_example("example_lotimage_upscale")
    run = dag.test()
    assert run.state == "success"
    assert lotimage_emulator.stats()["submissions"] == {"imagine": 1, "button": 2}
    folder = output_dir / "upscale"
    metas = [json.loads(path.read_text(encoding="utf-8")) for path in folder.glob("*.json")]
    tasks = {task["taskId"]: task for task in lotimage_emulator.tasks()}
    assert sorted(tasks[meta["lotimage_task_id"]]["kind"] for meta in metas) == [
        "imagine",
        "upscale",
        "upscale",
    ]
    assert sorted(tasks[m["lotimage_task_id"]].get("button") or "" for m in metas) == ["", "U1", "U4"]
    assert len(list(folder.glob("*.png"))) == 3
