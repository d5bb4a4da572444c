# SPDX-License-Identifier: Apache-2.0
"""A small Kubernetes API client for tests (standard library only): the
kubelet stand-in (tests/harness/kubelet.py) and the tests use it against
the API server double (tests/doubles/kube_apiserver.py), over http, https
(CA, bearer token, client certificate) or a unix socket.

    from tests.harness.kubeapi import KubeClient
    kc = KubeClient.for_server(api)                 # a KubeApiServer(Process)
    pod = kc.create("v1", "pods", pod, namespace="default")
    kc.get("v1", "pods", "web", namespace="default")
    kc.list("v1", "pods", namespace="", label_selector="app=web")
    kc.patch("v1", "pods", "web", {"metadata": {"labels": {"a": "b"}}}, namespace="default")
    kc.patch_status("kybernate.io/v1alpha1", "checkpoints", "c1", {"status": {...}}, "ns")
    with kc.watch("v1", "pods", resource_version=rv) as w:
        ev = w.next(timeout=5)                      # {"type": ..., "object": ...} or None
    try: ...
    except KubeApiError as e: e.code, e.reason, e.status

Every call raises KubeApiError for a non-2xx answer (with the Status the
server sent)."""

import http.client
import json
import queue
import socket
import ssl
import threading
import urllib.parse


class KubeApiError(Exception):
    """A non-2xx answer: code (HTTP), reason and status (the metav1.Status,
    or {"message": body} when the body was not JSON)."""

    def __init__(self, code, status, method="", path=""):
        self.code = code
        self.status = status if isinstance(status, dict) else {"message": str(status)}
        self.reason = self.status.get("reason", "")
        self.method, self.path = method, path
        super().__init__(f"{method} {path}: {code} {self.reason}: "
                         f"{self.status.get('message', '')}")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def resource_path(api_version, plural, namespace=None, name=None, sub=None) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    p = base
    if namespace:
        p += f"/namespaces/{urllib.parse.quote(namespace)}"
    p += f"/{plural}"
    if name:
        p += f"/{urllib.parse.quote(name)}"
    if sub:
        p += f"/{sub}"
    return p


class KubeClient:
    def __init__(self, url=None, *, token=None, ca_file=None, client_cert=None,
                 client_key=None, unix_socket=None, timeout=30.0, user_agent="kybernate-tests"):
        if not url and not unix_socket:
            raise ValueError("url or unix_socket is required")
        self.url = url
        self.unix_socket = unix_socket
        self.token = token
        self.timeout = timeout
        self.user_agent = user_agent
        self.ssl_context = None
        if url and url.startswith("https"):
            ctx = ssl.create_default_context(cafile=ca_file)
            if client_cert:
                ctx.load_cert_chain(client_cert, client_key)
            self.ssl_context = ctx
        self._local = threading.local()

    @classmethod
    def for_server(cls, api, **kw) -> "KubeClient":
        """A client of a KubeApiServer or KubeApiServerProcess (its URL, CA
        and token)."""
        kw.setdefault("token", getattr(api, "token", None))
        kw.setdefault("ca_file", getattr(api, "ca_file", None))
        return cls(api.url, **kw)

    # ------------------------------------------------------------ transport
    def _new_conn(self, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        if self.unix_socket:
            return _UnixConnection(self.unix_socket, timeout)
        u = urllib.parse.urlsplit(self.url)
        if u.scheme == "https":
            return http.client.HTTPSConnection(u.hostname, u.port, timeout=timeout,
                                               context=self.ssl_context)
        return http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)

    def _headers(self, ctype=None) -> dict:
        h = {"Accept": "application/json", "User-Agent": self.user_agent}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        if ctype:
            h["Content-Type"] = ctype
        return h

    def request(self, method, path, body=None, *, query=None, ctype="application/json",
                raw=False):
        """One request; returns (code, headers, parsed JSON body) or raises
        KubeApiError for a non-2xx answer.  Reuses one keep-alive
        connection per thread."""
        if query:
            q = {k: v for k, v in query.items() if v not in (None, "")}
            if q:
                path += "?" + urllib.parse.urlencode(q)
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            if isinstance(data, str):
                data = data.encode()
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            fresh = conn is None
            if fresh:
                conn = self._local.conn = self._new_conn()
            try:
                conn.request(method, path, body=data,
                             headers=self._headers(ctype if data is not None else None))
                resp = conn.getresponse()
                payload = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.BadStatusLine):
                conn.close()
                self._local.conn = None
                if fresh or attempt:
                    raise
        if resp.getheader("Connection", "").lower() == "close":
            conn.close()
            self._local.conn = None
        headers = {k.lower(): v for k, v in resp.getheaders()}
        headers["warning"] = resp.headers.get_all("Warning") or []
        if raw:
            return resp.status, headers, payload
        try:
            obj = json.loads(payload) if payload else None
        except ValueError:
            obj = {"message": payload.decode(errors="replace")}
        if not 200 <= resp.status < 300:
            raise KubeApiError(resp.status, obj, method, path)
        return resp.status, headers, obj

    def close(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ------------------------------------------------------------ verbs
    def get(self, api_version, plural, name, namespace=None, sub=None) -> dict:
        return self.request("GET", resource_path(api_version, plural, namespace, name, sub))[2]

    def list(self, api_version, plural, namespace=None, *, label_selector=None,
             field_selector=None, limit=None, continue_token=None, resource_version=None,
             resource_version_match=None) -> dict:
        return self.request("GET", resource_path(api_version, plural, namespace), query={
            "labelSelector": label_selector, "fieldSelector": field_selector, "limit": limit,
            "continue": continue_token, "resourceVersion": resource_version,
            "resourceVersionMatch": resource_version_match})[2]

    def create(self, api_version, plural, obj, namespace=None, **query) -> dict:
        return self.request("POST", resource_path(api_version, plural, namespace), obj,
                            query=query)[2]

    def update(self, api_version, plural, obj, namespace=None, sub=None, **query) -> dict:
        return self.request("PUT", resource_path(api_version, plural, namespace,
                                                 obj["metadata"]["name"], sub), obj,
                            query=query)[2]

    def update_status(self, api_version, plural, obj, namespace=None) -> dict:
        return self.update(api_version, plural, obj, namespace, sub="status")

    def patch(self, api_version, plural, name, patch, namespace=None, *, sub=None,
              patch_type="merge", **query) -> dict:
        ctype = {"merge": "application/merge-patch+json", "json": "application/json-patch+json",
                 "strategic": "application/strategic-merge-patch+json"}[patch_type]
        return self.request("PATCH", resource_path(api_version, plural, namespace, name, sub),
                            patch, ctype=ctype, query=query)[2]

    def patch_status(self, api_version, plural, name, patch, namespace=None, **kw) -> dict:
        return self.patch(api_version, plural, name, patch, namespace, sub="status", **kw)

    def delete(self, api_version, plural, name, namespace=None, *, grace_period=None,
               preconditions=None, propagation_policy=None) -> dict:
        opts = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period is not None:
            opts["gracePeriodSeconds"] = grace_period
        if preconditions:
            opts["preconditions"] = preconditions
        if propagation_policy:
            opts["propagationPolicy"] = propagation_policy
        return self.request("DELETE", resource_path(api_version, plural, namespace, name),
                            opts)[2]

    def watch(self, api_version, plural, namespace=None, *, resource_version=None,
              label_selector=None, field_selector=None, bookmarks=False, timeout_seconds=None,
              send_initial_events=None) -> "WatchStream":
        q = {"watch": "1", "resourceVersion": resource_version,
             "labelSelector": label_selector, "fieldSelector": field_selector,
             "allowWatchBookmarks": "true" if bookmarks else None,
             "timeoutSeconds": timeout_seconds}
        if send_initial_events is not None:
            q["sendInitialEvents"] = "true" if send_initial_events else "false"
            q["resourceVersionMatch"] = "NotOlderThan"
        path = resource_path(api_version, plural, namespace) + "?" + urllib.parse.urlencode(
            {k: v for k, v in q.items() if v not in (None, "")})
        return WatchStream(self, path)


class WatchStream:
    """An open watch: a reader thread parses the chunked JSON lines into a
    queue.  next(timeout) -> event dict, or None on timeout; `ended` is set
    when the server ended the stream (`error` holds why, if not cleanly)."""

    _END = object()

    def __init__(self, client: KubeClient, path: str):
        self.path = path
        self.conn = client._new_conn(timeout=None)
        self.conn.request("GET", path, headers=client._headers())
        self.resp = self.conn.getresponse()
        if self.resp.status != 200:
            body = self.resp.read()
            try:
                status = json.loads(body)
            except ValueError:
                status = {"message": body.decode(errors="replace")}
            self.conn.close()
            raise KubeApiError(self.resp.status, status, "GET", path)
        self.events = queue.Queue()
        self.ended = threading.Event()
        self.error = None
        self._closing = False
        self._thread = threading.Thread(target=self._read, daemon=True, name="watch-reader")
        self._thread.start()

    def _read(self):
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                line = line.strip()
                if line:
                    self.events.put(json.loads(line))
        except Exception as e:  # noqa: BLE001 - a closed or broken stream
            if not self._closing:
                self.error = e
        finally:
            self.ended.set()
            self.events.put(self._END)

    def next(self, timeout=5.0):
        """The next event, or None when none came within timeout or the
        stream ended (then `ended` is set)."""
        try:
            ev = self.events.get(timeout=timeout)
        except queue.Empty:
            return None
        if ev is self._END:
            self.events.put(self._END)
            return None
        return ev

    def collect(self, n, timeout=5.0) -> list:
        """Exactly n events (fewer if the stream ended or timeout passed)."""
        out = []
        import time
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ev = self.next(left)
            if ev is None:
                if self.ended.is_set():
                    break
                continue
            out.append(ev)
        return out

    def close(self):
        self._closing = True
        try:
            if self.conn.sock is not None:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __iter__(self):
        while True:
            ev = self.next(timeout=None)
            if ev is None:
                return
            yield ev
