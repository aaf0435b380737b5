from django.urls import re_path

from .status import AdminStatusView
from .views import ReportRunsView

urlpatterns = [
    re_path(
        r"^bug-reports/(?P<id>[^/]+)/runs/?$", ReportRunsView.as_view(), name="bug-report-runs"
    ),
    re_path(r"^admin/status/?$", AdminStatusView.as_view(), name="admin-status"),
]
