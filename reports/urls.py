from django.urls import re_path

from bugtracker.routers import OptionalSlashRouter

from .views import BugReportViewSet
from .views_feed import EventFeedView

router = OptionalSlashRouter()
router.register("bug-reports", BugReportViewSet, basename="bug-report")

urlpatterns = [
    *router.urls,
    re_path(r"^events/?$", EventFeedView.as_view(), name="event-feed"),
]
