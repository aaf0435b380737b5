import uuid

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.exceptions import ValidationError

from bugtracker.domain import NotFound
from bugtracker.pagination import Key, KeysetPagination
from bugtracker.permissions import IsAgent
from bugtracker.schema import problems

from .filters import DedupGroupFilter
from .selectors import group_get, group_list
from .serializers import DedupGroupSerializer

ORDERINGS = {
    "-occurrences": [
        Key("occurrences", True, "int"),
        Key("last_seen", True, "dt"),
        Key("id", True, "uuid"),
    ],
    "-last_seen": [Key("last_seen", True, "dt"), Key("id", True, "uuid")],
}


@extend_schema_view(
    list=extend_schema(
        summary="List dedup groups",
        description=(
            "Canonical incidents: a fingerprint, its canonical report, how often it occurred "
            "and when. Most frequent first (`-occurrences`) or most recent (`-last_seen`). "
            "Groups merged into another are left out unless `include_merged=true`."
        ),
        parameters=[
            OpenApiParameter("ordering", enum=list(ORDERINGS), default="-occurrences"),
        ],
        responses={200: DedupGroupSerializer(many=True), **problems(400, 401, 403)},
    ),
    retrieve=extend_schema(
        summary="One dedup group",
        responses={200: DedupGroupSerializer, **problems(401, 403, 404)},
    ),
)
class DedupGroupViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = DedupGroupSerializer
    filterset_class = DedupGroupFilter
    pagination_class = KeysetPagination
    permission_classes = [IsAgent]
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        return group_list(include_merged=True)

    def get_ordering_keys(self):
        ordering = self.request.query_params.get("ordering", "-occurrences")
        if ordering not in ORDERINGS:
            raise ValidationError({"ordering": [f"Must be one of: {', '.join(ORDERINGS)}."]})
        return ORDERINGS[ordering]

    def get_object(self):
        raw = self.kwargs[self.lookup_field]
        try:
            group = group_get(group_id=uuid.UUID(str(raw)))
        except ValueError:
            group = None
        if group is None:
            raise NotFound(f"No dedup group {raw!r}.")
        return group
