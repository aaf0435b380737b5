from rest_framework.permissions import BasePermission

from .models import ApiKey, Role

ROLE_LEVEL = {Role.REPORTER: 1, Role.AGENT: 2, Role.ADMIN: 3}


def caller_role(request) -> str | None:
    return request.user.role if isinstance(request.user, ApiKey) else None


def caller_id(request) -> str:
    """The caller's identity: the key's name, or `anonymous`."""
    return request.user.name if isinstance(request.user, ApiKey) else "anonymous"


def is_admin(request) -> bool:
    return caller_role(request) == Role.ADMIN


class RoleAtLeast(BasePermission):
    minimum: str = Role.ADMIN
    message = "Your API key's role may not do this."

    def has_permission(self, request, view):
        role = caller_role(request)
        return role is not None and ROLE_LEVEL[role] >= ROLE_LEVEL[self.minimum]


class IsReporter(RoleAtLeast):
    minimum = Role.REPORTER


class IsAgent(RoleAtLeast):
    minimum = Role.AGENT


class IsAdmin(RoleAtLeast):
    minimum = Role.ADMIN
