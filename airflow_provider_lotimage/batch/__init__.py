"""Batches that survive their prompts: one rejected, failed or stalled prompt costs only itself.

:func:`lotimage_batch` builds, for a list of prompts, a mapped task group per prompt (its grid,
the buttons pressed on it, and a save of whatever of them exists) and a report after them all;
:class:`BatchReport` and :class:`PromptReport` are what the report holds. Why this shape, and how
to rerun only the failed prompts: ``docs/batches.md``.
"""

from __future__ import annotations

from airflow_provider_lotimage.batch.group import lotimage_batch
from airflow_provider_lotimage.batch.report import BatchReport, PromptFailure, PromptReport, Tolerance

__all__ = ["BatchReport", "PromptFailure", "PromptReport", "Tolerance", "lotimage_batch"]
