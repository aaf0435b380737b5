from bugtracker.domain import DomainError


class TransitionNotAllowed(DomainError):
    title = "Transition not allowed"
    type_slug = "transition-not-allowed"
    example = "Cannot move a report from closed to in_progress."


class VersionConflict(DomainError):
    """The row changed between our read and our compare-and-set write."""

    title = "Concurrent modification"
    type_slug = "concurrent-modification"
    example = "The report changed while this request was being applied; retry."


class ClaimConflict(DomainError):
    title = "Claimed by someone else"
    type_slug = "claim-conflict"
    example = "Report is claimed by agent-2 until 2026-12-02T10:15:00+00:00."
    example_extra = {"holder": "agent-2"}


class LeaseLost(DomainError):
    title = "Lease lost"
    type_slug = "lease-lost"
    example = "The lease of that token expired; claim the report again."


class NotClaimable(DomainError):
    title = "Not claimable"
    type_slug = "not-claimable"
    example = "A resolved report cannot be claimed."


class ClaimTokenRequired(DomainError):
    """A write to a report with a live claim, without its X-Claim-Token (and not an admin)."""

    status_code = 428
    title = "Claim token required"
    type_slug = "claim-token-required"
    example = (
        "Report is claimed by agent-1 until 2026-12-02T10:15:00+00:00; send its X-Claim-Token."
    )
    example_extra = {"holder": "agent-1"}


class ClaimTokenMismatch(DomainError):
    """A token that is not the live claim's, while the lease is live."""

    title = "Claim token mismatch"
    type_slug = "claim-token-mismatch"
    example = "The X-Claim-Token is not the token of the live claim on this report."


class OwnFixNotVerifiable(DomainError):
    """The four-eyes rule: the key that resolved a report may not verify it."""

    status_code = 403
    title = "Cannot verify your own fix"
    type_slug = "own-fix"
    example = "agent-1 resolved this report and may not verify its own fix."
    example_extra = {"resolved_by": "agent-1"}


class AdminRequired(DomainError):
    """A change only an admin (a human) may make, such as clearing `needs_human`."""

    status_code = 403
    title = "Forbidden"
    type_slug = "permission-denied"
    example = "Clearing needs_human takes a human: this call needs the admin role."
    example_extra = {"required_role": "admin", "allowed_roles": ["admin"]}
