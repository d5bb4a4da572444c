# SPDX-License-Identifier: Apache-2.0
"""A private S3 server for the s3:// store tests: moto's server (the Python
`moto` package, `moto[server]`) on 127.0.0.1:<free port>, with IAM
authentication switched on, so that every request must carry a valid AWS
Signature Version 4 of an IAM user's access key.

    with S3Server() as s3:
        s3.env()          # KYBERNATE_S3_ENDPOINT, AWS_ACCESS_KEY_ID, ... for the binaries
        s3.store_uri("kyb/images")   # "s3://<bucket>/kyb/images"
        s3.keys("kyb/")   # what is stored (read with auth switched off)

What it is: a stand-in for Amazon S3, not S3.  moto implements the S3 REST
API (path-style requests, ListObjectsV2, multipart upload, CopyObject,
UploadPartCopy, conditional PUT) in memory, and in this mode re-computes each
request's SigV4 signature with botocore (AWS's own Python SDK) from the
headers it received and refuses a mismatch with 403 SignatureDoesNotMatch, an
unknown key with 403 InvalidAccessKeyId, and a missing Authorization with 403.

What it does NOT check (real S3 does): that the body matches
x-amz-content-sha256 (it trusts the header), the request time (no 15-minute
skew window), TLS, and path or query characters that werkzeug decodes before
moto sees them (moto signs its decoded view: keys with ':' or '%', or query
values with '/', verify differently from S3; the launcher below gives moto
the raw request URI instead, so what it checks is what was sent).  The
launcher also answers a request without Authorization with 403 AccessDenied,
as S3 does for a private bucket (moto itself fails with HTTP 500 there).  Storage is
memory (spilling to the temp dir), not durable.

How it is set up: the server starts with authentication off, an IAM user
with an access key and an allow-s3:* policy is created and the bucket made,
then authentication is switched on (POST /moto-api/reset-auth 0) and checked
with an unsigned request, which must be refused.  keys()/get()/put() switch it
off for the duration of the call (tests inspect and damage stored objects
that way).  Every request the server receives is appended to a request log
("METHOD raw-URI", one a line): requests() reads it, so a test can count
what a binary sent (e.g. the PUTs of one key).

moto is not packaged for Debian 12: the machine's Python with `moto` is
found as $KYBERNATE_MOTO_PYTHON, else the first `python3` that imports
moto.server (PATH, /usr/bin, pyenv versions).  scripts/setup checks for it.
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

BUCKET = "kyb-test"
REGION = "us-east-1"
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class S3ServerError(Exception):
    pass


def _imports_moto(python: str) -> bool:
    try:
        return subprocess.run([python, "-c", "import moto.server, flask, flask_cors"],
                              capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_moto_python():
    """A python3 that has moto's server, or None."""
    env = os.environ.get("KYBERNATE_MOTO_PYTHON")
    if env:
        return env if _imports_moto(env) else None
    cands = [shutil.which("python3"), "/usr/bin/python3", sys.executable]
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    cands += sorted(glob.glob(os.path.join(root, "versions", "*", "bin", "python3")), reverse=True)
    for c in dict.fromkeys(p for p in cands if p):
        if os.path.exists(c) and _imports_moto(c):
            return c
    return None


def _fake_auth(service: str) -> dict:
    # moto routes unsigned setup calls by the service named in the
    # credential scope; the signature itself is not checked while auth is off
    return {"Authorization": f"AWS4-HMAC-SHA256 Credential=AKIASETUP/20260101/{REGION}/"
                             f"{service}/aws4_request, SignedHeaders=host, Signature=0"}


class S3Server:
    def __init__(self, bucket: str = BUCKET):
        self.bucket = bucket
        self.proc = None
        self.tmp = None
        self.port = None
        self.access_key = None
        self.secret_key = None
        self.log_path = None

    # ------------------------------------------------------------ lifecycle
    def start(self):
        python = find_moto_python()
        if python is None:
            raise S3ServerError("no python3 with moto's server (import moto.server, flask, "
                                "flask_cors) found: set KYBERNATE_MOTO_PYTHON or run scripts/setup")
        self.tmp = tempfile.mkdtemp(prefix="kyb-s3-")
        self.log_path = os.path.join(self.tmp, "server.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(TMPDIR=self.tmp, INITIAL_NO_AUTH_ACTION_COUNT="inf",
                   MOTO_ALLOW_NONEXISTENT_REGION="false")
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen([python, os.path.abspath(__file__), "--serve"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=log, cwd=self.tmp, env=env,
                                         start_new_session=True)
        finally:
            log.close()
        line = self.proc.stdout.readline().decode().strip()
        if not line.isdigit():
            self.stop()
            raise S3ServerError(f"moto server did not start: {line!r}; log: {self.log_tail()}")
        self.port = int(line)
        try:
            self._provision()
        except Exception:
            self.stop()
            raise
        return self

    def stop(self):
        if self.proc is not None:
            try:
                self.proc.stdin.close()  # the launcher stops the server on EOF
                self.proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=20)
            self.proc.stdout.close()
            self.proc = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_tail(self, n=2000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------------ plumbing
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def store_uri(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"

    def env(self, secret=None) -> dict:
        """Variables for a Kybernate binary talking to this server."""
        return {"KYBERNATE_S3_ENDPOINT": self.endpoint, "KYBERNATE_S3_REGION": REGION,
                "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": secret if secret is not None else self.secret_key}

    def _req(self, method, path, body=None, headers=None, ok=(200, 204)):
        rq = urllib.request.Request(self.endpoint + path, data=body, method=method,
                                    headers=headers or {})
        try:
            with urllib.request.urlopen(rq, timeout=60) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            if e.code in ok:
                return e.code, e.read()
            raise S3ServerError(f"{method} {path}: HTTP {e.code}: {e.read()[:300]!r}") from None

    def _set_auth(self, on: bool):
        self._req("POST", "/moto-api/reset-auth", body=b"0" if on else b"inf",
                  headers={"Content-Type": "text/plain"})

    def _provision(self):
        iam = _fake_auth("iam")
        q = urllib.parse.urlencode
        self._req("GET", "/?" + q({"Action": "CreateUser", "UserName": "kybernate",
                                   "Version": "2010-05-08"}), headers=iam)
        _, body = self._req("GET", "/?" + q({"Action": "CreateAccessKey",
                                             "UserName": "kybernate",
                                             "Version": "2010-05-08"}), headers=iam)
        root = ET.fromstring(body)
        for el in root.iter():
            if el.tag.endswith("AccessKeyId"):
                self.access_key = el.text
            elif el.tag.endswith("SecretAccessKey"):
                self.secret_key = el.text
        if not self.access_key or not self.secret_key:
            raise S3ServerError(f"CreateAccessKey gave no key: {body[:300]!r}")
        policy = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*",'
                  '"Resource":"*"}]}')
        self._req("GET", "/?" + q({"Action": "PutUserPolicy", "UserName": "kybernate",
                                   "PolicyName": "s3", "PolicyDocument": policy,
                                   "Version": "2010-05-08"}), headers=iam)
        self._req("PUT", f"/{self.bucket}", headers=_fake_auth("s3"))
        self._set_auth(True)
        # authentication must now be on: an unsigned write is refused
        st, _ = self._req("PUT", f"/{self.bucket}/auth-probe", body=b"x", ok=(403,))
        if st != 403:
            raise S3ServerError(f"moto accepted an unsigned PUT (HTTP {st}): auth is not on")

    # ------------------------------------------------------------ inspection
    class _NoAuth:
        def __init__(self, srv):
            self.srv = srv

        def __enter__(self):
            self.srv._set_auth(False)

        def __exit__(self, *exc):
            self.srv._set_auth(True)

    def no_auth(self):
        """with s3.no_auth(): ... -- unsigned requests allowed meanwhile."""
        return S3Server._NoAuth(self)

    def keys(self, prefix: str = "") -> dict:
        """{key: size} of every object under prefix."""
        out, token = {}, None
        with self.no_auth():
            while True:
                params = {"list-type": "2", "prefix": prefix}
                if token:
                    params["continuation-token"] = token
                _, body = self._req("GET", f"/{self.bucket}?" + urllib.parse.urlencode(params),
                                    headers=_fake_auth("s3"))
                root = ET.fromstring(body)
                for c in root.findall(S3_NS + "Contents"):
                    out[c.find(S3_NS + "Key").text] = int(c.find(S3_NS + "Size").text)
                if root.findtext(S3_NS + "IsTruncated") != "true":
                    return out
                token = root.findtext(S3_NS + "NextContinuationToken")

    def uploads(self, prefix: str = "") -> list:
        """Keys of unfinished multipart uploads under prefix."""
        with self.no_auth():
            _, body = self._req("GET", f"/{self.bucket}?uploads&prefix=" +
                                urllib.parse.quote(prefix, safe=""), headers=_fake_auth("s3"))
        root = ET.fromstring(body)
        return [u.findtext(S3_NS + "Key") for u in root.findall(S3_NS + "Upload")]

    def requests(self, method: str | None = None) -> list:
        """(method, key, query) of every request so far (the harness's own
        included), in arrival order; key is the unquoted path after the
        bucket."""
        out = []
        try:
            with open(os.path.join(self.tmp, "requests.log"), encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError:
            return out
        for line in lines:
            m, _, uri = line.partition(" ")
            path, _, query = uri.partition("?")
            path = urllib.parse.unquote(path)
            pre = f"/{self.bucket}/"
            key = path[len(pre):] if path.startswith(pre) else path
            if method is None or m == method:
                out.append((m, key, query))
        return out

    def get(self, key: str) -> bytes:
        with self.no_auth():
            return self._req("GET", f"/{self.bucket}/" + urllib.parse.quote(key),
                             headers=_fake_auth("s3"))[1]

    def put(self, key: str, data: bytes):
        with self.no_auth():
            # an explicit type: urllib's default (a form) would have werkzeug
            # consume the body as form fields
            self._req("PUT", f"/{self.bucket}/" + urllib.parse.quote(key), body=data,
                      headers=dict(_fake_auth("s3"), **{"Content-Type": "application/octet-stream"}))


# ---------------------------------------------------------------- launcher
def _serve():
    """Runs inside the python that has moto: the server on a free port of
    127.0.0.1, its port on stdout, until stdin closes."""
    from urllib.parse import urlsplit, urlunsplit

    from moto import settings
    from moto.core import authorization
    from moto.s3.exceptions import S3AccessDeniedError
    from moto.server import ThreadedMotoServer

    # Verify what was sent: moto rebuilds the URL from werkzeug's decoded
    # view of it, which differs from S3's canonical form for escaped
    # characters.  Give it the raw request line's path and query instead.
    orig = authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action

    def raw_uri_auth(self, *a, **kw):
        mixin = authorization.ActionAuthenticatorMixin
        if (mixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT
                and "Authorization" not in self.headers):
            # moto fails with a KeyError (HTTP 500) here; S3 says 403
            raise S3AccessDeniedError()
        req = getattr(self, "request", None)
        environ = getattr(req, "environ", None) or {}
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if raw:
            p = urlsplit(self.uri)
            r = urlsplit(raw)
            saved, self.uri = self.uri, urlunsplit((p.scheme, p.netloc, r.path, r.query, ""))
            try:
                return orig(self, *a, **kw)
            finally:
                self.uri = saved
        return orig(self, *a, **kw)

    authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action = raw_uri_auth

    # the request log (S3Server.requests): method and raw URI, one a line
    import threading

    from moto.moto_server import threaded_moto_server

    app_cls = threaded_moto_server.DomainDispatcherApplication
    orig_call = app_cls.__call__
    log_lock = threading.Lock()
    req_log = open("requests.log", "a", encoding="utf-8")  # cwd: the server's temp dir

    def logged_call(self, environ, start_response):
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
        with log_lock:
            req_log.write(f"{environ.get('REQUEST_METHOD', '?')} {raw}\n")
            req_log.flush()
        return orig_call(self, environ, start_response)

    app_cls.__call__ = logged_call
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        _serve()
    else:
        with S3Server() as s:
            print(f"endpoint {s.endpoint} bucket {s.bucket} key {s.access_key} "
                  f"secret {s.secret_key}; Ctrl-D stops it", flush=True)
            sys.stdin.read()
