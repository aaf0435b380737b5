"""Frames for agents: in-app only (repo_hints' rule), innermost first, repo-relative."""

from dedup.fingerprint import exception_line, in_app_frames, repo_hints, repo_relative

CHAINED = """Traceback (most recent call last):
  File "/app/billing/invoice.py", line 10, in total
    return prices[sku]
KeyError: 'sku-1'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/usr/lib/python3.12/site-packages/flask/app.py", line 880, in full_dispatch_request
    rv = self.dispatch_request()
  File "/app/server/app.py", line 31, in checkout
    return invoice.total()
  File "/app/server/app.py", line 31, in checkout
    return invoice.total()
ValueError: price missing for 'sku-1': see https://example.com
"""


def test_in_app_frames_are_innermost_first_with_lines_and_no_library_frames():
    assert [tuple(f) for f in in_app_frames(CHAINED)] == [
        ("/app/server/app.py", "checkout", 31),
        ("/app/billing/invoice.py", "total", 10),
    ]
    # The same files repo_hints names, in the same order: one rule for what is in-app.
    assert [f.path for f in in_app_frames(CHAINED)] == repo_hints(CHAINED)
    assert in_app_frames("") == [] and in_app_frames("no traceback") == []


def test_the_exception_is_the_last_one_raised_with_its_message():
    assert exception_line(CHAINED) == (
        "ValueError",
        "price missing for 'sku-1': see https://example.com",
    )
    assert exception_line("") == (None, "")


def test_paths_are_relative_to_the_deployment_root():
    assert repo_relative("/srv/app/billing/invoice.py") == "billing/invoice.py"
    assert repo_relative("/app/x.py") == "x.py"
    assert repo_relative("/home/dev/proj/x.py") == "/home/dev/proj/x.py"
    assert repo_relative("/home/dev/proj/x.py", ("/home/dev/proj/",)) == "x.py"
    assert repo_relative("/app/") == "/app/"
