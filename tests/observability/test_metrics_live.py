"""/metrics under gunicorn with two worker processes: every process's requests are in the sum,
and counts left in the directory by an earlier run are not."""

import glob
import os
import threading
from collections import Counter

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from tests.hardening.live import LiveServer, current_database_url


def request_counts(text: str) -> Counter:
    counts = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "bugtracker_http_requests_total":
                labels = sample.labels
                counts[(labels["route"], labels["method"], labels["status"])] += sample.value
    return counts


@pytest.mark.parametrize("preload", [False, True], ids=["plain", "preload"])
@pytest.mark.django_db(transaction=True)
def test_two_gunicorn_workers_add_up_to_every_request_sent(tmp_path, preload):
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    # A counter file an earlier run left behind: the master empties the directory at start.
    stale = MmapedDict(str(metrics_dir / "counter_1.db"))
    labels = ("/api/health", "GET", "200")
    key = mmap_key(
        "bugtracker_http_requests",
        "bugtracker_http_requests_total",
        ("route", "method", "status"),
        labels,
        "stale",
    )
    stale.write_value(key, 1000.0, 0.0)
    stale.close()

    sent = Counter()
    lock = threading.Lock()
    with LiveServer(
        database_url=current_database_url(),
        log_path=tmp_path / "server.log",
        WEB_CONCURRENCY="2",
        GUNICORN_THREADS="2",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        THROTTLE_ANONYMOUS="1000000/min",
        GUNICORN_CMD_ARGS="--preload" if preload else "",
    ) as server:
        # The health probe that saw the server come up was counted too.
        sent[labels] += 1

        def send(paths):
            for path, expected in paths:
                answer = server.request("GET", path)
                assert answer.status == int(expected)
                route = {"/api/health": "/api/health"}.get(path, "unmatched")
                if path.startswith("/api/dedup/groups/"):
                    route = "/api/dedup/groups/{pk}"
                with lock:
                    sent[(route, "GET", expected)] += 1

        work = [("/api/health", "200"), ("/nowhere", "404"), ("/api/dedup/groups/x1", "401")]
        # New connections from several threads until both workers have answered some.
        for _ in range(40):
            threads = [threading.Thread(target=send, args=(work * 5,)) for _ in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if len(glob.glob(str(metrics_dir / "counter_*.db"))) >= 2:
                break
        counter_files = glob.glob(str(metrics_dir / "counter_*.db"))
        assert len(counter_files) == 2, counter_files
        assert str(metrics_dir / "counter_1.db") not in counter_files

        scraped = server.request("GET", "/metrics")
        assert scraped.status == 200
        counts = request_counts(scraped.body.decode())

    assert {k: v for k, v in counts.items() if k[0] != "/metrics"} == dict(sent)
    assert sum(sent.values()) > 90
    # Both processes wrote their own share (the scrape itself aside).
    shares = [
        sum(
            v
            for k, v, _, _ in MmapedDict.read_all_values_from_file(path)
            if "bugtracker_http_requests_total" in k and '"/metrics"' not in k
        )
        for path in counter_files
    ]
    assert all(share > 0 for share in shares) and sum(shares) == sum(sent.values())
    assert not os.path.exists(metrics_dir / "counter_1.db")
