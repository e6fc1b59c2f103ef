"""The one domain error. Services raise it with a message a user can act on; the API's
exception handler turns it into {"code", "message", "details"} with a 4xx status."""

from typing import Any


class KeepersError(Exception):
    status_code = 400

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid",
        field: str | None = None,
        details: dict[str, Any] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field
        self.details = details or ({"field": field} if field else {})
        if status_code is not None:
            self.status_code = status_code


class NotFound(KeepersError):
    status_code = 404

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("code", "not_found")
        super().__init__(message, **kwargs)
