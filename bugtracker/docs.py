"""The guides in docs/ that the API docs page links to, served as Markdown."""

from django.conf import settings
from django.http import HttpResponse

from .errors import problem_response

GUIDES = {"agents": "agents.md"}


def guide_view(request, name: str):
    """GET /api/docs/<name>: the guide as text/markdown (no auth: it is documentation)."""
    filename = GUIDES.get(name)
    if filename is None:
        return problem_response(404, f"No guide {name!r}; there is: {', '.join(GUIDES)}.")
    text = (settings.BASE_DIR / "docs" / filename).read_text(encoding="utf-8")
    return HttpResponse(text, content_type="text/markdown; charset=utf-8")
