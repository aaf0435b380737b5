from django.urls import re_path

from .whoami import WhoAmIView

urlpatterns = [
    re_path(r"^whoami/?$", WhoAmIView.as_view(), name="whoami"),
]
