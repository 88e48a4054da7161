"""moatctl on its own: every command, flag, output format and exit code against an in-memory
fake of the admin API (fake_admin.py), so a CLI regression shows even where moatd is fine."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.deadline(120)
def test_moatctl_against_the_fake_api():
    moatctl = os.environ.get("MOATCTL")
    if not moatctl:
        pytest.fail("MOATCTL must name the moatctl binary (make e2e sets it)", pytrace=False)
    r = subprocess.run([sys.executable, os.path.join(HERE, "fake_admin.py"), "selftest", moatctl],
                       capture_output=True, text=True, timeout=110)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert " 0 failed" in r.stdout + r.stderr
