#!/usr/bin/env python
"""A stand-in remediation command for the worker tests.

Reads the report JSON on stdin and does what `metadata.mode` says: `succeed` (default),
`verify`, `plain` (exit 0 without a JSON line), `bad_result` (exit 0 with a result line the
resolve validation refuses), `fail`, `hang`, `hang_once`, `spawn_and_hang`,
`sleep:N`. Appends "<report id> <pid> <mode>" to $REMEDIATION_LOG and keeps the stdin it got
under $REMEDIATION_LOG.d/<id>.json.
"""

import json
import os
import subprocess
import sys
import time


def main() -> int:
    report = json.load(sys.stdin)
    report_id = os.environ.get("BUG_REPORT_ID", "")
    if report.get("id") != report_id:
        print(f"stdin report {report.get('id')} is not BUG_REPORT_ID {report_id}", file=sys.stderr)
        return 9
    mode = (report.get("metadata") or {}).get("mode", "succeed")
    log = os.environ.get("REMEDIATION_LOG")
    if log:
        os.makedirs(f"{log}.d", exist_ok=True)
        with open(f"{log}.d/{report_id}.json", "w") as f:
            json.dump(report, f)
        with open(log, "a") as f:
            f.write(f"{report_id} {os.getpid()} {mode}\n")
            f.flush()
            os.fsync(f.fileno())

    print(f"looking at {report['title']}", flush=True)
    print("a line on stderr", file=sys.stderr, flush=True)
    if mode == "hang_once":
        marker = f"{log}.d/{report_id}.hung"
        if not os.path.exists(marker):
            open(marker, "w").close()
            time.sleep(600)
        mode = "succeed"
    if mode.startswith("sleep:"):
        time.sleep(float(mode.split(":", 1)[1]))
        mode = "succeed"
    if mode == "hang":
        time.sleep(600)
    if mode == "spawn_and_hang":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(f"{log}.d/{report_id}.child", "w") as f:
            f.write(str(child.pid))
        time.sleep(600)
    if mode == "fail":
        print("boom: could not reproduce", file=sys.stderr)
        return 3
    if mode == "plain":
        print("done, nothing to say")
        return 0
    if mode == "bad_result":
        print(json.dumps({"commit_shas": ["zz-not-hex"], "extra": 1}))
        return 0
    result = {
        "resolution_notes": f"Fixed: {report['title']}",
        "commit_shas": ["0123abcd"],
        "verify": mode == "verify",
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
