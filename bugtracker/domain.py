"""Domain errors: raised by services, mapped to problem details once, in bugtracker.errors."""


class DomainError(Exception):
    status_code = 409
    title = "Conflict"
    type_slug = "conflict"
    headers: dict[str, str] | None = None  # sent with the problem, e.g. Retry-After
    # What the OpenAPI schema shows as this problem's example (bugtracker.schema.problems).
    example = "The request conflicts with the current state."

    def __init__(self, detail: str, **extra):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(DomainError):
    status_code = 404
    title = "Not found"
    type_slug = "not-found"
    example = "Bug report 3f0c…-… does not exist."


class PreconditionFailed(DomainError):
    status_code = 412
    title = "Precondition failed"
    type_slug = "precondition-failed"
    example = "If-Match version 3 is stale; the report is at version 4."


class InvalidInput(DomainError):
    """A value that passed the serializer but breaks a domain rule: 400 naming the field."""

    status_code = 400
    title = "Invalid input"
    type_slug = "validation-error"
    example = "Invalid input: reason."
    example_extra = {"errors": {"reason": ["'bored' is not one of: cannot_reproduce, …"]}}

    def __init__(self, field: str, message: str):
        super().__init__(message, errors={field: [message]})
