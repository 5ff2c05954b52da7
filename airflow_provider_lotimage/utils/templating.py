"""The one answer to "what will this templated value be?": known now, or only after rendering.

Operators check the values known at parse time, so a typo fails when the DAG is loaded rather than
when it runs. A value is known then when it is plain (no Jinja opener in a string), or wrapped in
``airflow.sdk.literal()``, which Airflow renders to its content untouched: the way to pass text
that holds ``{{`` without having it rendered. A string with an opener, an XCom reference
(``task.output``) or a mapped task group's argument is known only once rendered, and checked then.
"""

from __future__ import annotations

import re
from typing import Any, Final

# Internal to the Task SDK, at the same path on Airflow 3.1, 3.2 and 3.3: what Airflow resolves
# at run time instead of rendering (XComArg, MappedArgument, and the LiteralValue of literal()).
from airflow.sdk.definitions._internal.mixins import ResolveMixin
from airflow.sdk.definitions._internal.templater import LiteralValue

#: Jinja's expression, statement and comment openers.
_TEMPLATE_START = re.compile(r"\{\{|\{%|\{#")

#: What :func:`parse_time_value` returns for a value known only after rendering.
NOT_YET: Final = object()


def is_template(value: Any) -> bool:
    """Return whether ``value`` is a string that Jinja would still render."""
    return isinstance(value, str) and _TEMPLATE_START.search(value) is not None


def parse_time_value(value: Any) -> Any:
    """Return what rendering will make of ``value`` if that is known now, else :data:`NOT_YET`.

    ``literal(text)`` gives ``text``, unrendered whatever it holds; a template, an XCom reference
    or a mapped argument gives :data:`NOT_YET`; anything else is itself.
    """
    if isinstance(value, LiteralValue):
        return value.value
    if isinstance(value, ResolveMixin) or is_template(value):
        return NOT_YET
    return value


def fixed_part(text: str) -> str:
    """Return the part of ``text`` before its first template opener (all of it when there is none)."""
    match = _TEMPLATE_START.search(text)
    return text if match is None else text[: match.start()]
