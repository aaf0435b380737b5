import contextlib
import os
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("remediate.py")
COMMAND = [sys.executable, str(SCRIPT)]
PROJECT = Path(__file__).resolve().parents[2]


def pid_alive(pid: int) -> bool:
    """Running and not a zombie (an orphan may wait for a reaper that never comes)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def kill_quietly(pid: int, sig: int = 9) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
