"""Provider metadata read by Airflow's ProvidersManager.

Airflow loads this while it is still reading its own configuration, so this module must import
nothing of Airflow (importing ``airflow.sdk`` here is a circular import).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_lotimage import __version__

_PKG = "airflow_provider_lotimage"

#: The ``lotimage`` connection type and its form. The network extras (``proxies``, ``verify``,
#: ``cert``, ``trust_env``) are set in the Extra JSON, as for an HTTP connection.
_CONNECTION_TYPE: dict[str, Any] = {
    "connection-type": "lotimage",
    "hook-class-name": f"{_PKG}.hooks.lotimage.LotImageHook",
    "hook-name": "LotImage",
    "ui-field-behaviour": {
        "hidden-fields": ["schema", "port", "login"],
        "relabeling": {"host": "Base URL", "password": "API key"},
        "placeholders": {
            "host": "https://api.lotimage.com",
            "password": "the key from your LotImage account",
        },
    },
    "conn-fields": {
        "rate_limit": {
            "label": "Calls per second",
            "description": "Client-side cap on calls a second for this key (LotImage allows 3).",
            "schema": {"type": ["number", "null"], "minimum": 0.1, "maximum": 100, "default": 3},
        },
        "rate_limit_scope": {
            "label": "Rate limit scope",
            "description": "'host' shares the cap between all processes of this machine; 'redis' "
            "between all machines reaching the Redis connection below; 'process' keeps one per process.",
            "schema": {
                "type": ["string", "null"],
                "enum": ["host", "redis", "process", None],
                "default": "host",
            },
        },
        "rate_limit_redis_conn_id": {
            "label": "Redis connection (scope 'redis')",
            "description": "The Airflow Redis connection that holds the shared cap when the scope is "
            "'redis'. While it does not answer, each machine keeps its own cap.",
            "schema": {"type": ["string", "null"], "default": "redis_default"},
        },
        "webhook_base_url": {
            "label": "Webhook base URL",
            "description": "Webhook completion: the public address of Airflow's api-server (or of a "
            "relay in front of it) where LotImage can POST a finished task. Set, deferrable waits read "
            "as soon as the task is delivered; polling continues underneath. Empty: polling only.",
            "schema": {"type": ["string", "null"], "default": None},
        },
        "timeout": {
            "label": "Request timeout (s)",
            "description": "Seconds to wait for an answer to one call.",
            "schema": {"type": ["number", "null"], "minimum": 1, "default": 30},
        },
    },
}


#: ``[lotimage]``: the gallery's settings (read by the api-server, and by workers for the link) and
#: what the OpenLineage events may hold.
_CONFIG: dict[str, Any] = {
    "lotimage": {
        "description": "The LotImage gallery: stored pictures inside the Airflow UI (api-server plugin).",
        "options": {
            "gallery_thumbnail_folder": {
                "description": "Folder of the gallery's cached thumbnails (made once per picture). "
                "Empty: ``lotimage/gallery-thumbnails`` under AIRFLOW_HOME.",
                "version_added": "0.1.0",
                "type": "string",
                "example": "/var/cache/airflow/lotimage-thumbnails",
                "default": "",
            },
            "gallery_page_size": {
                "description": "Pictures per page of a run in the gallery (a task's pictures stay together).",
                "version_added": "0.1.0",
                "type": "integer",
                "example": None,
                "default": "48",
            },
            "gallery_picture_hosts": {
                "description": "More hosts the extra link may redirect to, besides Discord's CDN "
                "(cdn.discordapp.com, media.discordapp.net, over https) and api.lotimage.com: "
                "comma-separated host (any port) or host:port entries, over http or https. A "
                "recorded picture URL on any other host is shown on a page, never redirected to.",
                "version_added": "0.1.0",
                "type": "string",
                "example": "pictures.example.com, 127.0.0.1:8080",
                "default": "",
            },
            "gallery_extra_link": {
                "description": 'Whether the "LotImage picture" extra link goes through the gallery (the '
                "stored copy once stored). False: always the service's expiring picture URL.",
                "version_added": "0.1.0",
                "type": "boolean",
                "example": None,
                "default": "True",
            },
            "webhook_redis_conn_id": {
                "description": "Webhook completion: the Redis connection where the api-server records "
                "deliveries and every triggerer looks for them (usually the rate budget's Redis). "
                "Workers, triggerers and the api-server must all reach it.",
                "version_added": "0.1.0",
                "type": "string",
                "example": None,
                "default": "redis_default",
            },
            "lineage_include_prompt": {
                "description": "Whether the OpenLineage events of ImagineOperator (with the OpenLineage "
                "provider installed) carry the prompt in their ``lotimage`` run facet. Off by default: "
                "prompts can be sensitive, and lineage backends keep them.",
                "version_added": "0.1.0",
                "type": "boolean",
                "example": None,
                "default": "False",
            },
        },
    }
}


def get_provider_info() -> dict[str, Any]:
    """Describe the provider: hooks, operators, sensors, triggers, connection and config."""
    return {
        "package-name": "airflow-provider-lotimage",
        "name": "LotImage",
        "description": "Generate Midjourney pictures in batch with LotImage (api.lotimage.com).",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "LotImage",
                "external-doc-url": "https://docs.lotimage.com/",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "LotImage", "python-modules": [f"{_PKG}.hooks.lotimage"]}],
        "operators": [
            {
                "integration-name": "LotImage",
                "python-modules": [
                    f"{_PKG}.operators.imagine",
                    f"{_PKG}.operators.button",
                    f"{_PKG}.operators.save_images",
                ],
            }
        ],
        "sensors": [{"integration-name": "LotImage", "python-modules": [f"{_PKG}.sensors.task_progress"]}],
        "triggers": [{"integration-name": "LotImage", "python-modules": [f"{_PKG}.triggers.task_progress"]}],
        "extra-links": [f"{_PKG}.links.LotImagePictureLink"],
        "connection-types": [_CONNECTION_TYPE],
        "config": _CONFIG,
    }
