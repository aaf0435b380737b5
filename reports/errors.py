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
