"""Where a request's time goes: pyinstrument over the real request path, in-process.

Runs N requests of one kind through Django's test client on a fresh benchmark database
(no network, no gunicorn: only the app) and prints CPU per request beside the framework
floor, then pyinstrument's call tree. This is the profile benchmarks/README.md quotes.

    .venv/bin/python -m benchmarks.profile ingest|envelope|claim|list [--requests 500]

Needs pyinstrument (`.venv/bin/pip install pyinstrument`); not a runtime dependency.
"""

import argparse
import time

from .common import django_setup


def _client(key: str):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def _cpu_per_request(send, count: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        send()
    return (
        (time.perf_counter() - wall) / count * 1000,
        (time.process_time() - cpu) / count * 1000,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["ingest", "envelope", "claim", "list"])
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    django_setup()
    import warnings

    warnings.filterwarnings("ignore", message="No directory at")
    from pyinstrument import Profiler

    from .common import api_key, bench_database, json_body

    n = args.requests
    with bench_database():
        reporter = _client(api_key("bench-reporter", "reporter"))
        agent = _client(api_key("agent-7", "agent"))
        floor_body = json_body({"title": "x"})

        def floor():
            assert (
                reporter.post(
                    "/bench/floor", floor_body, content_type="application/json"
                ).status_code
                == 201
            )

        if args.kind == "ingest":
            from .ingest import make_reports

            bodies = iter([json_body(r) for r in make_reports(3 * n + 200)])

            def send():
                response = reporter.post(
                    "/api/bug-reports", next(bodies), content_type="application/json"
                )
                assert response.status_code == 201, response.content

        elif args.kind == "envelope":
            from django.test import Client

            from bugtracker.services import api_key_create_with_dsn

            from .envelopes import capture
            from .ingest import RELEASE

            dsn = api_key_create_with_dsn(name="bench-sdk", role="reporter", host="testserver")[2]
            public_key, project = dsn.removeprefix("http://").split("@")[0], dsn.rsplit("/", 1)[1]
            envelopes = iter(capture(3 * n + 200, release=RELEASE))
            sdk_client = Client(
                HTTP_X_SENTRY_AUTH=f"Sentry sentry_version=7, sentry_key={public_key}",
                HTTP_CONTENT_ENCODING="gzip",
            )

            def send():
                response = sdk_client.post(
                    f"/api/{project}/envelope/",
                    next(envelopes),
                    content_type="application/x-sentry-envelope",
                )
                assert response.status_code == 200, response.content

        elif args.kind == "claim":
            from .claims import seed

            seed(3 * n + 200)

            def send():
                response = agent.post(
                    "/api/bug-reports/claim-next", b"{}", content_type="application/json"
                )
                assert response.status_code == 200, response.content

        else:
            from .list import generate

            generate(max(20 * n, 50_000))

            def send():
                assert agent.get("/api/bug-reports?status=open").status_code == 200

        for _ in range(100):  # warm: imports, plans, caches
            send()
            floor()
        floor_ms = _cpu_per_request(floor, n)
        send_ms = _cpu_per_request(send, n)
        print(
            f"{args.kind}: {send_ms[1]:.2f} ms CPU per request ({send_ms[0]:.2f} ms wall); "
            f"floor {floor_ms[1]:.2f} ms CPU ({floor_ms[0]:.2f} ms wall); "
            f"CPU ratio floor/{args.kind} {floor_ms[1] / send_ms[1]:.2f}"
        )
        profiler = Profiler(interval=0.0005)
        profiler.start()
        for _ in range(n):
            send()
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))


if __name__ == "__main__":
    main()
