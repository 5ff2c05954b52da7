"""The one answer to "is this value still a Jinja template?".

Operators check literal arguments at parse time, so a typo fails when the DAG is loaded rather than
when it runs; a value that is still a template can only be checked after rendering.
"""

from __future__ import annotations

import re
from typing import Any

#: Jinja's expression, statement and comment openers.
_TEMPLATE_START = re.compile(r"\{\{|\{%|\{#")


def is_template(value: Any) -> bool:
    """Return whether ``value`` is a string that Jinja would still render."""
    return isinstance(value, str) and _TEMPLATE_START.search(value) is not None


def fixed_part(text: str) -> str:
    """Return the part of ``text`` before its first template opener (all of it when there is none)."""
    match = _TEMPLATE_START.search(text)
    return text if match is None else text[: match.start()]
