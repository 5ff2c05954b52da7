"""The provider registers itself and its ``lotimage`` connection type (from the hook on 3.1)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from importlib.metadata import entry_points

import pytest

from airflow_provider_lotimage.get_provider_info import get_provider_info


def test_entry_point_is_registered() -> None:
    names = {ep.value for ep in entry_points(group="apache_airflow_provider")}
    assert "airflow_provider_lotimage.get_provider_info:get_provider_info" in names


def test_provider_info_module_imports_nothing_of_airflow() -> None:
    code = (
        "import sys; import airflow_provider_lotimage.get_provider_info as m; m.get_provider_info(); "
        "print(sorted(n for n in sys.modules if n == 'airflow' or n.startswith('airflow.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_connection_type_declared_declaratively() -> None:
    (conn,) = get_provider_info()["connection-types"]
    assert conn["connection-type"] == "lotimage"
    assert conn["hook-name"] == "LotImage"
    assert conn["hook-class-name"] == "airflow_provider_lotimage.hooks.lotimage.LotImageHook"
    assert conn["ui-field-behaviour"]["relabeling"]["password"] == "API key"
    assert set(conn["conn-fields"]) == {
        "rate_limit",
        "rate_limit_scope",
        "rate_limit_redis_conn_id",
        "webhook_base_url",
        "timeout",
    }
    assert conn["conn-fields"]["rate_limit_scope"]["schema"]["enum"] == ["host", "redis", "process", None]


def test_provider_info_matches_airflow_schema() -> None:
    import json
    from pathlib import Path

    import airflow
    import jsonschema

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_providers_manager_loads_it_without_deprecation_warning(airflow_db: None) -> None:
    from airflow.providers_manager import ProvidersManager

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        manager = ProvidersManager()
        manager.initialize_providers_hooks()
        assert "airflow-provider-lotimage" in manager.providers
        hook = manager.hooks["lotimage"]
    assert hook is not None and hook.hook_name == "LotImage"
    from airflow_provider_lotimage.version_compat import HAS_DECLARATIVE_CONNECTION_FORM

    if HAS_DECLARATIVE_CONNECTION_FORM:
        behaviour = manager.field_behaviours["lotimage"]
    else:
        # Airflow 3.1 asks the hook for the form, its ProvidersManager only where WTForms imports;
        # the UI's form endpoint stands in for WTForms (tests/compat/test_connection_form.py asks it).
        from airflow_provider_lotimage.hooks.lotimage import LotImageHook

        behaviour = manager.field_behaviours.get("lotimage") or LotImageHook.get_ui_field_behaviour()
    assert behaviour["relabeling"]["password"] == "API key"


def test_every_declared_module_and_class_imports() -> None:
    import importlib

    info = get_provider_info()
    for group in ("hooks", "operators", "sensors", "triggers"):
        for entry in info[group]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for path in info["extra-links"]:
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(
    "command", [["providers", "get", "airflow-provider-lotimage"], ["providers", "hooks"]]
)
def test_airflow_cli_lists_the_provider(command: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "airflow", *command, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "lotimage" in out.stdout.lower()
