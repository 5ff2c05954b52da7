"""The LotImage gallery in a real Airflow UI, in Debian's headless chromium driven by Selenium.

A real deployment (api-server with the provider's plugin, scheduler, DAG processor, triggerer)
runs the batch example against the emulator with two prompts: two grids and their eight
upscales, stored into the batch folder. The browser logs into the UI as the harness's simple
auth manager lets every visitor in (``simple_auth_manager_all_admins``), opens the run's
"LotImage pictures" tab, and checks that every stored picture is
shown once, with its prompt, and that one opens at full size. It saves the screenshots of
docs/gallery.md (1280 px and 390 px wide).

Chromium and its driver (Debian's ``chromium``, ``chromium-driver``) and the ``selenium`` module
are required: without them the test is skipped with the reason, and fails when ``CI=true``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from lotimage_emulator import Emulator, run_emulator
from lotimage_emulator.pytest_plugin import TEST_API_KEY

from airflow_harness import AirflowDeployment

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = REPO / "example_dags"
DOCS = REPO / "docs"
DAG_ID = "example_lotimage_batch"
PROMPTS = ["a lighthouse on a cliff at dawn, oil painting", "a red fox in fresh snow, watercolour"]
CHROMIUM = Path(os.environ.get("LOTIMAGE_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("LOTIMAGE_CHROMEDRIVER", "/usr/bin/chromedriver"))
WAIT = 30


def missing_browser() -> list[str]:
    """What the browser test needs and this machine lacks, said so that a person can fix it."""
    missing = []
    if not (CHROMIUM.exists() or shutil.which("chromium")):
        missing.append("chromium (Debian package chromium)")
    if not CHROMEDRIVER.exists():
        missing.append("chromedriver (Debian package chromium-driver)")
    if importlib.util.find_spec("selenium") is None:
        missing.append("Python module selenium (pip package selenium, in the 'test' extra)")
    return missing


@pytest.fixture(scope="module")
def browser_requirements() -> None:
    missing = missing_browser()
    if not missing:
        return
    reason = "the gallery browser test needs: " + "; ".join(missing) + " (bash scripts/system-packages.sh)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: nothing may be skipped for want of a package)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def emulator(browser_requirements: None) -> Iterator[Emulator]:
    # Renders of a few seconds: a trigger that fires within a second of its deferral can race the
    # executor's event (see airflow_harness.config.distributed_config).
    with run_emulator(
        keys=(TEST_API_KEY,), imagine_seconds=4.0, upscale_seconds=3.0, grid_size=256
    ) as running:
        yield running


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gallery-output")


@pytest.fixture(scope="module")
def deployment(emulator: Emulator, output_dir: Path) -> Iterator[AirflowDeployment]:
    env = {
        "AIRFLOW_CONN_LOTIMAGE_DEFAULT": json.dumps(
            {"conn_type": "lotimage", "host": emulator.url, "password": TEST_API_KEY}
        ),
        "LOTIMAGE_OUTPUT_DIR": str(output_dir),
        "LOTIMAGE_POLL_INTERVAL": "1",
        "LOTIMAGE_POOL": "default_pool",
    }
    with AirflowDeployment(EXAMPLE_DAGS, env=env, parallelism=4) as af:
        yield af


@pytest.fixture(scope="module")
def batch_run(deployment: AirflowDeployment) -> str:
    """The batch example's run over PROMPTS, finished."""
    result = deployment.run_dag(DAG_ID, conf={"prompts": PROMPTS, "skip_stored": False}, timeout=150)
    assert result.ok, result
    return result.run_id


@pytest.fixture
def browser(browser_requirements: None) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium"))
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def stored_pictures(folder: Path) -> dict[str, str]:
    """Picture file name -> prompt, from the sidecars in ``folder``."""
    metas = [json.loads(path.read_text(encoding="utf-8")) for path in folder.glob("*.json")]
    return {meta["file"]: meta["prompt"] for meta in metas}


def login(driver: Any, api_url: str) -> str:
    """Open the UI and return who it says is logged in.

    The harness runs the simple auth manager with ``simple_auth_manager_all_admins``: every
    visitor is an admin, through a token the auth manager adds to each request (no login form).
    """
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{api_url}/")
    script = (
        "const done = arguments[arguments.length - 1];"
        "fetch('/ui/auth/me').then(r => r.ok ? r.json() : {}).then(me => done(me.username || ''))"
        ".catch(() => done(''));"
    )
    return str(WebDriverWait(driver, WAIT).until(lambda d: d.execute_async_script(script)))


def open_gallery_tab(driver: Any, api_url: str, run_id: str) -> list[Any]:
    """The run's "LotImage pictures" tab; switch into its iframe and return the picture cards."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{api_url}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/plugin/lotimage-run-pictures")
    WebDriverWait(driver, WAIT).until(ready.frame_to_be_available_and_switch_to_it((By.TAG_NAME, "iframe")))
    WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=picture]"))
    # Thumbnails load lazily: those on screen must have arrived (the screenshots show them).
    visible = "[...document.images].filter(i => i.getBoundingClientRect().top < innerHeight)"
    driver.execute_script("document.querySelector('[data-testid=group]').scrollIntoView()")
    WebDriverWait(driver, WAIT).until(
        lambda d: d.execute_script(f"return {visible}.every(i => i.complete && i.naturalWidth > 0)")
    )
    return driver.find_elements(By.CSS_SELECTOR, "[data-testid=picture]")


def thumbnails_served(driver: Any) -> list[int]:
    """The HTTP status of every thumbnail of the page, fetched by the page itself (its credentials)."""
    script = (
        "const done = arguments[arguments.length - 1];"
        "Promise.all([...document.images].map(i => fetch(i.src).then(r => r.status))).then(done);"
    )
    return list(driver.execute_async_script(script))


def test_the_run_gallery_shows_every_stored_picture_and_opens_it_full_size(
    af: AirflowDeployment, batch_run: str, output_dir: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    started = time.monotonic()
    stored = stored_pictures(output_dir / "batch")
    assert len(stored) == len(PROMPTS) * (1 + 4)  # a grid and four upscales each
    assert login(browser, af.api_url)
    cards = open_gallery_tab(browser, af.api_url, batch_run)
    shown = {
        card.get_attribute("data-path").rpartition("/")[2]: card.find_element(
            By.CSS_SELECTOR, "[data-testid=prompt]"
        ).text
        for card in cards
    }
    assert len(cards) == len(stored)
    assert shown == stored
    assert thumbnails_served(browser) == [200] * len(stored)
    # The upscales are grouped under their grid: one section per prompt.
    assert len(browser.find_elements(By.CSS_SELECTOR, "[data-testid=group]")) == len(PROMPTS)
    browser.switch_to.default_content()
    DOCS.mkdir(exist_ok=True)
    browser.save_screenshot(str(DOCS / "gallery-desktop.png"))

    browser.set_window_size(390, 844)
    open_gallery_tab(browser, af.api_url, batch_run)
    browser.switch_to.default_content()
    browser.save_screenshot(str(DOCS / "gallery-phone.png"))

    browser.set_window_size(1280, 900)
    cards = open_gallery_tab(browser, af.api_url, batch_run)
    cards[0].find_element(By.TAG_NAME, "a").click()
    full = WebDriverWait(browser, WAIT).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=full-picture]")
    )[0]
    WebDriverWait(browser, WAIT).until(lambda d: d.execute_script("return arguments[0].naturalWidth", full))
    assert browser.execute_script("return arguments[0].naturalWidth", full) == int(
        full.get_dom_attribute("width")
    )
    assert time.monotonic() - started < 60
