from django.urls import re_path

from .admin_status import AdminStatusView
from .whoami import WhoAmIView

urlpatterns = [
    re_path(r"^admin/status/?$", AdminStatusView.as_view(), name="admin-status"),
    re_path(r"^whoami/?$", WhoAmIView.as_view(), name="whoami"),
]
