"""The production settings, plus the framework-floor endpoint the ingest benchmark compares to."""

from bugtracker.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.urls"
