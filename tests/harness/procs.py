# SPDX-License-Identifier: Apache-2.0
"""Host inspection and cleanup helpers of the node harness: processes
(/proc), mounts (/proc/self/mountinfo), cgroups and unix sockets.

Everything here reads the live host; nothing is cached.  A zombie counts as
gone: it has exited and only waits for its parent to reap it.
"""

import ctypes
import errno
import os
import signal
import time
from pathlib import Path

MNT_DETACH = 2


# ---------------------------------------------------------------- processes

def cmdline(pid: int):
    """The command line of pid, arguments joined by spaces, or None."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def _stat_fields(pid: int):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            data = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    return data[data.rindex(")") + 2:].split()


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    if not pid or pid <= 0:
        return False
    f = _stat_fields(pid)
    return f is not None and f[0] not in ("Z", "X")


def start_time(pid: int):
    """Start time of pid in clock ticks since boot (field 22 of stat), or None."""
    f = _stat_fields(pid)
    return int(f[19]) if f else None


def ppid(pid: int):
    f = _stat_fields(pid)
    return int(f[1]) if f else None


def ancestors(pid=None) -> set:
    """pid and all its ancestors (they mention whatever our caller's
    command line mentions: never count or kill them)."""
    pid = pid or os.getpid()
    seen = set()
    while pid and pid not in seen:
        seen.add(pid)
        pid = ppid(pid)
    return seen


def all_pids() -> list:
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def pids_mentioning(*needles: str) -> list:
    """Live processes (not us or our ancestors) whose command line contains
    any of needles."""
    mine = ancestors()
    out = []
    for pid in all_pids():
        if pid in mine:
            continue
        cl = cmdline(pid)
        if cl and any(n in cl for n in needles) and alive(pid):
            out.append(pid)
    return sorted(out)


def kill(pid: int, sig=signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def wait_gone(pids, timeout: float) -> list:
    """Wait until none of pids is alive; return those still alive."""
    deadline = time.monotonic() + timeout
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    return left


# ---------------------------------------------------------------- mounts

def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        code = field[i + 1:i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts():
    """(mount point, fs type, source) of every mount this process sees."""
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields = left.split()
            rfields = right.split()
            out.append((_unescape(fields[4]), rfields[0] if rfields else "",
                        _unescape(rfields[1]) if len(rfields) > 1 else ""))
    return out


def mounts_under(path) -> list:
    """Mount points at or below path, deepest first (stacked mounts repeat)."""
    base = str(path).rstrip("/")
    found = [m for m, _, _ in mounts() if m == base or m.startswith(base + "/")]
    return sorted(found, key=lambda m: (m.count("/"), len(m)), reverse=True)


_libc = None


def umount(path: str, flags: int = 0) -> int:
    """umount2(2); returns 0 or the errno."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.umount2(os.fsencode(path), flags) == 0:
        return 0
    return ctypes.get_errno()


def unmount_all_under(path, attempts: int = 50) -> list:
    """Unmount everything at or below path, deepest first; a mount that stays
    busy is detached lazily as the last resort.  Returns what is still
    mounted (empty on success)."""
    for attempt in range(attempts):
        found = mounts_under(path)
        if not found:
            return []
        for m in found:
            err = umount(m)
            if err == errno.EBUSY and attempt >= 3:
                umount(m, MNT_DETACH)
        if attempt >= 3:
            time.sleep(0.05)
    return mounts_under(path)


# ---------------------------------------------------------------- cgroups

def cgroup_mounts() -> list:
    """Mount points of every cgroup (v1) and cgroup2 hierarchy."""
    return sorted({m for m, fstype, _ in mounts() if fstype in ("cgroup", "cgroup2")})


def cgroup_dirs(rel: str) -> list:
    """The directories of cgroup path rel (e.g. "/kybtest-x/c1") that exist
    in any hierarchy."""
    rel = rel.strip("/")
    if not rel:
        return []
    return [Path(m) / rel for m in cgroup_mounts() if (Path(m) / rel).is_dir()]


def cgroup_pids(directory: Path) -> set:
    """Pids in a cgroup directory and all its descendants."""
    pids = set()
    for root, _, files in os.walk(directory):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(root, "cgroup.procs")) as fh:
                    pids.update(int(x) for x in fh.read().split())
            except OSError:
                pass
    return pids


def thaw(directory: Path) -> None:
    """Unfreeze a cgroup (a frozen process ignores SIGKILL until thawed)."""
    for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
        p = directory / name
        if p.exists():
            try:
                p.write_text(value)
            except OSError:
                pass


def remove_cgroup_tree(directory: Path, timeout: float = 5.0) -> bool:
    """Kill every process in a cgroup subtree and remove its directories.
    True when the directory is gone."""
    deadline = time.monotonic() + timeout
    while True:
        for root, _, _ in os.walk(directory):
            thaw(Path(root))
        pids = cgroup_pids(directory)
        for pid in pids:
            kill(pid)
        wait_gone(pids, max(0.0, deadline - time.monotonic()))
        for root, dirs, _ in os.walk(directory, topdown=False):
            try:
                os.rmdir(root)
            except OSError:
                pass
        if not directory.exists():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


# ---------------------------------------------------------------- sockets

def listening_unix_paths() -> set:
    """Paths of unix sockets some process listens on (/proc/net/unix)."""
    out = set()
    try:
        with open("/proc/net/unix") as fh:
            next(fh)
            for line in fh:
                parts = line.split()
                if len(parts) >= 8 and parts[7].startswith("/"):
                    out.add(parts[7])
    except OSError:
        pass
    return out
