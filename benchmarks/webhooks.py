"""Webhooks and metrics: submissions/s with request metrics on and one active webhook
subscription (every canonical report told to a receiver on loopback, by the dispatchers in
the same gunicorn workers), against the same run with metrics off and no subscription.

The two servers run one after the other on the same database, alternating twice; the better
run of each counts. After the runs with the subscription, every canonical report submitted
must have been delivered (a 2xx from the receiver), which the benchmark checks.

    .venv/bin/python -m benchmarks.webhooks [--reports 2000] [--clients 16] [--workers 2] [--threads 4] [--rounds 2]
"""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .common import Row, django_setup, http_load, report_rows
from .ingest import RELEASE, _requests, make_reports

COMMAND = ".venv/bin/python -m benchmarks.webhooks"


class _Receiver:
    """Answers 200 to every POST and counts the distinct webhook-ids it saw."""

    def __init__(self):
        self.ids: set[str] = set()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.ids.add(self.headers.get("webhook-id", ""))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def run(
    *, reports: int = 2000, clients: int = 16, workers: int = 2, threads: int = 4, rounds: int = 2
) -> list[Row]:
    import os

    from reports.models import BugReport
    from webhooks.models import DeliveryStatus, Webhook, WebhookDelivery
    from webhooks.services import webhook_create, webhook_update

    from .common import api_key, bench_database, gunicorn, json_body

    os.environ["WEBHOOK_ALLOW_PRIVATE"] = "1"
    from django.conf import settings

    settings.WEBHOOK_ALLOW_PRIVATE = True
    receiver = _Receiver()
    rows: list[Row] = []
    try:
        with bench_database():
            key = api_key("bench-reporter", "reporter")
            runs = 2 * rounds
            payloads = make_reports(reports * runs + 400, seed=11)
            bodies = [json_body(p) for p in payloads]
            batches = [bodies[400 + i * reports : 400 + (i + 1) * reports] for i in range(runs)]
            webhook = webhook_create(
                url=receiver.url, event_types=["report.created"], active=False, actor="bench"
            )
            plain = {"RELEASE_SHA": RELEASE, "METRICS_ENABLED": "0", "WEBHOOK_WORKER": "0"}
            told = {
                "RELEASE_SHA": RELEASE,
                "METRICS_ENABLED": "1",
                "WEBHOOK_WORKER": "1",
                "WEBHOOK_ALLOW_PRIVATE": "1",
                "WEBHOOK_POLL_SECONDS": "1",
            }
            baseline, measured = [], []
            for i, batch in enumerate(batches):
                with_hooks = i % 2 == 1
                webhook_update(webhook_id=webhook.pk, data={"active": with_hooks})
                env = told if with_hooks else plain
                with gunicorn(workers=workers, threads=threads, extra_env=env) as server:
                    if i < 2:  # warm each kind of server once, outside the measurement
                        warm = bodies[i * 200 : (i + 1) * 200]
                        http_load(
                            port=server.port,
                            requests=_requests("/api/bug-reports", warm, key),
                            clients=clients,
                        )
                    result = http_load(
                        port=server.port,
                        requests=_requests("/api/bug-reports", batch, key),
                        clients=clients,
                    )
                    if with_hooks:
                        behind = WebhookDelivery.objects.filter(
                            status=DeliveryStatus.PENDING
                        ).count()
                        print(f"  deliveries still pending when the load ended: {behind}")
                        # Let the dispatchers finish before the server stops.
                        deadline = time.monotonic() + 120
                        while (
                            WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).exists()
                            and time.monotonic() < deadline
                        ):
                            time.sleep(0.5)
                (measured if with_hooks else baseline).append(result)
                print(
                    f"run {i + 1}: {'metrics + webhook' if with_hooks else 'plain'}: "
                    f"{result.rate:.0f} submissions/s"
                )
            failed = sum(r.requests - r.ok(201) for r in [*baseline, *measured])
            delivered = WebhookDelivery.objects.filter(status=DeliveryStatus.SUCCEEDED).count()
            deliveries = WebhookDelivery.objects.count()
            print(
                f"webhooks: {deliveries} deliveries written, {delivered} delivered, "
                f"{len(receiver.ids)} distinct webhook-ids received, {failed} non-201 submissions, "
                f"{BugReport.objects.count()} reports"
            )
            if failed or delivered != deliveries or len(receiver.ids) != deliveries:
                raise SystemExit("webhooks: some submissions or deliveries failed")
            Webhook.objects.all().delete()
    finally:
        receiver.stop()
    best_plain = max(r.rate for r in baseline)
    best_told = max(r.rate for r in measured)
    label = f"{clients} clients, {workers}x{threads} gunicorn"
    rows.append(
        Row(
            "webhooks",
            f"submissions/s, metrics + 1 webhook ({label})",
            best_told,
            "/s",
            baseline=best_plain,
            baseline_name="no metrics, no webhook",
            target=">= 0.9x",
            met=best_told >= 0.9 * best_plain,
        )
    )
    print(json.dumps({"plain": [r.rate for r in baseline], "told": [r.rate for r in measured]}))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=2000, help="submissions per measured run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each kind, alternating")
    args = parser.parse_args()
    django_setup()
    rows = run(
        reports=args.reports,
        clients=args.clients,
        workers=args.workers,
        threads=args.threads,
        rounds=args.rounds,
    )
    report_rows(
        rows,
        f"{COMMAND} --reports {args.reports} --clients {args.clients} "
        f"--workers {args.workers} --threads {args.threads} --rounds {args.rounds}",
    )


if __name__ == "__main__":
    main()
