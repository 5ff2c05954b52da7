"""The provider as a user meets it: Airflow's own CLI, run from a folder outside this checkout.

Every command runs in a fresh interpreter whose working folder is a temporary one, so Python
imports the provider from wherever it is installed. ``scripts/test-airflow.sh`` installs the
wheels built from this checkout (not an editable install) and sets ``LOTIMAGE_EXPECT_WHEEL=1``;
then the tests also check that the provider really came from site-packages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = Path(sys.executable).with_name("airflow")
PROVIDER = "airflow-provider-lotimage"
HOOK_CLASS = "airflow_provider_lotimage.hooks.lotimage.LotImageHook"


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """A fresh AIRFLOW_HOME, every DeprecationWarning shown, nothing of the test process's set-up."""
    home = tmp_path / "airflow_home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST", "LOTIMAGE_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO_ROOT / "example_dags"),
        PYTHONWARNINGS="always::DeprecationWarning",
    )
    return env


def run_airflow(env: dict[str, str], cwd: Path, *args: str, timeout: float = 300) -> str:
    """Run the ``airflow`` command beside this interpreter; return stdout and stderr together."""
    done = subprocess.run(
        [str(AIRFLOW), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"airflow {' '.join(args)} exited {done.returncode}:\n{output[-4000:]}"
    return output


def first_json_list(output: str) -> list:
    """The JSON list a command printed, ignoring log or warning lines around it."""
    value, _ = json.JSONDecoder().raw_decode(output, output.index("["))
    return value


def deprecations(output: str) -> set[str]:
    """The deprecation warnings a command printed, one line each."""
    return {line.strip() for line in output.splitlines() if "Deprecat" in line}


def test_provider_comes_from_the_installed_distribution(cli_env: dict[str, str], tmp_path: Path) -> None:
    where = subprocess.run(
        [sys.executable, "-c", "import airflow_provider_lotimage as p; print(p.__file__)"],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if os.environ.get("LOTIMAGE_EXPECT_WHEEL") == "1":
        source = REPO_ROOT / "airflow_provider_lotimage"
        assert "site-packages" in Path(where).parts and Path(where).parent != source, where
    else:
        assert Path(where).exists(), where


def test_providers_get_lists_the_provider_and_connection_type_without_new_warnings(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Only warnings Airflow prints anyway (``airflow version``) are allowed; none of ours."""
    baseline = deprecations(run_airflow(cli_env, tmp_path, "version"))

    shown = run_airflow(cli_env, tmp_path, "providers", "get", PROVIDER, "--full", "-o", "json")
    info = first_json_list(shown)[0]
    assert info["package-name"] == PROVIDER
    (conn_type,) = info["connection-types"]
    assert conn_type["connection-type"] == "lotimage"
    assert conn_type["hook-class-name"] == HOOK_CLASS

    hooks_out = run_airflow(cli_env, tmp_path, "providers", "hooks", "-o", "json")
    hooks = first_json_list(hooks_out)
    ours = [h for h in hooks if h["connection_type"] == "lotimage"]
    assert ours == [
        {
            "connection_type": "lotimage",
            "class": HOOK_CLASS,
            "conn_id_attribute_name": "lotimage_conn_id",
            "package_name": PROVIDER,
            "hook_name": "LotImage",
        }
    ]
    assert deprecations(shown) <= baseline, deprecations(shown) - baseline
    assert deprecations(hooks_out) <= baseline, deprecations(hooks_out) - baseline


def test_deferrable_example_runs_from_the_installed_provider(
    cli_env: dict[str, str], tmp_path: Path, lotimage_emulator, lotimage_api_key: str
) -> None:
    """``airflow dags test`` of the deferrable example, as a user would run it after pip install."""
    output_dir = tmp_path / "pictures"
    cli_env.update(
        LOTIMAGE_OUTPUT_DIR=str(output_dir),
        LOTIMAGE_POLL_INTERVAL="0.3",
        AIRFLOW_CONN_LOTIMAGE_DEFAULT=json.dumps(
            {"conn_type": "lotimage", "host": lotimage_emulator.url, "password": lotimage_api_key}
        ),
    )
    run_airflow(cli_env, tmp_path, "db", "migrate")
    log = run_airflow(cli_env, tmp_path, "dags", "test", "example_lotimage_imagine_deferrable")

    assert "new_state=deferred" in log, log[-3000:]
    assert "DagRun Finished: dag_id=example_lotimage_imagine_deferrable" in log, log[-3000:]
    assert "state=success" in log.split("DagRun Finished:", 1)[1].split("\n", 1)[0], log[-3000:]
    pictures = sorted(output_dir.glob("*.png"))
    assert pictures, f"no picture in {output_dir}:\n{log[-3000:]}"
    assert lotimage_emulator.stats()["submissions"] == {"imagine": 1, "button": 0}
    assert lotimage_api_key not in log
