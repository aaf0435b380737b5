from django.urls import re_path

from .views import ReleaseListView, TraceReportsView

urlpatterns = [
    re_path(r"^telemetry/releases/?$", ReleaseListView.as_view(), name="telemetry-releases"),
    re_path(
        r"^telemetry/traces/(?P<trace_id>[^/]+)/?$",
        TraceReportsView.as_view(),
        name="telemetry-trace",
    ),
]
