"""The docs site: built by Sphinx with warnings as errors, from every page of docs/, with the API
reference of the public operators, sensor, trigger and hook, and examples that are the example
DAGs' own lines; and the project URLs (Documentation first) in both distributions' metadata.

The site is built once, as `make docs` builds it, into a temporary folder (about 30-60 s on 2
cores), and checked in the same test: a build writes the generated reference into docs/reference
while it runs, so two builds at once (one per pytest-xdist worker) would share that folder. A page
missing from the toctree, a link to a page or heading that does not exist, an include whose markers
are gone or a docstring Sphinx cannot read is a warning, and so a failed build.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import metadata
from pathlib import Path

from airflow_provider_lotimage.get_provider_info import get_provider_info

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
URL_NAMES = {"Documentation", "Source", "Changelog", "Issues"}

TOCTREE = re.compile(r"^```\{toctree\}\n(.*?)^```", re.MULTILINE | re.DOTALL)
LITERALINCLUDE = re.compile(r"^```\{literalinclude\} (\S+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
CODE_BLOCK = re.compile(r'<div class="highlight"><pre>(.*?)</pre>', re.DOTALL)


def build_site(out: Path) -> Path:
    """Build the site into ``out`` with warnings as errors; the folder of its HTML pages."""
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    build = subprocess.run(
        [*command, "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert build.returncode == 0, f"the docs site did not build:\n{build.stdout}\n{build.stderr}"
    assert "WARNING" not in build.stderr, build.stderr
    return out / "html"


def toctree_pages() -> list[str]:
    """The documents the index's toctrees list, in order."""
    text = (DOCS / "index.md").read_text(encoding="utf-8")
    return [
        line.strip()
        for block in TOCTREE.findall(text)
        for line in block.splitlines()
        if line.strip() and not line.startswith(":")
    ]


def code_blocks(page: Path) -> list[str]:
    """The text of every highlighted code block of a built page."""
    return [html.unescape(re.sub(r"<[^>]+>", "", block)) for block in CODE_BLOCK.findall(page.read_text())]


def included_example(path: Path, options: dict[str, str]) -> str:
    """The lines a ``literalinclude`` with start-after/end-before markers and dedent takes."""
    lines = path.read_text(encoding="utf-8").splitlines()
    (start,) = [n for n, line in enumerate(lines) if options["start-after"] in line]
    (end,) = [n for n, line in enumerate(lines) if options["end-before"] in line]
    assert start < end, (path, options)
    return textwrap.dedent("\n".join(lines[start + 1 : end]))


def literalincludes() -> list[tuple[str, Path, dict[str, str]]]:
    """(page, included file, options) of every ``literalinclude`` in docs/*.md."""
    found = []
    for page in sorted(DOCS.glob("*.md")):
        for target, body in LITERALINCLUDE.findall(page.read_text(encoding="utf-8")):
            options = dict(
                (name, value.strip().strip('"'))
                for name, value in re.findall(r"^:([\w-]+):(.*)$", body, re.MULTILINE)
            )
            found.append((page.stem, (DOCS / target).resolve(), options))
    return found


def check_every_page_is_in_the_toctree(site: Path) -> None:
    pages = {page.stem for page in DOCS.glob("*.md")} - {"index"}
    listed = toctree_pages()
    assert len(listed) == len(set(listed)), listed
    assert pages <= set(listed), f"pages missing from docs/index.md's toctree: {sorted(pages - set(listed))}"
    assert set(listed) - pages == {"reference/airflow_provider_lotimage/index"}
    index = (site / "index.html").read_text()
    for page in listed:
        assert (site / f"{page}.html").is_file(), page
        assert f'href="{page}.html"' in index, f"{page} is not linked from the site's index"


def check_getting_started_and_changelog_are_the_repository_files(site: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    started = html.unescape(re.sub(r"<[^>]+>", "", (site / "getting-started.html").read_text()))
    # The README's opening (between its markers) is the page: its install line and both commands.
    opening = readme.split("<!-- start-getting-started -->", 1)[1].split("<!-- end-getting-started -->", 1)[0]
    for line in ("pip install airflow-provider-lotimage", "make demo", "make test"):
        assert line in opening and line in started, line
    changelog = html.unescape(re.sub(r"<[^>]+>", "", (site / "changelog.html").read_text()))
    for heading in re.findall(
        r"^## (.+)$", (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), re.MULTILINE
    ):
        assert heading in changelog, heading


def check_reference_covers_the_public_operators_sensor_trigger_and_hook(site: Path) -> None:
    info = get_provider_info()
    modules = [
        module
        for kind in ("hooks", "operators", "sensors", "triggers")
        for entry in info[kind]
        for module in entry["python-modules"]
    ]
    assert len(modules) == 6, modules
    for module in modules:
        page = site / "reference" / Path(*module.split(".")) / "index.html"
        assert page.is_file(), f"no reference page for {module}"
    expected = {
        "hooks/lotimage": "LotImageHook",
        "operators/imagine": "ImagineOperator",
        "operators/button": "ButtonOperator",
        "operators/save_images": "SaveImagesOperator",
        "sensors/task_progress": "TaskProgressSensor",
        "triggers/task_progress": "TaskProgressTrigger",
    }
    for module, name in expected.items():
        text = (site / "reference" / "airflow_provider_lotimage" / module / "index.html").read_text()
        dotted = f"airflow_provider_lotimage.{module.replace('/', '.')}.{name}"
        assert f'id="{dotted}"' in text, f"{dotted} is not documented"


def check_examples_are_the_example_dags_lines(site: Path) -> None:
    includes = literalincludes()
    shown = "\n".join(included_example(path, options) for _page, path, options in includes)
    for name in ("ImagineOperator", "ButtonOperator", "SaveImagesOperator", "TaskProgressSensor"):
        assert f"{name}(" in shown or f"{name}.partial(" in shown, f"no example of {name}"
    for page, path, options in includes:
        assert path.parent == ROOT / "example_dags", path
        assert options.get("dedent") == "4", (page, options)
        example = included_example(path, options)
        assert example.strip(), (page, options)
        blocks = code_blocks(site / f"{page}.html")
        assert any(example.strip() in block for block in blocks), f"{page}: {path.name} is not shown as is"


def test_docs_site(tmp_path: Path) -> None:
    site = build_site(tmp_path)
    check_every_page_is_in_the_toctree(site)
    check_getting_started_and_changelog_are_the_repository_files(site)
    check_reference_covers_the_public_operators_sensor_trigger_and_hook(site)
    check_examples_are_the_example_dags_lines(site)


def project_urls(pyproject: Path) -> dict[str, str]:
    return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["urls"]


def test_both_distributions_name_their_documentation_source_changelog_and_issues() -> None:
    provider = project_urls(ROOT / "pyproject.toml")
    emulator = project_urls(ROOT / "emulator" / "pyproject.toml")
    for urls in (provider, emulator):
        assert set(urls) == URL_NAMES, urls
        assert all(url.startswith("https://") for url in urls.values()), urls
    # One site and one repository for both.
    assert emulator["Documentation"].startswith(provider["Documentation"])
    assert emulator["Source"].startswith(provider["Source"])
    assert emulator["Issues"] == provider["Issues"]
    # What Airflow shows as the provider's documentation: the installed distribution's
    # Project-URL "Documentation" (its providers manager reads the metadata).
    installed = dict(
        tuple(part.strip() for part in entry.split(",", 1))
        for entry in metadata("airflow-provider-lotimage").get_all("Project-URL") or []
    )
    assert installed == provider
