from django.urls import re_path

from .admin_status import AdminStatusView

urlpatterns = [
    re_path(r"^admin/status/?$", AdminStatusView.as_view(), name="admin-status"),
]
