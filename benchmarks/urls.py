from django.urls import path

from bugtracker.urls import *  # noqa: F403
from bugtracker.urls import urlpatterns as app_urlpatterns

from .floor import FloorView

urlpatterns = [path("bench/floor", FloorView.as_view()), *app_urlpatterns]
