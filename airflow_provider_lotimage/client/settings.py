"""What a LotImage connection says, read once into one settings object for both transports.

The sync transport (``requests``) and the async one (``aiohttp``, in the triggerer) are built from the
same :class:`ConnectionSettings`, so a proxy, a private CA or a client certificate set on the
connection applies to every call, whichever mode the task waits in. The network extras mean what
``HttpHook`` documents for them:

* ``proxies``: a mapping such as ``{"https": "http://proxy:3128"}`` (``proxy`` is accepted too); keys
  are chosen per URL as ``requests`` chooses them (``scheme://host``, ``scheme``, ``all``).
* ``verify``: ``true`` (default: the CA bundle ``requests`` ships), ``false``, or the path of a CA
  bundle (a file, or a directory prepared with ``c_rehash``); ``verify_ssl`` is accepted too.
* ``cert``: a client certificate: the path of a PEM holding certificate and key, or a
  ``[certificate, key]`` pair of paths.
* ``trust_env``: read ``HTTP(S)_PROXY``/``NO_PROXY``, ``REQUESTS_CA_BUNDLE`` and ``.netrc`` from the
  environment (default ``true``, as ``requests`` does).

``webhook_base_url`` turns webhook completion on (:mod:`airflow_provider_lotimage.webhooks`).

The rate extras (``rate_limit``, ``rate_limit_scope``, ``rate_limit_redis_conn_id``) say which limiter
the key gets; the hook asks :func:`~airflow_provider_lotimage.ratelimit.registry.limiter_of` for it.
The settings are data: building them reads no other connection and opens nothing (a CA bundle or
client certificate path is only checked to exist), so a picture download's session needs neither
the API transport nor the limiter. Every mistake is reported before any call, naming the connection
and the field; those only the limiter can see (a Redis connection that does not exist) when the
hook builds it, also before the first call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_lotimage.client import contract
from airflow_provider_lotimage.client.validation import check_webhook
from airflow_provider_lotimage.exceptions import AuthError, ConnectionConfigError, LotImageInputError

DEFAULT_TIMEOUT = 30.0
#: Where a key's rate budget is shared (``rate_limit_scope``): by every machine reaching one Redis,
#: by the processes of a machine, or within one process.
SCOPES = frozenset({"host", "process", "redis"})
#: The Redis connection that holds the budget when the scope is ``"redis"``.
DEFAULT_REDIS_CONN_ID = "redis_default"

Verify = bool | str
ClientCert = str | tuple[str, str] | None


@dataclass(frozen=True)
class ConnectionSettings:
    """Everything a call needs from the connection. The key is kept out of ``repr``."""

    conn_id: str
    base_url: str
    api_key: str = field(repr=False)
    timeout: float = DEFAULT_TIMEOUT
    rate_limit: float = contract.DEFAULT_RATE_LIMIT_PER_SECOND
    rate_limit_scope: str = "host"
    rate_limit_redis_conn_id: str = DEFAULT_REDIS_CONN_ID
    proxies: Mapping[str, str] = field(default_factory=dict)
    verify: Verify = True
    cert: ClientCert = None
    trust_env: bool = True
    #: Webhook completion: the public address of Airflow's api-server (``None``: polling only).
    webhook_base_url: str | None = None

    def url(self, path: str) -> str:
        """Return the absolute URL of an API path."""
        return f"{self.base_url}{path}"


def read_settings(conn: Any, extra: Mapping[str, Any]) -> ConnectionSettings:
    """Read a LotImage connection into :class:`ConnectionSettings`.

    :param conn: the Airflow connection (host = base URL, password = API key).
    :param extra: its extras, already decoded from JSON.
    :return: the settings both transports are built from.
    :raises AuthError: the connection has no key.
    :raises ConnectionConfigError: a field of the wrong type or value.
    """
    conn_id = str(conn.conn_id)
    field_error = _FieldErrors(conn_id)
    scope = field_error.scope(extra.get("rate_limit_scope"))
    return ConnectionSettings(
        conn_id=conn_id,
        base_url=base_url(conn.host, conn.port),
        api_key=api_key(conn_id, conn.password),
        timeout=field_error.positive(extra, "timeout", DEFAULT_TIMEOUT),
        rate_limit=field_error.positive(extra, "rate_limit", contract.DEFAULT_RATE_LIMIT_PER_SECOND),
        rate_limit_scope=scope,
        rate_limit_redis_conn_id=field_error.redis_conn_id(
            extra.get("rate_limit_redis_conn_id"), used=scope == "redis"
        ),
        proxies=field_error.proxies(extra.get("proxies", extra.get("proxy"))),
        verify=field_error.verify(extra.get("verify", extra.get("verify_ssl"))),
        cert=field_error.cert(extra.get("cert")),
        trust_env=field_error.boolean("trust_env", extra.get("trust_env"), default=True),
        webhook_base_url=field_error.webhook_base_url(extra.get("webhook_base_url")),
    )


def api_key(conn_id: str, password: Any) -> str:
    """Return the connection's API key without surrounding whitespace, or refuse it.

    A key read from a secret file usually ends in a newline, and pasted keys pick up spaces: those
    are dropped. What remains must be printable ASCII without spaces (RFC 6750's token characters
    are a subset): a control character would make ``http.client`` refuse the header quoting the
    whole key, which Airflow's masker (it knows the key, not its escaped form) would not hide, and
    a non-ASCII one would be sent as Latin-1 by ``requests`` but as UTF-8 by ``aiohttp``. The
    error says which character and where, never the key.

    :raises AuthError: the connection has no key.
    :raises ConnectionConfigError: the key holds a character no Authorization header can carry.
    """
    key = password.strip() if isinstance(password, str) else ""
    if not key:
        raise AuthError(f"Connection {conn_id!r} has no API key: put the LotImage key in its password field")
    for position, char in enumerate(key, 1):
        if not "!" <= char <= "~":
            raise ConnectionConfigError(
                f"Connection {conn_id!r}: its API key (the password field) holds {_describe(char)} at "
                f"character {position}; a LotImage key is printable ASCII without spaces. Paste the "
                "key again (surrounding spaces and newlines are dropped)"
            )
    return key


def _describe(char: str) -> str:
    """Name a character by its code point (never the key around it)."""
    code = ord(char)
    if code < 0x20 or 0x7F <= code < 0xA0:
        kind = "a control character"
    elif char.isspace():
        kind = "a space"
    else:
        kind = "a non-ASCII character"
    return f"{kind} (U+{code:04X})"


def base_url(host: str | None, port: int | None) -> str:
    """Return the API's base URL from the connection's host (which may carry scheme and port)."""
    url = (host or contract.DEFAULT_BASE_URL).strip().rstrip("/")
    if "://" not in url:
        url = f"https://{url}"
    if port and f":{port}" not in url.split("://", 1)[1]:
        url = f"{url}:{port}"
    return url


class _FieldErrors:
    """Checks of single extras; every message names the connection and the field."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id

    def error(self, name: str, problem: str) -> ConnectionConfigError:
        return ConnectionConfigError.of_extra(self.conn_id, name, problem)

    def positive(self, extra: Mapping[str, Any], name: str, default: float) -> float:
        value = extra.get(name)
        if value in (None, ""):
            return default
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise self.error(name, f"must be a number, got {value!r}") from None
        if not number > 0:
            raise self.error(name, f"must be above 0, got {value!r}")
        return number

    def scope(self, value: Any) -> str:
        scope = str(value or "host")
        if scope not in SCOPES:
            raise self.error("rate_limit_scope", f"must be one of {sorted(SCOPES)}, got {value!r}")
        return scope

    def redis_conn_id(self, value: Any, *, used: bool) -> str:
        """Check the Redis connection's id: absent means ``redis_default``.

        An empty one is a mistake only with scope ``redis``; connections of other scopes never
        read it, so a form that saves an untouched field as ``""`` does no harm there.
        """
        if value is None or (value == "" and not used):
            return DEFAULT_REDIS_CONN_ID
        if not isinstance(value, str) or not value.strip():
            raise self.error("rate_limit_redis_conn_id", f"must name a Redis connection, got {value!r}")
        return value.strip()

    def webhook_base_url(self, value: Any) -> str | None:
        if value is None or value == "":
            return None
        try:
            return check_webhook(value, name="webhook_base_url")
        except LotImageInputError as exc:
            raise self.error("webhook_base_url", str(exc)) from None

    def boolean(self, name: str, value: Any, *, default: bool) -> bool:
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "false"):
            return text == "true"
        raise self.error(name, f"must be true or false, got {value!r}")

    def proxies(self, value: Any) -> dict[str, str]:
        if value in (None, ""):
            return {}
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self.error("proxies", 'must map schemes to proxy URLs, e.g. {"https": "http://proxy:3128"}')
        return dict(value)

    def verify(self, value: Any) -> Verify:
        if value is None or isinstance(value, bool) or str(value).strip().lower() in ("true", "false"):
            return self.boolean("verify", value, default=True)
        path = str(value)
        if not os.path.exists(path):
            raise self.error("verify", f"is neither true/false nor an existing CA bundle path: {path!r}")
        return path

    def cert(self, value: Any) -> ClientCert:
        if value in (None, ""):
            return None
        paths = [value] if isinstance(value, str) else value
        if not isinstance(paths, list | tuple) or len(paths) not in (1, 2):
            raise self.error("cert", "must be a PEM path or a [certificate, key] pair of paths")
        for path in paths:
            if not isinstance(path, str) or not os.path.isfile(path):
                raise self.error("cert", f"no such file: {path!r}")
        return paths[0] if len(paths) == 1 else (paths[0], paths[1])
