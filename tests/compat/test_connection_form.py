"""The ``lotimage`` connection form reaches the UI on every version, from wherever that version reads it.

Airflow 3.2+ reads ``conn-fields``/``ui-field-behaviour`` from the provider info; Airflow 3.1 asks
the hook (``get_ui_field_behaviour``/``get_connection_form_widgets``), which is why the hook has
those methods there and only there. The proof is the UI's own form endpoint,
``GET /ui/connections/hook_meta``, asked in a fresh process (on 3.1 the endpoint stands in for
WTForms/Flask-AppBuilder by patching ``sys.modules``, which must not leak into this one).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from airflow_provider_lotimage.hooks.lotimage import LotImageHook
from airflow_provider_lotimage.version_compat import HAS_DECLARATIVE_CONNECTION_FORM

_ASK_THE_FORM_ENDPOINT = textwrap.dedent(
    """
    import json, sys
    from fastapi.testclient import TestClient
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    client = TestClient(create_app(apps="core"))
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="ADMIN"))
    answer = client.get("/ui/connections/hook_meta", headers={"Authorization": f"Bearer {token}"})
    answer.raise_for_status()
    with open(sys.argv[1], "w") as out:
        json.dump([h for h in answer.json() if h["connection_type"] == "lotimage"], out)
    """
)


def test_hook_has_the_form_methods_only_where_airflow_asks_the_hook() -> None:
    for name in ("get_ui_field_behaviour", "get_connection_form_widgets"):
        assert (name in LotImageHook.__dict__) is not HAS_DECLARATIVE_CONNECTION_FORM, name


def test_hook_form_behaviour_is_the_declared_one() -> None:
    from airflow_provider_lotimage.get_provider_info import get_provider_info
    from airflow_provider_lotimage.utils import connection_form

    (declared,) = get_provider_info()["connection-types"]
    behaviour = connection_form.ui_field_behaviour()
    assert behaviour == {
        "hidden_fields": ["schema", "port", "login"],
        "relabeling": {"host": "Base URL", "password": "API key"},
        "placeholders": declared["ui-field-behaviour"]["placeholders"],
    }


def test_ui_form_endpoint_shows_the_lotimage_fields(airflow_db: None, tmp_path) -> None:
    out = tmp_path / "hook_meta.json"
    done = subprocess.run(
        [sys.executable, "-c", _ASK_THE_FORM_ENDPOINT, str(out)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (meta,) = json.loads(out.read_text())
    assert meta["hook_name"] == "LotImage"
    standard = meta["standard_fields"]
    assert standard["password"]["title"] == "API key"
    assert standard["host"]["title"] == "Base URL"
    assert standard["host"]["placeholder"] == "https://api.lotimage.com"
    assert all(standard[name]["hidden"] for name in ("url_schema", "port", "login"))
    extra = meta["extra_fields"]
    assert set(extra) == {
        "rate_limit",
        "rate_limit_scope",
        "rate_limit_redis_conn_id",
        "timeout",
        "webhook_base_url",
    }
    assert extra["rate_limit"]["schema"]["title"] == "Calls per second"
    assert extra["timeout"]["schema"]["title"] == "Request timeout (s)"
    assert [v for v in extra["rate_limit_scope"]["schema"]["enum"] if v] == ["host", "redis", "process"]
    assert str(extra["rate_limit"]["value"]) == "3"


def test_values_the_3_1_form_saves_are_read_as_numbers() -> None:
    """Airflow 3.1's form has no number field: its values arrive as strings in the Extra."""
    from types import SimpleNamespace

    from airflow_provider_lotimage.client.settings import read_settings

    conn = SimpleNamespace(conn_id="c", host="http://127.0.0.1:1", port=None, password="k", login=None)
    settings = read_settings(conn, {"rate_limit": "2.5", "rate_limit_scope": "process", "timeout": "30"})
    assert (settings.rate_limit, settings.rate_limit_scope, settings.timeout) == (2.5, "process", 30.0)
