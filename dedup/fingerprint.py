"""Normalised fingerprints: what makes two bug reports the same bug.

A fingerprint is a SHA-256 over normalised parts. With a Python traceback: the exception
type of every exception in the chain and the in-app frames (file and function, never line
numbers), plus `component` and `route` with its ids templated. Without one: `component`,
`route` and the title with its variable parts masked. A client may override it with a list
of strings in which `{{ default }}` stands for the computed fingerprint. Trace ids, request
ids and release SHAs never enter it. Bump FINGERPRINT_VERSION whenever a rule here changes
(and run `manage.py dedup_regroup`).
"""

import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

FINGERPRINT_VERSION = 1

# Path segments of a frame that still tell modules apart once the deployment root is gone:
# the same code under /srv/app and /home/dev/app must group together.
FRAME_PATH_SEGMENTS = 3


@dataclass(frozen=True, slots=True)
class Fingerprint:
    hex: str
    version: int
    inputs: dict = field(default_factory=dict)


class ExceptionBlock(NamedTuple):
    """One exception of a (possibly chained) traceback: its frames, outermost first."""

    exc_type: str | None
    frames: tuple[tuple[str, str], ...]


# Tracebacks ------------------------------------------------------------------------------

_HEADER = "Traceback (most recent call last):"
# Literal-prefixed, so the regex engine scans for `File "` at C speed. Line numbers are
# matched but never captured: they must not split one bug in two.
_FRAME = re.compile(r'File "([^"\n]++)", line \d++(?:, in ([^\n]*+))?')
# The first unindented line after a block's last frame names its exception.
_EXCEPTION = re.compile(r"\n([A-Za-z_][\w.]*)(?=:|[ \t]*(?:\n|$))")
# Exception groups (3.11+) indent their members behind "| " and separate them with "+---".
_GROUP_PREFIX = re.compile(r"^[ \t]*(?:\+-[-+ \d.]*|\|[ \t]?)", re.MULTILINE)

_LIBRARY_PATH = re.compile(
    r"[\\/](?:site|dist)-packages[\\/]"
    r"|^<frozen[ >]"
    r"|[\\/]lib(?:64)?[\\/](?:pypy|python)\d+(?:\.\d+)?t?[\\/]"
    r"|[\\/]lib-python[\\/]"
    r"|(?:^|[\\/])Python\d*[\\/]Lib[\\/]"
    r"|\.egg[\\/]"
)


def parse_traceback(text: str) -> list[ExceptionBlock]:
    """The exceptions of a Python traceback with their frames, cause first, as printed.

    Chained exceptions ("During handling of the above exception…", "The above exception
    was the direct cause…") each start with their own "Traceback" header.
    """
    if not text or 'File "' not in text:
        return []
    blocks = []
    for chunk in _chunks(text):
        frames = _FRAME.findall(chunk)
        if frames:
            blocks.append(ExceptionBlock(_exception_after_frames(chunk), tuple(frames)))
    return blocks


def last_exception_type(text: str) -> str | None:
    """The exception type of parse_traceback(text)[-1], found without reading every frame."""
    if not text or 'File "' not in text:
        return None
    for chunk in reversed(_chunks(text)):
        if _FRAME.search(chunk):
            return _exception_after_frames(chunk)
    return None


def _chunks(text: str) -> list[str]:
    """The text cut at each "Traceback" header, with line ends and group prefixes undone."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "Exception Group" in text or "\n  | " in text:
        text = _GROUP_PREFIX.sub("", text)
    return text.split(_HEADER)


def _exception_after_frames(chunk: str) -> str | None:
    match = _EXCEPTION.search(chunk, chunk.rfind('File "'))
    return match.group(1) if match else None


@lru_cache(maxsize=8192)
def _frame_path(path: str) -> tuple[bool, str]:
    """(in_app, the path's last segments with forward slashes) for one frame file."""
    in_app = _LIBRARY_PATH.search(path) is None
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    return in_app, "/".join(parts[-FRAME_PATH_SEGMENTS:]) if parts else path


@lru_cache(maxsize=4096)
def _trace_parts(
    blocks: tuple[ExceptionBlock, ...],
) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(hash input, exception types, frames) of a parsed traceback.

    Cached on the frames without their line numbers: the same bug's tracebacks repeat them.
    """
    any_in_app = any(_frame_path(path)[0] for block in blocks for path, _ in block.frames)
    parts, exception_types, frames = [], [], []
    for block in blocks:
        exc_type = block.exc_type or ""
        exception_types.append(exc_type)
        parts.append("E" + exc_type)
        # Frames by first appearance: a deeper recursion is still the same bug.
        seen: set[str] = set()
        for path, func in block.frames:
            in_app, short = _frame_path(path)
            if any_in_app and not in_app:
                continue
            frame = f"{short}:{func.strip()}"
            if frame in seen:
                continue
            seen.add(frame)
            frames.append(frame)
            parts.append("F" + frame)
    return "\x1f".join(parts), tuple(exception_types), tuple(frames)


class Frame(NamedTuple):
    path: str
    function: str
    line: int | None


# _FRAME with the line number: for showing frames, never for grouping.
_FRAME_WITH_LINE = re.compile(r'File "([^"\n]++)", line (\d++)(?:, in ([^\n]*+))?')


def in_app_frames(stack_trace: str) -> list[Frame]:
    """The in-app frames of a traceback (repo_hints' rule), innermost (last raised) first;
    a recursion's repeated frames count once, as they do for grouping."""
    if not stack_trace or 'File "' not in stack_trace:
        return []
    frames: list[Frame] = []
    seen: set[tuple[str, str]] = set()
    for chunk in reversed(stack_trace.split(_HEADER)):
        # A recursion repeats whole lines: drop the repeats at C speed before the loop.
        for path, line, function in dict.fromkeys(reversed(_FRAME_WITH_LINE.findall(chunk))):
            function = function.strip()
            if (path, function) in seen or not _frame_path(path)[0]:
                continue
            seen.add((path, function))
            frames.append(Frame(path, function, int(line)))
    return frames


def exception_line(stack_trace: str) -> tuple[str | None, str]:
    """(exception type, message) of the exception raised last in a traceback."""
    exc_type = last_exception_type(stack_trace)
    if exc_type is None:
        return None, ""
    text = stack_trace.replace("\r\n", "\n")
    start = text.rfind(f"\n{exc_type}")
    line = text[start + 1 :].split("\n", 1)[0] if start >= 0 else exc_type
    return exc_type, line[len(exc_type) :].lstrip(":").strip()


# Where applications are commonly deployed: a frame path under one of them is shown
# relative to it (`/srv/app/billing/invoice.py` → `billing/invoice.py`), the path an agent
# opens in its checkout. REPO_PATH_ROOTS adds a deployment's own.
DEFAULT_REPO_ROOTS = (
    "/usr/src/app/",
    "/srv/app/",
    "/opt/app/",
    "/var/task/",
    "/workspace/",
    "/app/",
    "/code/",
    "/src/",
)


def repo_relative(path: str, roots=DEFAULT_REPO_ROOTS) -> str:
    """`path` relative to the first (longest) deployment root it lies under, else unchanged."""
    normal = path.replace("\\", "/")
    for root in sorted(roots, key=len, reverse=True):
        if normal.startswith(root) and len(normal) > len(root):
            return normal[len(root) :]
    return path


def repo_hints(stack_trace: str) -> list[str]:
    """The in-app file paths of a traceback, the most specific (innermost, last raised) first."""
    hints: list[str] = []
    seen: set[str] = set()
    for block in reversed(parse_traceback(stack_trace or "")):
        for path, _func in reversed(block.frames):
            if path not in seen:
                seen.add(path)
                if _frame_path(path)[0]:
                    hints.append(path)
    return hints


# Messages and routes ---------------------------------------------------------------------

_MASKS = [
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.I), "{url}"),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "{email}"),
    (
        re.compile(r"\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b", re.I),
        "{uuid}",
    ),
    (
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
            r"(?:Z|[+-]\d{2}:?\d{2})?)?(?![\w])"
        ),
        "{time}",
    ),
    (re.compile(r"\b\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\b"), "{time}"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b"), "{ip}"),
    (
        re.compile(
            # At least two colons and a digit: not `key:value`, not `Error::Fatal`.
            r"(?<![\w:])(?=[0-9a-f:]*:[0-9a-f]*:)(?=[0-9a-f:]*\d)(?:[0-9a-f]{0,4}:){2,7}"
            r"[0-9a-f]{0,4}(?![\w:])",
            re.I,
        ),
        "{ip}",
    ),
    (re.compile(r"(?<![\w\\])'(?:[^'\\\n]|\\.)*'(?!\w)"), "{str}"),
    (re.compile(r'(?<![\w\\])"(?:[^"\\\n]|\\.)*"(?!\w)'), "{str}"),
    (re.compile(r"`[^`\n]*`"), "{str}"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "{hex}"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,}\b", re.I), "{hex}"),
    # Tokens, keys and other hashes: long words mixing letters and several digits.
    (re.compile(r"\b(?=\w*\d\w*\d)(?=\w*[a-zA-Z])\w{16,}\b"), "{hash}"),
    (
        re.compile(
            r"(?<![\w.])\d+(?:\.\d+)?\s?(?:ns|us|µs|ms|s|secs?|seconds?|m|mins?|minutes?|h|hrs?"
            r"|hours?|d|days?)\b",
            re.I,
        ),
        "{duration}",
    ),
    (re.compile(r"(?<![\w.])[-+]?\d+(?:[.,]\d+)*(?!\w)"), "{n}"),
    (re.compile(r"\d{3,}"), "{n}"),
]
_SPACES = re.compile(r"\s+")


def mask_message(message: str) -> str:
    """The message with its variable parts (ids, numbers, strings, …) replaced by placeholders."""
    text = message or ""
    for pattern, placeholder in _MASKS:
        text = pattern.sub(placeholder, text)
    return _SPACES.sub(" ", text).strip()


_ROUTE_PARAM = re.compile(r"^(?:\{[^}]*\}|<[^>]*>|:[A-Za-z_]\w*)$")
_ID_SEGMENT = re.compile(
    r"^(?:[-+]?\d+"
    r"|[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}"
    r"|(?=[0-9a-f]*\d)[0-9a-f]{8,}"
    r"|.*\d{3,}.*"
    r"|(?=.*\d.*\d)(?=.*[A-Za-z])[\w-]{16,}"
    r"|[^@/]+@[^@/]+)$",
    re.I,
)
_SCHEME_HOST = re.compile(r"^[a-z][a-z0-9+.-]*://[^/]*", re.I)


@lru_cache(maxsize=4096)
def template_route(route: str | None) -> str:
    """`/api/images/123?x=1` → `/api/images/{id}`: ids, UUIDs, hashes and emails templated."""
    if not route:
        return ""
    path = _SCHEME_HOST.sub("", route.strip()).split("?", 1)[0].split("#", 1)[0]
    segments = [s for s in path.split("/") if s]
    templated = ["{id}" if _ROUTE_PARAM.match(s) or _ID_SEGMENT.match(s) else s for s in segments]
    return "/" + "/".join(templated)


def _component(component: str | None) -> str:
    return (component or "").strip().lower()


# Fingerprints ----------------------------------------------------------------------------

DEFAULT_MARKER = re.compile(r"^\{\{\s*default\s*\}\}$")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def default_fingerprint(
    *, title: str, stack_trace: str | None, component: str | None, route: str | None
) -> Fingerprint:
    """The computed fingerprint (what `{{ default }}` stands for)."""
    component_part = _component(component)
    route_part = template_route(route)
    blocks = parse_traceback(stack_trace or "")
    if blocks:
        trace, exception_types, frames = _trace_parts(tuple(blocks))
        head = f"v{FINGERPRINT_VERSION}\x1ftrace\x1f{component_part}\x1f{route_part}\x1f"
        inputs = {
            "kind": "stack_trace",
            "exception_types": list(exception_types),
            "frames": list(frames),
            "component": component_part,
            "route": route_part,
        }
        return Fingerprint(_digest(head + trace), FINGERPRINT_VERSION, inputs)
    masked = mask_message(title)
    parts = [f"v{FINGERPRINT_VERSION}", "message", component_part, route_part, masked]
    inputs = {"kind": "message", "title": masked, "component": component_part, "route": route_part}
    return Fingerprint(_digest("\x1f".join(parts)), FINGERPRINT_VERSION, inputs)


def fingerprint_for(
    *,
    title: str,
    stack_trace: str | None,
    component: str | None,
    route: str | None,
    client_fingerprint: list[str] | None = None,
) -> Fingerprint:
    """The fingerprint of one report; a client's non-empty `fingerprint` list overrides it."""
    default = default_fingerprint(
        title=title, stack_trace=stack_trace, component=component, route=route
    )
    parts = [str(p).strip() for p in client_fingerprint or [] if str(p).strip()]
    if not parts:
        return default
    expanded = [default.hex if DEFAULT_MARKER.match(p) else p for p in parts]
    if expanded == [default.hex]:
        return default
    inputs = {"kind": "client", "client": parts}
    if default.hex in expanded:
        inputs["default"] = default.inputs
    return Fingerprint(_digest("\x1f".join(["client", *expanded])), FINGERPRINT_VERSION, inputs)
