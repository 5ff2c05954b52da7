"""Every read of Airflow's configuration this provider makes, in one place.

Its own ``[lotimage]`` options, and the ``[api]``, ``[workers]`` and ``[operators]`` settings it
depends on.

Read on each use, never at import: every Airflow process imports the plugin and the operators, and
a changed setting (or a test's) applies from the next use. The ``[lotimage]`` options are declared,
with their defaults, in :func:`~airflow_provider_lotimage.get_provider_info.get_provider_info`;
the defaults here are read from there, so a new option is declared there and read here.

Two configuration objects: code that runs in a task, a triggerer or a DAG file reads the Task SDK's
(``airflow.providers.common.compat.sdk.conf``, what a worker has); the gallery, which runs in the
api-server, reads the server's own (``airflow.configuration.conf``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_lotimage.get_provider_info import get_provider_info

SECTION = "lotimage"

#: Where the gallery's app is mounted on the api-server; the extra link's addresses start with it.
GALLERY_PREFIX = "/lotimage"

#: What ``[workers] min_heartbeat_interval`` is when nothing sets it (Airflow's own default).
AIRFLOW_MIN_HEARTBEAT_INTERVAL = 5.0


def _task_conf() -> Any:
    from airflow.providers.common.compat.sdk import conf

    return conf


def _server_conf() -> Any:
    from airflow.configuration import conf

    return conf


def _declared(option: str) -> str:
    """Return the default ``get_provider_info`` declares for ``[lotimage] option``."""
    return str(get_provider_info()["config"][SECTION]["options"][option]["default"])


# -- read in a task, a triggerer or a DAG file --------------------------------------------------------


def default_deferrable() -> bool:
    """``[operators] default_deferrable``: the default of the operators' and the sensor's ``deferrable``."""
    return _task_conf().getboolean("operators", "default_deferrable", fallback=False)


def min_heartbeat_interval() -> float:
    """``[workers] min_heartbeat_interval``: how often a task's supervisor looks at its process."""
    return _task_conf().getfloat("workers", "min_heartbeat_interval", fallback=AIRFLOW_MIN_HEARTBEAT_INTERVAL)


def gallery_extra_link() -> bool:
    """``[lotimage] gallery_extra_link``: whether the extra link goes through the gallery."""
    default = _declared("gallery_extra_link") == "True"
    return _task_conf().getboolean(SECTION, "gallery_extra_link", fallback=default)


def lineage_include_prompt() -> bool:
    """``[lotimage] lineage_include_prompt``: whether OpenLineage events carry the prompt (default off)."""
    default = _declared("lineage_include_prompt") == "True"
    return _task_conf().getboolean(SECTION, "lineage_include_prompt", fallback=default)


def webhook_redis_conn_id(*, server: bool = False) -> str:
    """``[lotimage] webhook_redis_conn_id``: the Redis of webhook deliveries (``server``: as read there)."""
    conf = _server_conf() if server else _task_conf()
    default = _declared("webhook_redis_conn_id")
    return (conf.get(SECTION, "webhook_redis_conn_id", fallback=default) or default).strip()


def link_root() -> str:
    """Return where the extra link's gallery addresses start: ``[api] base_url`` plus the prefix."""
    base = _task_conf().get("api", "base_url", fallback="") or ""
    return base.rstrip("/") + GALLERY_PREFIX


# -- read by the gallery, in the api-server ---------------------------------------------------------


def thumbnail_folder() -> Path:
    """``[lotimage] gallery_thumbnail_folder``, or ``$AIRFLOW_HOME/lotimage/gallery-thumbnails``."""
    configured = _server_conf().get(SECTION, "gallery_thumbnail_folder", fallback="") or ""
    if configured.strip():
        return Path(configured.strip()).expanduser()
    from airflow.configuration import get_airflow_home

    return Path(os.path.expanduser(get_airflow_home())) / "lotimage" / "gallery-thumbnails"


def page_size() -> int:
    """``[lotimage] gallery_page_size``: pictures per page of a run (at least 1)."""
    default = int(_declared("gallery_page_size"))
    return max(1, _server_conf().getint(SECTION, "gallery_page_size", fallback=default))


def picture_hosts() -> frozenset[str]:
    """``[lotimage] gallery_picture_hosts``: more hosts the extra link may redirect to.

    Comma-separated ``host`` (any port) or ``host:port`` entries, lower-cased; empty by default.
    """
    configured = _server_conf().get(SECTION, "gallery_picture_hosts", fallback="") or ""
    return frozenset(entry.strip().lower() for entry in configured.split(",") if entry.strip())


def gallery_path() -> str:
    """Return the gallery's path as the browser sees it: ``[api] base_url``'s path plus the prefix."""
    base = _server_conf().get("api", "base_url", fallback="") or ""
    return urlsplit(base).path.rstrip("/") + GALLERY_PREFIX
