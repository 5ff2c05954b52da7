"""Bad input is refused before any call to LotImage, with an error that names the parameter.

Twice over: at DAG parse time (the operator's constructor) when the value is already known, and at
run time, after rendering, for templated values. Either way the emulator must see no request at
all: a mistake must never spend the API budget.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_lotimage.client.contract import MAX_PROMPT_LENGTH, REROLL_BUTTON

from .conftest import POKE, LocalServer, assert_no_calls

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import Harness

TASK_ID = "0o2f4ja2a1-ka2e-ow1c-br93-9al9ad2"
#: U+1F503 "clockwise arrows", beside the reroll button's U+1F504; and the reroll with an emoji
#: variation selector (U+FE0F) appended, as some keyboards type it.
LOOKALIKE = "\U0001f503"
REROLL_WITH_SELECTOR = REROLL_BUTTON + "\ufe0f"


def _imagine(**kwargs: Any) -> Any:
    from airflow_provider_lotimage.operators.imagine import ImagineOperator

    return ImagineOperator(task_id="imagine", **{"prompt": "a teapot", **kwargs})


def _button(button: str, **kwargs: Any) -> Any:
    from airflow_provider_lotimage.operators.button import ButtonOperator

    return ButtonOperator(task_id="press", lotimage_task_id=TASK_ID, button=button, **kwargs)


def _save(destination: str) -> Any:
    from airflow_provider_lotimage.operators.save_images import SaveImagesOperator

    result = {"lotimage_task_id": TASK_ID, "image_url": "http://127.0.0.1:9/x.png"}
    return SaveImagesOperator(task_id="save", result=result, destination=destination)


# ====================================================================== DAG parse time
PARSE_TIME_CASES = [
    pytest.param(lambda tmp: _imagine(prompt=""), "prompt is empty", id="empty-prompt"),
    pytest.param(lambda tmp: _imagine(prompt=" \t\n "), "prompt is empty", id="blank-prompt"),
    pytest.param(
        lambda tmp: _imagine(prompt="x" * (MAX_PROMPT_LENGTH + 1)),
        f"prompt has {MAX_PROMPT_LENGTH + 1} characters; "
        f"LotImage prompts may have at most {MAX_PROMPT_LENGTH}",
        id="prompt-over-limit",
    ),
    pytest.param(
        lambda tmp: _imagine(webhook="ftp://hooks.example.com/lotimage"),
        "webhook must be an http(s) URL",
        id="webhook-not-http",
    ),
    pytest.param(lambda tmp: _imagine(cutting="true"), "cutting must be True or False", id="cutting-string"),
    pytest.param(
        lambda tmp: _button("U1", cutting="true"), "cutting must be True or False", id="button-cutting-string"
    ),
    pytest.param(lambda tmp: _button("U5"), "button 'U5' is not a LotImage button", id="unknown-button"),
    pytest.param(lambda tmp: _button("u1"), "button 'u1' is not a LotImage button", id="button-wrong-case"),
    pytest.param(
        lambda tmp: _button(LOOKALIKE),
        f"button '{LOOKALIKE}' is not a LotImage button",
        id="button-emoji-lookalike",
    ),
    pytest.param(
        lambda tmp: _button(REROLL_WITH_SELECTOR),
        "is not a LotImage button",
        id="button-emoji-variation-selector",
    ),
    pytest.param(
        lambda tmp: _save(f"{tmp.as_uri()}/pictures/../../outside"),
        "destination",
        id="destination-escapes",
    ),
    pytest.param(
        lambda tmp: _imagine(prompt="a teapot\x00 on a table"),
        "prompt is not valid text: a control character (U+0000) at character 9",
        id="prompt-nul",
    ),
    pytest.param(
        lambda tmp: _imagine(prompt="a caf\udce9 at night"),
        "prompt is not valid text: a lone surrogate (U+DCE9) at character 6",
        id="prompt-mis-decoded",
    ),
    pytest.param(
        lambda tmp: _imagine(prompt="a teapot \x1b[31min red"),
        "prompt is not valid text: a control character (U+001B)",
        id="prompt-escape-sequence",
    ),
    pytest.param(
        lambda tmp: _imagine(webhook="https://hooks.example.com/\x00x"),
        "webhook is not valid text: a control character (U+0000)",
        id="webhook-nul",
    ),
    pytest.param(
        lambda tmp: _imagine(webhook="https://[::1/x"),
        "webhook is not a valid URL (Invalid IPv6 URL)",
        id="webhook-broken-ipv6",
    ),
    pytest.param(
        lambda tmp: _imagine(webhook="https://hooks.example.com:99999/x"),
        "webhook is not a valid URL",
        id="webhook-port-out-of-range",
    ),
    pytest.param(
        lambda tmp: _imagine(webhook="https://hooks.example.com/a b"),
        "webhook must be a URL without spaces",
        id="webhook-space",
    ),
    pytest.param(
        lambda tmp: _save(f"{tmp.as_uri()}/pictures\x00/{{{{ ds }}}}"),
        "destination is not valid text: a control character (U+0000)",
        id="destination-nul",
    ),
]


@pytest.mark.parametrize(("build", "message"), PARSE_TIME_CASES)
def test_refused_at_parse_time(harness: Harness, emu: Any, tmp_path: Path, build: Any, message: str) -> None:
    from airflow_provider_lotimage.exceptions import LotImageInputError

    with harness.dag(), pytest.raises(LotImageInputError) as info:
        build(tmp_path)
    assert message in str(info.value)
    assert_no_calls(emu)


def test_refused_value_is_a_dag_import_error(emu: Any, tmp_path: Path) -> None:
    """The same check, seen as the DAG processor sees it: the file fails to import, naming the parameter."""
    from airflow.dag_processing.dagbag import DagBag

    dag_file = tmp_path / "bad_prompt_dag.py"
    dag_file.write_text(
        "from datetime import datetime\n"
        "from airflow.sdk import DAG\n"
        "from airflow_provider_lotimage.operators.imagine import ImagineOperator\n"
        "with DAG('rel_bad_prompt_file', schedule=None, start_date=datetime(2026, 1, 1)):\n"
        "    ImagineOperator(task_id='imagine', prompt='   ')\n"
    )
    bag = DagBag(dag_folder=str(dag_file), safe_mode=False)
    assert not bag.dags
    (error,) = bag.import_errors.values()
    assert "LotImageInputError" in error and "prompt is empty" in error
    assert_no_calls(emu)


# ============================================================================= run time
#: task_id -> what its error must say; every value comes from a template rendered at run time.
RUN_TIME_ERRORS = {
    "imagine_blank": "prompt is empty",
    "imagine_renders_to_nothing": "prompt is empty (did its template render to nothing?)",
    "imagine_over_limit": f"prompt has {MAX_PROMPT_LENGTH + 1} characters",
    "imagine_webhook_not_http": "webhook must be an http(s) URL with a host, got 'ftp://hooks.example.com/x'",
    "press_unknown": "button 'U5' is not a LotImage button",
    "press_wrong_case": "button 'u1' is not a LotImage button",
    "press_emoji_lookalike": f"button '{LOOKALIKE}' is not a LotImage button",
    "save_escapes_destination": "contains '..' or '.' segments; refusing to leave it",
    "imagine_nul": "prompt is not valid text: a control character (U+0000)",
    "imagine_webhook_nul": "webhook is not valid text: a control character (U+0000)",
    "press_buttons_not_a_list": "the parent task's buttons must be a list of labels, got int",
    "save_nul_destination": "destination is not valid text: a control character (U+0000)",
}


def test_templated_values_refused_at_run_time(harness: Harness, emu: Any, tmp_path: Path) -> None:
    """One DAG, one independent task per bad templated value; each fails alone, before any call."""
    from airflow_provider_lotimage.operators.button import ButtonOperator
    from airflow_provider_lotimage.operators.imagine import ImagineOperator
    from airflow_provider_lotimage.operators.save_images import SaveImagesOperator

    params = {
        "blank": "   ",
        "nothing": "",
        "webhook": "ftp://hooks.example.com/x",
        "unknown": "U5",
        "lower": "u1",
        "lookalike": LOOKALIKE,
        "sub": "../../outside",
        "nul": "a teapot\x00",
    }
    no_retry = {"retries": 2, "retry_delay": timedelta(seconds=0)}
    out = tmp_path / "pictures"
    with harness.dag(params=params) as dag:
        ImagineOperator(task_id="imagine_blank", prompt="{{ params.blank }}", **no_retry)
        ImagineOperator(task_id="imagine_renders_to_nothing", prompt="{{ params.nothing }}", **no_retry)
        ImagineOperator(
            task_id="imagine_over_limit", prompt=f"{{{{ 'x' * {MAX_PROMPT_LENGTH + 1} }}}}", **no_retry
        )
        ImagineOperator(
            task_id="imagine_webhook_not_http", prompt="a teapot", webhook="{{ params.webhook }}", **no_retry
        )
        for task_id, param in (
            ("press_unknown", "unknown"),
            ("press_wrong_case", "lower"),
            ("press_emoji_lookalike", "lookalike"),
        ):
            ButtonOperator(
                task_id=task_id,
                lotimage_task_id=TASK_ID,
                button=f"{{{{ params.{param} }}}}",
                poll_interval=POKE,
                **no_retry,
            )
        ImagineOperator(task_id="imagine_nul", prompt="{{ params.nul }}", **no_retry)
        ImagineOperator(
            task_id="imagine_webhook_nul",
            prompt="a teapot",
            webhook="https://hooks.example.com/{{ params.nul }}",
            **no_retry,
        )
        ButtonOperator(
            task_id="press_buttons_not_a_list",
            lotimage_task_id={"lotimage_task_id": TASK_ID, "buttons": 5},
            button="U1",
            **no_retry,
        )
        missing = {"lotimage_task_id": TASK_ID, "image_url": f"{emu.url}/_emulator/images/missing.png"}
        SaveImagesOperator(
            task_id="save_escapes_destination",
            result=missing,
            destination=f"{out.as_uri()}/{{{{ params.sub }}}}",
            **no_retry,
        )
        SaveImagesOperator(
            task_id="save_nul_destination",
            result=missing,
            destination=f"{out.as_uri()}/{{{{ params.nul }}}}",
            **no_retry,
        )
    run = harness.run(dag)
    states = harness.states(run)
    assert str(run.state) == "failed"
    assert states == dict.fromkeys(RUN_TIME_ERRORS, "failed"), states
    for task_id, message in RUN_TIME_ERRORS.items():
        error = str(harness.error(task_id))
        assert message in error, (task_id, error)
        assert "LotImageInputError" in error, (task_id, error)
        assert harness.tries(run, task_id) == 1, task_id  # AirflowFailException: Airflow did not retry
    assert not (tmp_path / "outside").exists()
    assert_no_calls(emu)


# ============================================================================ downloads
@pytest.mark.parametrize(
    "target",
    ["loopback", "link-local", "file"],
)
def test_picture_redirect_into_the_private_network_is_refused(
    harness: Harness, local_server: LocalServer, target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A picture link that redirects into the worker's own network (another loopback service, the
    cloud metadata address) or to a file is not followed: the connection's LotImage host is public,
    so pictures have no business there. The loopback target sees no request at all."""
    from airflow_provider_lotimage.exceptions import ImageDownloadError
    from airflow_provider_lotimage.operators.save_images import SaveImagesOperator

    inside = LocalServer()
    try:
        location = {
            "loopback": f"{inside.url}/admin?token=SIGNED",
            "link-local": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "file": "file:///etc/passwd",
        }[target]
        local_server.get_status, local_server.get_headers = 302, {"Location": location}
        conn = {"conn_type": "lotimage", "host": "https://api.lotimage.com", "password": "sk-lotimage-012345"}
        monkeypatch.setenv("AIRFLOW_CONN_LOTIMAGE_DEFAULT", json.dumps(conn))
        with harness.dag() as dag:
            SaveImagesOperator(
                task_id="save",
                result={"lotimage_task_id": TASK_ID, "image_url": f"{local_server.url}/attachments/grid.png"},
                destination=(tmp_path / "out").as_uri(),
            )
        run = harness.run(dag)
        error = harness.assert_failed(run, "save")
        assert isinstance(harness.error("save"), ImageDownloadError) and "not followed" in error, error
        expected = {"loopback": "a loopback address (127.0.0.1)", "link-local": "a link-local address"}
        assert expected.get(target, "not an http(s) URL") in error, error
        assert "SIGNED" not in error
        assert len(local_server.seen("GET")) == 1 and inside.requests == []
        assert not list((tmp_path / "out").glob("*.png"))
    finally:
        inside.close()
