"""Server-rendered HTML of the gallery: small pages that work inside the UI's iframe and on a phone.

Every value from a DAG, a run or a sidecar is escaped; links carry paths as query parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from html import escape
from urllib.parse import quote, urlencode

from airflow_provider_lotimage.gallery.index import Group, Picture
from airflow_provider_lotimage.gallery.records import FailedPrompt, RunInfo
from airflow_provider_lotimage.storage.layout import sidecar_path


@dataclass(frozen=True)
class Urls:
    """The gallery's URLs, relative to where the app is mounted (``root``)."""

    root: str

    def home(self) -> str:
        """Return the gallery's home page (the DAGs)."""
        return f"{self.root}/"

    def dag(self, dag_id: str, page: int = 1) -> str:
        """Return a DAG's page of runs."""
        suffix = f"?page={page}" if page > 1 else ""
        return f"{self.root}/dags/{quote(dag_id, safe='')}{suffix}"

    def run(self, dag_id: str, run_id: str, page: int = 1) -> str:
        """Return a run's page of pictures."""
        suffix = f"?page={page}" if page > 1 else ""
        return f"{self.dag(dag_id)}/runs/{quote(run_id, safe='')}{suffix}"

    def of(self, action: str, dag_id: str, run_id: str, path: str) -> str:
        """``view`` (full-size page), ``file`` (bytes) or ``thumb`` of one recorded path."""
        return f"{self.run(dag_id, run_id)}/{action}?{urlencode({'path': path})}"

    def static(self, name: str) -> str:
        """Return a static file (CSS, JS)."""
        return f"{self.root}/static/{name}"


def _page(urls: Urls, title: str, crumbs: list[tuple[str, str | None]], body: str) -> str:
    trail = " › ".join(
        f'<a href="{escape(href)}">{escape(text)}</a>' if href else escape(text) for text, href in crumbs
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        f'<link rel="stylesheet" href="{escape(urls.static("gallery.css"))}">'
        f'<script src="{escape(urls.static("gallery.js"))}"></script>'
        f'</head><body><nav class="crumbs">{trail}</nav>{body}</body></html>'
    )


def home_page(urls: Urls, dag_ids: Iterable[str]) -> str:
    """Render the DAGs the user may read that stored pictures."""
    items = "".join(
        f'<li><a href="{escape(urls.dag(dag_id))}">{escape(dag_id)}</a></li>' for dag_id in sorted(dag_ids)
    )
    body = '<h1>LotImage gallery</h1><p class="summary">Pictures stored by SaveImagesOperator, per DAG.</p>'
    body += f'<ul class="list">{items}</ul>' if items else '<p class="empty">No stored pictures yet.</p>'
    return _page(urls, "LotImage gallery", [("LotImage gallery", None)], body)


def dag_page(
    urls: Urls, dag_id: str, runs: list[RunInfo], counts: dict[str, int], page: int, pages: int
) -> str:
    """Render a DAG's runs that stored pictures, newest first."""
    items = "".join(
        f'<li data-testid="run"><a href="{escape(urls.run(dag_id, run.run_id))}">{escape(run.run_id)}</a>'
        f'<span class="muted">{counts.get(run.run_id, 0)} pictures</span>'
        f'<span class="muted">{escape(_when(run))}</span>'
        f'<span class="muted">{escape(run.state or "")}</span></li>'
        for run in runs
    )
    body = f"<h1>{escape(dag_id)}</h1>"
    body += _pager(lambda n: urls.dag(dag_id, n), page, pages)
    empty = '<p class="empty">No run of this DAG stored pictures.</p>'
    body += f'<ul class="list">{items}</ul>' if items else empty
    crumbs = [("LotImage gallery", urls.home()), (dag_id, None)]
    return _page(urls, f"{dag_id} · LotImage gallery", crumbs, body)


def _when(run: RunInfo) -> str:
    return run.run_after.strftime("%Y-%m-%d %H:%M UTC") if run.run_after else ""


def run_page(
    urls: Urls,
    dag_id: str,
    run_id: str,
    groups: list[Group],
    total: int,
    page: int,
    pages: int,
    failed: list[FailedPrompt] | None = None,
) -> str:
    """One run's pictures: each task's pictures with the upscales made from it underneath.

    A batch's failed prompts are listed first, with their reasons, so a missing picture is explained.
    """
    link = _Linker(urls, dag_id, run_id)
    summary = f'<p class="summary">{total} pictures · page {page} of {pages}</p>'
    pager = _pager(lambda n: urls.run(dag_id, run_id, n), page, pages)
    sections = "".join(_group(link, group) for group in groups)
    if not total:
        sections = '<p class="empty">This run recorded no stored pictures (or none can be read).</p>'
    crumbs = [("LotImage gallery", urls.home()), (dag_id, urls.dag(dag_id)), (run_id, None)]
    body = (
        f"<h1>{escape(run_id)}</h1>{summary}{_failed(failed or [])}{pager}{sections}"
        f"{pager if pages > 1 else ''}"
    )
    return _page(urls, f"{run_id} · {dag_id} · LotImage gallery", crumbs, body)


def _failed(failed: list[FailedPrompt]) -> str:
    """List the failed prompts of the run's batch reports, as escaped text."""
    if not failed:
        return ""
    items = "".join(
        f'<li data-testid="failed-prompt"><strong>{escape(item.prompt) or "(no prompt)"}</strong>'
        + "".join(f"<br>{escape(step)}: {escape(reason)}" for step, reason in item.reasons)
        + "</li>"
        for item in failed
    )
    return (
        f'<section class="failed" data-testid="failed-prompts"><h2>Failed prompts ({len(failed)})</h2>'
        f"<ul>{items}</ul></section>"
    )


@dataclass(frozen=True)
class _Linker:
    urls: Urls
    dag_id: str
    run_id: str

    def __call__(self, action: str, path: str) -> str:
        return escape(self.urls.of(action, self.dag_id, self.run_id, path))


def _group(link: _Linker, group: Group) -> str:
    """Render a task's section: its prompt, its pictures, then its upscales' pictures.

    The upscales sit beside the grid when the frame is wide enough and wrap under it otherwise
    (or under its quadrants), so a whole grid and what was made from it read as one row.
    """
    upscales = [picture for upscale in _flatten(group.upscales) for picture in upscale.pictures]
    under = (
        f'<div class="upscales"><h3>Made from it</h3><div class="cards">{_cards(link, upscales)}</div></div>'
        if upscales
        else ""
    )
    count = len(group.pictures) + len(upscales)
    return (
        f'<section class="group" id="task-{escape(group.task_id)}" data-testid="group">'
        f"<h2>{escape(group.prompt) or '(no prompt)'}</h2>"
        f'<p class="meta">LotImage task {escape(group.task_id)} · {count} pictures</p>'
        f'<div class="group-body"><div class="cards">{_cards(link, group.pictures)}</div>{under}</div>'
        "</section>"
    )


def _flatten(groups: list[Group]) -> list[Group]:
    return [item for group in groups for item in (group, *_flatten(group.upscales))]


def _cards(link: _Linker, pictures: list[Picture]) -> str:
    return "".join(_card(link, picture) for picture in pictures)


def kind(picture: Picture) -> str:
    """Say what the picture is: a whole picture (grid or upscale) or a quadrant of a grid."""
    if picture.index:
        return f"Quadrant {picture.button}"
    return f"Upscale {picture.button}" if picture.button else "Whole picture"


def _facts(picture: Picture) -> str:
    facts = picture.sidecar
    rows = [
        ("Button", picture.button or "—"),
        ("LotImage task", picture.task_id),
        ("Created", str(facts.created_at or "—")),
        ("Size", f"{facts.width}×{facts.height} px, {_bytes(facts.bytes)}"),
        ("Stored in", picture.folder),
    ]
    return "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows) + "</dl>"


def _bytes(value: object) -> str:
    size = float(value) if isinstance(value, int | float) else 0.0
    for unit in ("B", "KB", "MB"):
        if size < 1024 or unit == "MB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def _card_facts(picture: Picture) -> str:
    """Render :func:`_facts` as four short lines, whole values in tooltips.

    A card is as wide as its thumbnail, and many pictures on one screen matter more than whole
    task ids and folders (the picture's own page shows them); the badge names the button. The
    time and the size speak for themselves, so their labels are left to screen readers and the
    values get the card's whole width.
    """
    facts = picture.sidecar
    created = str(facts.created_at or "—")
    size = f"{facts.width}×{facts.height} · {_bytes(facts.bytes)}"
    rows = [
        ("Task", "", picture.task_id, picture.task_id),
        ("Created", ' class="sr"', created, _minutes(created)),
        ("Size", ' class="sr"', size, size),
        ("Stored in", "", picture.folder, _tail(picture.folder)),
    ]
    lines = (
        f'<dt{hidden}>{label}</dt><dd title="{escape(whole)}">{escape(short)}</dd>'
        for label, hidden, whole, short in rows
    )
    return f'<dl class="facts">{"".join(lines)}</dl>'


def _minutes(created: str) -> str:
    """``2026-11-21T21:00:12.575Z`` as ``2026-11-21 21:00``: fits a card; anything else as it is."""
    date, sep, time = created.partition("T")
    return f"{date} {time[:5]}" if sep and len(time) >= 5 else created


def _tail(folder: str) -> str:
    """Shorten a folder to its last part (``…/batch``): its start is the same on every card."""
    head, _, last = folder.rstrip("/").rpartition("/")
    return f"…/{last}" if head.strip("/") and not head.endswith(":/") else folder


def _card(link: _Linker, picture: Picture) -> str:
    sidecar = sidecar_path(picture.path) or ""
    prompt = escape(picture.prompt)
    return (
        f'<figure class="card" data-testid="picture" data-path="{escape(picture.path)}">'
        f'<a href="{link("view", picture.path)}"><img src="{link("thumb", picture.path)}" loading="lazy" '
        f'alt="{prompt}" width="384" height="384"></a>'
        f'<figcaption><span class="top"><span class="badge">{escape(kind(picture))}</span>'
        f'<a href="{link("file", sidecar)}">Sidecar JSON</a></span>'
        f'<p class="prompt" data-testid="prompt">{prompt}</p>'
        f"{_card_facts(picture)}</figcaption></figure>"
    )


def leaving_page(urls: Urls, target: str) -> str:
    """Say where a link leads that the gallery does not redirect to on its own (a host it does not know)."""
    body = (
        "<h1>This link leaves Airflow</h1>"
        "<p class=\"summary\">The picture's recorded address is not on a host LotImage's pictures come "
        "from, so the gallery does not open it for you. Follow it only if you trust it:</p>"
        f'<p class="prompt"><a data-testid="target" href="{escape(target)}" rel="noreferrer noopener">'
        f"{escape(target)}</a></p>"
    )
    crumbs: list[tuple[str, str | None]] = [("LotImage gallery", urls.home()), ("A link", None)]
    return _page(urls, "This link leaves Airflow · LotImage gallery", crumbs, body)


def picture_page(urls: Urls, dag_id: str, run_id: str, picture: Picture) -> str:
    """One picture at full size, with its facts and its sidecar one click away."""
    link = _Linker(urls, dag_id, run_id)
    sidecar = sidecar_path(picture.path) or ""
    body = (
        f"<h1>{escape(kind(picture))}</h1>"
        f'<div class="full"><a href="{link("file", picture.path)}">'
        f'<img data-testid="full-picture" src="{link("file", picture.path)}" alt="{escape(picture.prompt)}" '
        f'width="{_size(picture.sidecar.width)}" height="{_size(picture.sidecar.height)}">'
        f'</a><div class="info"><p class="prompt">{escape(picture.prompt)}</p>{_facts(picture)}'
        f'<div class="actions"><a href="{link("file", sidecar)}">Sidecar JSON</a>'
        f'<a href="{escape(urls.run(dag_id, run_id))}#task-{escape(picture.task_id)}">Back to the run</a>'
        "</div></div></div>"
    )
    crumbs = [
        ("LotImage gallery", urls.home()),
        (dag_id, urls.dag(dag_id)),
        (run_id, urls.run(dag_id, run_id)),
        (picture.name, None),
    ]
    return _page(urls, f"{picture.name} · LotImage gallery", crumbs, body)


def _size(value: object) -> str:
    return "" if value is None else escape(str(value))


def _pager(href: Callable[[int], str], page: int, pages: int) -> str:
    if pages <= 1:
        return ""
    parts = []
    if page > 1:
        parts.append(f'<a href="{escape(href(page - 1))}" rel="prev">Previous</a>')
    for number in range(1, pages + 1):
        if number == page:
            parts.append(f'<span class="current">{number}</span>')
        elif abs(number - page) <= 2 or number in (1, pages):
            parts.append(f'<a href="{escape(href(number))}">{number}</a>')
    if page < pages:
        parts.append(f'<a href="{escape(href(page + 1))}" rel="next">Next</a>')
    return f'<nav class="pager" aria-label="Pages">{"".join(parts)}</nav>'
