"""The contract's rules: which request is refused with which message, and what a button does.

Each function decides one thing from a request and the state it is shown, and either returns the
refusal (an :class:`Answer`) or what the request means. The engine decides *when* to ask and holds
the lock; keeping the decisions here puts every message of the contract next to the condition that
produces it, in the order the service checks them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lotimage_emulator.contract import (
    GRID_BUTTONS,
    MAX_PROMPT_LENGTH,
    MSG_ALREADY_UPSCALED,
    MSG_BANNED,
    MSG_BUTTON_NOT_FOUND,
    MSG_INVALID,
    MSG_KEY,
    MSG_NOT_FINISHED,
    MSG_NOT_FOUND,
    MSG_PROMPT_REQUIRED,
    MSG_QUOTA,
    MSG_RATE,
    REROLL_BUTTON,
    UPSCALE_BUTTONS,
    UPSCALED_BUTTONS,
    VARIATION_BUTTONS,
    VARY_BUTTONS,
    ZOOM_BUTTONS,
)
from lotimage_emulator.models import Answer, Task, iso_z

if TYPE_CHECKING:
    from lotimage_emulator.config import EmulatorConfig
    from lotimage_emulator.models import KeyState

#: ``(prompt, cutting, webhook)`` of an accepted imagine call.
Imagine = tuple[str, bool, str | None]
#: ``(task id, button label, cutting, webhook)`` of a well-formed button call.
Press = tuple[str, str, bool, str | None]


def error(status: int, message: str, *, headers: dict[str, str] | None = None) -> Answer:
    """Build a refusal in the service's shape: the status repeated in the body next to ``errMessage``."""
    return Answer(status, {"status": status, "errMessage": message}, headers=dict(headers or {}))


# ------------------------------------------------------------------------------------ parameters
def bearer(header: str | None) -> str | None:
    """Return the key of an ``Authorization: Bearer <key>`` header, or ``None``."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def parse_bool(value: Any) -> bool | None:
    """``cutting`` as a JSON boolean or the strings true/false (any case); ``None`` if neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def request_options(params: dict[str, Any]) -> tuple[bool, str | None] | None:
    """Return the optional ``cutting`` and ``webhook`` of imagine/button, or ``None`` when invalid."""
    raw_cutting = params.get("cutting")
    cutting = False if raw_cutting is None or raw_cutting == "" else parse_bool(raw_cutting)
    if cutting is None:
        return None
    webhook = params.get("webhook")
    if webhook is None or webhook == "":
        return cutting, None
    if not isinstance(webhook, str) or not webhook.startswith(("http://", "https://")):
        return None
    return cutting, webhook


def imagine_request(params: dict[str, Any], banned_words: tuple[str, ...]) -> Answer | Imagine:
    """Check an imagine call: prompt present, valid and not banned, options well-formed."""
    prompt = params.get("prompt")
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        return error(400, MSG_PROMPT_REQUIRED)
    if not isinstance(prompt, str) or len(prompt) > MAX_PROMPT_LENGTH:
        return error(400, MSG_INVALID)
    options = request_options(params)
    if options is None:
        return error(400, MSG_INVALID)
    lowered = prompt.lower()
    if any(word and word in lowered for word in banned_words):
        return error(400, MSG_BANNED)
    return prompt, *options


def progress_request(params: dict[str, Any]) -> Answer | str:
    """Return the task id a progress call asks about (trimmed), or the refusal of a missing one."""
    task_id = params.get("taskId")
    if not isinstance(task_id, str) or not task_id.strip():
        return error(400, MSG_INVALID)
    return task_id.strip()


def button_request(params: dict[str, Any]) -> Answer | Press:
    """Check a button call's shape; whether the button applies is :func:`press`'s question."""
    task_id, label = params.get("taskId"), params.get("button")
    if not isinstance(task_id, str) or not task_id.strip() or not isinstance(label, str) or not label:
        return error(400, MSG_INVALID)
    options = request_options(params)
    if options is None:
        return error(400, MSG_INVALID)
    return task_id.strip(), label, *options


def owned(task: Task | None, key: str) -> Answer | Task:
    """Return the task if it exists and belongs to ``key``: another key's task is as unknown as none."""
    if task is None or task.key != key:
        return error(404, MSG_NOT_FOUND)
    return task


# ------------------------------------------------------------------------------------ gatekeeping
def key_refusal(config: EmulatorConfig, key: str | None) -> Answer | None:
    """Refuse a missing key, or one not configured (when keys are configured), before anything else."""
    if key is None or (config.keys and key not in config.keys):
        return error(401, MSG_KEY)
    return None


def rate_refusal(state: KeyState, now: float, rate_limit: float | None) -> Answer | None:
    """Return the limiter's 429 with ``Retry-After`` when the key's last second is full (``None``: off)."""
    if not rate_limit:
        return None
    wait = state.admit(now, rate_limit)
    if wait is None:
        return None
    return error(429, MSG_RATE, headers={"Retry-After": str(wait)})


def quota_refusal(state: KeyState, today: str, daily_quota: int | None) -> Answer | None:
    """Return the 403 once the key spent today's quota; calls refused earlier or by it do not count."""
    if daily_quota is None or state.charge_quota(today, daily_quota):
        return None
    return error(403, MSG_QUOTA)


# ---------------------------------------------------------------------------------------- buttons
def buttons_of(task: Task) -> tuple[str, ...]:
    """Buttons appear only on a finished task: a grid's 13, or an upscale's 4."""
    if task.state != "finished":
        return ()
    return GRID_BUTTONS if task.is_grid else UPSCALED_BUTTONS


def button_kind(label: str) -> tuple[str, int | None] | None:
    """Return the kind of task a button makes and the quadrant it is about (``None``: no such button)."""
    if label in UPSCALE_BUTTONS:
        return "upscale", UPSCALE_BUTTONS.index(label) + 1
    if label in VARIATION_BUTTONS:
        return "variation", VARIATION_BUTTONS.index(label) + 1
    if label == REROLL_BUTTON:
        return "reroll", None
    if label in ZOOM_BUTTONS:
        return "zoom", None
    if label in VARY_BUTTONS:
        return "vary", None
    return None


def press(parent: Task, label: str) -> Answer | tuple[str, int | None]:
    """Press ``label`` on ``parent``: the new task's kind and quadrant, or why it cannot be pressed.

    A quadrant can be upscaled once; the press is recorded on the parent here so a second one is
    refused even while the first upscale still runs.
    """
    if parent.state != "finished":
        return error(400, MSG_NOT_FINISHED)
    if label not in buttons_of(parent):
        return error(400, MSG_BUTTON_NOT_FOUND)
    meaning = button_kind(label)
    if meaning is None:  # pragma: no cover - buttons_of only yields labels button_kind knows
        return error(400, MSG_BUTTON_NOT_FOUND)
    kind, quadrant = meaning
    if kind == "upscale":
        assert quadrant is not None
        if quadrant in parent.used_upscales:
            return error(400, MSG_ALREADY_UPSCALED)
        parent.used_upscales.add(quadrant)
    return kind, quadrant


# --------------------------------------------------------------------------------------- progress
def progress_body(task: Task, progress: int) -> dict[str, Any]:
    """Build the ``task/progress`` body (also the webhook's) of ``task`` showing ``progress``."""
    image_url = ""
    if task.state == "finished" and task.images:
        image_url = task.url(task.images["grid" if task.is_grid else "upscale"])
    body: dict[str, Any] = {
        "taskId": task.id,
        "prompt": task.prompt,
        "imageUrl": image_url,
        "progress": progress,
        "createdAt": iso_z(task.created_at),
        "buttons": list(buttons_of(task)),
        "originatingMessageId": task.parent_id or "",
        "ref": "",
        "status": 200,
    }
    if task.state == "finished" and task.cutting and "q1" in task.images:
        body["imageUrls"] = [task.url(task.images[f"q{n}"]) for n in range(1, 5)]
    if task.state == "failed":
        body["status"] = task.fail_status
        body["errMessage"] = task.fail_message
    return body
