"""`pip install ./client` in a fresh virtualenv: no Django, and both commands run.

pip resolves the pinned dependencies from the configured index (its cache makes it quick);
CI and developer machines reach the same index."""

import shutil
import subprocess
import sys

from tests.hardening.live import ROOT

PACKAGE = ROOT / "client" / "src" / "bugtracker_client"
MODULES = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")


def test_the_client_installs_alone_without_django(tmp_path):
    # A copy, so pip's build leaves nothing in the checkout.
    source = tmp_path / "client"
    shutil.copytree(
        PACKAGE.parents[1],
        source,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(source),
        ],
        check=True,
        timeout=600,
    )
    no_django = subprocess.run([str(python), "-c", "import django"], capture_output=True)
    assert no_django.returncode != 0 and b"No module named 'django'" in no_django.stderr

    imports = "; ".join(f"import bugtracker_client.{name}" for name in MODULES)
    subprocess.run(
        [str(python), "-c", imports + "; import sys; assert 'django' not in sys.modules"],
        check=True,
    )

    mcp_help = subprocess.run(
        [str(venv / "bin" / "bugtracker-mcp"), "--help"], capture_output=True, text=True
    )
    assert mcp_help.returncode == 0, mcp_help.stderr
    assert "--read-only" in mcp_help.stdout and "--http" in mcp_help.stdout
    bt_help = subprocess.run([str(venv / "bin" / "bt"), "--help"], capture_output=True, text=True)
    assert bt_help.returncode == 0 and "claim-next" in bt_help.stdout
