"""`fields=` and `view=` query parameters: which top-level fields a response carries.

Agents pay for every character they read; a caller names the fields it wants (a comma list,
repeated parameters add up) or a named view, and gets nothing else. `id` always comes back.
"""

from collections.abc import Mapping, Sequence

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import ValidationError

ALWAYS = ("id",)


def comma_values(request, name: str) -> list[str]:
    """Every value of a query parameter given as comma lists, repeated or not, in order."""
    values: list[str] = []
    for raw in request.query_params.getlist(name):
        values.extend(part.strip() for part in raw.split(",") if part.strip())
    return values


def chosen_view(request, views: Mapping[str, Sequence[str]], *, default: str = "full") -> str:
    raw = request.query_params.get("view", default)
    if raw not in views:
        raise ValidationError({"view": [f"{raw!r} is not one of: {', '.join(views)}."]})
    return raw


def chosen_fields(request, available: Sequence[str]) -> list[str]:
    """The fields to return: `fields=` narrowed to `available` (the view's), `id` always.

    An unknown name is a 400 naming it, never silently dropped: a typo must not make an
    agent believe a field is empty.
    """
    requested = comma_values(request, "fields")
    if not requested:
        return list(available)
    unknown = [name for name in requested if name not in available]
    if unknown:
        raise ValidationError(
            {"fields": [f"Unknown field(s): {', '.join(unknown)}. Known: {', '.join(available)}."]}
        )
    wanted = set(requested) | set(ALWAYS)
    return [name for name in available if name in wanted]


def fields_parameters(views: Mapping[str, Sequence[str]]) -> list[OpenApiParameter]:
    """The OpenAPI description of `fields` and `view` for one resource."""
    shapes = "; ".join(f"`{name}`: {', '.join(fields)}" for name, fields in views.items())
    return [
        OpenApiParameter(
            "fields",
            OpenApiTypes.STR,
            many=True,  # repeated (`fields=a&fields=b`) or a comma list, as strict query strings take lists
            description=(
                "Comma list of top-level fields to return (`id` always comes back); an unknown "
                "field is a 400. Narrows the chosen `view`."
            ),
        ),
        OpenApiParameter(
            "view",
            OpenApiTypes.STR,
            enum=list(views),
            default="full",
            description=f"The shape of each item. {shapes}.",
        ),
    ]
