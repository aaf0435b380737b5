from bugtracker.routers import OptionalSlashRouter

from .views import DedupGroupViewSet

router = OptionalSlashRouter()
router.register("dedup/groups", DedupGroupViewSet, basename="dedup-group")

urlpatterns = router.urls
