from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from .errors import not_found_view
from .health import HealthView, ReadyView
from .index import ApiIndexView
from .metrics import metrics_view

urlpatterns = [
    re_path(r"^api/?$", ApiIndexView.as_view(), name="api-index"),
    re_path(r"^api/health/?$", HealthView.as_view(), name="health"),
    re_path(r"^api/ready/?$", ReadyView.as_view(), name="ready"),
    re_path(r"^metrics/?$", metrics_view, name="metrics"),
    re_path(r"^api/schema/?$", SpectacularAPIView.as_view(), name="schema"),
    re_path(r"^api/docs/?$", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/", include("reports.urls")),
    path("api/", include("dedup.urls")),
    path("api/", include("telemetry.urls")),
    path("api/", include("webhooks.urls")),
    path("api/", include("remediation.urls")),
    path("api/", include("bugtracker.api_urls")),
    path("api/", include("ingest.urls")),
    # Anything else is a 404 problem, under DEBUG too (not Django's HTML debug page).
    re_path(r"", not_found_view, name="not-found"),
]

handler400 = "bugtracker.errors.bad_request_view"
handler403 = "bugtracker.errors.forbidden_view"
handler404 = "bugtracker.errors.not_found_view"
handler500 = "bugtracker.errors.server_error_view"
