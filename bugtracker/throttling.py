import logging

from rest_framework.throttling import SimpleRateThrottle

from .permissions import caller_role

logger = logging.getLogger("bugtracker.throttling")


class RoleRateThrottle(SimpleRateThrottle):
    """One rate per role (settings THROTTLE_<ROLE>), kept in the shared cache.

    Authenticated callers are counted per key name, anonymous ones per client IP.
    """

    def get_rate(self):
        return None  # chosen per request in allow_request

    def allow_request(self, request, view):
        self.scope = caller_role(request) or "anonymous"
        self.rate = self.THROTTLE_RATES.get(self.scope)
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # the shared cache is down: serve unthrottled rather than 500
            logger.warning("throttle cache unavailable, request not counted: %s", exc)
            return True

    def get_cache_key(self, request, view):
        ident = request.user.name if caller_role(request) else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}
