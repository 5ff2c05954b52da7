"""Checks of user input, run before any call so a mistake never spends the API budget.

Each error names the parameter at fault. Templated values are checked after rendering, so a
template that renders to nothing is caught here too. These are the client's rules, from the
contract; a prompt or a webhook is also refused when it holds a secret Airflow masks, which only
Airflow can tell: the provider's checks of those two are
:func:`~airflow_provider_lotimage.utils.secrets.validate_prompt` and
:func:`~airflow_provider_lotimage.utils.secrets.validate_webhook`, built on :func:`check_prompt`
and :func:`check_webhook`.
"""

from __future__ import annotations

import math
import unicodedata
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_lotimage.client.contract import ALL_BUTTONS, MAX_PROMPT_LENGTH
from airflow_provider_lotimage.exceptions import LotImageInputError

#: The control characters a prompt may hold: tabs and line breaks, which a prompt read from a file
#: or written over several lines has, and which JSON carries as escapes. Any other (NUL, escape
#: sequences, C1 controls) is a decoding or templating mistake that the service would only echo
#: back into logs and sidecars.
PROMPT_CONTROLS = "\t\n\r"


def check_prompt(prompt: Any, *, name: str = "prompt") -> str:
    """Require a non-blank text of at most :data:`MAX_PROMPT_LENGTH` characters; return it stripped."""
    if not isinstance(prompt, str):
        raise LotImageInputError(f"{name} must be a string, got {type(prompt).__name__}")
    text = prompt.strip()
    if not text:
        raise LotImageInputError(f"{name} is empty (did its template render to nothing?)")
    if len(text) > MAX_PROMPT_LENGTH:
        raise LotImageInputError(
            f"{name} has {len(text)} characters; LotImage prompts may have at most {MAX_PROMPT_LENGTH}"
        )
    return require_text(text, name=name, allowed=PROMPT_CONTROLS)


def check_webhook(webhook: Any, *, name: str = "webhook") -> str | None:
    """None, or an absolute http(s) URL with a host (and a valid port); return it stripped."""
    if webhook is None:
        return None
    if not isinstance(webhook, str) or not webhook.strip():
        raise LotImageInputError(f"{name} must be an http(s) URL or None, got {webhook!r}")
    url = webhook.strip()
    require_text(url, name=name)
    if any(char.isspace() for char in url):
        raise LotImageInputError(f"{name} must be a URL without spaces (percent-encode them as %20)")
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number in 0-65535 raises ValueError
    except ValueError as exc:
        raise LotImageInputError(f"{name} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LotImageInputError(f"{name} must be an http(s) URL with a host, got {webhook!r}")
    return url


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
    if allowed is None:
        return button
    if not isinstance(allowed, list | tuple):
        raise LotImageInputError(
            f"the parent task's buttons must be a list of labels, got {type(allowed).__name__}"
        )
    if button not in allowed:
        raise LotImageInputError(
            f"{name} {button!r} is not offered by the parent task (it offers {list(allowed)})"
        )
    return button


def validate_task_id(task_id: Any, *, name: str = "lotimage_task_id") -> str:
    """Require a non-blank taskId string: printable text, as the service's ids are."""
    if not isinstance(task_id, str) or not task_id.strip():
        raise LotImageInputError(f"{name} must be a non-empty LotImage taskId, got {task_id!r}")
    text = task_id.strip()
    require_text(text, name=name)
    return text


def require_text(text: str, *, name: str, allowed: str = "") -> str:
    """Refuse ``text`` holding a control character (but those in ``allowed``) or a lone surrogate.

    A lone surrogate (U+D800 to U+DFFF) is what Python makes of bytes that were not valid in the
    encoding a file was read with; it cannot be encoded as UTF-8, so it would fail deep in a
    library (or be sent as an escape the service cannot read) instead of here.
    """
    for position, char in enumerate(text, 1):
        category = unicodedata.category(char)
        if category == "Cs":
            raise LotImageInputError(
                f"{name} is not valid text: a lone surrogate (U+{ord(char):04X}) at character "
                f"{position}, left by bytes decoded with the wrong encoding; read the source as UTF-8"
            )
        if category == "Cc" and char not in allowed:
            raise LotImageInputError(
                f"{name} is not valid text: a control character (U+{ord(char):04X}) at character {position}"
            )
    return text


def validate_first_poll_delay(value: Any, *, name: str = "first_poll_delay") -> float | None:
    """Check a ``first_poll_delay`` parameter: ``None`` (the default delay) or seconds >= 0.

    Checked in the constructor, so a mistake fails the DAG's import instead of a deferral.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise LotImageInputError(
            f"{name} must be a number of seconds >= 0, or None for the default, got {value!r}"
        )
    return float(value)
