"""The emulator is its own distribution, ``lotimage-emulator``: no Airflow, no provider inside.

The provider's wheel holds only what runs in Airflow; the emulator, its CLI and its pytest plugin
ship separately (like moto beside boto3), so they must not lean on either.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

from lotimage_emulator import contract

from airflow_provider_lotimage.client import contract as api

FORBIDDEN = ("airflow", "airflow_provider_lotimage")


def test_emulator_imports_no_airflow_and_no_provider() -> None:
    # Every module of the package (CLI and pytest plugin included), in a fresh interpreter.
    code = (
        "import importlib, pkgutil, sys, lotimage_emulator\n"
        "for info in pkgutil.walk_packages(lotimage_emulator.__path__, 'lotimage_emulator.'):\n"
        "    importlib.import_module(info.name)\n"
        "assert 'lotimage_emulator.pytest_plugin' in sys.modules and 'lotimage_emulator.app' in sys.modules\n"
        f"bad = [m for m in sys.modules if any(m == f or m.startswith(f + '.') for f in {FORBIDDEN!r})]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_distribution_metadata() -> None:
    emulator = metadata.distribution("lotimage-emulator")
    requires = [req.lower() for req in emulator.requires or []]
    assert not [req for req in requires if "airflow" in req and "extra ==" not in req], requires
    points = {(ep.group, ep.name): ep.value for ep in emulator.entry_points}
    assert points[("console_scripts", "lotimage-emulator")] == "lotimage_emulator.__main__:main"
    assert points[("pytest11", "lotimage_emulator")] == "lotimage_emulator.pytest_plugin"
    # The provider no longer carries the emulator's script or plugin: only its own provider info
    # and its Airflow UI plugin (the gallery).
    provider = metadata.distribution("airflow-provider-lotimage")
    assert {ep.group for ep in provider.entry_points} == {"apache_airflow_provider", "airflow.plugins"}


def test_contract_agrees_with_the_provider() -> None:
    # Two independent readings of the same documented contract must agree.
    assert (contract.IMAGINE_PATH, contract.PROGRESS_PATH, contract.BUTTON_PATH) == (
        api.IMAGINE_PATH,
        api.PROGRESS_PATH,
        api.BUTTON_PATH,
    )
    assert contract.GRID_BUTTONS == api.GRID_BUTTONS
    assert contract.UPSCALED_BUTTONS == api.UPSCALED_BUTTONS
    assert contract.MAX_PROMPT_LENGTH == api.MAX_PROMPT_LENGTH
