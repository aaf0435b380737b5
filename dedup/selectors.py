from django.db.models import QuerySet

from .models import DedupGroup


def group_list(*, include_merged: bool = False) -> QuerySet[DedupGroup]:
    """Groups with their canonical report; merged groups (forwarders) only when asked."""
    groups = DedupGroup.objects.select_related("canonical")
    if not include_merged:
        groups = groups.filter(merged_into__isnull=True)
    return groups


def group_get(*, group_id) -> DedupGroup | None:
    return DedupGroup.objects.select_related("canonical").filter(pk=group_id).first()
