"""The provider's error taxonomy.

Each class says what the caller should do: retry (:class:`TransientError`, :class:`RateLimitedError`),
fix the input or the connection (:class:`AuthError`, :class:`InvalidRequestError`), wait for a new
day (:class:`QuotaExhaustedError`), or look the task up before paying again
(:class:`AmbiguousSubmitError`). Messages quote the service's ``errMessage`` and never carry the key.
They derive from ``Exception`` only, so the parser works without Airflow configured.
"""

from __future__ import annotations


class LotImageError(Exception):
    """Base class of every error this provider raises about LotImage."""

    #: Whether the same request may simply be sent again.
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        status: int | None = None,
        task_id: str | None = None,
    ) -> None:
        self.message = message
        self.http_status = http_status
        self.status = status
        self.task_id = task_id
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [self.message]
        if self.task_id:
            parts.append(f"(LotImage task {self.task_id})")
        if self.status is not None:
            parts.append(f"[status {self.status}]")
        return " ".join(parts)

    def __reduce__(self):  # keep keyword arguments when pickled across processes
        return (
            _rebuild,
            (type(self), self.message, self.http_status, self.status, self.task_id, self.__dict__),
        )


def _rebuild(cls, message, http_status, status, task_id, state):  # type: ignore[no-untyped-def]
    obj = cls.__new__(cls)
    LotImageError.__init__(obj, message, http_status=http_status, status=status, task_id=task_id)
    obj.__dict__.update(state)
    return obj


class AuthError(LotImageError):
    """The key was refused (status 401). Check the connection's API key; retrying cannot help."""


class InvalidRequestError(LotImageError):
    """The request was rejected (status 400): bad parameter, banned prompt, unknown button."""


class QuotaExhaustedError(LotImageError):
    """The key's daily quota is spent (status 403). Nothing will succeed before the next day."""


class TaskNotFoundError(LotImageError):
    """The service does not know the taskId (status 404): a typo, or a task that expired."""


class TransientError(LotImageError):
    """A temporary failure (5xx, dropped connection, unreadable body): safe to retry a read."""

    retryable = True


class ServiceUnreachableError(TransientError):
    """The request never reached LotImage (connection refused, connect timeout): safe to resend."""


class MalformedResponseError(TransientError):
    """The service answered something that is not the documented JSON."""


class RateLimitedError(TransientError):
    """Too many calls for the key (status 429). Wait ``retry_after`` seconds, then retry."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class AmbiguousSubmitError(LotImageError):
    """A paid call failed in a way that does not tell whether the task was created.

    Resending could pay twice, so the provider stops and says how to find the task instead.
    """


class TaskFailedError(LotImageError):
    """The LotImage task ran and failed; the message is the service's ``errMessage``."""


class TaskStalledError(LotImageError):
    """The task made no progress for longer than the configured stall timeout."""


class TaskTimeoutError(LotImageError):
    """The task did not finish within the wait's ``timeout``."""


class ImageDownloadError(LotImageError):
    """A picture could not be fetched or is not a picture (expired link, too large, wrong type)."""


class LotImageInputError(LotImageError, ValueError):
    """A parameter is unusable; raised before any call, so no budget is spent."""
