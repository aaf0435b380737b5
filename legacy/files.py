"""Reading legacy report files as a stream of records, in a deterministic order.

Memory stays flat however large the corpus: directories are walked one at a time (each
listing sorted), JSON Lines are read line by line and top-level arrays are decoded element
by element, so only one report at a time is held in memory.
"""

import codecs
import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUFFIXES = (".json", ".jsonl")
CHUNK_SIZE = 64 * 1024
_WHITESPACE = " \t\r\n"
_decoder = json.JSONDecoder()


@dataclass(frozen=True)
class RawRecord:
    """One report as read from a file, or the reason it could not be read.

    `index` is the record's ordinal within its file (0 for a one-report file); `location`
    says where it is for humans: "[3]" in an array, "line 7" in JSON Lines, "" otherwise.
    """

    path: Path
    index: int
    location: str
    value: Any = None
    error: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path}{' ' + self.location if self.location else ''}"


def path_key(path: Path) -> tuple[str, ...]:
    """The order files are read in: path components compared one by one."""
    return path.parts if path.is_absolute() else Path(os.path.abspath(path)).parts


def legacy_roots(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The given paths, absolute and sorted, without any that lie inside another one."""
    roots = sorted({Path(os.path.abspath(p)) for p in paths}, key=lambda p: p.parts)
    kept: list[Path] = []
    for root in roots:
        if not any(root.is_relative_to(other) for other in kept):
            kept.append(root)
    return kept


def iter_legacy_files(paths: Iterable[str | os.PathLike]) -> Iterator[tuple[Path, Path]]:
    """(root, file) for every *.json / *.jsonl file under `paths`, in sorted order.

    Each directory is listed on its own, so the walk never holds the whole corpus's names.
    """
    for root in legacy_roots(paths):
        if root.is_dir():
            for path in _walk(root):
                yield root, path
        elif root.is_file():
            yield root, root


def _is_report_file(name: str) -> bool:
    # Dotfiles include the mirror's and our own temporary files (".name.tmp").
    return not name.startswith(".") and name.endswith(SUFFIXES)


def _walk(directory: Path) -> Iterator[Path]:
    try:
        with os.scandir(directory) as it:
            entries = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in it)
    except OSError:
        return
    for name, is_dir in entries:
        if is_dir:
            if not name.startswith("."):
                yield from _walk(directory / name)
        elif _is_report_file(name):
            yield directory / name


def count_legacy_files(paths: Iterable[str | os.PathLike]) -> int:
    return sum(1 for _ in iter_legacy_files(paths))


def read_records(path: Path) -> Iterator[RawRecord]:
    """The records of one file: an object, an array of objects, or JSON Lines."""
    try:
        if path.suffix == ".jsonl":
            yield from _read_json_lines(path)
        else:
            yield from _read_json(path)
    except OSError as exc:
        yield RawRecord(path, 0, "", error=f"cannot read file: {exc.strerror or exc}")


def _read_json_lines(path: Path) -> Iterator[RawRecord]:
    index = 0
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            location = f"line {number}"
            try:
                value = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield RawRecord(path, index, location, error="not UTF-8 text")
            except json.JSONDecodeError as exc:
                yield RawRecord(path, index, location, error=f"not valid JSON ({exc.msg})")
            else:
                yield _checked(RawRecord(path, index, location, value))
            index += 1


def _read_json(path: Path) -> Iterator[RawRecord]:
    with path.open("rb") as fh:
        head = fh.read(CHUNK_SIZE)
        if head.startswith(b"\xef\xbb\xbf"):
            head = head[3:]
        first = head.lstrip()[:1]
        if first == b"[":
            fh.seek(0)
            yield from _read_array(path, fh)
            return
        data = head + fh.read()
    if not data.strip():
        yield RawRecord(path, 0, "", error="empty file")
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        yield RawRecord(path, 0, "", error="not UTF-8 text (binary or corrupt file)")
        return
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and first == b"{":
            # Several objects one after another: read it as the JSON Lines it really is.
            yield from _read_json_lines(path)
            return
        yield RawRecord(path, 0, "", error=_decode_reason(exc, text))
        return
    if isinstance(value, list):  # only reachable for an array after leading junk; be safe
        for index, item in enumerate(value):
            yield _checked(RawRecord(path, index, f"[{index}]", item))
        return
    if not isinstance(value, dict):
        yield RawRecord(
            path, 0, "", error=f"top level is {_json_type(value)}, not an object or an array"
        )
        return
    yield RawRecord(path, 0, "", value)


def _read_array(path: Path, fh) -> Iterator[RawRecord]:
    """Decode a top-level array one element at a time."""
    reader = _TextBuffer(fh)
    reader.skip_whitespace()
    reader.expect("[")
    index = 0
    reader.skip_whitespace()
    if reader.peek() == "]":
        return
    while True:
        location = f"[{index}]"
        try:
            value = reader.decode_value()
        except UnicodeDecodeError:
            yield RawRecord(path, index, location, error="not UTF-8 text (binary or corrupt file)")
            return
        except json.JSONDecodeError as exc:
            truncated = getattr(exc, "truncated", False)
            yield RawRecord(path, index, location, error=_decode_reason(exc, None, truncated))
            return
        yield _checked(RawRecord(path, index, location, value))
        index += 1
        reader.skip_whitespace()
        separator = reader.peek()
        if separator == ",":
            reader.advance(1)
            reader.skip_whitespace()
            continue
        if separator == "]":
            return
        reason = (
            "truncated JSON (the array never ends)"
            if separator == ""
            else (f"not valid JSON (expected ',' or ']' after element {index - 1})")
        )
        yield RawRecord(path, index, f"[{index}]", error=reason)
        return


class _TextBuffer:
    """Just enough of a streaming reader for `_read_array`."""

    def __init__(self, fh):
        self._fh = fh
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._buf = ""
        self._pos = 0
        self.at_eof = False

    def _fill(self, at_least: int = 1) -> bool:
        while len(self._buf) - self._pos < at_least and not self.at_eof:
            chunk = self._fh.read(CHUNK_SIZE)
            self.at_eof = not chunk
            text = self._decoder.decode(chunk, final=self.at_eof)
            self._buf = self._buf[self._pos :] + text
            self._pos = 0
        return len(self._buf) - self._pos >= at_least

    def peek(self) -> str:
        return self._buf[self._pos] if self._fill() else ""

    def advance(self, n: int) -> None:
        self._pos += n

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise ValueError(f"expected {char!r}")
        self._pos += 1

    def skip_whitespace(self) -> None:
        while self._fill():
            buf, pos = self._buf, self._pos
            end = len(buf)
            while pos < end and buf[pos] in _WHITESPACE:
                pos += 1
            self._pos = pos
            if pos < end:
                return

    def decode_value(self):
        """The next JSON value; raises JSONDecodeError with `.truncated` set when input ran out."""
        want = CHUNK_SIZE
        while True:
            self._fill(want)
            try:
                value, end = _decoder.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as exc:
                incomplete = exc.pos >= len(self._buf) - 1 or exc.msg.startswith("Unterminated")
                if incomplete and not self.at_eof:
                    want = (len(self._buf) - self._pos) * 2  # the value runs past the buffer
                    continue
                exc.truncated = incomplete
                raise
            self._pos = end
            return value


def _checked(record: RawRecord) -> RawRecord:
    if not isinstance(record.value, dict):
        return RawRecord(
            record.path,
            record.index,
            record.location,
            error=f"{_json_type(record.value)} where a report object was expected",
        )
    return record


def _decode_reason(exc: json.JSONDecodeError, text: str | None, truncated: bool = False) -> str:
    """Why a file is not JSON; positions only when they are the file's own (not a buffer's)."""
    where = f", line {exc.lineno} column {exc.colno}" if text is not None else ""
    near_end = text is not None and exc.pos >= len(text.rstrip()) - 1
    if truncated or near_end or exc.msg.startswith("Unterminated"):
        return f"truncated JSON: {exc.msg}{where}"
    return f"not valid JSON: {exc.msg}{where}"


def _json_type(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory and a rename: readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
