"""The prompt faults a batch meets, as the batch tests inject them into the emulator.

``dag.test()`` (tests/dags), the LocalExecutor deployment (tests/deployment) and the distributed one
(tests/distributed) run the same scenario: one prompt rejected at submission, one failed while
rendering, one stalled; each picks its prompts by a substring.
"""

from __future__ import annotations

from typing import Any

#: The service's reasons, as the report must quote them.
BANNED = "Banned prompt detected"
FILTERED = "Request cancelled due to output filters"


def reject_at_submission(emulator: Any, prompt_contains: str) -> None:
    """``imagine`` of that prompt answers 400 ``Banned prompt detected``, once; nothing is created."""
    emulator.add_fault(
        "http_status",
        endpoint="imagine",
        status=400,
        body_only=None,
        err_message=BANNED,
        prompt_contains=prompt_contains,
    )


def fail_while_rendering(emulator: Any, prompt_contains: str) -> None:
    """That prompt's grid fails at 40 % with the output filters' reason, once."""
    emulator.add_fault(
        "fail_task", endpoint="imagine", prompt_contains=prompt_contains, progress=40, err_message=FILTERED
    )


def stall(emulator: Any, prompt_contains: str) -> None:
    """That prompt's grid stops at 20 % for good, once."""
    emulator.add_fault("stall", endpoint="imagine", prompt_contains=prompt_contains, progress=20)
