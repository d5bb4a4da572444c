# SPDX-License-Identifier: Apache-2.0
"""Each binary answers --help and --version (no root needed)."""

import subprocess

import pytest

from tests.harness import BINARIES, tool_path


@pytest.mark.parametrize("name", BINARIES)
@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_binary_answers(build_dir, name, flag):
    # tool_path(): kybernate-runc --version also asks its delegate (runc).
    r = subprocess.run([str(build_dir / "cmd" / name), flag], capture_output=True, text=True,
                       timeout=10, env={"PATH": tool_path()})
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"{name} {flag} exited {r.returncode}: {out}"
    assert name in out, f"{name} {flag} does not name itself: {out}"
