"""OpenLineage: which LotImage tasks a task created or read, and which files it stored.

With ``apache-airflow-providers-openlineage`` installed (the ``[openlineage]`` extra), its listener
asks a task that succeeded on a worker for ``get_openlineage_facets_on_complete``; the operators
answer with what this module builds. Without that provider this module is imported but never
imports OpenLineage: the operators record what they did as plain data (:class:`Created`,
:class:`Stored`) and nothing is built.

Names, as OpenLineage's naming spec gives them:

* a LotImage task: namespace ``lotimage://{host[:port] of the API}``, name ``task/{taskId}``;
* a stored file: namespace ``file`` (``file://{host}`` for a URL naming a host), name the
  absolute path; an object store ``{scheme}://{bucket}`` (``s3://bucket``), name the key. The
  connection id that ``ObjectStoragePath`` keeps in a URL's user part is not part of the name.

Why the save task carries the whole chain: a task that ends in the triggerer
(``end_from_trigger``, the default of deferrable waits) never returns to a worker, so the
listener never asks it for its lineage. ``SaveImagesOperator`` runs on a worker, and every result
dict it stores names its LotImage task and, for a button's task, the parent
(``originating_task_id``); its event's inputs are all of these, so the stored pictures trace back
to every LotImage task they came from whichever way the upstream tasks ended.

What never goes into an event: the API key (only the API's host and port make a namespace), and
the prompt unless ``[lotimage] lineage_include_prompt`` is set (prompts can be sensitive).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_lotimage import config
from airflow_provider_lotimage.storage.layout import sidecar_path

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

#: The facet that says which LotImage task a run created (and, if opted in, its prompt).
FACET_NAME = "lotimage"

_LOCAL_SCHEMES = ("", "file", "local")


def api_namespace(base_url: str) -> str:
    """Return ``lotimage://host[:port]`` for the API at ``base_url``: never its user info or path."""
    parts = urlsplit(base_url)
    port = f":{parts.port}" if parts.port else ""
    return f"lotimage://{(parts.hostname or '').lower()}{port}"


def task_name(task_id: str) -> str:
    """Return the dataset name of a LotImage task."""
    return f"task/{task_id}"


def file_dataset(path: str) -> tuple[str, str]:
    """Return ``(namespace, name)`` of a stored file, by OpenLineage's naming spec."""
    parts = urlsplit(path)
    host = parts.netloc.rpartition("@")[2]  # ObjectStoragePath keeps a conn_id in the user part
    if parts.scheme in _LOCAL_SCHEMES:
        return (f"file://{host}" if host else "file"), parts.path
    return f"{parts.scheme}://{host}", parts.path.lstrip("/")


@dataclass(frozen=True)
class Created:
    """What a submitting operator made: the new LotImage task, its parent, its prompt."""

    api_url: str
    task_id: str
    parent_task_id: str | None = None
    prompt: str | None = None

    @classmethod
    def of(cls, api_url: str, result: str | Mapping[str, Any], request: Mapping[str, Any]) -> Created:
        """Read a submit operator's return value (a taskId or a result) and its ``request_fields``.

        A task resumed after its deferral has no ``request_fields`` (its input was checked before
        it deferred): its result names the parent and the prompt.
        """
        if isinstance(result, str):
            return cls(api_url, result, request.get("parent"), request.get("prompt"))
        return cls(
            api_url,
            str(result["lotimage_task_id"]),
            request.get("parent") or result.get("originating_task_id"),
            request.get("prompt") or result.get("prompt"),
        )

    def lineage(self) -> OperatorLineage:
        """Build the event: output the created task, input its parent, the ``lotimage`` run facet."""
        namespace = api_namespace(self.api_url)
        inputs = [_dataset(namespace, task_name(self.parent_task_id))] if self.parent_task_id else []
        details: dict[str, Any] = {"lotimage_task_id": self.task_id}
        if self.parent_task_id:
            details["originating_task_id"] = self.parent_task_id
        if self.prompt is not None and config.lineage_include_prompt():
            details["prompt"] = self.prompt
        return _operator_lineage(
            inputs=inputs,
            outputs=[_dataset(namespace, task_name(self.task_id))],
            run_facets={FACET_NAME: _run_facet(details)},
        )


@dataclass
class Stored:
    """What ``SaveImagesOperator`` stored: every picture path, and the results they came from."""

    api_url: str
    task_ids: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, api_url: str, results: Iterable[Mapping[str, Any]], paths: Iterable[str]) -> Stored:
        """Record the results' LotImage tasks (their parents first) and the stored paths."""
        chain: list[str] = []
        for result in results:
            for task_id in (result.get("originating_task_id"), result.get("lotimage_task_id")):
                if task_id and str(task_id) not in chain:
                    chain.append(str(task_id))
        return cls(api_url, chain, list(paths))

    def files(self) -> list[str]:
        """Every stored file: each picture, then its sidecar."""
        found: list[str] = []
        for path in self.paths:
            found.append(path)
            if (sidecar := sidecar_path(path)) is not None:
                found.append(sidecar)
        return found

    def lineage(self) -> OperatorLineage:
        """Build the event: inputs the LotImage tasks (and parents), outputs every file stored."""
        namespace = api_namespace(self.api_url)
        return _operator_lineage(
            inputs=[_dataset(namespace, task_name(task_id)) for task_id in self.task_ids],
            outputs=[_dataset(*file_dataset(path)) for path in self.files()],
            run_facets={FACET_NAME: _run_facet({"lotimage_task_ids": list(self.task_ids)})},
        )


def _dataset(namespace: str, name: str) -> Any:
    from airflow.providers.common.compat.openlineage.facet import Dataset

    return Dataset(namespace=namespace, name=name)


def _run_facet(details: dict[str, Any]) -> Any:
    """Return a ``lotimage`` run facet holding ``details`` (as OpenLineage's custom facets are built)."""
    import attrs
    from airflow.providers.common.compat.openlineage.facet import RunFacet

    facet_class = attrs.make_class(
        "LotImageRunFacet", {name: attrs.field(default=None) for name in details}, bases=(RunFacet,)
    )
    return facet_class(**details)


def _operator_lineage(**parts: Any) -> OperatorLineage:
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(**parts)
