"""Checks of user input, run before any call so a mistake never spends the API budget.

Each error names the parameter at fault. Templated values are checked after rendering, so a
template that renders to nothing is caught here too.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from airflow_provider_lotimage.api import ALL_BUTTONS, MAX_PROMPT_LENGTH
from airflow_provider_lotimage.exceptions import LotImageInputError


def validate_prompt(prompt: Any, *, name: str = "prompt") -> str:
    """Require a non-blank string of at most :data:`MAX_PROMPT_LENGTH` characters."""
    if not isinstance(prompt, str):
        raise LotImageInputError(f"{name} must be a string, got {type(prompt).__name__}")
    text = prompt.strip()
    if not text:
        raise LotImageInputError(f"{name} is empty (did its template render to nothing?)")
    if len(text) > MAX_PROMPT_LENGTH:
        raise LotImageInputError(
            f"{name} has {len(text)} characters; LotImage prompts may have at most {MAX_PROMPT_LENGTH}"
        )
    return text


def validate_webhook(webhook: Any, *, name: str = "webhook") -> str | None:
    """None, or an absolute http(s) URL with a host."""
    if webhook is None:
        return None
    if not isinstance(webhook, str) or not webhook.strip():
        raise LotImageInputError(f"{name} must be an http(s) URL or None, got {webhook!r}")
    parts = urlsplit(webhook.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LotImageInputError(f"{name} must be an http(s) URL with a host, got {webhook!r}")
    return webhook.strip()


def validate_cutting(cutting: Any, *, name: str = "cutting") -> bool:
    """Require a real boolean: ``"false"`` is truthy in Python, so strings are refused rather than guessed."""
    if not isinstance(cutting, bool):
        raise LotImageInputError(f"{name} must be True or False, got {cutting!r}")
    return cutting


def validate_button(button: Any, *, allowed: Any = None, name: str = "button") -> str:
    """One of the contract's labels, exactly (case and emoji), and of ``allowed`` when known."""
    if not isinstance(button, str) or button not in ALL_BUTTONS:
        labels = ", ".join(sorted(ALL_BUTTONS))
        raise LotImageInputError(f"{name} {button!r} is not a LotImage button; use one of: {labels}")
    if allowed is not None and button not in list(allowed):
        raise LotImageInputError(
            f"{name} {button!r} is not offered by the parent task (it offers {list(allowed)})"
        )
    return button


def validate_task_id(task_id: Any, *, name: str = "lotimage_task_id") -> str:
    """Require a non-blank taskId string."""
    if not isinstance(task_id, str) or not task_id.strip():
        raise LotImageInputError(f"{name} must be a non-empty LotImage taskId, got {task_id!r}")
    return task_id.strip()
