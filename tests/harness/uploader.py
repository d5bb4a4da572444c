# SPDX-License-Identifier: Apache-2.0
"""kybernate-uploader for the tests: the real binary on a socket in a temp
dir, its JSON-lines log kept, and a small client for its API over the unix
socket (Python's http.client on an AF_UNIX socket).

    with Uploader(build_dir, workdir, env={...}) as up:
        st, job, hdrs = up.post_job({"op": "fetch", "ref": "oci://..."})
        done = up.wait_job(job["id"])            # until done/failed/cancelled
        up.stop()                                # SIGTERM, returns the exit code

stop() (or leaving the `with`) ends the daemon; kill() is SIGKILL.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from .checks import wait_for

FINAL = ("done", "failed", "cancelled")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class Uploader:
    def __init__(self, build_dir, workdir, env=None, args=(), name="uploader"):
        self.binary = str(Path(build_dir) / "cmd" / "kybernate-uploader")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket = str(self.workdir / "run" / f"{name}.sock")
        self.log_path = self.workdir / f"{name}.log"
        base = {k: v for k, v in os.environ.items()
                if not k.startswith("KYBERNATE_") and not k.startswith("AWS_")}
        base.update(env or {})
        self.env = base
        self.args = list(args)
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.kill()

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "--socket", self.socket, *self.args],
                                     stdout=log, stderr=log, env=self.env)
        log.close()

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"kybernate-uploader exited {self.proc.returncode}: "
                                   f"{self.log_tail()}")
            try:
                return self.request("GET", "/healthz")[0] == 200
            except OSError:
                return False
        wait_for(ready, 30, "kybernate-uploader to answer /healthz")
        return self

    def stop(self, timeout=60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def log_tail(self, n=4000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def log_lines(self) -> list:
        """The daemon's log, one parsed JSON object per line."""
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]

    # ------------------------------------------------------------ the API
    def request(self, method, path, body=None, headers=None, raw=None):
        c = _UnixHTTPConnection(self.socket)
        try:
            data = raw if raw is not None else (json.dumps(body).encode()
                                                if body is not None else None)
            h = {"Content-Type": "application/json"} if data is not None else {}
            h.update(headers or {})
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            text = r.read()
            try:
                doc = json.loads(text) if text.strip() else None
            except ValueError:
                doc = text
            return r.status, doc, dict(r.getheaders())
        finally:
            c.close()

    def post_job(self, job: dict):
        return self.request("POST", "/v1/jobs", job)

    def job(self, job_id: str) -> dict:
        st, doc, _ = self.request("GET", f"/v1/jobs/{job_id}")
        assert st == 200, (st, doc)
        return doc

    def wait_job(self, job_id: str, until=None, timeout=300) -> dict:
        """Polls the job until `until(job)` (default: a final state)."""
        until = until or (lambda j: j["state"] in FINAL)
        seen = {}

        def check():
            seen["job"] = self.job(job_id)
            return until(seen["job"])
        try:
            wait_for(check, timeout, f"job {job_id}", interval=0.02)
        except TimeoutError:
            raise TimeoutError(f"job {job_id}: last {seen.get('job')}; log: {self.log_tail()}")
        return seen["job"]
