from django.urls import re_path

from .views import EnvelopeView, StoreView

urlpatterns = [
    re_path(
        r"^(?P<project_id>\d{1,18})/envelope/?$", EnvelopeView.as_view(), name="sentry-envelope"
    ),
    re_path(r"^(?P<project_id>\d{1,18})/store/?$", StoreView.as_view(), name="sentry-store"),
]
