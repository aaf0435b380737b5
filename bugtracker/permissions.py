from rest_framework.permissions import BasePermission

from .domain import DomainError
from .models import ApiKey, Role

ROLE_LEVEL = {Role.REPORTER: 1, Role.AGENT: 2, Role.ADMIN: 3}


def caller_role(request) -> str | None:
    return request.user.role if isinstance(request.user, ApiKey) else None


def caller_id(request) -> str:
    """The caller's identity: the key's name, or `anonymous`."""
    return request.user.name if isinstance(request.user, ApiKey) else "anonymous"


def is_admin(request) -> bool:
    return caller_role(request) == Role.ADMIN


def roles_at_least(minimum: str) -> list[str]:
    """The roles that may make a call needing `minimum`, lowest first."""
    return [str(role) for role, level in ROLE_LEVEL.items() if level >= ROLE_LEVEL[minimum]]


class RoleRequired(DomainError):
    """A key whose role is too low for the call: 403 naming the role the call needs."""

    status_code = 403
    title = "Forbidden"
    type_slug = "permission-denied"


class RoleAtLeast(BasePermission):
    minimum: str = Role.ADMIN

    def has_permission(self, request, view):
        role = caller_role(request)
        if role is None:
            return False  # no key: DRF answers 401
        if ROLE_LEVEL[role] >= ROLE_LEVEL[self.minimum]:
            return True
        allowed = roles_at_least(self.minimum)
        raise RoleRequired(
            f"This call needs the {' or '.join(allowed)} role; this key's role is {role}.",
            required_role=str(self.minimum),
            allowed_roles=allowed,
            your_role=str(role),
        )


class IsReporter(RoleAtLeast):
    minimum = Role.REPORTER


class IsAgent(RoleAtLeast):
    minimum = Role.AGENT


class IsAdmin(RoleAtLeast):
    minimum = Role.ADMIN
