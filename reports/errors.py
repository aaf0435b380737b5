from bugtracker.domain import DomainError


class TransitionNotAllowed(DomainError):
    title = "Transition not allowed"
    type_slug = "transition-not-allowed"


class VersionConflict(DomainError):
    """The row changed between our read and our compare-and-set write."""

    title = "Concurrent modification"
    type_slug = "concurrent-modification"


class ClaimConflict(DomainError):
    title = "Claimed by someone else"
    type_slug = "claim-conflict"


class LeaseLost(DomainError):
    title = "Lease lost"
    type_slug = "lease-lost"


class NotClaimable(DomainError):
    title = "Not claimable"
    type_slug = "not-claimable"


class ClaimTokenRequired(DomainError):
    """A write to a report with a live claim, without its X-Claim-Token (and not an admin)."""

    status_code = 428
    title = "Claim token required"
    type_slug = "claim-token-required"


class ClaimTokenMismatch(DomainError):
    """A token that is not the live claim's, while the lease is live."""

    title = "Claim token mismatch"
    type_slug = "claim-token-mismatch"


class OwnFixNotVerifiable(DomainError):
    """The four-eyes rule: the key that resolved a report may not verify it."""

    status_code = 403
    title = "Cannot verify your own fix"
    type_slug = "own-fix"


class AdminRequired(DomainError):
    """A change only an admin (a human) may make, such as clearing `needs_human`."""

    status_code = 403
    title = "Forbidden"
    type_slug = "permission-denied"
