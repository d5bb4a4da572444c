# SPDX-License-Identifier: Apache-2.0
"""Test harness of Kybernate: a private containerd "node" per test and the
test images it runs (see docs/testing.md).  Standard library only."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_build_dir() -> Path:
    """The build dir the harness uses: $KYBERNATE_BUILD_DIR or <repo>/build."""
    env = os.environ.get("KYBERNATE_BUILD_DIR")
    return Path(env).resolve() if env else REPO_ROOT / "build"


BINARIES = ("kybernate", "kybernate-agent", "kybernate-runc", "kybernate-uploader",
            "kybernate-operator")
# Where the tools live: scripts/setup puts the criu launcher into /usr/local/bin.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def tool_path() -> str:
    """PATH as the harness gives it to containerd, ctr and criu."""
    parts = (os.environ.get("PATH", "") + ":" + SYSTEM_PATH).split(":")
    return ":".join(dict.fromkeys(p for p in parts if p))
