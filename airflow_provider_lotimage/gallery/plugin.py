"""The Airflow plugin: the gallery's and the webhook route's apps on the api-server, the UI entries.

Registered through the ``airflow.plugins`` entry point. Every Airflow process imports plugins
(the scheduler and workers too), so this module stays light: the FastAPI app is built, and
Airflow's API modules imported, on the api-server's first request to it (:class:`LazyApp`).

UI entries (``external_views``, Airflow 3.1+, shown in a same-origin iframe): "LotImage gallery"
under Browse, and a "LotImage pictures" tab on each DAG and DAG run. Their addresses use the
path of ``[api] base_url``, so a deployment served under a sub-path works too.
"""

from __future__ import annotations

import importlib
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_lotimage import config
from airflow_provider_lotimage.client.webhook import WEBHOOK_PREFIX

ASGIReceive = Any
ASGISend = Any


class LazyApp:
    """An ASGI app that builds the app of ``module`` (its ``create_app()``) on its first request."""

    def __init__(self, module: str = "airflow_provider_lotimage.gallery.app") -> None:
        self.module = module
        self._app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        """Serve one ASGI call, building the app first if this is the first."""
        if self._app is None:
            self._app = importlib.import_module(self.module).create_app()
        await self._app(scope, receive, send)


def external_views(prefix: str) -> list[dict[str, Any]]:
    """Return the UI entries, their iframes pointing under ``prefix``."""
    return [
        {
            "name": "LotImage gallery",
            "href": f"{prefix}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "lotimage-gallery",
        },
        {
            "name": "LotImage pictures",
            "href": f"{prefix}/dags/{{DAG_ID}}",
            "destination": "dag",
            "url_route": "lotimage-dag-pictures",
        },
        {
            "name": "LotImage pictures",
            "href": f"{prefix}/dags/{{DAG_ID}}/runs/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "lotimage-run-pictures",
        },
    ]


class LotImageGalleryPlugin(AirflowPlugin):
    """Pictures stored by SaveImagesOperator, per DAG and run, inside the Airflow UI."""

    name = "lotimage_gallery"
    fastapi_apps = [  # noqa: RUF012 - AirflowPlugin's own attribute
        {"app": LazyApp(), "url_prefix": config.GALLERY_PREFIX, "name": "LotImage gallery"},
        {
            "app": LazyApp("airflow_provider_lotimage.webhooks.app"),
            "url_prefix": WEBHOOK_PREFIX,
            "name": "LotImage webhooks",
        },
    ]
    external_views = external_views(config.gallery_path())
