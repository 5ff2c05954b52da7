"""ImagineOperator: turn a prompt into a LotImage task (and, if asked, into a finished picture)."""

from __future__ import annotations

from typing import Any

from airflow_provider_lotimage.client.schedule import KIND_IMAGINE
from airflow_provider_lotimage.operators.submit import LotImageSubmitOperator
from airflow_provider_lotimage.utils.secrets import validate_prompt
from airflow_provider_lotimage.utils.templating import NOT_YET, parse_time_value


class ImagineOperator(LotImageSubmitOperator):
    """Submit ``prompt`` to LotImage's ``imagine``; return the taskId, or the result when waiting.

    The taskId is also pushed to XCom under ``lotimage_task_id`` as soon as it is known. See
    :class:`~airflow_provider_lotimage.operators.submit.LotImageSubmitOperator` for the waiting
    and crash-safety parameters.

    Each submission is a paid task. When the DAG run has the param ``max_paid_tasks_per_run``,
    it first takes a place in that budget, shared with every other LotImage operator of the run
    (map indexes, workers and retries included), and fails before any call, without Airflow
    retries, once the run has none left (``PaidTaskBudgetError``). A submission refused because the
    key's daily quota is spent fails at once, without retries, saying when the quota resets.

    :param prompt: the Midjourney prompt (templated); at most 4000 characters. Text read from data
        may hold ``{{``: wrap it in ``airflow.sdk.literal()`` (sent as is) or pass it through XCom.
        A rendered prompt holding a secret Airflow masks is refused before any call.
    """

    template_fields = ("prompt", "webhook")

    def __init__(self, *, prompt: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prompt = prompt
        if (known := parse_time_value(prompt)) is not NOT_YET:
            validate_prompt(known)  # fail at parse time when the value is already known

    def validate(self) -> None:
        """Also check the rendered prompt, keeping it stripped."""
        super().validate()
        self.prompt = validate_prompt(self.prompt)

    def request_fields(self) -> dict[str, Any]:
        """Add the prompt to the fingerprinted fields."""
        return {**super().request_fields(), "prompt": self.prompt}

    def task_kind(self) -> str:
        """Return ``imagine``: adaptive polling expects a grid's time before the first useful read."""
        return KIND_IMAGINE

    def submit(self) -> str:
        """Submit the prompt to ``imagine`` (a paid task) and return the new taskId."""
        return self.hook.imagine(self.prompt, cutting=self.cutting, webhook=self.submit_webhook)
