"""Reading what a Sentry SDK sends: the body (decoded within a size limit) and its envelope.

Pure functions, no database: a body is read in chunks and decompressed as a stream, so a
compression bomb stops at the limit instead of filling memory; an envelope is checked whole
(header, every item header, every declared length) before anything is stored.

Envelope format: a JSON header line, then items, each a JSON header line and a payload of
`length` bytes (or, without `length`, up to the next newline).
"""

import json
import zlib
from dataclasses import dataclass

import brotli

READ_CHUNK = 64 * 1024
# Input fed to a decompressor at a time: with `max_length` the output stays bounded anyway.
FEED_CHUNK = 16 * 1024


class EnvelopeError(Exception):
    """What the client sent cannot be read: `status` 400, 413 or 415, with a detail."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def too_large(limit: int) -> EnvelopeError:
    return EnvelopeError(413, f"The body decodes to more than {limit:,} bytes.")


class _Zlib:
    def __init__(self, wbits: int):
        self._wbits = wbits
        self._d = zlib.decompressobj(wbits)

    def feed(self, data: bytes, room: int) -> bytes:
        # max_length bounds the output; what it held back waits in unconsumed_tail.
        out = self._d.decompress(data, room + 1)
        while len(out) <= room:
            if self._d.unconsumed_tail:
                out += self._d.decompress(self._d.unconsumed_tail, room + 1 - len(out))
            elif self._d.eof and self._d.unused_data and self._wbits > zlib.MAX_WBITS:
                # Another gzip member follows (concatenated gzip is one stream).
                rest = self._d.unused_data
                self._d = zlib.decompressobj(self._wbits)
                out += self._d.decompress(rest, room + 1 - len(out))
            else:
                break
        return out

    def done(self) -> bool:
        return self._d.eof


class _Brotli:
    def __init__(self):
        self._d = brotli.Decompressor()

    def feed(self, data: bytes, room: int) -> bytes:
        out = self._d.process(data, output_buffer_limit=room + 1)
        while len(out) <= room and not self._d.can_accept_more_data():
            out += self._d.process(b"", output_buffer_limit=room + 1 - len(out))
        return out

    def done(self) -> bool:
        return self._d.is_finished()


def _decoder(encoding: str, first: bytes):
    if encoding in ("gzip", "x-gzip"):
        return _Zlib(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        # RFC 9110's deflate is zlib-wrapped; some clients send raw deflate: the header tells.
        zlib_wrapped = (
            len(first) >= 2 and (first[0] & 0x0F) == 8 and (first[0] << 8 | first[1]) % 31 == 0
        )
        return _Zlib(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
    if encoding == "br":
        return _Brotli()
    raise EnvelopeError(415, f"Unsupported Content-Encoding {encoding!r}: use gzip, deflate or br.")


def read_body(read, *, encoding: str, max_body: int, max_decoded: int) -> bytes:
    """The body from `read(n)` (a request's), decoded, at most `max_decoded` bytes.

    Over `max_body` bytes on the wire or `max_decoded` decoded: 413, having held at most
    about one chunk more than the limit.
    """
    encoding = (encoding or "").strip().lower()
    if encoding in ("", "identity"):
        raw = read(max_body + 1)
        if len(raw) > max_body:
            raise EnvelopeError(413, f"The body is larger than {max_body:,} bytes.")
        if len(raw) > max_decoded:
            raise too_large(max_decoded)
        return raw
    out = bytearray()
    received = 0
    decoder = None
    while True:
        chunk = read(READ_CHUNK)
        if not chunk:
            break
        received += len(chunk)
        if received > max_body:
            raise EnvelopeError(413, f"The body is larger than {max_body:,} bytes.")
        if decoder is None:
            decoder = _decoder(encoding, chunk)
        for start in range(0, len(chunk), FEED_CHUNK):
            try:
                out += decoder.feed(chunk[start : start + FEED_CHUNK], max_decoded - len(out))
            except (zlib.error, brotli.error) as exc:
                raise EnvelopeError(400, f"The body is not valid {encoding}: {exc}") from None
            if len(out) > max_decoded:
                raise too_large(max_decoded)
    if decoder is None:
        return b""
    if not decoder.done():
        raise EnvelopeError(400, f"The {encoding} body is truncated.")
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Item:
    type: str
    headers: dict
    payload: bytes


@dataclass(frozen=True, slots=True)
class Envelope:
    headers: dict
    items: list[Item]


def _json_object(line: bytes, what: str) -> dict:
    try:
        value = json.loads(line)
    except UnicodeDecodeError:
        raise EnvelopeError(400, f"The {what} is not valid UTF-8.") from None
    except (ValueError, RecursionError):
        raise EnvelopeError(400, f"The {what} is not valid JSON.") from None
    if not isinstance(value, dict):
        raise EnvelopeError(400, f"The {what} must be a JSON object.")
    return value


def parse_envelope(body: bytes, *, max_items: int) -> Envelope:
    """Every item of an envelope, checked: a truncated payload, a length that runs past the
    end, a header that is not a JSON object, or more than `max_items` items is an error."""
    if not body.strip():
        raise EnvelopeError(400, "The envelope is empty.")
    end = body.find(b"\n")
    end = len(body) if end < 0 else end
    headers = _json_object(body[:end], "envelope header")
    position = end + 1
    items: list[Item] = []
    size = len(body)
    while position < size:
        end = body.find(b"\n", position)
        end = size if end < 0 else end
        line = body[position:end]
        position = end + 1
        if not line.strip():
            continue  # blank lines between items (a trailing newline, a lenient SDK)
        if len(items) >= max_items:
            raise EnvelopeError(413, f"The envelope has more than {max_items} items.")
        item_headers = _json_object(line, f"header of item {len(items) + 1}")
        item_type = item_headers.get("type")
        if not isinstance(item_type, str) or not item_type:
            raise EnvelopeError(400, f"Item {len(items) + 1} has no type.")
        length = item_headers.get("length")
        if length is None:
            end = body.find(b"\n", position)
            end = size if end < 0 else end
            payload = body[position:end]
            position = end + 1
        else:
            if isinstance(length, bool) or not isinstance(length, int) or length < 0:
                raise EnvelopeError(400, f"Item {len(items) + 1} has an invalid length.")
            if position + length > size:
                raise EnvelopeError(
                    400,
                    f"Item {len(items) + 1} declares {length} bytes but the envelope ends "
                    f"after {max(size - position, 0)}: truncated or a wrong length.",
                )
            payload = body[position : position + length]
            position += length
            if position < size:
                if body[position : position + 1] != b"\n":
                    raise EnvelopeError(
                        400, f"Item {len(items) + 1} is longer than its declared length."
                    )
                position += 1
        items.append(Item(item_type, item_headers, payload))
    return Envelope(headers, items)


def parse_event(payload: bytes, what: str = "event") -> dict:
    """An event payload: a JSON object in valid UTF-8."""
    return _json_object(payload, what)
