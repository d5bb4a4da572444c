# SPDX-License-Identifier: Apache-2.0
"""A private OCI registry for the tests: Debian's `docker-registry`
(distribution 2.8) on 127.0.0.1:<free port>, filesystem storage in a temp
dir, deletes enabled, and optionally

  - auth="basic": htpasswd (bcrypt, python3-bcrypt) with the given users;
  - auth="token": the registry's token auth, with a token issuer run here
    (a thread serving GET /token on another free port): it checks the same
    users with HTTP Basic and signs an ES256 JWT (python3-jwt,
    python3-cryptography) for the scope asked, with a self-signed key whose
    certificate is the registry's `rootcertbundle`.

    with Registry(auth="basic", users={"alice": "secret"}) as reg:
        reg.store_uri("kyb/images")   # "oci://127.0.0.1:PORT/kyb/images"
        ...

stop() (or leaving the `with`) kills the registry and the issuer and removes
the temp dir: nothing is left behind.  The registry's systemd service is not
used or enabled.

Needs: docker-registry, python3-bcrypt (basic), python3-jwt and
python3-cryptography (token); scripts/setup installs them.
"""

import base64
import datetime
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REGISTRY_BIN = "/usr/bin/docker-registry"
SERVICE = "kybernate-test-registry"
ISSUER = "kybernate-test-issuer"


class RegistryError(Exception):
    pass


def free_port(addr: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def _make_tls(workdir: Path, ip: str):
    """A CA and a server certificate for `ip` signed by it (ca.crt,
    server.crt, server.key in workdir)."""
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.utcnow()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kybernate test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    (workdir / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (workdir / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (workdir / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


def _libtrust_key_id(public_key) -> str:
    """The key id distribution 2.8 (libtrust) gives a public key: SHA-256 of
    its DER SubjectPublicKeyInfo, first 240 bits, base32, groups of 4 by ':'."""
    from cryptography.hazmat.primitives import serialization
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


class _TokenIssuer:
    """GET /token?service=...&scope=repository:NAME:ACTIONS — Basic auth
    against `users`; answers {"token", "access_token", "expires_in"}."""

    def __init__(self, users: dict, workdir: Path):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.users = users
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.utcnow()
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=2))
                .sign(self.key, hashes.SHA256()))
        self.cert_path = workdir / "token.crt"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key_pem = self.key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())
        self.kid = _libtrust_key_id(self.key.public_key())
        self.requests = []  # (user or None, scope) per token request, for the tests
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                issuer._serve(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def _serve(self, h):
        import jwt
        url = urllib.parse.urlparse(h.path)
        q = urllib.parse.parse_qs(url.query)
        user = None
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                u, p = "", None
            if self.users.get(u) != p:
                body = b'{"details":"wrong user name or password"}'
                h.send_response(401)
                h.send_header("Content-Type", "application/json")
                h.send_header("Content-Length", str(len(body)))
                h.end_headers()
                h.wfile.write(body)
                return
            user = u
        scopes = q.get("scope", [])
        self.requests.append((user, scopes))
        access = []
        for scope in scopes:
            typ, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            # anonymous users get a token with no rights at all
            acts = [a for a in actions.split(",") if a and user]
            access.append({"type": typ, "name": name, "actions": acts})
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": user or "", "aud": q.get("service", [""])[0],
                  "exp": now + 300, "nbf": now - 10, "iat": now,
                  "jti": secrets.token_hex(8), "access": access}
        token = jwt.encode(claims, self.key_pem, algorithm="ES256", headers={"kid": self.kid})
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class Registry:
    """tls=True: https with a certificate from a private CA (`ca_path`) for
    127.0.0.2, where the registry then listens -- not a loopback name the
    client speaks plain http to."""

    def __init__(self, *, auth=None, users=None, base_dir=None, tls=False):
        if auth not in (None, "basic", "token"):
            raise ValueError(f"auth {auth!r}: None, 'basic' or 'token'")
        self.auth = auth
        self.users = dict(users or {})
        self.base_dir = base_dir
        self.tls = tls
        self.ip = "127.0.0.2" if tls else "127.0.0.1"
        self.dir = None
        self.proc = None
        self.port = None
        self.issuer = None
        self._log = None

    # ------------------------------------------------------------ addresses
    @property
    def host(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def ca_path(self) -> Path:
        return self.dir / "ca.crt"

    def _ssl(self):
        import ssl
        return ssl.create_default_context(cafile=str(self.ca_path)) if self.tls else None

    def store_uri(self, repo: str) -> str:
        return f"oci://{self.host}/{repo}"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def log_path(self) -> Path:
        return self.dir / "registry.log"

    # ------------------------------------------------------------ lifecycle
    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  formatter: text",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.data_dir}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: {self.ip}:{self.port}",
            f"  secret: {secrets.token_hex(16)}",
        ]
        if self.tls:
            lines += ["  tls:", f"    certificate: {self.dir / 'server.crt'}",
                      f"    key: {self.dir / 'server.key'}"]
        if self.auth == "basic":
            import bcrypt
            with open(self.dir / "htpasswd", "w") as fh:
                for u, p in self.users.items():
                    fh.write(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=5)).decode()}\n")
            lines += ["auth:", "  htpasswd:", "    realm: kybernate-test",
                      f"    path: {self.dir / 'htpasswd'}"]
        elif self.auth == "token":
            lines += ["auth:", "  token:", f"    realm: {self.issuer.realm}",
                      f"    service: {SERVICE}", f"    issuer: {ISSUER}",
                      f"    rootcertbundle: {self.issuer.cert_path}"]
        return "\n".join(lines) + "\n"

    def start(self) -> "Registry":
        if not os.access(REGISTRY_BIN, os.X_OK):
            raise RegistryError(f"{REGISTRY_BIN} missing: install Debian's docker-registry "
                                f"(scripts/setup does)")
        self.dir = Path(tempfile.mkdtemp(prefix="kyb-registry-", dir=self.base_dir))
        self.data_dir.mkdir()
        try:
            if self.auth == "token":
                self.issuer = _TokenIssuer(self.users, self.dir)
            if self.tls:
                _make_tls(self.dir, self.ip)
            for attempt in range(3):  # a free port can be taken before the registry binds it
                self.port = free_port(self.ip)
                cfg = self.dir / "config.yml"
                cfg.write_text(self._config())
                self._log = open(self.log_path, "ab")
                self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(cfg)], stdout=self._log,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=True)
                if self._wait_ready(30):
                    return self
                self._kill()
            raise RegistryError(f"registry did not come up; log:\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2,
                                            context=self._ssl()) as r:
                    return r.status == 200
            except urllib.error.HTTPError as e:
                if e.code == 401:  # auth configured: it answers
                    return True
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.05)
        return False

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def pause(self):
        """SIGSTOP: the registry stops answering (connections hang)."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self):
        """Kills and starts the registry again on the same port and storage."""
        self._kill()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(self.dir / "config.yml")],
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        if not self._wait_ready(30):
            raise RegistryError(f"registry did not come back; log:\n{self.log_tail()}")

    def stop(self):
        self._kill()
        if self.issuer is not None:
            self.issuer.stop()
            self.issuer = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # ------------------------------------------------------------ looking inside
    def _request(self, path, method="GET", user=None, accept=None):
        req = urllib.request.Request(self.url + path, method=method)
        if accept:
            req.add_header("Accept", accept)
        if self.auth == "basic":
            u = user or next(iter(self.users))
            cred = base64.b64encode(f"{u}:{self.users[u]}".encode()).decode()
            req.add_header("Authorization", f"Basic {cred}")
        elif self.auth == "token":
            raise RegistryError("direct requests with token auth are not supported here")
        return urllib.request.urlopen(req, timeout=10, context=self._ssl())

    def tags(self, repo: str) -> list:
        """The repository's tags ([] when it does not exist)."""
        try:
            with self._request(f"/v2/{repo}/tags/list") as r:
                return sorted(json.load(r).get("tags") or [])
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return []
            raise

    def manifest(self, repo: str, tag: str) -> dict:
        with self._request(f"/v2/{repo}/manifests/{tag}",
                           accept="application/vnd.oci.image.manifest.v1+json") as r:
            return json.load(r)

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes."""
        hexd = digest.split(":", 1)[1]
        return self.data_dir / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def upload_dirs(self, repo: str) -> list:
        """Upload sessions the registry holds for repo (started, not finished)."""
        d = self.data_dir / "docker/registry/v2/repositories" / repo / "_uploads"
        return sorted(d.iterdir()) if d.is_dir() else []
