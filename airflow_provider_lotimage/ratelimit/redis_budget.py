"""A key's rate budget kept in Redis (scope ``"redis"``): one budget for every machine reaching it.

The budget is the algorithm of :class:`~airflow_provider_lotimage.ratelimit.local.SlidingWindowLimiter`
run inside Redis as one Lua script, so that a reservation is atomic across machines:

* ``take`` reserves the earliest free slot (the same sliding-window rule as ``_take``) and answers
  how many seconds the caller must wait for it;
* ``block`` holds every caller back for some seconds (a 429's ``Retry-After``, or a call that left
  late);
* ``check`` tells a caller who slept whether a block overtook its slot meanwhile.

The script reads the time from the Redis server (``TIME``) and callers only ever exchange
*relative* delays with it (plus an opaque slot token they hand back to ``check``), so the clocks of
the machines need not agree. No library was used: ``limits`` and ``pyrate-limiter`` test-and-count
hits ("may I call now?"), so callers would poll for a slot, and neither keeps a shared hold-until.

The budget is a small hash named ``lotimage:rate:<identity>``, where the identity is the digest of
:func:`~airflow_provider_lotimage.ratelimit.base.key_identity`: the LotImage key never reaches Redis. It
expires once idle. When Redis does not answer (:mod:`.redis_link` decides), the key's callers fall
back to their machine's budget (scope ``"host"``): work never waits on a dead Redis.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_provider_lotimage.ratelimit.base import late_send_hold, woke_too_late
from airflow_provider_lotimage.ratelimit.local import SlidingWindowLimiter
from airflow_provider_lotimage.ratelimit.redis_link import RedisLink, link_for

#: Names a key's budget in Redis; followed by the key's identity digest, never the key.
KEY_PREFIX = "lotimage:rate:"
#: Seconds an idle budget stays in Redis after its last slot or hold-back has passed.
IDLE_TTL = 30

# KEYS[1]: the budget, a hash of "slots" (the live reservations) and "blocked" (hold-until).
# ARGV: op ("take" | "block" | "check"), calls, period (s), the op's value (block: seconds from
# now; check: a slot token from take), idle TTL (s). Every time is the server's own clock.
_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local key, op = KEYS[1], ARGV[1]
local calls, period, value, idle = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', key, 'slots', 'blocked')
local blocked = tonumber(state[2]) or 0
if op == 'check' then
  if tonumber(value) >= blocked then return 1 end
  return 0
end
local slots = {}
for s in string.gmatch(state[1] or '', '%S+') do
  local slot = tonumber(s)
  if slot > now - period then table.insert(slots, slot) end
end
table.sort(slots)
local answer
if op == 'take' then
  local slot = math.max(now, blocked)
  if #slots >= calls then slot = math.max(slot, slots[#slots - calls + 1] + period) end
  table.insert(slots, slot)
  table.sort(slots)
  while #slots > calls do table.remove(slots, 1) end
  answer = {string.format('%.6f', slot - now), string.format('%.6f', slot)}
elseif op == 'block' then
  blocked = math.max(blocked, now + math.max(0, tonumber(value)))
  answer = {string.format('%.6f', blocked - now)}
else
  return redis.error_reply('unknown op ' .. tostring(op))
end
local kept = {}
for i, slot in ipairs(slots) do kept[i] = string.format('%.6f', slot) end
redis.call('HSET', key, 'slots', table.concat(kept, ' '), 'blocked', string.format('%.6f', blocked))
local last = math.max(blocked, slots[#slots] or now)
redis.call('PEXPIRE', key, math.ceil((last - now + period + idle) * 1000))
return answer
"""


@dataclass(frozen=True)
class _Reservation:
    """A slot granted by Redis: when to call by this machine's clock, and the server's token for it."""

    slot: float
    token: str


class RedisBudget:
    """The rate limiter of one key whose budget lives in Redis; see the module's description.

    Same reservations, margin and hold-backs as
    :class:`~airflow_provider_lotimage.ratelimit.local.SlidingWindowLimiter`, decided by the server for
    every machine at once. Whenever the link says Redis is away, ``fallback`` (this machine's
    ``host`` limiter of the key) decides instead. Hold-backs are written to both, so a 429 still
    holds this machine back if Redis goes away meanwhile.
    """

    def __init__(
        self,
        link: RedisLink,
        identity: str,
        calls: int,
        period: float,
        fallback: SlidingWindowLimiter,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.link = link
        self.key = f"{KEY_PREFIX}{identity}"
        self.calls = calls
        self.period = period
        self.fallback = fallback
        self._clock = clock

    def reserve(self) -> float:
        """Reserve the next free slot and return how many seconds to wait for it (>= 0)."""
        taken = self._take()
        if taken is None:
            return self.fallback.reserve()
        return max(0.0, taken.slot - self._clock())

    def acquire(self) -> float:
        """Block the calling thread until its reserved slot; returns the slot (this machine's clock)."""
        while True:
            taken = self._take()
            if taken is None:
                return self.fallback.acquire()
            if (delay := taken.slot - self._clock()) > 0:
                time.sleep(delay)
                if woke_too_late(taken.slot, self._clock()) or self._overtaken(
                    self.link.run(self.key, self._args("check", taken.token))
                ):
                    continue
            return taken.slot

    async def acquire_async(self) -> float:
        """Wait, without blocking the event loop (and without the sync client), until the slot."""
        async with self.link.leased():
            while True:
                asked = self._clock()
                taken = self._reservation(await self.link.arun(self.key, self._args("take")), asked)
                if taken is None:
                    return await self.fallback.acquire_async()
                if (delay := taken.slot - self._clock()) > 0:
                    await asyncio.sleep(delay)
                    if woke_too_late(taken.slot, self._clock()) or self._overtaken(
                        await self.link.arun(self.key, self._args("check", taken.token))
                    ):
                        continue
                return taken.slot

    def block_for(self, seconds: float) -> None:
        """Hold every caller of the key, on every machine, back for ``seconds`` (a 429)."""
        self.fallback.block_for(seconds)
        self.link.run(self.key, self._args("block", seconds))

    async def ablock_for(self, seconds: float) -> None:
        """:meth:`block_for` with the loop's asyncio client."""
        self.fallback.block_for(seconds)
        await self.link.arun(self.key, self._args("block", seconds))

    def sent(self, slot: float, sent_at: float) -> None:
        """Report when a call really left; a late one holds every caller back one window from then."""
        if hold := late_send_hold(slot, sent_at, self.period, self._clock()):
            self.block_for(hold)

    async def asent(self, slot: float, sent_at: float) -> None:
        """:meth:`sent`, from the async transport's send-time trace."""
        if hold := late_send_hold(slot, sent_at, self.period, self._clock()):
            await self.ablock_for(hold)

    def _take(self) -> _Reservation | None:
        asked = self._clock()
        return self._reservation(self.link.run(self.key, self._args("take")), asked)

    def _reservation(self, reply: Any, asked: float) -> _Reservation | None:
        """Turn the server's relative wait into this machine's time; ``None`` when Redis is away.

        The server decided somewhere between asking and answering: the middle is the best guess.
        """
        if reply is None:
            return None
        wait, token = reply
        return _Reservation((asked + self._clock()) / 2 + float(wait), _text(token))

    @staticmethod
    def _overtaken(check: Any) -> bool:
        """Whether a block overtook a slot; when Redis is away, the granted slot stands."""
        return check is not None and int(check) == 0

    def _args(self, op: str, value: float | str = 0) -> list[Any]:
        return [op, self.calls, repr(self.period), value if isinstance(value, str) else repr(value), IDLE_TTL]

    def __repr__(self) -> str:
        return f"<RedisBudget {self.key} via {self.link!r}>"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_budgets: dict[tuple[RedisLink, str, int, float], RedisBudget] = {}
_budgets_lock = threading.Lock()


def budget_for(
    conn_id: str, identity: str, calls: int, period: float, fallback: SlidingWindowLimiter
) -> RedisBudget:
    """Return this process's budget of a key in the Redis of ``conn_id``.

    :raises LimiterConfigError: the provider is missing, or the connection is absent or unusable.
    """
    link = link_for(conn_id, _SCRIPT)
    with _budgets_lock:
        key = (link, identity, calls, period)
        budget = _budgets.get(key)
        if budget is None:
            budget = _budgets[key] = RedisBudget(link, identity, calls, period, fallback)
        return budget
