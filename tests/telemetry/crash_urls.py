"""The real URLs plus one view that crashes, to see what a 500 carries."""

from django.urls import path

from bugtracker.urls import urlpatterns as real_urlpatterns


def crash(request):
    raise RuntimeError("boom")


urlpatterns = [path("crash", crash), *real_urlpatterns]

handler404 = "bugtracker.errors.not_found_view"
handler500 = "bugtracker.errors.server_error_view"
