"""The ``lotimage`` connection form the way Airflow 3.1 asks for it: from the hook.

Airflow 3.2 and later build the form from ``conn-fields`` and ``ui-field-behaviour`` in
:func:`~airflow_provider_lotimage.get_provider_info.get_provider_info`, and deprecate the hook
methods. Airflow 3.1 knows only the hook's ``get_ui_field_behaviour()`` and
``get_connection_form_widgets()``, so :class:`~airflow_provider_lotimage.hooks.lotimage.LotImageHook`
has them there (and only there: 3.2 and later warn about hooks that define them; see
:mod:`airflow_provider_lotimage.version_compat`): :data:`get_ui_field_behaviour` and
:data:`get_connection_form_widgets`, built by this module from the same declarative description,
one source for both.

The widgets are WTForms fields, imported when the form is asked for: Airflow 3.1's API server
stands in for WTForms and Flask-AppBuilder when they are not installed, and turns the fields into
the JSON schema its UI renders. Only string, integer, password and boolean fields are accepted
there, so numbers are string fields (the hook reads ``"3"`` as 3).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_lotimage.get_provider_info import get_provider_info


def _declared() -> dict[str, Any]:
    (connection_type,) = get_provider_info()["connection-types"]
    return connection_type


def ui_field_behaviour() -> dict[str, Any]:
    """Return the standard fields' behaviour (hidden, relabelled, placeholders) in the hook's format."""
    behaviour = _declared()["ui-field-behaviour"]
    return {
        "hidden_fields": list(behaviour.get("hidden-fields", [])),
        "relabeling": dict(behaviour.get("relabeling", {})),
        "placeholders": dict(behaviour.get("placeholders", {})),
    }


def connection_form_widgets() -> dict[str, Any]:
    """Return the extra fields (rate, scope, Redis connection, webhook base URL, timeout) as WTForms fields.

    :return: field name -> unbound WTForms field; values are saved in the Extra under that name.
    """
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import StringField
    from wtforms.validators import Optional, any_of

    widgets: dict[str, Any] = {}
    for name, field in _declared()["conn-fields"].items():
        schema = field.get("schema", {})
        validators: list[Any] = [Optional()]
        if choices := [choice for choice in schema.get("enum", []) if choice is not None]:
            validators.append(any_of(choices))
        default = schema.get("default")
        widgets[name] = StringField(
            lazy_gettext(field.get("label", name)),
            widget=BS3TextFieldWidget(),
            validators=validators,
            description=field.get("description", ""),
            default=None if default is None else str(default),
        )
    return widgets


def _hook_ui_field_behaviour(cls: type) -> dict[str, Any]:
    """Return the form's standard fields: hidden, relabelled, with placeholders (Airflow 3.1)."""
    return ui_field_behaviour()


def _hook_connection_form_widgets(cls: type) -> dict[str, Any]:
    """Return the form's extra fields as WTForms fields (Airflow 3.1)."""
    return connection_form_widgets()


#: The hook's classmethods on Airflow 3.1 (put in its class body, where 3.1 looks for them).
get_ui_field_behaviour: classmethod[Any, [], dict[str, Any]] = classmethod(_hook_ui_field_behaviour)
get_connection_form_widgets: classmethod[Any, [], dict[str, Any]] = classmethod(_hook_connection_form_widgets)
