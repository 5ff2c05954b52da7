"""The provider's error taxonomy, and the one policy of what each error means for a task.

Each class says what the caller should do: retry (:class:`TransientError`, :class:`RateLimitedError`),
fix the input or the connection (:class:`AuthError`, :class:`InvalidRequestError`,
:class:`ConnectionConfigError`, :class:`TLSError`, :class:`ProxyError`), wait for a new day
(:class:`QuotaExhaustedError`), or look the task up before paying again (:class:`AmbiguousSubmitError`).
Messages quote the service's ``errMessage`` and never carry the key. They derive from ``Exception``
only, so the parser works without Airflow configured.

Two class attributes are the whole policy, read by the hook, the operators, the sensor and the
trigger alike:

* ``retryable``: the same request may simply be sent again now (the retry loop in :mod:`.client.retry`).
* ``final``: no Airflow retry of the task can help, so the task fails without retries
  (:func:`LotImageError.ends_task`). ``cured_by_resubmitting`` narrows it: a task that failed or
  vanished at the service is final for a sensor, which would only read it again, but not for an
  operator whose retry submits a new paid task.
"""

from __future__ import annotations


class LotImageError(Exception):
    """Base class of every error this provider raises about LotImage."""

    #: Whether the same request may simply be sent again.
    retryable: bool = False
    #: Whether no Airflow retry of the task can help (the task then fails without retries).
    final: bool = False
    #: Whether a retry that submits a new paid task can help although re-reading cannot.
    cured_by_resubmitting: bool = False

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

    def ends_task(self, *, resubmits: bool) -> bool:
        """Return whether this error should fail the Airflow task without retries.

        :param resubmits: whether a retry of the task would submit a new paid LotImage task (the
            submitting operators) rather than read the same one again (the sensor).
        """
        return self.final and not (resubmits and self.cured_by_resubmitting)

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

    final = True


class InvalidRequestError(LotImageError):
    """The request was rejected (status 400): bad parameter, banned prompt, unknown button."""

    final = True


class QuotaExhaustedError(LotImageError):
    """The key's daily quota is spent (status 403). Nothing will succeed before the next day."""

    final = True


class TaskNotFoundError(LotImageError):
    """The service does not know the taskId (status 404): a typo, or a task that expired."""

    final = True
    cured_by_resubmitting = True


class TransientError(LotImageError):
    """A temporary failure (5xx, dropped connection, unreadable body): safe to retry a read."""

    retryable = True


class ServiceUnreachableError(TransientError):
    """The request never reached LotImage (connection refused, connect timeout): safe to resend."""


class ReadTimeoutError(TransientError):
    """The request was sent but no answer came in time: a paid one may have been received."""


class MalformedResponseError(TransientError):
    """The service answered something that is not the documented JSON."""


class RateLimitedError(TransientError):
    """Too many calls for the key (status 429). Wait ``retry_after`` seconds, then retry."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class AmbiguousSubmitError(LotImageError):
    """A paid call failed in a way that does not tell whether the task was created.

    Resending could pay twice, so the provider stops and says how to find the task instead; an
    Airflow retry would be exactly such a blind resend, hence final.
    """

    final = True


class TaskFailedError(LotImageError):
    """The LotImage task ran and failed; the message is the service's ``errMessage``."""

    final = True
    cured_by_resubmitting = True


class TaskStalledError(LotImageError):
    """The task made no progress for longer than the configured stall timeout."""


class TaskTimeoutError(LotImageError):
    """The task did not finish within the wait's ``timeout``."""


class ImageDownloadError(LotImageError):
    """A picture could not be fetched or is not a picture (expired link, too large, wrong type)."""


class StorageError(LotImageError):
    """A picture could not be written to its destination (not writable, disk full, no bucket...).

    The message names the destination, the cause and what to do. Nothing partial is left behind,
    and not final: once the cause is fixed, a retry of the task stores what is still missing.
    """


class PaidTaskBudgetError(LotImageError):
    """The run has already started as many paid tasks as its ``max_paid_tasks_per_run`` allows.

    Raised before any call, so nothing was paid for the refused task; final, because a retry of
    the same run meets the same spent budget (see :mod:`.utils.budget`).
    """

    final = True


class PaidTaskBudgetBusyError(PaidTaskBudgetError):
    """Other task instances kept deciding on the run's last places in the budget; nothing was paid.

    Not final: once they have decided, a retry of this task finds either a place or a spent budget.
    """

    final = False


class LotImageInputError(LotImageError, ValueError):
    """A parameter is unusable; raised before any call, so no budget is spent."""

    final = True


class ConnectionConfigError(LotImageError):
    """The Airflow connection is unusable (missing key, a field of the wrong type); no call was made."""

    final = True

    @classmethod
    def of_extra(cls, conn_id: str, extra: str, problem: str) -> ConnectionConfigError:
        """Return the error of one extra of a connection, naming both: the one wording of it."""
        return cls(f"Connection {conn_id!r}, extra {extra!r}: {problem}")


class TLSError(LotImageError):
    """The TLS handshake failed: the certificate was not trusted, or the client certificate refused.

    Not retried: the same settings give the same handshake. Set the connection's ``verify`` to the
    CA bundle that signed the service's (or the proxy's) certificate.
    """

    final = True


class ProxyError(LotImageError):
    """The proxy named in the connection could not be reached or refused to forward the call.

    Not resent within the call, and not "no progress" to a waiting task: a wrong proxy must fail at
    once, not after the stall timeout. Not final either: a proxy that was down may be up for the
    task's next Airflow try, which reconnects to the paid task rather than paying again.
    """


def error_class(name: str) -> type[LotImageError]:
    """Return the error class called ``name`` (for errors that crossed a trigger event as text).

    :param name: a class name such as ``"TaskFailedError"``.
    :return: that class, or :class:`LotImageError` for a name this provider does not define.
    """
    pending: list[type[LotImageError]] = [LotImageError]
    while pending:
        cls = pending.pop()
        if cls.__name__ == name:
            return cls
        pending.extend(cls.__subclasses__())
    return LotImageError
