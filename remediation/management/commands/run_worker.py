import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from remediation.worker import RemediationWorker


class Command(BaseCommand):
    help = (
        "Run the remediation worker in the foreground: claim automatable reports and hand each "
        "to REMEDIATION_COMMAND. Stops cleanly on SIGTERM or SIGINT (running work gets "
        "--drain-seconds to finish, then is killed and given back)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--threads", type=int, default=None, help="Runner threads (WORKER_THREADS)."
        )
        parser.add_argument(
            "--poll-seconds", type=float, default=None, help="Scan interval (WORKER_POLL_SECONDS)."
        )
        parser.add_argument(
            "--lease-seconds",
            type=int,
            default=None,
            help="Claim lease, heartbeated every third of it.",
        )
        parser.add_argument(
            "--drain-seconds",
            type=float,
            default=30.0,
            help="On stop, how long running work may go on before it is killed (default 30).",
        )
        parser.add_argument(
            "--once",
            action="store_true",
            help="Run what is due now, wait for it, and exit (no periodic duties).",
        )

    def handle(self, *args, threads, poll_seconds, lease_seconds, drain_seconds, once, **options):
        worker = RemediationWorker(
            threads=threads, poll_seconds=poll_seconds, lease_seconds=lease_seconds, duties=not once
        )
        if once:
            ran = self._run_once(worker, drain_seconds)
            self.stdout.write(f"Ran {ran} report(s).")
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: stop.set())
        worker.start()
        self.stdout.write(
            f"Worker {worker.holder} running: {worker.threads} runner(s), polling every "
            f"{worker.poll_seconds:g}s, command {settings.REMEDIATION_COMMAND or '(none)'}.",
        )
        self.stdout.flush()
        while not stop.wait(1.0):
            pass
        self.stdout.write("Stopping: letting running work finish…")
        self.stdout.flush()
        worker.stop(deadline=drain_seconds)
        metrics = worker.queue.metrics()
        self.stdout.write(
            self.style.SUCCESS(f"Stopped. Processed {metrics.processed}, failed {metrics.failed}.")
        )

    def _run_once(self, worker: RemediationWorker, drain_seconds: float) -> int:
        worker.queue.start()
        ran = 0
        try:
            while True:
                claimed = worker.scan_once()
                ran += claimed
                worker.queue.wait_idle()
                if worker.command_problem:
                    raise CommandError(worker.command_problem)
                if not claimed:
                    return ran
        finally:
            worker.stop(deadline=drain_seconds)
