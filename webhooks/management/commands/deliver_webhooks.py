import signal
import threading

from django.core.management.base import BaseCommand

from webhooks.dispatcher import WebhookDispatcher


class Command(BaseCommand):
    help = (
        "Deliver webhooks in the foreground (the dispatcher the web processes run when "
        "WEBHOOK_WORKER is on): due deliveries, retries, and the SLA/backlog alert scan. "
        "Stops on SIGTERM or SIGINT."
    )

    def add_arguments(self, parser):
        parser.add_argument("--threads", type=int, default=None, help="Senders (WEBHOOK_THREADS).")
        parser.add_argument(
            "--poll-seconds", type=float, default=None, help="Scan interval (WEBHOOK_POLL_SECONDS)."
        )

    def handle(self, *args, threads, poll_seconds, **options):
        dispatcher = WebhookDispatcher(threads=threads, poll_seconds=poll_seconds)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        dispatcher.start()
        self.stdout.write("Delivering webhooks; SIGTERM or Ctrl-C stops.")
        self.stdout.flush()
        stop.wait()
        dispatcher.stop()
        self.stdout.write("Stopped.")
