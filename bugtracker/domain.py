"""Domain errors: raised by services, mapped to problem details once, in bugtracker.errors."""


class DomainError(Exception):
    status_code = 409
    title = "Conflict"
    type_slug = "conflict"
    headers: dict[str, str] | None = None  # sent with the problem, e.g. Retry-After

    def __init__(self, detail: str, **extra):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(DomainError):
    status_code = 404
    title = "Not found"
    type_slug = "not-found"


class PreconditionFailed(DomainError):
    status_code = 412
    title = "Precondition failed"
    type_slug = "precondition-failed"


class InvalidInput(DomainError):
    """A value that passed the serializer but breaks a domain rule: 400 naming the field."""

    status_code = 400
    title = "Invalid input"
    type_slug = "validation-error"

    def __init__(self, field: str, message: str):
        super().__init__(message, errors={field: [message]})
