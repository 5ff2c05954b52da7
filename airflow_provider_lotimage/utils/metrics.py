"""The client's :class:`~airflow_provider_lotimage.client.metrics.Metrics`, sent to Airflow's ``Stats``.

Airflow's ``Stats`` is what its users already watch (StatsD, Datadog or OpenTelemetry, as
``[metrics]`` says), so the provider's figures go the same way, from workers and the triggerer
alike, under the names of :mod:`~airflow_provider_lotimage.client.metric_names`. Durations go as
``timedelta``: StatsD records them in milliseconds, as Airflow's own timers.

Tags: Airflow's StatsD logger sends them only with ``[metrics] statsd_influxdb_enabled`` (in the
name, ``lotimage.api.calls,endpoint=imagine,outcome=ok``) or with Datadog; OpenTelemetry keeps them
as attributes. Without either, StatsD gets each name with the tags dropped: totals still add up.

A metrics backend that fails must never fail a task or a trigger: a failure to send is logged
once and dropped.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow_provider_lotimage.client.metrics import Tags
from airflow_provider_lotimage.version_compat import airflow_stats

log = logging.getLogger(__name__)


class AirflowMetrics:
    """Forwards each figure to Airflow's ``Stats`` (see the module doc)."""

    def __init__(self) -> None:
        self._warned = False

    def incr(self, name: str, count: int = 1, *, tags: Tags | None = None) -> None:
        """Add ``count`` to the counter ``name``."""
        self._send("incr", name, count, tags)

    def timing(self, name: str, seconds: float, *, tags: Tags | None = None) -> None:
        """Record ``seconds`` under the timer ``name``."""
        self._send("timing", name, timedelta(seconds=seconds), tags)

    def gauge(self, name: str, value: float, *, tags: Tags | None = None) -> None:
        """Set the gauge ``name`` to ``value``."""
        self._send("gauge", name, value, tags)

    def _send(self, method: str, name: str, value: Any, tags: Tags | None) -> None:
        try:
            getattr(airflow_stats(), method)(name, value, tags=dict(tags or {}))
        except Exception:
            if not self._warned:
                self._warned = True
                log.warning("Could not send the metric %s to Airflow's Stats", name, exc_info=True)

    def __repr__(self) -> str:
        return "<AirflowMetrics>"
