"""The batch, daily and asset-consumer examples, run with ``dag.test()`` against the emulator.

``dag.test()`` runs task instances one at a time and each deferred trigger inline, so the
8-prompt batch makes its 40 paid calls one after another; that keeps it under the emulator's
3 calls/s (the real service's limit), which the batch test keeps on purpose to show zero 429s.

Pools: ``dag.test()`` does not check pool slots (nor that the pool exists), so the ``lotimage``
pool the batch DAG asks for is not created here; the DAG's docstring says how to create it.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pytest
from lotimage_emulator import render
from lotimage_emulator.pytest_plugin import TEST_DEFAULTS
from PIL import Image

from airflow_provider_lotimage.storage.images import split_grid
from tests.batch.faults import BANNED, FILTERED, fail_while_rendering, stall
from tests.dags.conftest import EXAMPLE_DAGS

if TYPE_CHECKING:
    from collections.abc import Callable

    from lotimage_emulator import Emulator

GRID_SIZE: int = TEST_DEFAULTS["grid_size"]
UPSCALE_SIZE = GRID_SIZE // 2
PROMPTS_FILE = EXAMPLE_DAGS / "prompts" / "batch_prompts.txt"
DAILY_ASSET_NAME = "lotimage_daily_pictures"


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_serialized_dags(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let ``dag.test()`` store the DAGs as this test parsed them.

    The examples read ``$LOTIMAGE_OUTPUT_DIR`` at parse time and every test has its own, so the
    asset URIs differ from test to test; by default Airflow keeps a serialized DAG written less
    than 30 s ago, and the tasks would then run with the previous test's outlets.
    """
    monkeypatch.setenv("AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL", "0")


def use_emulator(emulator: Emulator, api_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point ``lotimage_default`` at ``emulator``, as the ``lotimage_connection`` fixture does."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_LOTIMAGE_DEFAULT",
        json.dumps({"conn_type": "lotimage", "host": emulator.url, "password": api_key}),
    )


def file_prompts() -> list[str]:
    lines = (line.strip() for line in PROMPTS_FILE.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``folder``: (size, mtime_ns, sha256), to prove a rerun touched nothing."""
    return {
        str(path.relative_to(folder)): (
            path.stat().st_size,
            path.stat().st_mtime_ns,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def sidecars(folder: Path) -> dict[str, dict[str, Any]]:
    """The sidecars of ``folder`` by picture file name (the batch report beside them left out)."""
    paths = [path for path in sorted(folder.glob("*.json")) if not path.name.startswith("batch-report.")]
    metas = [json.loads(path.read_text(encoding="utf-8")) for path in paths]
    return {meta["file"]: meta for meta in metas}


def check_picture(folder: Path, meta: dict[str, Any], size: int) -> bytes:
    """The picture is a valid PNG of ``size`` px square and its sidecar describes it exactly."""
    picture = folder / meta["file"]
    data = picture.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        assert image.size == (size, size), meta["file"]
    assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    assert (meta["width"], meta["height"], meta["format"]) == (size, size, "PNG")
    assert meta["bytes"] == len(data)
    assert picture.name == f"{meta['lotimage_task_id']}_{meta['index']}.png"
    assert (folder / f"{picture.stem}.json").is_file()
    return data


def task_states(dag_id: str, run_id: str, task_id: str) -> list[str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id
            )
        )
        return sorted(str(ti.state) for ti in tis)


def asset_events(name: str, run_id: str) -> list[dict[str, Any]]:
    """The events of the asset called ``name`` emitted by DAG run ``run_id`` (asset URI, extra)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.uri, AssetEvent)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.name == name, AssetEvent.source_run_id == run_id)
        ).all()
        return [
            {
                "uri": uri,
                "extra": dict(event.extra),
                "timestamp": event.timestamp,
                "task": event.source_task_id,
            }
            for uri, event in rows
        ]


def release_asset_name(name: str, uri: str) -> None:
    """Deactivate an asset of the same name but another URI (left by an earlier test's folder).

    Airflow activates a new asset only if no active one has its name; the scheduler's orphanage
    pass, which retires unreferenced ones, does not run under ``dag.test()``.
    """
    from airflow.models.asset import AssetActive
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        session.execute(delete(AssetActive).where(AssetActive.name == name, AssetActive.uri != uri))


# -- the batch ----------------------------------------------------------------------------------


def test_batch_dag_stores_every_grid_and_upscale_once(
    lotimage_emulator_factory: Callable[..., Emulator],
    lotimage_api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    output_dir: Path,
    load_example: Callable[[str], Any],
) -> None:
    """8 prompts -> 8 grids + 32 upscales with exact sidecars; a second run pays and stores nothing."""
    emulator = lotimage_emulator_factory()  # the real service's 3 calls/s
    use_emulator(emulator, lotimage_api_key, monkeypatch)
    prompts = file_prompts()
    assert len(prompts) == 8
    dag = load_example("example_lotimage_batch")
    paid_steps = ("batch.imagine", "batch.U1", "batch.U2", "batch.U3", "batch.U4")
    assert {dag.get_task(t).pool for t in paid_steps} == {"lotimage"}

    run = dag.test()
    assert run.state == "success"

    stats = emulator.stats()
    assert stats["submissions"] == {"imagine": 8, "button": 32}
    assert stats["rate_limited"] == 0
    assert "429" not in stats["answers"]
    assert stats["events"]["image_requests"] == 40  # each picture downloaded exactly once

    # (1) 8 grids and 32 upscales, each a valid PNG with a sidecar that describes it.
    batch = output_dir / "batch"
    metas = sidecars(batch)
    assert len(metas) == 40
    assert len(list(batch.glob("*.png"))) == 40
    tasks = {task["taskId"]: task for task in emulator.tasks()}
    grids = {
        m["lotimage_task_id"]: m for m in metas.values() if tasks[m["lotimage_task_id"]]["kind"] == "imagine"
    }
    upscales = [m for m in metas.values() if tasks[m["lotimage_task_id"]]["kind"] == "upscale"]
    assert len(grids) == 8
    assert len(upscales) == 32
    assert sorted(m["prompt"] for m in grids.values()) == sorted(prompts)
    pictures: dict[str, bytes] = {}
    for task_id, meta in grids.items():
        pictures[task_id] = check_picture(batch, meta, GRID_SIZE)
        assert (meta["index"], meta["split_from_grid"]) == (0, False)
    for meta in upscales:
        pictures[meta["lotimage_task_id"]] = check_picture(batch, meta, UPSCALE_SIZE)
        parent = tasks[meta["lotimage_task_id"]]["parentId"]
        assert meta["originating_task_id"] == parent
        assert parent in grids
        assert meta["prompt"] == grids[parent]["prompt"]

    # (3) The local split of each grid gives its quadrants in order; U<n> shows quadrant n.
    for task_id in grids:
        quadrants = split_grid(pictures[task_id])
        assert [render.identify_quadrant(q, task_id) for q in quadrants] == [1, 2, 3, 4]
    buttons_by_parent: dict[str, list[str]] = {task_id: [] for task_id in grids}
    for meta in upscales:
        task = tasks[meta["lotimage_task_id"]]
        quadrant = int(task["button"].removeprefix("U"))
        assert render.identify_quadrant(pictures[task["taskId"]], task["parentId"]) == quadrant
        local = split_grid(pictures[task["parentId"]])[quadrant - 1]
        assert render.identify_quadrant(local, task["parentId"]) == quadrant
        buttons_by_parent[task["parentId"]].append(task["button"])
    assert all(sorted(buttons) == ["U1", "U2", "U3", "U4"] for buttons in buttons_by_parent.values())

    # (2) A second run of the same prompts: nothing paid, downloaded or written.
    before = snapshot(output_dir)
    again = dag.test()
    assert again.state == "success"
    assert again.run_id != run.run_id
    assert task_states(dag.dag_id, again.run_id, "batch.imagine") == ["skipped"]
    # Only the rerun's own report (nothing to render) is new beside the pictures.
    from airflow_provider_lotimage.storage.layout import report_name

    written = snapshot(output_dir)
    assert written.pop(f"batch/{report_name(again.run_id)}")
    assert written == before
    assert batch_report_file(output_dir / "batch", again.run_id)["prompts"] == 0
    after = emulator.stats()
    assert after["submissions"] == {"imagine": 8, "button": 32}
    assert after["events"]["image_requests"] == 40
    assert after["rate_limited"] == 0


def test_batch_dag_prompts_param_replaces_the_file(
    lotimage_emulator_factory: Callable[..., Emulator],
    lotimage_api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    output_dir: Path,
    load_example: Callable[[str], Any],
) -> None:
    emulator = lotimage_emulator_factory(rate_limit=20.0)  # not about the rate: run fast
    use_emulator(emulator, lotimage_api_key, monkeypatch)
    dag = load_example("example_lotimage_batch")

    run = dag.test(run_conf={"prompts": ["  A red kite over a windy beach  "]})
    assert run.state == "success"
    assert emulator.stats()["submissions"] == {"imagine": 1, "button": 4}
    assert {task["prompt"] for task in emulator.tasks()} == {"A red kite over a windy beach"}
    assert len(sidecars(output_dir / "batch")) == 5


# -- a batch whose prompts fail -------------------------------------------------------------------

#: Six prompts: the emulator rejects the second at submission (a banned word), fails the third while
#: rendering and stalls the fourth; the other three must come out whole.
FAULTY_PROMPTS = [
    "A red kite over a windy beach",
    "An nsfw owl in a library",
    "A lighthouse in a storm, oil painting",
    "A castle made of glass at dawn",
    "A fox reading a newspaper",
    "A tram in the rain at night",
]
REJECTED, FAILED, STALLED = 1, 2, 3
HEALTHY = (0, 4, 5)


def batch_report_file(folder: Path, run_id: str) -> dict[str, Any]:
    from airflow_provider_lotimage.storage.layout import report_name

    return json.loads((folder / report_name(run_id)).read_text(encoding="utf-8"))


def run_xcom(dag_id: str, run_id: str, task_id: str, key: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalars(
            select(XComModel).where(
                XComModel.dag_id == dag_id,
                XComModel.run_id == run_id,
                XComModel.task_id == task_id,
                XComModel.key == key,
            )
        ).first()
        assert row is not None, (task_id, key)
        value = row.value
        return json.loads(value) if isinstance(value, str) else value


def no_paid_task_twice(emulator: Emulator) -> None:
    tasks = emulator.tasks()
    imagined = [task["prompt"] for task in tasks if task["kind"] == "imagine"]
    pressed = [(task["parentId"], task["button"]) for task in tasks if task["kind"] != "imagine"]
    assert len(imagined) == len(set(imagined)), imagined
    assert len(pressed) == len(set(pressed)), pressed


def test_batch_survives_a_rejected_a_failed_and_a_stalled_prompt_and_a_rerun_pays_only_for_them(
    lotimage_emulator_factory: Callable[..., Emulator],
    lotimage_api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    output_dir: Path,
    load_example: Callable[[str], Any],
) -> None:
    """Every healthy prompt's grid and four upscales are stored; the report names the three failures.

    The run fails (no tolerance). A rerun of the batch, with the faults gone and a tolerance of one
    failed prompt, renders only the prompts that are missing: the banned one is refused again (the
    run still succeeds, reporting it), the two others are paid for once more and stored; nothing
    stored is downloaded again.
    """
    emulator = lotimage_emulator_factory(rate_limit=20.0)
    use_emulator(emulator, lotimage_api_key, monkeypatch)
    monkeypatch.setenv("LOTIMAGE_STALL_TIMEOUT", "3")
    fail_while_rendering(emulator, "lighthouse")
    stall(emulator, "castle")
    dag = load_example("example_lotimage_batch")

    run = dag.test(run_conf={"prompts": FAULTY_PROMPTS, "skip_stored": True})
    assert run.state == "failed"
    imagine_states = task_states(dag.dag_id, run.run_id, "batch.imagine")
    assert imagine_states == ["failed"] * 3 + ["success"] * 3
    for button in ("U1", "U2", "U3", "U4"):
        states = task_states(dag.dag_id, run.run_id, f"batch.{button}")
        assert states == ["success"] * 3 + ["upstream_failed"] * 3, (button, states)
    assert task_states(dag.dag_id, run.run_id, "batch.save") == ["failed"] * 3 + ["success"] * 3
    assert task_states(dag.dag_id, run.run_id, "batch_report") == ["failed"]

    # The healthy prompts: a grid and its four upscales each, valid pictures, exact sidecars.
    batch = output_dir / "batch"
    metas = sidecars(batch)
    assert len(metas) == 15
    tasks = {task["taskId"]: task for task in emulator.tasks()}
    grids = {
        m["lotimage_task_id"]: m for m in metas.values() if tasks[m["lotimage_task_id"]]["kind"] == "imagine"
    }
    assert sorted(m["prompt"] for m in grids.values()) == sorted(FAULTY_PROMPTS[i] for i in HEALTHY)
    for meta in metas.values():
        task = tasks[meta["lotimage_task_id"]]
        check_picture(batch, meta, GRID_SIZE if task["kind"] == "imagine" else UPSCALE_SIZE)
        if task["kind"] != "imagine":
            assert task["parentId"] in grids
    stats = emulator.stats()
    assert stats["submissions"] == {"imagine": 5, "button": 12}  # the banned prompt was never created
    assert stats["events"]["image_requests"] == 15
    no_paid_task_twice(emulator)

    # The report: in the log's XCom, in the file beside the pictures, the same.
    report = batch_report_file(batch, run.run_id)
    assert report == run_xcom(dag.dag_id, run.run_id, "batch_report", "lotimage_batch_report")
    assert (report["prompts"], report["succeeded"], report["failed"]) == (6, 3, 3)
    assert (report["within_tolerance"], report["paid_tasks"], report["pictures_stored"]) == (False, 17, 15)
    entries = report["entries"]
    assert [entry["prompt"] for entry in entries] == FAULTY_PROMPTS
    for index in HEALTHY:
        entry = entries[index]
        assert (entry["state"], entry["failures"], entry["paid_tasks"]) == ("succeeded", [], 5)
        assert sorted(entry["lotimage_task_ids"]) == ["U1", "U2", "U3", "U4", "imagine"]
        assert len(entry["stored"]) == entry["new_pictures"] == 5
        assert all(Path(urlparse(path).path).is_file() for path in entry["stored"])
    reasons = {index: entries[index]["failures"][0] for index in (REJECTED, FAILED, STALLED)}
    assert reasons[REJECTED]["error"] == "InvalidRequestError"
    assert BANNED in reasons[REJECTED]["reason"]
    assert reasons[FAILED]["error"] == "TaskFailedError"
    assert FILTERED in reasons[FAILED]["reason"]
    assert reasons[STALLED]["error"] == "TaskStalledError" and "stalled" in reasons[STALLED]["reason"]
    for index in (REJECTED, FAILED, STALLED):
        entry = entries[index]
        assert entry["state"] == "failed" and entry["stored"] == []
        assert {f["step"] for f in entry["failures"][1:]} == {"U1", "U2", "U3", "U4"}
        assert entry["paid_tasks"] == (0 if index == REJECTED else 1)
    assert lotimage_api_key not in json.dumps(report)

    # A rerun of the batch, faults gone, one failed prompt tolerated: only the missing prompts run.
    emulator.clear_faults()
    monkeypatch.setenv("LOTIMAGE_MAX_FAILED_PROMPTS", "1")
    dag = load_example("example_lotimage_batch")
    before = snapshot(batch)
    again = dag.test(run_conf={"prompts": FAULTY_PROMPTS, "skip_stored": True})
    assert again.state == "success"
    after = emulator.stats()
    assert after["submissions"] == {"imagine": 7, "button": 20}  # 2 grids and their 8 upscales more
    assert after["events"]["image_requests"] == 15 + 10
    first_run = set(tasks)
    new_grids = [t for t in emulator.tasks() if t["taskId"] not in first_run and t["kind"] == "imagine"]
    assert sorted(t["prompt"] for t in new_grids) == sorted(FAULTY_PROMPTS[i] for i in (FAILED, STALLED))
    unchanged = {name: facts for name, facts in snapshot(batch).items() if name in before}
    assert unchanged == before, "nothing stored was written again"
    rerun = batch_report_file(batch, again.run_id)
    assert [entry["prompt"] for entry in rerun["entries"]] == [FAULTY_PROMPTS[i] for i in (1, 2, 3)]
    assert (rerun["succeeded"], rerun["failed"], rerun["within_tolerance"]) == (2, 1, True)
    assert rerun["paid_tasks"] == 10 and rerun["new_pictures"] == 10
    assert BANNED in rerun["entries"][0]["failures"][0]["reason"]
    assert len(sidecars(batch)) == 25


# -- the daily DAG and its asset consumer ---------------------------------------------------------


@pytest.fixture
def run_daily(
    lotimage_connection: str, output_dir: Path, load_example: Callable[[str], Any]
) -> Callable[[str], Any]:
    """``run_daily("2026-01-02")``: one successful run of the daily DAG for that day.

    Each test uses its own day: ``dag.test()`` replaces an earlier run of the same logical date.
    """

    def run(day: str) -> Any:
        dag = load_example("example_lotimage_daily")
        asset = dag.get_task("save").asset
        assert (asset.name, asset.uri) == (DAILY_ASSET_NAME, (output_dir / "daily").as_uri())
        release_asset_name(asset.name, asset.uri)
        dag_run = dag.test(logical_date=datetime.fromisoformat(day).replace(tzinfo=UTC))
        assert dag_run.state == "success"
        return dag_run

    return run


def test_daily_dag_writes_a_dated_folder_and_emits_an_asset_event(
    run_daily: Callable[[str], Any], lotimage_emulator: Emulator, output_dir: Path
) -> None:
    daily_run = run_daily("2026-01-02")
    assert lotimage_emulator.stats()["submissions"] == {"imagine": 1, "button": 0}
    folder = output_dir / "daily" / "2026-01-02"
    assert (
        sorted(p.relative_to(output_dir).parts[:2] for p in output_dir.rglob("*.png"))
        == [("daily", "2026-01-02")] * 4
    )
    metas = sidecars(folder)
    assert len(metas) == 4
    for meta in metas.values():
        check_picture(folder, meta, UPSCALE_SIZE)  # cutting: the four quadrants of the grid
        assert meta["prompt"] == "A watercolour postcard of the sea on 2026-01-02"
    assert sorted(m["index"] for m in metas.values()) == [1, 2, 3, 4]

    events = asset_events(DAILY_ASSET_NAME, daily_run.run_id)
    assert len(events) == 1
    (event,) = events
    assert event["uri"] == (output_dir / "daily").as_uri()
    assert event["task"] == "save"
    assert event["extra"]["new_count"] == 4
    assert event["extra"]["unchanged_count"] == 0
    assert sorted(event["extra"]["new_paths"]) == sorted((folder / name).as_uri() for name in metas)


def read_sheet(path: Path) -> tuple[Image.Image, int, list[str]]:
    with Image.open(path) as image:
        image.load()
        info = dict(image.text)  # type: ignore[attr-defined]
    return image, int(info["lotimage:thumbnails"]), json.loads(info["lotimage:sources"])


def check_sheet(path: Path, consumer: dict[str, Any], grid_id: str) -> None:
    """Four thumbnails, in cells where the layout says, showing quadrants 1..4 of the grid."""
    image, count, sources = read_sheet(path)
    assert image.format == "PNG"
    assert count == 4
    assert sources == [f"{grid_id}_{n}.png" for n in (1, 2, 3, 4)]
    right, bottom = consumer["thumbnail_box"](3, 4)[2:]
    assert image.size == (
        right + consumer["PADDING"],
        bottom + consumer["CAPTION_HEIGHT"] + consumer["PADDING"],
    )
    for position in range(4):
        cell = image.crop(consumer["thumbnail_box"](position, 4))
        assert render.identify_quadrant(cell, grid_id) == position + 1


def test_asset_consumer_makes_a_contact_sheet_of_the_new_pictures(
    run_daily: Callable[[str], Any],
    lotimage_emulator: Emulator,
    output_dir: Path,
    load_example: Callable[[str], Any],
) -> None:
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    daily_run = run_daily("2026-01-03")
    (grid,) = [task["taskId"] for task in lotimage_emulator.tasks()]
    sheets = output_dir / "contact_sheets"
    dag = load_example("example_lotimage_asset_consumer")
    task = dag.get_task("contact_sheet")
    consumer = task.python_callable.__globals__  # the module the DagBag loaded: its layout helpers

    # Started by hand (no triggering events): scans for sidecars newer than the last sheet.
    run = dag.test()
    assert run.state == "success"
    (sheet,) = sheets.glob("*.png")
    check_sheet(sheet, consumer, grid)

    # Nothing is newer than that sheet now: the next manual run writes none.
    again = dag.test()
    assert again.state == "success"
    assert task_states(dag.dag_id, again.run_id, "contact_sheet") == ["skipped"]
    assert list(sheets.glob("*.png")) == [sheet]

    # Triggered by the daily run's real asset event: its extra names the new pictures.
    (event,) = asset_events(DAILY_ASSET_NAME, daily_run.run_id)
    reference = AssetEventDagRunReferenceResult.model_validate(
        {
            "asset": {"name": DAILY_ASSET_NAME, "uri": event["uri"], "extra": {}},
            "extra": event["extra"],
            "source_task_id": "save",
            "source_dag_id": "example_lotimage_daily",
            "source_run_id": daily_run.run_id,
            "source_map_index": -1,
            "source_aliases": [],
            "timestamp": event["timestamp"],
        }
    )
    written = task.python_callable(
        triggering_asset_events=TriggeringAssetEventsAccessor.build([reference]),
        run_id="asset_triggered__2026-01-03",
    )
    assert written == str(sheets / "contact_sheet_asset_triggered__2026-01-03.png")
    check_sheet(Path(written), consumer, grid)
