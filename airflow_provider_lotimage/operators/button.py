"""ButtonOperator: press a button (upscale, variation, reroll, zoom, vary) of a finished task."""

from __future__ import annotations

from typing import Any

from airflow_provider_lotimage.client.schedule import kind_of_button
from airflow_provider_lotimage.client.validation import validate_button, validate_task_id
from airflow_provider_lotimage.operators.submit import LotImageSubmitOperator
from airflow_provider_lotimage.utils.templating import NOT_YET, parse_time_value


class ButtonOperator(LotImageSubmitOperator):
    """Press ``button`` on a finished LotImage task; return the new taskId, or its result when waiting.

    Each press is a paid task: like :class:`~airflow_provider_lotimage.operators.imagine.ImagineOperator`
    it takes a place in the run's ``max_paid_tasks_per_run`` budget (a DAG param) before the call
    and fails without Airflow retries once none is left, or once the key's daily quota is spent.

    :param lotimage_task_id: the parent task (templated): its taskId, or its result dict (as
        returned by TaskProgressSensor or a waiting operator), in which case the button is also
        checked against the buttons the parent offers.
    :param button: the exact label, e.g. ``"U1"``, ``"V3"``, ``"🔄"``, ``"Zoom Out 2x"`` (templated).
    """

    template_fields = ("lotimage_task_id", "button", "webhook")

    def __init__(self, *, lotimage_task_id: str | dict[str, Any], button: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lotimage_task_id = lotimage_task_id
        self.button = button
        if (known := parse_time_value(button)) is not NOT_YET:
            validate_button(known)  # fail at parse time when the value is already known

    def validate(self) -> None:
        """Also check the parent taskId and the button, against the parent's buttons when known."""
        super().validate()
        parent: Any = self.lotimage_task_id
        offered = None
        if isinstance(parent, dict):
            offered = parent.get("buttons")
            parent = parent.get("lotimage_task_id")
        self.parent_task_id = validate_task_id(parent)
        self.button = validate_button(self.button, allowed=offered or None)

    def request_fields(self) -> dict[str, Any]:
        """Add the parent taskId and the button to the fingerprinted fields."""
        return {**super().request_fields(), "parent": self.parent_task_id, "button": self.button}

    def task_kind(self) -> str:
        """Return the kind the button makes: an upscale takes seconds, other buttons a grid's time."""
        return kind_of_button(self.button)

    def submit(self) -> str:
        """Press the button on the parent task (a paid task) and return the new taskId."""
        return self.hook.press_button(
            self.parent_task_id, self.button, cutting=self.cutting, webhook=self.submit_webhook
        )
