"""A fresh clone has everything its tests, benchmarks and docs need.

The team keeps a `shared/` folder beside the checkout; nobody who clones the project has it.
No tracked file outside `.ci/` may reach for it, however the path is spelled.
"""

import re
import subprocess
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
SHARED = "shared"

# Each spelling of "the shared folder beside the checkout" seen or likely in Python, shell and docs.
SPELLINGS = [
    re.compile(r"\.\.[/\\]+" + SHARED + r"\b"),  # two dots, a slash or backslash, the folder
    re.compile(
        r"\.parents?(\[\d+\])?\s*/\s*['\"]" + SHARED + r"['\"]"
    ),  # the checkout's parent joined with the folder's name
    re.compile(
        r"['\"]\.\.['\"]\s*,\s*['\"]" + SHARED + r"['\"]"
    ),  # os.path.join with ".." and the name
    re.compile(r"\b" + SHARED + r"/(legacy-sample|legacy-format\.md|design\.md|style\.md|hooks)\b"),
]


def tracked_files():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    if listed.returncode == 0:
        return [ROOT / name for name in listed.stdout.decode().split("\0") if name]
    return [path for path in ROOT.rglob("*") if path.is_file() and ".venv" not in path.parts]


def test_no_tracked_file_reaches_for_the_shared_folder_beside_the_checkout():
    offenders = []
    for path in tracked_files():
        relative = path.relative_to(ROOT)
        if relative.parts[0] == ".ci":
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if any(spelling.search(line) for spelling in SPELLINGS):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == []


def test_the_guard_catches_each_spelling():
    # Spelled from pieces, so this file does not itself reach for the folder.
    samples = [
        "SAMPLE = Path(settings.BASE_DIR).parent / '" + SHARED + "' / 'legacy-sample'",
        "open('../" + SHARED + "/design.md')",
        "os.path.join('..', '" + SHARED + "', 'x')",
        "see " + SHARED + "/legacy-format.md",
        'ROOT.parents[1] / "' + SHARED + '"',
    ]
    for sample in samples:
        assert any(spelling.search(sample) for spelling in SPELLINGS), sample
    assert not any(spelling.search("the shared cache") for spelling in SPELLINGS)


def test_the_legacy_sample_and_format_page_live_in_the_repository():
    assert (ROOT / "tests" / "fixtures" / "legacy-sample" / "expected.json").is_file()
    assert any((ROOT / "tests" / "fixtures" / "legacy-sample" / "reports").iterdir())
    assert (ROOT / "docs" / "legacy-format.md").is_file()
