"""The fault matrix: one small DAG per fault, run with ``dag.test()`` against the emulator.

Three groups, as in docs/reliability.md (same row names):

* recover: the fault is absorbed and the DAG succeeds;
* fail fast: the run fails in the task at fault, promptly, and its error names the cause;
* never pay twice: after an ambiguous failure of ``imagine`` nothing is resent, not even by
  Airflow's retries, and the error says how to find the task that may exist.

Every row ends with :func:`assert_paid_calls`: the ``imagine``/``button`` calls the emulator
received and the paid tasks it created are exactly those the DAG asked for.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from .conftest import POKE, assert_no_calls, assert_paid_calls

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import Harness, LocalServer

PROMPT = "An owl with cat ears hanging on a tree"
NO_DELAY = timedelta(seconds=0)
#: Time scale for rows that must see a task while it runs: an imagine of about 3 s, so the sensor
#: polls it several times even on a slow machine.
SLOW = 3.0 / 45.0
#: An imagine of 8 s: long enough for a sensor that starts late on a loaded machine to see its steps.
STEPPED = 8.0 / 45.0


def imagine_wait_dag(
    harness: Harness,
    *,
    save_to: Path | None = None,
    imagine: dict[str, Any] | None = None,
    wait: dict[str, Any] | None = None,
    save: dict[str, Any] | None = None,
    button: str | None = None,
) -> Any:
    """ImagineOperator -> TaskProgressSensor (poke) [-> ButtonOperator] [-> SaveImagesOperator]."""
    from airflow_provider_lotimage.operators.button import ButtonOperator
    from airflow_provider_lotimage.operators.imagine import ImagineOperator
    from airflow_provider_lotimage.operators.save_images import SaveImagesOperator
    from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor

    with harness.dag() as dag:
        submit = ImagineOperator(task_id="imagine", prompt=PROMPT, **(imagine or {}))
        sensor = TaskProgressSensor(
            task_id="wait",
            lotimage_task_id=submit.output,
            poke_interval=POKE,
            timeout=60,
            mode="poke",
            **(wait or {}),
        )
        last = sensor
        if button is not None:
            last = ButtonOperator(
                task_id="press",
                lotimage_task_id=sensor.output,
                button=button,
                wait_for_completion=True,
                deferrable=False,
                poll_interval=POKE,
            )
        if save_to is not None:
            SaveImagesOperator(
                task_id="save", result=last.output, destination=save_to.as_uri(), **(save or {})
            )
    return dag


def answers(emulator: Any, endpoint: str) -> dict[str, int]:
    return emulator.stats()["answers_by_endpoint"].get(endpoint, {})


def fired(emulator: Any, kind: str) -> int:
    return sum(rule["used"] for rule in emulator.faults() if rule["kind"] == kind)


# =============================================================================== recover
@pytest.mark.parametrize("retry_after", [1.0, None], ids=["retry-after", "no-retry-after"])
def test_429_burst_is_waited_out(harness: Harness, emu: Any, retry_after: float | None) -> None:
    """Three 429s on the paid imagine call: resent (429 proves nothing was created), one task paid."""
    emu.add_fault("http_429", endpoint="imagine", count=3, retry_after=retry_after)
    run = harness.run(imagine_wait_dag(harness))
    harness.assert_succeeded(run)
    assert answers(emu, "imagine") == {"429": 3, "200": 1}
    submit = run.get_task_instance("imagine")
    assert (submit.end_date - submit.start_date).total_seconds() >= 3  # it waited between tries
    assert_paid_calls(emu, imagine=1, imagine_sent=4)


@pytest.mark.parametrize(
    ("kind", "params", "label"),
    [
        ("http_status", {"status": 500}, "500"),
        ("http_status", {"status": 503}, "503"),
        ("drop_connection", {}, "dropped"),
    ],
    ids=["http-500", "http-503", "dropped-connection"],
)
def test_progress_transient_failure_is_retried(
    harness: Harness, emu: Any, kind: str, params: dict[str, Any], label: str
) -> None:
    """Two failed task/progress reads in a row: reads are always safe to resend."""
    emu.add_fault(kind, endpoint="progress", count=2, **params)
    run = harness.run(imagine_wait_dag(harness))
    harness.assert_succeeded(run)
    assert answers(emu, "progress")[label] == 2
    assert harness.xcom(run, "wait")["progress"] == 100
    assert_paid_calls(emu, imagine=1)


def test_malformed_progress_body_is_retried(harness: Harness, emu: Any) -> None:
    """One task/progress answer cut in half (not JSON): read again."""
    emu.add_fault("malformed_json", endpoint="progress", count=1)
    run = harness.run(imagine_wait_dag(harness))
    harness.assert_succeeded(run)
    assert answers(emu, "progress")["malformed"] == 1
    assert_paid_calls(emu, imagine=1)


@pytest.mark.parametrize("mirror", [True, False], ids=["mirrors-body", "always-200"])
def test_http_status_style(harness: Harness, emu: Any, mirror: bool) -> None:
    """429 on imagine, 503 on progress and on button, with the HTTP status mirroring the body or not.

    Either way the client reads the failure (from the HTTP status, or from the body's ``status``
    under HTTP 200), waits, resends the paid calls (429 and 503 prove nothing was created).
    """
    emu.set_config(mirror_http_status=mirror)
    emu.add_fault("http_429", endpoint="imagine", count=1, retry_after=1.0, body_only=not mirror)
    emu.add_fault("http_status", endpoint="progress", status=503, count=1, body_only=not mirror)
    emu.add_fault("http_status", endpoint="button", status=503, count=1, body_only=not mirror)
    run = harness.run(imagine_wait_dag(harness, button="U1"))
    harness.assert_succeeded(run)
    upscale = harness.xcom(run, "press")
    assert upscale["originating_task_id"] == harness.xcom(run, "wait")["lotimage_task_id"]
    statuses = set(emu.stats()["http_statuses"])
    assert statuses == ({"200", "429", "503"} if mirror else {"200"})
    assert_paid_calls(emu, imagine=1, button=1, imagine_sent=2, button_sent=2)


def test_preview_url_is_not_taken_for_the_result(harness: Harness, emu: Any, tmp_path: Path) -> None:
    """imageUrl holds a preview while progress < 100: the sensor waits, the final picture is saved."""
    emu.set_config(time_scale=SLOW)
    emu.add_fault("preview_url")  # every unfinished progress answer carries a preview
    out = tmp_path / "pictures"
    run = harness.run(imagine_wait_dag(harness, save_to=out))
    harness.assert_succeeded(run)
    result = harness.xcom(run, "wait")
    images = emu.engine.tasks[result["lotimage_task_id"]].images
    assert fired(emu, "preview_url") >= 1 and "preview" in images  # the sensor did see a preview
    assert result["progress"] == 100
    assert images["grid"] in result["image_url"] and images["preview"] not in result["image_url"]
    (sidecar,) = out.glob("*.json")
    assert images["grid"] in json.loads(sidecar.read_text())["source_url"]
    assert_paid_calls(emu, imagine=1)


@pytest.mark.parametrize("fmt", ["percent_string", "float"], ids=["percent-string", "float"])
def test_progress_format_is_normalised(
    harness: Harness, emu: Any, fmt: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """progress as "45%" or 45.5: read as whole percents, the task still finishes at 100.

    An imagine of 8 s: the sensor starts a few seconds after the submission on a loaded machine,
    and must still see the steps before the end.
    """
    emu.set_config(time_scale=STEPPED)
    emu.add_fault("progress_format", format=fmt)
    run = harness.run(imagine_wait_dag(harness))
    harness.assert_succeeded(run)
    result = harness.xcom(run, "wait")
    assert result["progress"] == 100
    line = re.compile(rf"LotImage task {result['lotimage_task_id']}: (\d+)%")
    logged = {int(p) for p in line.findall(capfd.readouterr().out)}
    assert logged & {15, 31, 46, 62, 78, 93}, logged  # intermediate steps were parsed, not rejected
    assert fired(emu, "progress_format") >= 2
    assert_paid_calls(emu, imagine=1)


def test_lost_webhook_falls_back_to_polling(harness: Harness, emu: Any, local_server: LocalServer) -> None:
    """The webhook delivery is lost: the sensor's polling still finishes the DAG."""
    emu.add_fault("drop_webhooks")
    webhook = f"{local_server.url}/lotimage-hook"
    run = harness.run(imagine_wait_dag(harness, imagine={"webhook": webhook}))
    harness.assert_succeeded(run)
    deadline = time.monotonic() + 5
    while emu.stats()["webhooks"]["suppressed"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert emu.stats()["webhooks"] == {"attempted": 0, "succeeded": 0, "failed": 0, "suppressed": 1}
    assert [task["webhook"] for task in emu.tasks()] == [webhook]
    assert local_server.seen("POST") == []
    assert_paid_calls(emu, imagine=1)


# ============================================================================= fail fast
def test_bad_key_fails_at_once(harness: Harness, make_emulator: Any) -> None:
    """401 on imagine: AuthError, no Airflow retry, the wrong key not echoed."""
    wrong = "sk-lotimage-WRONG-0123456789abcdef"
    emulator = make_emulator(conn_key=wrong)
    run = harness.run(imagine_wait_dag(harness, imagine={"retries": 2, "retry_delay": NO_DELAY}))
    error = harness.assert_failed(run, "imagine")
    assert "AuthError" in error and "Key verification failed" in error
    assert wrong not in error and wrong not in repr(harness.error("imagine"))
    assert harness.tries(run, "imagine") == 1
    assert harness.states(run)["wait"] == "upstream_failed"
    assert_paid_calls(emulator, imagine=0, imagine_sent=1)


def test_banned_prompt_fails_at_once(harness: Harness, emu: Any) -> None:
    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    with harness.dag() as dag:
        ImagineOperator(task_id="imagine", prompt="a teapot, nsfw", retries=2, retry_delay=NO_DELAY)
    run = harness.run(dag)
    error = harness.assert_failed(run, "imagine")
    assert "InvalidRequestError" in error and "Banned prompt detected" in error
    assert harness.tries(run, "imagine") == 1
    assert_paid_calls(emu, imagine=0, imagine_sent=1)


def test_failed_task_fails_with_err_message(harness: Harness, emu: Any) -> None:
    """The LotImage task fails at 31 % with an errMessage: the sensor fails quoting it."""
    emu.add_fault("fail_task", err_message="Request cancelled due to output filters", progress=31)
    run = harness.run(imagine_wait_dag(harness))
    error = harness.assert_failed(run, "wait", "imagine")
    task_id = harness.xcom(run, "imagine")
    assert "Request cancelled due to output filters" in error and task_id in error
    assert_paid_calls(emu, imagine=1)


def test_stalled_task_fails_after_stall_timeout(harness: Harness, emu: Any) -> None:
    """Progress stops at 93 %: the sensor gives up after stall_timeout, long before its timeout."""
    emu.add_fault("stall", progress=93)
    started = time.monotonic()
    run = harness.run(imagine_wait_dag(harness, wait={"stall_timeout": 1.5}))
    elapsed = time.monotonic() - started
    error = harness.assert_failed(run, "wait", "imagine")
    assert "stalled at 93%" in error and "stall timeout 1.5 s" in error
    assert elapsed < 30  # the sensor's own timeout is 60 s
    assert_paid_calls(emu, imagine=1)


def test_daily_quota_spent_fails_at_once(harness: Harness, make_emulator: Any) -> None:
    """A quota of one call a day: imagine spends it, the first progress read gets 403."""
    emulator = make_emulator(daily_quota=1)
    run = harness.run(imagine_wait_dag(harness, wait={"retries": 2, "retry_delay": NO_DELAY}))
    error = harness.assert_failed(run, "wait", "imagine")
    assert "QuotaExhaustedError" in error and "Daily request limit reached" in error
    assert harness.tries(run, "wait") == 1
    assert emulator.stats()["requests"]["progress"] == 1
    assert_paid_calls(emulator, imagine=1)


def test_expired_picture_link_fails_save(harness: Harness, make_emulator: Any, tmp_path: Path) -> None:
    """Every link has expired (403) by the time SaveImagesOperator downloads it, the fresh one too."""
    emulator = make_emulator(image_ttl_seconds=0.001)
    out = tmp_path / "pictures"
    run = harness.run(imagine_wait_dag(harness, save_to=out))
    error = harness.assert_failed(run, "save", "imagine", "wait")
    assert "answered HTTP 403" in error and "expired" in error
    assert "The fresh link read from LotImage failed too" in error
    # The first link, then the fresh one the save read the task for (one read more than the wait's).
    assert emulator.stats()["events"]["image_expired"] == 2
    assert not out.exists() or not any(out.iterdir())
    assert_paid_calls(emulator, imagine=1)


def test_expired_picture_link_is_renewed_once_and_the_picture_stored(
    harness: Harness, make_emulator: Any, tmp_path: Path
) -> None:
    """The grid's link expires between the wait and the save: the save reads the task once for a
    fresh link (the contract's renewal) and stores the picture; the sidecar names the fresh link."""
    from airflow.sdk import task

    from airflow_provider_lotimage.operators.save_images import SaveImagesOperator

    emulator = make_emulator()
    out = tmp_path / "pictures"
    dag = imagine_wait_dag(harness)

    @task(task_id="age_links", dag=dag)
    def age_links() -> None:
        emulator.set_config(image_ttl_seconds=1.0)  # every link issued more than 1 s ago is expired
        time.sleep(1.3)

    aged = age_links()
    dag.get_task("wait") >> aged
    save = SaveImagesOperator(
        task_id="save", result=dag.get_task("wait").output, destination=out.as_uri(), dag=dag
    )
    aged >> save
    run = harness.run(dag)
    harness.assert_succeeded(run)
    stats = emulator.stats()
    assert stats["events"]["image_expired"] == 1  # the old link once; the fresh one worked
    result = harness.xcom(run, "wait")
    sidecar = json.loads(next(out.glob("*.json")).read_text(encoding="utf-8"))
    assert sidecar["lotimage_task_id"] == result["lotimage_task_id"]
    assert sidecar["source_url"] != result["image_url"]  # the picture came from the fresh link
    assert len(list(out.glob("*.png"))) == 1
    assert_paid_calls(emulator, imagine=1)


def test_picture_over_size_cap_fails_save(harness: Harness, emu: Any, tmp_path: Path) -> None:
    out = tmp_path / "pictures"
    run = harness.run(imagine_wait_dag(harness, save_to=out, save={"max_bytes": 1024}))
    error = harness.assert_failed(run, "save", "imagine", "wait")
    assert "max_bytes=1024" in error
    assert not out.exists() or not any(out.iterdir())
    assert_paid_calls(emu, imagine=1)


def test_download_that_is_not_a_picture_fails_save(
    harness: Harness, emu: Any, local_server: LocalServer, tmp_path: Path
) -> None:
    """The picture URL answers 200 with an HTML page (a CDN error page, a captive portal)."""
    from airflow_provider_lotimage.operators.save_images import SaveImagesOperator

    url = f"{local_server.url}/attachments/1/2/grid.png?ex=SIGNATURE"
    result = {"lotimage_task_id": "0o2f4ja2a1-ka2e-ow1c-br93-9al9ad2", "image_url": url, "progress": 100}
    out = tmp_path / "pictures"
    with harness.dag() as dag:
        SaveImagesOperator(task_id="save", result=result, destination=out.as_uri())
    run = harness.run(dag)
    error = harness.assert_failed(run, "save")
    assert "is not a picture" in error and "/attachments/1/2/grid.png" in error
    assert "SIGNATURE" not in error  # signed query strings are never quoted
    (download,) = local_server.seen("GET")
    assert "Authorization" not in download.headers
    assert not out.exists() or not any(out.iterdir())
    assert_no_calls(emu)


def test_progress_100_without_image_url_fails(harness: Harness, emu: Any) -> None:
    emu.add_fault("no_image_url")
    run = harness.run(imagine_wait_dag(harness))
    error = harness.assert_failed(run, "wait", "imagine")
    assert "100% progress but no imageUrl" in error
    assert_paid_calls(emu, imagine=1)


def test_unknown_task_id_fails_sensor(harness: Harness, emu: Any) -> None:
    """TaskProgressSensor on a taskId LotImage does not know: 404, the sensor fails at once."""
    from airflow_provider_lotimage.sensors.task_progress import TaskProgressSensor

    with harness.dag() as dag:
        TaskProgressSensor(task_id="wait", lotimage_task_id="no-such-task", poke_interval=POKE, timeout=60)
    run = harness.run(dag)
    error = harness.assert_failed(run, "wait")
    assert emu.stats()["requests"]["progress"] == 1
    assert_paid_calls(emu, imagine=0)
    assert "TaskNotFoundError" in repr(harness.error("wait")) and "Task not found" in error
    assert "no-such-task" in error  # which task was not found: the part that fails today


# ======================================================================= never pay twice
@pytest.mark.parametrize(
    ("fault", "extra", "cause"),
    [
        ({"kind": "delay", "seconds": 3.0}, {"timeout": 1}, "read timeout"),
        ({"kind": "drop_connection"}, None, "connection to LotImage broke"),
    ],
    ids=["read-timeout", "connection-reset"],
)
def test_ambiguous_submit_is_never_resent(
    harness: Harness, make_emulator: Any, fault: dict[str, Any], extra: dict[str, Any] | None, cause: str
) -> None:
    """imagine reached the emulator (a task exists) but its answer was lost: no second imagine.

    ``retries=2`` on the task: the provider raises AirflowFailException, so Airflow does not
    retry either, and the error says where to look for the task.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_lotimage.exceptions import AmbiguousSubmitError

    emulator = make_emulator(extra=extra)
    emulator.add_fault(fault.pop("kind"), endpoint="imagine", after_processing=True, **fault)
    run = harness.run(imagine_wait_dag(harness, imagine={"retries": 2, "retry_delay": NO_DELAY}))
    deadline = time.monotonic() + 10  # let the delayed answer go out (to nobody) before teardown
    while not answers(emulator, "imagine") and time.monotonic() < deadline:
        time.sleep(0.05)
    error = harness.assert_failed(run, "imagine")
    exception = harness.error("imagine")
    assert isinstance(exception, AirflowFailException)
    assert isinstance(exception.__cause__, AmbiguousSubmitError)
    assert harness.tries(run, "imagine") == 1
    assert harness.states(run)["wait"] == "upstream_failed"
    assert cause in error
    assert "may have created a paid LotImage task" in error and "not sent again" in error
    assert "follow it with TaskProgressSensor(lotimage_task_id=...)" in error
    # ... and "look for a task created around <time>": the time is that of the task that exists.
    (task,) = emulator.tasks()
    around = re.search(r"created around (\S+) in your LotImage account", error)
    assert around is not None
    created = datetime.fromisoformat(task["createdAt"].replace("Z", "+00:00"))
    assert abs(datetime.fromisoformat(around.group(1)) - created) < timedelta(seconds=30)
    assert_paid_calls(emulator, imagine=1)
