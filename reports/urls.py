from bugtracker.routers import OptionalSlashRouter

from .views import BugReportViewSet

router = OptionalSlashRouter()
router.register("bug-reports", BugReportViewSet, basename="bug-report")

urlpatterns = router.urls
