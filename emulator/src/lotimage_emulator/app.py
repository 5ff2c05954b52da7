"""The emulator's HTTP layer on aiohttp.web: decoding, answer styles, faults, pictures, admin.

aiohttp is used rather than a framework on top of ASGI because fault injection needs the socket:
``drop_connection`` closes the transport in the middle of a request, which an ASGI server does not
let an application do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from email import policy
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aiohttp import web

from lotimage_emulator import render
from lotimage_emulator.contract import BUTTON_PATH, IMAGINE_PATH, PROGRESS_PATH
from lotimage_emulator.faults import DEFAULT_ERR_MESSAGES, FaultError, FaultRule
from lotimage_emulator.models import dumps
from lotimage_emulator.rules import bearer, error
from lotimage_emulator.webhooks import WebhookSender

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from lotimage_emulator.engine import Engine
    from lotimage_emulator.models import Answer, ImageRef, Task

log = logging.getLogger("lotimage_emulator")

ADMIN_PREFIX = "/_emulator"
IMAGE_PREFIX = f"{ADMIN_PREFIX}/images"
#: Request faults that replace the answer (``delay`` only postpones it).
_SPOILERS = ("http_429", "http_status", "malformed_json", "drop_connection")
_TICK_SECONDS = 0.02
_HTML_TITLES = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Time-out",
    429: "Too Many Requests",
}
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def decode_params(raw: bytes, content_type: str | None = None) -> dict[str, Any] | None:
    """Decode a JSON, form-urlencoded or multipart body by sniffing it; ``None`` if undecodable.

    The body is trusted over the ``Content-Type`` header because the vendor's own Java sample
    labels a multipart body ``application/json``.
    """
    stripped = raw.strip()
    if not stripped:
        return {}
    if stripped[:1] in (b"{", b"["):
        try:
            data = json.loads(stripped)
        except (ValueError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None
    boundary = None
    if stripped.startswith(b"--"):
        boundary = stripped.split(b"\n", 1)[0][2:].strip()
    elif content_type and "multipart/" in content_type.lower():
        match = re.search(r'boundary="?([^";]+)"?', content_type, re.IGNORECASE)
        boundary = match.group(1).encode("latin-1") if match else None
    if boundary:
        return _decode_multipart(raw, boundary)
    try:
        text = stripped.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "=" not in text:
        return None
    return dict(parse_qsl(text, keep_blank_values=True))


def _decode_multipart(raw: bytes, boundary: bytes) -> dict[str, Any] | None:
    """Form fields of a multipart body (files are read as text too: they are never expected)."""
    header = b'Content-Type: multipart/form-data; boundary="' + boundary + b'"\r\n\r\n'
    try:
        message = BytesParser(policy=policy.default).parsebytes(header + raw)
    except Exception:  # the email parser is lenient; anything it still rejects is a bad request
        return None
    if not message.is_multipart():
        return None
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            fields.setdefault(name, payload.decode("utf-8", errors="replace"))
    return fields or None


#: Pieces a ``slow_body`` picture is sent in, evenly spread over the rule's ``seconds``.
_SLOW_BODY_PIECES = 40


async def _send_slowly(request: web.Request, data: bytes, seconds: float) -> web.StreamResponse:
    """Send ``data`` in :data:`_SLOW_BODY_PIECES` pieces over ``seconds`` (a correct length header).

    A client that hangs up (or is killed) mid-way just ends the answer.
    """
    response = web.StreamResponse(
        headers={"Content-Type": "image/png", "Cache-Control": "private, max-age=60"}
    )
    response.content_length = len(data)
    step = max(1, -(-len(data) // _SLOW_BODY_PIECES))
    pause = seconds / _SLOW_BODY_PIECES
    try:
        await response.prepare(request)
        for start in range(0, len(data), step):
            await asyncio.sleep(pause)
            await response.write(data[start : start + step])
        await response.write_eof()
    except ConnectionError:
        log.info("picture download ended by the client mid-body")
    return response


def _json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=dumps(body), status=status, headers=headers, content_type="application/json", charset="utf-8"
    )


class EmulatorApp:
    """Builds the aiohttp application around an :class:`Engine` and runs its background work."""

    def __init__(
        self, engine: Engine, executor: Executor | None = None, cache: render.PngCache | None = None
    ) -> None:
        self.engine = engine
        self.executor = executor
        self.cache = cache or render.PngCache(engine.config.render_cache_entries)
        self.webhooks = WebhookSender(engine)
        self._ticker: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------------------------- set-up
    def build(self) -> web.Application:
        """Build the application with every route; background work starts and stops with it."""
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post(IMAGINE_PATH, self._api("imagine"))
        app.router.add_post(PROGRESS_PATH, self._api("progress"))
        app.router.add_post(BUTTON_PATH, self._api("button"))
        app.router.add_get(IMAGE_PREFIX + "/{token}.png", self.image)
        app.router.add_get(f"{ADMIN_PREFIX}/health", self.health)
        app.router.add_get(f"{ADMIN_PREFIX}/stats", self.stats)
        app.router.add_get(f"{ADMIN_PREFIX}/tasks", self.tasks)
        app.router.add_get(f"{ADMIN_PREFIX}/webhooks", self.webhook_log)
        app.router.add_get(f"{ADMIN_PREFIX}/faults", self.list_faults)
        app.router.add_post(f"{ADMIN_PREFIX}/faults", self.add_faults)
        app.router.add_delete(f"{ADMIN_PREFIX}/faults", self.clear_faults)
        app.router.add_delete(f"{ADMIN_PREFIX}/faults/{{rule_id}}", self.remove_fault)
        app.router.add_get(f"{ADMIN_PREFIX}/config", self.get_config)
        app.router.add_post(f"{ADMIN_PREFIX}/config", self.set_config)
        app.router.add_post(f"{ADMIN_PREFIX}/reset", self.reset)
        app.router.add_post(f"{ADMIN_PREFIX}/next-day", self.next_day)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, _app: web.Application) -> None:
        await self.webhooks.start()
        self._ticker = asyncio.create_task(self._tick_forever())

    async def _on_cleanup(self, _app: web.Application) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._ticker
        await self.webhooks.stop()

    # -------------------------------------------------------------------------------- API calls
    def _api(self, endpoint: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self.handle_api(request, endpoint)

        return handler

    async def handle_api(self, request: web.Request, endpoint: str) -> web.StreamResponse:
        """Faults before, the engine, faults after: the order a proxy in front of the service sees."""
        engine = self.engine
        key = bearer(request.headers.get("Authorization"))
        engine.note_request(endpoint, key)
        raw = await request.read()
        params = decode_params(raw, request.headers.get("Content-Type"))
        prompt = engine.prompt_of(endpoint, params)
        spoilt = await self._request_faults(request, endpoint, prompt, None, after=False)
        if spoilt is not None:
            return spoilt
        base_url = f"{request.scheme}://{request.host}"
        answer = engine.call(endpoint, key, params, base_url)
        spoilt = await self._request_faults(request, endpoint, prompt, answer, after=True)
        if spoilt is not None:
            return spoilt
        return self._respond(endpoint, answer)

    async def _request_faults(
        self,
        request: web.Request,
        endpoint: str,
        prompt: str | None,
        answer: Answer | None,
        *,
        after: bool,
    ) -> web.StreamResponse | None:
        """Apply the request faults that fit the call: a delay, then at most one spoiler."""
        faults = self.engine.faults
        where: dict[str, Any] = {"after_processing": after, "prompt": prompt}
        delay = faults.take("request", endpoint, kinds=("delay",), **where)
        if delay is not None:
            self.engine.note_event("delays")
            await asyncio.sleep(delay.seconds)
        rule = faults.take("request", endpoint, kinds=_SPOILERS, **where)
        return None if rule is None else self._spoil(request, endpoint, rule, answer)

    def _respond(self, endpoint: str, answer: Answer) -> web.Response:
        mirror = self.engine.config.mirror_http_status
        http_status = answer.status if mirror else 200
        self.engine.note_answer(endpoint, str(answer.status), http_status)
        return _json_response(answer.body, http_status, answer.headers)

    def _spoil(
        self, request: web.Request, endpoint: str, rule: FaultRule, answer: Answer | None
    ) -> web.StreamResponse:
        """Replace an answer as the fault ``rule`` says."""
        note = self.engine.note_answer
        if rule.kind == "drop_connection":
            self.engine.note_event("dropped_connections")
            note(endpoint, "dropped", None)
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=200)
        if rule.kind == "malformed_json":
            text = rule.body
            if text is None:
                full = dumps(answer.body) if answer is not None else '{"status": 200, "taskId": "x"}'
                text = full[: max(1, len(full) // 2)]
            note(endpoint, "malformed", 200)
            return web.Response(text=text, status=200, content_type="application/json")
        code = 429 if rule.kind == "http_429" else int(rule.status or 503)
        message = rule.err_message or DEFAULT_ERR_MESSAGES.get(code, "Internal error")
        headers: dict[str, str] = {}
        if rule.kind == "http_429" and rule.retry_after is not None:
            headers["Retry-After"] = _seconds(rule.retry_after)
        if rule.html:
            title = f"{code} {_HTML_TITLES.get(code, 'Error')}"
            page = (
                f"<html><head><title>{title}</title></head><body><center><h1>{title}</h1>"
                "</center><hr><center>nginx</center></body></html>"
            )
            note(endpoint, str(code), code)
            return web.Response(text=page, status=code, headers=headers, content_type="text/html")
        if rule.body_only is None:  # as the service answers its own errors
            return self._respond(endpoint, error(code, message, headers=headers))
        http_status = 200 if rule.body_only else code
        note(endpoint, str(code), http_status)
        return _json_response({"status": code, "errMessage": message}, http_status, headers)

    # ---------------------------------------------------------------------------------- images
    async def image(self, request: web.Request) -> web.StreamResponse:
        """Serve a picture link like a CDN would: no auth, 403 once the signed link expired."""
        token = request.match_info["token"]
        if not _TOKEN.match(token):
            return web.Response(status=404, text="Not found")
        outcome, task, ref = self.engine.image(token)
        if outcome == "missing" or task is None or ref is None:
            return web.Response(status=404, text="Not found")
        if outcome == "expired":
            return web.Response(status=403, text="This content is no longer available.")
        size = self.engine.config.grid_size
        level = self.engine.config.png_compress_level
        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(self.executor, self._png, task, ref, size, level)
        slow = self.engine.faults.take("image", None, kinds=("slow_body",), prompt=task.prompt)
        if slow is not None:
            self.engine.note_event("slow_bodies")
            return await _send_slowly(request, data, slow.seconds)
        return web.Response(
            body=data, content_type="image/png", headers={"Cache-Control": "private, max-age=60"}
        )

    def _png(self, task: Task, ref: ImageRef, size: int, level: int) -> bytes:
        key = (task.id, ref.variant, size, level)
        return self.cache.get_or_render(key, lambda: render.to_png(_draw(task, ref.variant, size), level))

    # ----------------------------------------------------------------------------------- admin
    async def health(self, _request: web.Request) -> web.Response:
        """Liveness probe for scripts that start the CLI and wait for it."""
        return _json_response({"status": "ok"})

    async def stats(self, _request: web.Request) -> web.Response:
        """Counters a test asserts on from another process."""
        data = self.engine.stats()
        data["renders"] = self.cache.renders
        return _json_response(data)

    async def tasks(self, _request: web.Request) -> web.Response:
        """Every task, so a test can count duplicates after an ambiguous failure."""
        return _json_response({"tasks": self.engine.task_list()})

    async def webhook_log(self, _request: web.Request) -> web.Response:
        """Every webhook POST sent (time, shortened URL, task, attempt, HTTP status answered)."""
        return _json_response({"deliveries": self.engine.webhook_log()})

    async def list_faults(self, _request: web.Request) -> web.Response:
        """List the rules, with how often each has fired."""
        return _json_response({"rules": self.engine.faults.rules()})

    async def add_faults(self, request: web.Request) -> web.Response:
        """Add rules and/or set runtime flags.

        Body: one rule (``{"kind": ...}``), a list of rules, or
        ``{"rules": [...], "flags": {"mirror_http_status": true}}`` (``config`` is a synonym of
        ``flags``). All of it is validated before anything is applied.
        """
        try:
            data = await request.json()
        except ValueError:
            return _admin_error("body must be JSON")
        flags: dict[str, Any] = {}
        if isinstance(data, list):
            rule_data = data
        elif isinstance(data, dict) and "kind" in data:
            rule_data = [data]
        elif isinstance(data, dict):
            rule_data = data.get("rules") or []
            flags = {**(data.get("config") or {}), **(data.get("flags") or {})}
        else:
            return _admin_error("expected a rule, a list of rules or {rules, flags}")
        if not isinstance(rule_data, list) or not isinstance(flags, dict):
            return _admin_error("rules must be a list and flags an object")
        try:
            rules = [FaultRule.from_dict(item) for item in rule_data]
            if flags:
                self.engine.set_config(**flags)
        except (FaultError, ValueError, TypeError) as exc:
            return _admin_error(str(exc))
        for rule in rules:
            self.engine.faults.add(rule)
        return _json_response(
            {
                "status": 200,
                "rules": [rule.to_dict() for rule in rules],
                "config": self.engine.config.public_dict(),
            }
        )

    async def clear_faults(self, _request: web.Request) -> web.Response:
        """Remove every rule (runtime flags stay; ``reset`` restores them)."""
        self.engine.faults.clear()
        return _json_response({"status": 200})

    async def remove_fault(self, request: web.Request) -> web.Response:
        """Remove one rule by id."""
        found = self.engine.faults.remove(request.match_info["rule_id"])
        return _json_response({"status": 200 if found else 404}, 200 if found else 404)

    async def get_config(self, _request: web.Request) -> web.Response:
        """Return the current config (keys shown as fingerprints)."""
        return _json_response(self.engine.config.public_dict())

    async def set_config(self, request: web.Request) -> web.Response:
        """Change runtime knobs, e.g. ``{"mirror_http_status": true, "rate_limit": 10}``."""
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise TypeError("body must be a JSON object")
            config = self.engine.set_config(**changes)
        except (ValueError, TypeError) as exc:
            return _admin_error(str(exc))
        return _json_response(config.public_dict())

    async def reset(self, _request: web.Request) -> web.Response:
        """Clear tasks, counters, faults and runtime config changes."""
        self.engine.reset()
        self.cache.clear()
        return _json_response({"status": 200})

    async def next_day(self, request: web.Request) -> web.Response:
        """Start the next day of the daily quota now; body ``{"days": n}`` (optional, default 1)."""
        days: Any = 1
        if await request.read():
            try:
                data = await request.json()
            except ValueError:
                return _admin_error("body must be JSON")
            if not isinstance(data, dict):
                return _admin_error("body must be a JSON object")
            days = data.get("days", 1)
        try:
            today = self.engine.next_day(days)
        except ValueError as exc:
            return _admin_error(str(exc))
        return _json_response({"status": 200, "quota_day": today})

    # -------------------------------------------------------------------------------- webhooks
    async def _tick_forever(self) -> None:
        """Advance the clock-driven engine so webhooks fire even when nobody polls."""
        while True:
            try:
                for delivery in self.engine.drain_webhooks():
                    self.webhooks.dispatch(delivery)
            except Exception:  # never let a bug stop the clock
                log.exception("emulator tick failed")
            await asyncio.sleep(_TICK_SECONDS)


def _draw(task: Task, variant: str, size: int) -> Any:
    """Pick the drawing for a picture variant of ``task``."""
    if variant == "grid":
        return render.draw_grid(task.id, size, task.prompt)
    if variant in ("q1", "q2", "q3", "q4"):
        n = int(variant[1])
        return render.draw_tile(task.id, n, size // 2, f"{task.prompt}\n{task.id} #{n}")
    if variant == "upscale":
        return render.draw_upscale(
            task.parent_id or task.id, task.quadrant or 1, size // 2, task.prompt, task.id
        )
    return render.draw_preview(task.id, size)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _admin_error(message: str) -> web.Response:
    return _json_response({"status": 400, "errMessage": message}, 400)
