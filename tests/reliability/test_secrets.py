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
import time
import traceback
import uuid
from datetime import timedelta
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


# ====================================================================== a key that needs care
def key_leaks(texts: list[str], *parts: str) -> list[str]:
    """The texts that show any of ``parts`` (long pieces of a key): none may."""
    return [text for text in texts if any(part in text for part in parts)]


def everything_shown(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> list[str]:
    """All that was printed and logged so far: the task logs of ``dag.test()`` and every record."""
    captured = capfd.readouterr()
    records = [f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records]
    return [captured.out, captured.err, caplog.text, *records]


def imagine_and_wait(harness: Harness, mode: str, **imagine: Any) -> Any:
    """Poke: ImagineOperator -> TaskProgressSensor (requests). Deferrable: one ImagineOperator
    that waits in its trigger (aiohttp)."""
    from airflow_provider_lotimage.operators.imagine import ImagineOperator
    from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor

    with harness.dag(mode) as dag:
        if mode == "deferrable":
            ImagineOperator(
                task_id="imagine",
                prompt="a lighthouse at dawn",
                wait_for_completion=True,
                deferrable=True,
                poll_interval=POKE,
                **imagine,
            )
        else:
            submit = ImagineOperator(task_id="imagine", prompt="a lighthouse at dawn", **imagine)
            TaskProgressSensor(
                task_id="wait", lotimage_task_id=submit.output, poke_interval=POKE, timeout=60, mode="poke"
            )
    return dag


@pytest.mark.parametrize("mode", ["poke", "deferrable"])
@pytest.mark.parametrize("ending", ["\n", "\r\n", "  \t"], ids=["lf", "crlf", "spaces"])
def test_key_read_with_whitespace_works_and_never_shows(
    harness: Harness,
    make_emulator: Any,
    secret_key: str,
    mode: str,
    ending: str,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A key read from a secret file ends in a newline: stripped, it works on both transports, and
    neither it nor its header shows anywhere (``http.client`` used to quote ``b'Bearer <key>\\n'``)."""
    caplog.set_level(logging.DEBUG)
    emulator = make_emulator(key=secret_key, conn_key=f" {secret_key}{ending}")
    run = harness.run(imagine_and_wait(harness, mode))
    harness.assert_succeeded(run)
    assert_paid_calls(emulator, imagine=1)
    assert emulator.stats()["requests"]["progress"] >= 1
    shown = everything_shown(capfd, caplog)
    assert "Submitted LotImage task" in shown[0]
    assert not key_leaks(shown, secret_key)


#: Keys no Authorization header can carry, each built around two long unique halves.
UNUSABLE_KEYS = {
    "inner-crlf": ("{a}\r\nX-Injected: yes{b}", "U+000D", "a control character"),
    "inner-nul": ("{a}\x00{b}", "U+0000", "a control character"),
    "latin-1": ("{a}é{b}", "U+00E9", "a non-ASCII character"),
    "not-latin-1": ("{a}€{b}", "U+20AC", "a non-ASCII character"),
    "inner-space": ("{a} {b}", "U+0020", "a space"),
}


@pytest.mark.parametrize("case", list(UNUSABLE_KEYS))
def test_unusable_key_is_refused_without_showing_it(
    harness: Harness,
    make_emulator: Any,
    case: str,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Refused when read, before anything is sent, by the worker's requests and the trigger's
    aiohttp alike; the error names the character, never the key (nor its escaped form)."""
    import asyncio

    from airflow_provider_lotimage.hooks.lotimage import LotImageHook
    from airflow_provider_lotimage.triggers.task_progress import TaskProgressTrigger

    caplog.set_level(logging.DEBUG)
    template, code, kind = UNUSABLE_KEYS[case]
    halves = (f"sk-lotimage-A-{uuid.uuid4().hex}", f"B-{uuid.uuid4().hex}")
    key = template.format(a=halves[0], b=halves[1])
    emulator = make_emulator(key=f"sk-lotimage-{uuid.uuid4().hex}", conn_key=key)
    errors: list[str] = []
    for mode in ("poke", "deferrable"):
        run = harness.run(imagine_and_wait(harness, mode, retries=2))
        errors.append(harness.assert_failed(run, "imagine"))
        assert harness.tries(run, "imagine") == 1
        failure = harness.failures.pop()
        assert failure.exception is not None
        assert not key_leaks(exception_texts(failure.exception), *halves)
    # The triggerer's own path, as it runs after a deferral: aiohttp reads the same connection.
    trigger = TaskProgressTrigger(
        "0o2f4ja2a1", poll_interval=POKE, end_time=time.time() + 60, first_poll_at=time.time()
    )
    event = asyncio.run(anext(trigger.run()))
    assert event.payload["status"] == "error" and event.payload["error_type"] == "ConnectionConfigError"
    errors.append(event.payload["message"])
    with pytest.raises(Exception) as info:
        asyncio.run(LotImageHook().aget_task_progress("0o2f4ja2a1"))
    assert not key_leaks(exception_texts(info.value), *halves)
    for error in errors:
        assert f"{kind} ({code})" in error and "password field" in error, error
    assert not key_leaks(errors + everything_shown(capfd, caplog), *halves)
    assert emulator.stats()["requests"] == {"imagine": 0, "progress": 0, "button": 0}


# ==================================================================== secrets in prompts
def refused_for_a_secret(harness: Harness, run: Any, task_id: str, secret: str) -> str:
    """The task failed once, before any call, saying a secret was in its text (shown as ***)."""
    error = harness.assert_failed(run, task_id)
    assert "LotImageInputError" in error and "holds a secret that Airflow masks" in error, error
    assert "***" in error and secret not in error
    assert harness.tries(run, task_id) == 1
    return error


@pytest.mark.parametrize(
    "where", ["prompt-conn-password", "prompt-variable", "webhook", "prompt-key-in-data"]
)
def test_rendered_text_holding_a_secret_is_refused_before_any_call(
    harness: Harness,
    secret_emu: Any,
    secret_key: str,
    where: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A prompt read from data and rendered as a template would send the secret to LotImage, and get
    it back unmasked in the result: refused, naming the field, with nothing sent or paid."""
    from airflow.sdk import literal

    from airflow_provider_lotimage.operators.button import ButtonOperator
    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    token = f"tok-{uuid.uuid4().hex}"
    monkeypatch.setenv("AIRFLOW_VAR_BRAND_API_TOKEN", token)  # "token": a name Airflow masks
    secret = token if where == "prompt-variable" else secret_key
    no_retry = {"retries": 2, "retry_delay": timedelta(0)}
    with harness.dag(where) as dag:
        if where == "webhook":
            ButtonOperator(
                task_id="press",
                lotimage_task_id="0o2f4ja2a1",
                button="U1",
                webhook="https://hooks.example.com/{{ conn.lotimage_default.password }}",
                **no_retry,
            )
        else:
            prompt = {
                "prompt-conn-password": "a portrait of {{ conn.lotimage_default.password }}",
                "prompt-variable": "a logo for {{ var.value.brand_api_token }}",
                # The key itself in text from data: literal() is not rendered, but checked all the same.
                "prompt-key-in-data": literal(f"a poster that reads {secret_key}"),
            }[where]
            ImagineOperator(task_id="press", prompt=prompt, **no_retry)
    run = harness.run(dag)
    field = "webhook" if where == "webhook" else "prompt"
    assert refused_for_a_secret(harness, run, "press", secret).startswith(f"LotImageInputError: {field}")
    assert secret_emu.stats()["requests"] == {"imagine": 0, "progress": 0, "button": 0}
    assert secret not in capfd.readouterr().out
    xcoms, rtifs = metadata_rows({dag.dag_id})
    if where == "prompt-key-in-data":
        rtifs = []  # the DAG's own literal text: stored as written (the serialized DAG holds it too)
    for entry in [*xcoms, *rtifs]:
        assert secret not in json.dumps(entry, default=repr), entry


def test_literal_prompt_and_webhook_are_sent_verbatim(
    harness: Harness, secret_emu: Any, secret_key: str, local_server: LocalServer
) -> None:
    """``literal()`` is Airflow's way to pass text holding ``{{``: accepted at parse time, never rendered."""
    from airflow.sdk import literal

    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    prompt = "a neon sign that reads {{ conn.lotimage_default.password }}"
    webhook = f"{local_server.url}/hook?state={{{{not_rendered}}}}"
    with harness.dag() as dag:
        ImagineOperator(task_id="imagine", prompt=literal(prompt), webhook=literal(webhook))
    run = harness.run(dag)
    harness.assert_succeeded(run)
    (task,) = secret_emu.tasks()
    assert (task["prompt"], task["webhook"]) == (prompt, webhook)
    assert secret_key not in json.dumps(secret_emu.tasks())
    assert_paid_calls(secret_emu, imagine=1)


def test_prompts_from_data_never_send_a_secret(harness: Harness, secret_emu: Any, secret_key: str) -> None:
    """Prompts that reach the operator through XCom, plain or mapped, and a mapped literal list.

    Airflow renders the values of a literal ``expand()`` list, but not those that come from XCom:
    the first kind holding a secret is refused, the second is sent as the text it is.
    """
    from airflow.sdk import task

    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    jinja = "{{ conn.lotimage_default.password }}"

    @task
    def read_prompt() -> str:
        return f"a fox reading {jinja}"

    @task
    def read_prompts() -> list[str]:
        return [f"a fox writing {jinja}", "a fox sleeping"]

    with harness.dag() as dag:
        ImagineOperator(task_id="from_xcom", prompt=read_prompt())
        ImagineOperator.partial(task_id="mapped_xcom").expand(prompt=read_prompts())
        ImagineOperator.partial(task_id="mapped_literal", retries=2, retry_delay=timedelta(0)).expand(
            prompt=["a fox running", f"a fox hiding {jinja}"]
        )
    run = harness.run(dag)
    states = {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}
    assert states == {
        ("read_prompt", -1): "success",
        ("read_prompts", -1): "success",
        ("from_xcom", -1): "success",
        ("mapped_xcom", 0): "success",
        ("mapped_xcom", 1): "success",
        ("mapped_literal", 0): "success",
        ("mapped_literal", 1): "failed",
    }, states
    error = str(harness.error("mapped_literal"))
    assert "holds a secret that Airflow masks" in error and secret_key not in error
    assert run.get_task_instance("mapped_literal", map_index=1).try_number == 1
    prompts = sorted(t["prompt"] for t in secret_emu.tasks())
    assert prompts == sorted(
        [f"a fox reading {jinja}", f"a fox writing {jinja}", "a fox sleeping", "a fox running"]
    )
    assert secret_key not in json.dumps(secret_emu.tasks())
    assert_paid_calls(secret_emu, imagine=4)
