"""The API key never leaves the Authorization header of API calls.

DAG runs that succeed and that fail (a bad request after auth, an ambiguous submit) use a long,
distinctive key, then everything the runs left behind is searched for it: the files under
AIRFLOW_HOME (task logs, if ``dag.test()`` wrote any, and the metadata DB itself), everything
written to stdout/stderr and to the logging system, the XComs and rendered template fields of the
runs, and the text, repr and traceback of every exception raised. Each search also checks that it
looked at the right material (a positive control), so an empty haystack cannot pass.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from .conftest import POKE, assert_paid_calls

if TYPE_CHECKING:
    from .conftest import Harness, LocalServer


@pytest.fixture
def secret_key() -> str:
    """Long and unique: Airflow's masker ignores short secrets, and a uuid cannot occur by chance."""
    return f"sk-lotimage-SECRET-{uuid.uuid4().hex}"


@pytest.fixture
def secret_emu(make_emulator: Any, secret_key: str) -> Any:
    return make_emulator(key=secret_key)


def exception_texts(exc: BaseException) -> list[str]:
    """str, repr, attributes and formatted traceback of ``exc`` and every exception it chains."""
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), repr(vars(current)), repr(current.args)]
        stack += [current.__cause__, current.__context__]  # type: ignore[list-item]
    texts.append("".join(traceback.format_exception(exc)))
    return texts


def metadata_rows(dag_ids: set[str]) -> tuple[list[Any], list[Any]]:
    """(XCom values, rendered template fields) of the given DAGs, read from the metadata DB."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        xcoms = session.scalars(select(XComModel).where(XComModel.dag_id.in_(dag_ids))).all()
        rtifs = session.scalars(
            select(RenderedTaskInstanceFields).where(RenderedTaskInstanceFields.dag_id.in_(dag_ids))
        ).all()
        return (
            [(x.dag_id, x.task_id, x.key, x.value) for x in xcoms],
            [(r.dag_id, r.task_id, r.rendered_fields) for r in rtifs],
        )


def test_key_never_leaks_from_dag_runs(
    harness: Harness,
    secret_emu: Any,
    secret_key: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from airflow_provider_lotimage.operators.imagine import ImagineOperator
    from airflow_provider_lotimage.operators.save_images import SaveImagesOperator
    from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor

    caplog.set_level(logging.DEBUG)
    # 1. a run that succeeds: imagine, wait, download and store the pictures.
    with harness.dag("ok") as ok_dag:
        imagine = ImagineOperator(task_id="imagine", prompt="a lighthouse at dawn", cutting=True)
        wait = TaskProgressSensor(
            task_id="wait", lotimage_task_id=imagine.output, poke_interval=POKE, timeout=60
        )
        SaveImagesOperator(task_id="save", result=wait.output, destination=(tmp_path / "out").as_uri())
    ok = harness.run(ok_dag)
    harness.assert_succeeded(ok)
    # 2. a bad request after auth succeeded: the banned prompt.
    with harness.dag("banned") as banned_dag:
        ImagineOperator(task_id="imagine", prompt="a lighthouse, nsfw")
    banned = harness.run(banned_dag)
    assert "Banned prompt detected" in harness.assert_failed(banned, "imagine")
    # 3. an ambiguous submit: the answer to imagine is lost after the task was created.
    secret_emu.add_fault("drop_connection", endpoint="imagine", after_processing=True)
    with harness.dag("ambiguous") as ambiguous_dag:
        ImagineOperator(task_id="imagine", prompt="a lighthouse at dusk")
    ambiguous = harness.run(ambiguous_dag)
    assert str(ambiguous.state) == "failed"
    assert "may have created a paid LotImage task" in str(harness.failures[-1].exception)
    assert_paid_calls(secret_emu, imagine=2, imagine_sent=3)
    dag_ids = {ok_dag.dag_id, banned_dag.dag_id, ambiguous_dag.dag_id}
    key = secret_key.encode()

    # Files under AIRFLOW_HOME: task logs (dag.test() runs tasks in-process and logs to stdout, so
    # there may be none) and the metadata DB, read raw: whatever was stored, the key is not in it.
    home = Path(os.environ["AIRFLOW_HOME"])
    files = [path for path in home.rglob("*") if path.is_file()]
    db_files = [path for path in files if path.name.startswith("airflow.db")]
    assert db_files, files
    assert any(ok_dag.dag_id.encode() in path.read_bytes() for path in db_files)  # the runs are there
    for path in files:
        assert key not in path.read_bytes(), path

    # Everything printed (the task logs of dag.test() go to stdout) and every log record.
    captured = capfd.readouterr()
    printed = captured.out + captured.err
    assert "Submitted LotImage task" in printed and "Banned prompt detected" in printed
    assert secret_key not in printed
    assert caplog.records
    for record in caplog.records:
        text = f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        assert secret_key not in text, record
    assert secret_key not in caplog.text

    # XComs and rendered template fields of the three runs.
    xcoms, rtifs = metadata_rows(dag_ids)
    assert any(entry[2] == "lotimage_task_id" for entry in xcoms)
    assert any(entry[1] == "save" for entry in xcoms)
    assert any("a lighthouse at dawn" in json.dumps(entry[2]) for entry in rtifs)
    for entry in [*xcoms, *rtifs]:
        assert secret_key not in json.dumps(entry, default=repr), entry

    # Every exception the failed tasks raised, with its chain.
    assert [failure.task_id for failure in harness.failures] == ["imagine", "imagine"]
    for failure in harness.failures:
        assert failure.exception is not None
        for text in exception_texts(failure.exception):
            assert secret_key not in text


def test_hook_repr_settings_and_download_session_carry_no_key(
    secret_emu: Any, secret_key: str, local_server: LocalServer
) -> None:
    from airflow_provider_lotimage.exceptions import TaskNotFoundError
    from airflow_provider_lotimage.hooks.lotimage import LotImageHook

    hook = LotImageHook()
    with pytest.raises(TaskNotFoundError) as info:  # a real call: settings read, API session built
        hook.get_task_progress("no-such-task")
    for text in exception_texts(info.value):
        assert secret_key not in text
    settings = hook.settings
    assert settings.api_key == secret_key  # the key is there, only never shown
    for text in (repr(hook), str(hook), repr(settings), str(settings), repr(vars(hook))):
        assert secret_key not in text, text
    assert secret_key not in repr(hook.get_conn().auth)

    session = hook.get_download_session()
    assert session.auth is None
    assert "Authorization" not in session.headers
    assert secret_key not in repr(dict(session.headers))
    picture_url = f"{local_server.url}/attachments/1/2/grid.png"
    prepared = session.prepare_request(requests.Request("GET", picture_url))
    assert "Authorization" not in prepared.headers
    session.get(picture_url, timeout=5).close()
    (download,) = local_server.seen("GET")
    assert "Authorization" not in download.headers
    assert secret_key not in repr(download.headers)
    assert secret_emu.stats()["requests"] == {"imagine": 0, "progress": 1, "button": 0}
