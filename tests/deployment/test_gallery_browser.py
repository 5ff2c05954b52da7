"""The LotImage gallery in a real Airflow UI, in Debian's headless chromium driven by Selenium.

A real deployment (api-server with the provider's plugin, scheduler, DAG processor, triggerer)
runs the batch example against the emulator with two prompts: two grids and their eight
upscales, stored into the batch folder. The deployment has real logins (the harness's
``users=``: an admin, whom the harness's REST client signs in as, and a viewer). Nobody gets in
anonymously: neither ``requests`` nor the browser before it signs in. The browser opens the
run's "LotImage pictures" tab, is sent to the login form, types the viewer's name and password,
comes back to the tab, and checks that every stored picture is shown once, with its prompt, and
that one opens at full size. It saves the screenshots of docs/gallery.md: the run's tab at
1280 px, light and dark, and Browse › LotImage gallery at 390 px, where the gallery must fit its
frame.

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
import requests
from lotimage_emulator import Emulator, run_emulator
from lotimage_emulator.pytest_plugin import TEST_API_KEY

from airflow_harness import AirflowDeployment, User, default_users

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = REPO / "example_dags"
DOCS = REPO / "docs"
DAG_ID = "example_lotimage_batch"
PROMPTS = ["a lighthouse on a cliff at dawn, oil painting", "a red fox in fresh snow, watercolour"]
CHROMIUM = Path(os.environ.get("LOTIMAGE_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("LOTIMAGE_CHROMEDRIVER", "/usr/bin/chromedriver"))
WAIT = 30
DESKTOP = (1280, 900)
PHONE = (390, 844)
USERS = default_users()
VIEWER = next(user for user in USERS if user.role == "viewer")


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
    with AirflowDeployment(EXAMPLE_DAGS, env=env, parallelism=4, users=USERS) as af:
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
    viewport(driver, *DESKTOP)
    try:
        yield driver
    finally:
        driver.quit()


def stored_pictures(folder: Path) -> dict[str, str]:
    """Picture file name -> prompt, from the sidecars in ``folder`` (not the batch reports)."""
    sidecars = [path for path in folder.glob("*.json") if not path.name.startswith("batch-report.")]
    metas = [json.loads(path.read_text(encoding="utf-8")) for path in sidecars]
    return {meta["file"]: meta["prompt"] for meta in metas}


def viewport(driver: Any, width: int, height: int, *, phone: bool = False) -> None:
    """Make the page exactly ``width`` × ``height`` CSS pixels.

    The window's own size includes its frame; ``phone`` also emulates a touch screen's viewport.
    """
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": phone}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


def fetch_status(driver: Any, url: str) -> int:
    """The HTTP status of ``url`` fetched by the current page, with whatever credentials it has."""
    script = (
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(r => done(r.status)).catch(e => done(String(e)));"
    )
    return int(driver.execute_async_script(script, url))


def sign_in(driver: Any, user: User) -> None:
    """Type the user's name and password into the UI's login form (the page must show it)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.NAME, "username"))
    driver.find_element(By.NAME, "username").send_keys(user.name)
    driver.find_element(By.NAME, "password").send_keys(user.password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(driver, WAIT).until(lambda d: "/auth/login" not in d.current_url)


def signed_in_as(driver: Any) -> str:
    """Who the UI says is signed in."""
    script = (
        "const done = arguments[arguments.length - 1];"
        "fetch('/ui/auth/me').then(r => r.ok ? r.json() : {}).then(me => done(me.username || ''))"
        ".catch(() => done(''));"
    )
    return str(driver.execute_async_script(script))


def tab_url(api_url: str, run_id: str) -> str:
    """The run's "LotImage pictures" tab in the Airflow UI."""
    return f"{api_url}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/plugin/lotimage-run-pictures"


def open_gallery_tab(driver: Any, api_url: str, run_id: str) -> list[Any]:
    """The run's "LotImage pictures" tab; switch into its iframe and return the picture cards."""
    driver.switch_to.default_content()
    driver.get(tab_url(api_url, run_id))
    return pictures_in_frame(driver)


def open_from_browse(driver: Any, api_url: str) -> list[Any]:
    """Browse › LotImage gallery, then the batch DAG and its run inside the frame: the cards."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    driver.switch_to.default_content()
    driver.get(f"{api_url}/plugin/lotimage-gallery")
    WebDriverWait(driver, WAIT).until(ready.frame_to_be_available_and_switch_to_it((By.TAG_NAME, "iframe")))
    WebDriverWait(driver, WAIT).until(ready.element_to_be_clickable((By.LINK_TEXT, DAG_ID))).click()
    run_link = (By.CSS_SELECTOR, "[data-testid=run] a")
    WebDriverWait(driver, WAIT).until(ready.element_to_be_clickable(run_link)).click()
    return pictures_in_frame(driver, scroll=False)


def pictures_in_frame(driver: Any, *, scroll: bool = True) -> list[Any]:
    """Switch into the page's iframe, wait for the cards and return them.

    Thumbnails load lazily: those on screen must have arrived (the screenshots show them).
    ``scroll`` brings the first group to the top, so that a screenshot shows pictures, not the
    page's heading.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    if driver.execute_script("return window === window.top"):
        WebDriverWait(driver, WAIT).until(
            ready.frame_to_be_available_and_switch_to_it((By.TAG_NAME, "iframe"))
        )
    WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=picture]"))
    if scroll:
        driver.execute_script("document.querySelector('[data-testid=group]').scrollIntoView()")
    visible = "[...document.images].filter(i => i.getBoundingClientRect().top < innerHeight)"
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


def set_theme(driver: Any, theme: str) -> None:
    """The Airflow UI's own light/dark choice (next-themes keeps it in ``localStorage.theme``)."""
    driver.switch_to.default_content()
    driver.execute_script("localStorage.setItem('theme', arguments[0])", theme)


def screenshot(driver: Any, name: str) -> None:
    """Save the whole browser page (the Airflow UI around the gallery) as docs/<name>."""
    driver.switch_to.default_content()
    DOCS.mkdir(exist_ok=True)
    driver.save_screenshot(str(DOCS / name))


def gallery_url(api_url: str, run_id: str) -> str:
    """The run's gallery page itself (what the tab's iframe shows)."""
    return f"{api_url}/lotimage/dags/{DAG_ID}/runs/{quote(run_id, safe='')}"


def test_nobody_gets_in_without_signing_in(af: AirflowDeployment, batch_run: str, browser: Any) -> None:
    """Anonymous requests get 401, and the UI sends the browser to its login form."""
    from selenium.webdriver.support.ui import WebDriverWait

    wrong = requests.post(
        f"{af.api_url}/auth/token", json={"username": VIEWER.name, "password": "wrong"}, timeout=10
    )
    assert wrong.status_code == 401
    assert requests.get(gallery_url(af.api_url, batch_run), timeout=10).status_code in (401, 403)
    browser.get(tab_url(af.api_url, batch_run))
    WebDriverWait(browser, WAIT).until(lambda d: "/auth/login" in d.current_url)
    assert fetch_status(browser, gallery_url("", batch_run)) in (401, 403)
    assert signed_in_as(browser) == ""
    # The harness's own REST client signed in as the admin; after its token goes bad it signs in again.
    af.rest._token = "not-a-token"
    assert af.run_state(DAG_ID, batch_run) == "success"


def test_the_run_gallery_shows_every_stored_picture_and_opens_it_full_size(
    af: AirflowDeployment, batch_run: str, output_dir: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    started = time.monotonic()
    stored = stored_pictures(output_dir / "batch")
    assert len(stored) == len(PROMPTS) * (1 + 4)  # a grid and four upscales each
    tab = tab_url(af.api_url, batch_run)
    browser.get(tab)
    sign_in(browser, VIEWER)
    assert browser.current_url == tab  # the login form sends the user back where they were going
    assert signed_in_as(browser) == VIEWER.name
    set_theme(browser, "light")
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
    screenshot(browser, "gallery-desktop.png")

    set_theme(browser, "dark")
    open_gallery_tab(browser, af.api_url, batch_run)
    assert browser.execute_script("return document.documentElement.dataset.theme") == "dark"
    screenshot(browser, "gallery-dark.png")
    set_theme(browser, "light")

    viewport(browser, *PHONE, phone=True)
    assert len(open_from_browse(browser, af.api_url)) == len(stored)
    # The gallery fits its frame: nothing to scroll sideways.
    assert browser.execute_script("return document.documentElement.scrollWidth <= innerWidth")
    screenshot(browser, "gallery-phone.png")

    viewport(browser, *DESKTOP)
    cards = open_gallery_tab(browser, af.api_url, batch_run)
    cards[0].find_element(By.TAG_NAME, "a").click()
    full = WebDriverWait(browser, WAIT).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=full-picture]")
    )[0]
    WebDriverWait(browser, WAIT).until(lambda d: d.execute_script("return arguments[0].naturalWidth", full))
    assert browser.execute_script("return arguments[0].naturalWidth", full) == int(
        full.get_dom_attribute("width")
    )
    assert time.monotonic() - started < 90
