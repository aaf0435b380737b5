from django.urls import include, path

urlpatterns = [
    path("api/", include("reports.urls")),
    path("api/", include("dedup.urls")),
    path("api/", include("telemetry.urls")),
    path("api/", include("bugtracker.api_urls")),
]
