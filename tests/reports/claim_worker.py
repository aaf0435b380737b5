"""Run as a separate process by the concurrency test: claim until nothing is left."""

import json
import os
import sys
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bugtracker.settings")
django.setup()

from reports.claims import report_claim_next  # noqa: E402

claimed = []
while (result := report_claim_next(actor=sys.argv[1], lease_seconds=600)) is not None:
    claimed.append(str(result[0].pk))
print(json.dumps(claimed))
