"""SaveImagesOperator's worker SIGKILLed in the middle of a download, on a real local deployment.

A real Airflow (api-server, scheduler with LocalExecutor, DAG processor, triggerer; SQLite) runs
``lotimage_save_faults`` (``dags/lotimage_save_faults.py``): one imagine with cutting, then a save
of its four pictures with ``retries=1``. The emulator sends the first two pictures slowly
(``slow_body``, each spread over several seconds), so the test can SIGKILL the task process while
the second one is arriving: picture 1 is stored, picture 2 half written to its temporary file.

While the run goes on, a watcher lists the destination every few milliseconds and opens every
visible file: each ``.png`` must decode whole with Pillow, each ``.json`` must parse. Then: the
retry completes the store, removes the killed try's temporary file, does not download or rewrite
picture 1 again, and nothing was paid twice.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from lotimage_emulator import Emulator, run_emulator
from lotimage_emulator.pytest_plugin import TEST_API_KEY
from PIL import Image

from airflow_harness import AirflowDeployment

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(600)]

DAGS = Path(__file__).parent / "dags"
DAG_FILE = DAGS / "lotimage_save_faults.py"
DAG_ID = "lotimage_save_faults"
CONN_ID = "lotimage_save_faults"
#: Seconds each slow picture takes from its first to its last byte.
SLOW_SECONDS = 8.0
TEMP_NAME = re.compile(r"^\.(?P<stem>.+?)(?:\.json)?\.part-[0-9a-f]{12}$")


@dataclass
class Watcher:
    """Lists ``folder`` over and over and opens every visible file, recording what it saw."""

    folder: Path
    checked: int = 0
    seen: set[str] = field(default_factory=set)
    temporary: set[str] = field(default_factory=set)
    broken: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            self.scan()
            time.sleep(0.01)
        self.scan()

    def scan(self) -> None:
        try:
            names = [entry.name for entry in os.scandir(self.folder)]
        except FileNotFoundError:
            return
        for name in names:
            if name.startswith("."):
                self.temporary.add(name)
                continue
            self.seen.add(name)
            try:
                data = (self.folder / name).read_bytes()
            except FileNotFoundError:
                continue  # nothing is ever removed here, but be precise about what is checked
            try:
                if name.endswith(".png"):
                    with Image.open(io.BytesIO(data)) as image:
                        image.load()
                elif name.endswith(".json"):
                    json.loads(data)
                self.checked += 1
            except Exception as exc:  # any failure to read is what this watcher exists to catch
                self.broken.append(f"{name} ({len(data)} bytes): {type(exc).__name__}: {exc}")


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    # An imagine of about 2 s; 512 px grids (256 px pictures).
    with run_emulator(keys=(TEST_API_KEY,), time_scale=2 / 45, grid_size=512) as running:
        yield running


@pytest.fixture(scope="module")
def destination(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("save-faults") / "pictures"


@pytest.fixture(scope="module")
def deployment(
    emulator: Emulator, destination: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowDeployment]:
    # A DAGs folder with this test's DAG only: less for the DAG processor to parse on two cores.
    dags = tmp_path_factory.mktemp("save-faults-dags")
    (dags / DAG_FILE.name).write_text(DAG_FILE.read_text())
    env = {
        f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(
            {"conn_type": "lotimage", "host": emulator.url, "password": TEST_API_KEY}
        ),
        "LOTIMAGE_SAVE_FAULTS_DIR": str(destination),
    }
    with AirflowDeployment(dags, env=env) as af:
        yield af


def wait_for(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_worker_killed_mid_download_retry_completes_without_partial_or_duplicate_pictures(
    af: AirflowDeployment, emulator: Emulator, destination: Path
) -> None:
    slow = emulator.add_fault("slow_body", seconds=SLOW_SECONDS, count=2)
    watcher = Watcher(destination)
    watching = threading.Thread(target=watcher.run, daemon=True)
    watching.start()
    try:
        af.wait_for_dag(DAG_ID)
        af.unpause(DAG_ID)
        run_id = af.trigger(DAG_ID)

        # Picture 1 arrived slowly and was stored; picture 2 is arriving (into a temporary file).
        wait_for("the second slow download", lambda: slow.used == 2, timeout=180)
        task_id = json.loads(next(destination.glob("*_1.json")).read_text())["lotimage_task_id"]

        def second_temp() -> list[Path]:
            return [p for p in destination.iterdir() if p.name.startswith(f".{task_id}_2.part-")]

        wait_for(
            "picture 2 to reach its temporary file", lambda: any(p.stat().st_size for p in second_temp()), 30
        )
        time.sleep(SLOW_SECONDS / 4)  # well inside the download, which lasts SLOW_SECONDS
        first = destination / f"{task_id}_1.png"
        first_before = (first.stat().st_ino, first.stat().st_mtime_ns, first.read_bytes())
        sidecar_before = (destination / f"{task_id}_1.json").read_text()

        (save,) = [ti for ti in af.task_instances(DAG_ID, run_id) if ti.task_id == "save"]
        assert save.pid is not None and save.try_number == 1, save
        assert save.pid in af.service_pids("scheduler"), "the save's task process runs under the scheduler"
        os.kill(save.pid, signal.SIGKILL)
        (left_over,) = second_temp()
        left_size = left_over.stat().st_size
        assert sorted(p.name for p in destination.iterdir() if not p.name.startswith(".")) == [
            f"{task_id}_1.json",
            f"{task_id}_1.png",
        ]

        result = af.wait_for_run(DAG_ID, run_id, timeout=240)
    finally:
        watcher.stop.set()
        watching.join(10)

    assert result.ok, result
    assert result.task_states == {"imagine": "success", "save": "success"}
    (save,) = [ti for ti in af.task_instances(DAG_ID, run_id) if ti.task_id == "save"]
    assert save.try_number == 2
    assert [ti.state for ti in af.task_instance_history(DAG_ID, run_id) if ti.task_id == "save"] == ["failed"]

    # Never a partial picture where a user looks, at any moment of the run.
    assert watcher.broken == [], watcher.broken
    assert watcher.checked > 0 and left_over.name in watcher.temporary
    # The store is complete: four pictures, four sidecars; the killed try's temporary file is gone.
    final = sorted(p.name for p in destination.iterdir())
    assert final == sorted(f"{task_id}_{n}.{ext}" for n in (1, 2, 3, 4) for ext in ("json", "png"))
    picture_2 = (destination / f"{task_id}_2.png").stat().st_size
    assert 0 < left_size < picture_2, "the kill landed in the middle of picture 2's download"
    # No picture stored twice: picture 1 was neither downloaded nor rewritten by the retry.
    assert (first.stat().st_ino, first.stat().st_mtime_ns, first.read_bytes()) == first_before
    assert (destination / f"{task_id}_1.json").read_text() == sidecar_before
    for n in (1, 2, 3, 4):
        meta = json.loads((destination / f"{task_id}_{n}.json").read_text())
        assert meta["bytes"] == (destination / f"{task_id}_{n}.png").stat().st_size
    stats = emulator.stats()
    # Downloads: 1 and half of 2 by the killed try, then 2, 3 and 4 by the retry.
    assert stats["events"]["image_requests"] == 5, stats["events"]
    assert stats["events"]["slow_bodies"] == 2
    retry_log = "\n".join(p.read_text(errors="replace") for p in af.task_log_files(DAG_ID, run_id, "save"))
    assert "Removed 1 temporary file(s) a killed earlier try left" in retry_log
    # Paid calls received = paid calls asked: one imagine, never resent.
    assert stats["submissions"] == {"imagine": 1, "button": 0}
    assert stats["requests"]["imagine"] == 1
