# SPDX-License-Identifier: Apache-2.0
"""CRIU as runc finds it: the `criu` launcher on PATH."""

import re
import subprocess

from tests.harness import tool_path


def _criu(*args):
    r = subprocess.run(["criu", *args], capture_output=True, text=True, timeout=60,
                       env={"PATH": tool_path()})
    return r.returncode, r.stdout + r.stderr


def test_criu_version_at_least_4(criu):
    rc, out = _criu("--version")
    assert rc == 0, out
    m = re.search(r"Version:\s*(\d+)\.(\d+)", out)
    assert m, f"no version in: {out}"
    assert (int(m.group(1)), int(m.group(2))) >= (4, 0), f"CRIU too old: {out}"


def test_criu_check(root, criu):
    rc, out = _criu("check")
    assert rc == 0 and "Looks good" in out, f"criu check (rc {rc}):\n{out}"
