"""A key's observed task durations, shared through the Redis of its rate budget (scope ``"redis"``).

Where every machine shares a key's rate budget through Redis, every machine's waits also learn
from each other's durations (:mod:`airflow_provider_lotimage.client.durations`): each observation is
pushed onto a short list named ``lotimage:durations:<identity>:<kind>``, trimmed to the book's
window and expiring a day after the last push. The identity is the key's digest
(:func:`~airflow_provider_lotimage.ratelimit.base.key_identity`) and an observation is two numbers
(seconds, measured or not): neither the key nor a prompt ever reaches Redis.

Best effort, as the budget: the same :class:`~.redis_link.RedisLink` rules (short timeouts, no
retries, one try every few seconds while Redis is away), and while Redis is away the book uses
this process's own observations. A push never makes its caller wait (it may be a trigger's event
loop): pushes run one at a time in a thread of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from airflow_provider_lotimage.client.durations import WINDOW, Observation
from airflow_provider_lotimage.ratelimit.redis_link import RedisLink, SharedThing, link_for

#: Names a key's durations of one kind in Redis; followed by ``<identity>:<kind>``, never the key.
KEY_PREFIX = "lotimage:durations:"
#: Seconds a key's durations stay in Redis after the last push.
TTL = 86400
#: How the link's log lines name what it shares.
DURATIONS = SharedThing(
    "the LotImage durations book", "each process learns LotImage task durations on its own"
)

# KEYS[1]: the list of one key and kind, oldest first. ARGV: op ("push" | "recent"); for a push,
# the observation, the window and the TTL.
_SCRIPT = """
local key, op = KEYS[1], ARGV[1]
if op == 'push' then
  redis.call('RPUSH', key, ARGV[2])
  redis.call('LTRIM', key, -tonumber(ARGV[3]), -1)
  redis.call('EXPIRE', key, tonumber(ARGV[4]))
  return 1
end
return redis.call('LRANGE', key, 0, -1)
"""


class RedisDurations:
    """The shared observations of one key (a :class:`~..client.durations.SharedDurations`)."""

    def __init__(self, link: RedisLink, identity: str) -> None:
        self.link = link
        self.identity = identity
        self._pushes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lotimage-durations")

    def key(self, kind: str) -> str:
        """Return the Redis key of this LotImage key's durations of ``kind``."""
        return f"{KEY_PREFIX}{self.identity}:{kind}"

    def push(self, kind: str, observation: Observation) -> None:
        """Queue the observation for Redis; returns at once."""
        self._pushes.submit(self.link.run, self.key(kind), ["push", observation.to_text(), WINDOW, TTL])

    def recent(self, kind: str) -> Sequence[Observation] | None:
        """Return the shared observations of ``kind``, oldest first; None while Redis is away."""
        reply = self.link.run(self.key(kind), ["recent"])
        if reply is None:
            return None
        return [seen for seen in map(Observation.from_text, reply) if seen is not None]

    def flush(self) -> None:
        """Wait until the queued pushes are done (or given up)."""
        self._pushes.submit(lambda: None).result()

    def __repr__(self) -> str:
        return f"<RedisDurations {self.identity} via {self.link!r}>"


def shared_durations(conn_id: str, identity: str) -> RedisDurations:
    """Return the shared durations of a key in the Redis of ``conn_id`` (reads the connection).

    :raises LimiterConfigError: the provider is missing, or the connection is absent or unusable.
    """
    return RedisDurations(link_for(conn_id, _SCRIPT, DURATIONS), identity)
