"""Real sentry-sdk envelopes, captured once in this process and replayed by the benchmark.

The SDK is initialised with a transport that keeps each envelope's bytes instead of sending
them; every bug is real code (compiled under /srv/app/<component>/… so its frames are
in-app) raising a real exception that `capture_exception` turns into an event. Half the
events are occurrences of `known_bugs` bugs, half are bugs never seen before.
"""

import gzip
import random
import struct
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

COMPONENTS = ["checkout", "billing", "search", "auth", "inventory", "notifications", "profile"]
EXCEPTIONS = [
    ("KeyError", "'{word}_{n}'"),
    ("ValueError", "invalid literal for int() with base 10: '{word}{n}'"),
    ("AttributeError", "'NoneType' object has no attribute '{word}'"),
    ("TimeoutError", "upstream {word} timed out after {n} ms"),
    ("PermissionError", "user {n} may not {word}"),
]
WORDS = ["order", "cart", "invoice", "token", "session", "item", "price", "address", "coupon"]


def _bug(rng: random.Random, name: str):
    """A function that raises, three in-app frames deep, compiled under a fake app path."""
    component = rng.choice(COMPONENTS)
    exc, message = rng.choice(EXCEPTIONS)
    steps = rng.sample(["load", "validate", "apply_discount", "charge", "render"], 2)
    source = (
        f"def handle_{name}(word, n):\n    return {steps[0]}_{name}(word, n)\n"
        f"def {steps[0]}_{name}(word, n):\n    return {steps[1]}_{name}(word, n)\n"
        f"def {steps[1]}_{name}(word, n):\n"
        f"    raise {exc}({message!r}.format(word=word, n=n))\n"
    )
    namespace: dict = {}
    path = f"/srv/app/{component}/{rng.choice(['views', 'services', 'tasks'])}_{name}.py"
    exec(compile(source, path, "exec"), namespace)
    return namespace[f"handle_{name}"], component


def capture(count: int, *, release: str, seed: int = 11, known_bugs: int = 40) -> list[bytes]:
    """`count` gzipped envelopes, one event each; every other one a known bug's occurrence.

    The SDK runs in a subprocess: initialised here it would patch this process's Django and
    HTTP client, which serve as the load generator and the in-process profile.
    """
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "envelopes.bin"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.envelopes",
                str(count),
                release,
                str(seed),
                str(out),
            ],
            cwd=Path(__file__).resolve().parent.parent,
            check=True,
        )
        data = out.read_bytes()
    envelopes, position = [], 0
    while position < len(data):
        (size,) = struct.unpack_from(">I", data, position)
        envelopes.append(data[position + 4 : position + 4 + size])
        position += 4 + size
    return envelopes


def _capture_here(count: int, *, release: str, seed: int, known_bugs: int = 40) -> list[bytes]:
    import sentry_sdk
    from sentry_sdk.transport import Transport

    captured: list[bytes] = []

    class Keep(Transport):
        def capture_envelope(self, envelope):
            if any(item.type == "event" for item in envelope.items):
                captured.append(gzip.compress(envelope.serialize(), compresslevel=6))

    rng = random.Random(seed)
    known = [_bug(rng, f"k{i}") for i in range(known_bugs)]
    sentry_sdk.init(
        dsn="http://00000000000000000000000000000000@localhost/1",
        transport=Keep,
        release=release,
        environment="production",
    )
    try:
        for i in range(count):
            handler, component = (
                rng.choice(known) if i % 2 == 0 else _bug(rng, uuid.uuid4().hex[:12])
            )
            with sentry_sdk.new_scope() as scope:
                scope.set_tag("component", component)
                scope.set_tag("region", rng.choice(["eu", "us"]))
                try:
                    handler(rng.choice(WORDS), rng.randint(1, 99999))
                except Exception:
                    sentry_sdk.capture_exception()
        sentry_sdk.flush()
    finally:
        sentry_sdk.get_client().close()
    assert len(captured) == count, (len(captured), count)
    return captured


if __name__ == "__main__":
    count, release, seed, path = sys.argv[1:5]
    captured = _capture_here(int(count), release=release, seed=int(seed))
    Path(path).write_bytes(b"".join(struct.pack(">I", len(e)) + e for e in captured))
