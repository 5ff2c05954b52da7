"""The gallery's settings: the ``[lotimage]`` section of Airflow's configuration, and URL prefixes.

Read on each use rather than at import: the plugin module is imported by every Airflow process,
and tests change the configuration between calls.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: Where the plugin's FastAPI app is mounted on the api-server.
URL_PREFIX = "/lotimage"

SECTION = "lotimage"

#: Pictures per page of a run (whole groups are kept together, so a page may hold a few more).
DEFAULT_PAGE_SIZE = 48

#: Runs per page of a DAG's run list.
RUNS_PER_PAGE = 20


def _conf() -> Any:
    from airflow.configuration import conf

    return conf


def thumbnail_folder() -> Path:
    """``[lotimage] gallery_thumbnail_folder``, or ``$AIRFLOW_HOME/lotimage/gallery-thumbnails``."""
    configured = _conf().get(SECTION, "gallery_thumbnail_folder", fallback="") or ""
    if configured.strip():
        return Path(configured.strip()).expanduser()
    from airflow.configuration import get_airflow_home

    return Path(os.path.expanduser(get_airflow_home())) / "lotimage" / "gallery-thumbnails"


def page_size() -> int:
    """``[lotimage] gallery_page_size``: pictures per page of a run (at least 1)."""
    return max(1, _conf().getint(SECTION, "gallery_page_size", fallback=DEFAULT_PAGE_SIZE))


def gallery_links() -> bool:
    """``[lotimage] gallery_extra_link``: whether the extra link goes through the gallery."""
    return _conf().getboolean(SECTION, "gallery_extra_link", fallback=True)


def picture_hosts() -> frozenset[str]:
    """``[lotimage] gallery_picture_hosts``: more hosts the extra link may redirect to.

    Comma-separated ``host`` (any port) or ``host:port`` entries, lower-cased; empty by default.
    """
    configured = _conf().get(SECTION, "gallery_picture_hosts", fallback="") or ""
    return frozenset(entry.strip().lower() for entry in configured.split(",") if entry.strip())


def public_prefix() -> str:
    """Return the gallery's path as the browser sees it: ``[api] base_url``'s path plus the prefix."""
    base = _conf().get("api", "base_url", fallback="") or ""
    return urlsplit(base).path.rstrip("/") + URL_PREFIX


def public_root() -> str:
    """Return ``[api] base_url`` (with scheme and host when set) plus the prefix, no final slash."""
    base = (_conf().get("api", "base_url", fallback="") or "").rstrip("/")
    return base + URL_PREFIX
