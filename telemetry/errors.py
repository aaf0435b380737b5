from bugtracker.domain import DomainError


class ReleaseConflict(DomainError):
    """The same deployment (sha, environment, deployed_at) was already recorded differently."""

    title = "Release already recorded"
    type_slug = "release-conflict"
