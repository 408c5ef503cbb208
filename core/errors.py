"""Uppzy errors, typed by what the caller does next; raised from the HTTP status, never from error text.

    UppzyError
    ├── UppzyRejected           4xx: the request itself is wrong here; never retry unchanged
    │   ├── UppzyBadRequest     400: fix the payload
    │   ├── UppzyAuthError      401: key missing/invalid/expired/revoked; an operator incident
    │   ├── UppzyForbidden      403: plan or role does not allow M2M
    │   ├── UppzyNotFound       404: site/request/tenant unknown in this scope
    │   └── UppzyConflict       409: state conflict (e.g. chat on a closed session)
    ├── UppzyRateLimited        429: retry later (retry_after seconds when the server said)
    ├── UppzyUnavailable        5xx or connection failure: transient, retry if safe
    └── UppzyTimeout            no answer in time: the outcome is unknown (a chat may have been taken)
"""

from __future__ import annotations

__all__ = [
    "UppzyAuthError",
    "UppzyBadRequest",
    "UppzyConflict",
    "UppzyError",
    "UppzyForbidden",
    "UppzyNotFound",
    "UppzyRateLimited",
    "UppzyRejected",
    "UppzyTimeout",
    "UppzyUnavailable",
    "error_for_status",
]


class UppzyError(Exception):
    """Base of every failure talking to Uppzy; carries ids for logs, never the key or the message text."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        status: int | None = None,
        request_id: str | None = None,
        server_error: str | None = None,
        maybe_processed: bool = False,
    ) -> None:
        super().__init__(message)
        self.maybe_processed = maybe_processed
        self.endpoint = endpoint
        self.status = status
        self.request_id = request_id
        self.server_error = server_error


class UppzyRejected(UppzyError):
    """Uppzy refused the request (4xx other than 429); repeating it unchanged cannot help."""


class UppzyBadRequest(UppzyRejected):
    """400: the payload is missing a field or has a bad value."""


class UppzyAuthError(UppzyRejected):
    """401: the API key is missing, invalid, expired or revoked."""


class UppzyForbidden(UppzyRejected):
    """403: the tenant's plan or the key's role does not allow this."""


class UppzyNotFound(UppzyRejected):
    """404: the site, tenant or request does not exist in this key's scope."""


class UppzyConflict(UppzyRejected):
    """409: the operation conflicts with the current state, such as chatting on a closed session."""


class UppzyRateLimited(UppzyError):
    """429: too many requests; retry after `retry_after` seconds when given, else back off."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class UppzyUnavailable(UppzyError):
    """5xx or a connection failure: transient; retry when the operation is safe to repeat."""


class UppzyTimeout(UppzyError):
    """No answer within the timeout; for chat calls the turn may or may not have been created."""


_BY_STATUS: dict[int, type[UppzyRejected]] = {
    400: UppzyBadRequest,
    401: UppzyAuthError,
    403: UppzyForbidden,
    404: UppzyNotFound,
    409: UppzyConflict,
}


def error_for_status(
    status: int, *, endpoint: str, retry_after: float | None = None, **kwargs: object
) -> UppzyError:
    """Map an HTTP status to the exception class that says what to do next."""
    text = f"Uppzy {endpoint} answered HTTP {status}"
    if status == 429:
        return UppzyRateLimited(text, retry_after=retry_after, endpoint=endpoint, status=status, **kwargs)
    if status >= 500:
        # 504: a gateway gave up waiting, so the backend may still have done the work.
        kwargs.setdefault("maybe_processed", status == 504)
        return UppzyUnavailable(text, endpoint=endpoint, status=status, **kwargs)  # type: ignore[arg-type]
    cls = _BY_STATUS.get(status, UppzyRejected)
    return cls(text, endpoint=endpoint, status=status, **kwargs)  # type: ignore[arg-type]
