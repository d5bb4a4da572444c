# SPDX-License-Identifier: Apache-2.0
"""TEST DOUBLE of the Kubernetes API server (kube-apiserver), in the Python
standard library, for Kybernate's tests: no kube-apiserver can be installed
on the test machines.  It speaks the real API's wire protocol (HTTP/1.1 +
JSON, the same paths, verbs, status codes, Status objects, watch streams) for
what Kybernate uses, so the project's C client, operator and agent can be
tested against it unchanged.

    from tests.doubles.kube_apiserver import KubeApiServer
    with KubeApiServer() as api:                       # in-process, 127.0.0.1:<free port>
        api.url                                        # http://127.0.0.1:PORT
        api.create_crd(crd_dict)                       # waits until Established
        api.create({"apiVersion": "v1", "kind": "Pod", ...})
        api.inject("/pods", code=500, count=2)         # next 2 requests to a path matching /pods
        api.drop_watches()                             # end every open watch
        api.compact()                                  # forget the watch history: resumes get 410
        api.snapshot()                                 # every object

    python3 -m tests.doubles.kube_apiserver --port 8080 [--unix PATH] [--token T]
        [--tls-dir DIR] [--watch-window N] [--load FILE.yaml ...] [--ready-file F]

KubeApiServerProcess runs the same as a subprocess with the same hooks
(through the double's own /__double__/ endpoints, which a real server does
not have).

What is FAITHFUL (modelled on kube-apiserver 1.30-1.33 and checked against
its source: apimachinery errors, generic registry store, watch cache,
apiextensions strategy/validator, kube-openapi validation messages):

- Paths: /api/v1/..., /apis/<group>/<version>/..., namespaced
  (.../namespaces/<ns>/<plural>[/<name>[/<subresource>]]) and cluster-scoped
  resources, all-namespace lists, the legacy /watch/ prefix.
- Discovery: /version, /api, /apis, /apis/<group>, /api/v1 and
  /apis/<group>/<version> (APIResourceList with subresources); custom
  resources appear once their CRD is Established.  /healthz, /livez, /readyz.
- Built-in types: namespaces, pods (+status, +binding), nodes (+status),
  events, configmaps, secrets, serviceaccounts (core v1);
  coordination.k8s.io/v1 leases; node.k8s.io/v1 runtimeclasses;
  apiextensions.k8s.io/v1 customresourcedefinitions (+status);
  rbac.authorization.k8s.io/v1 roles, clusterroles, rolebindings,
  clusterrolebindings; apps/v1 deployments, daemonsets (+status; stored, no
  controller).
- Verbs: get, list, watch, create (201), update (PUT), patch
  (application/merge-patch+json, application/json-patch+json, and for
  built-in types application/strategic-merge-patch+json), delete,
  deletecollection; ?dryRun=All; ?fieldValidation=Ignore|Warn|Strict for
  custom resources (Warn: `Warning: 299 - "unknown field ..."` headers).
- Errors are metav1.Status objects (kind Status, apiVersion v1, status
  Failure, message, reason, details {name, group, kind, causes}, code) with
  the real messages: NotFound 404, AlreadyExists 409, Conflict 409 ("the
  object has been modified; please apply your changes to the latest version
  and try again"), Invalid 422 with field causes, BadRequest 400,
  MethodNotAllowed 405, UnsupportedMediaType 415, Forbidden 403,
  Unauthorized 401, Expired 410, Timeout 504, InternalError 500.
- resourceVersion: one global, monotonically increasing counter (a string on
  the wire, like etcd's revision); every write bumps it; a write that
  changes nothing (same bytes) bumps nothing and sends no event.  Update
  with a stale metadata.resourceVersion: 409 Conflict; custom resources and
  CRDs refuse an update without one (422 "must be specified for an
  update"); built-ins allow it (unconditional update).  A patch carrying
  metadata.resourceVersion is a precondition too.
- Metadata: uid, creationTimestamp, generateName (+5 random chars),
  generation (1 on create, +1 on a spec change -- for custom resources any
  change outside metadata and, with the status subresource, status), name,
  label, annotation and finalizer validation, server fields preserved on
  update, deletionTimestamp; metadata.managedFields is not kept.
- Status subresource: writes to the main resource keep the old status;
  writes to /status change only status (custom resources) or everything but
  spec (built-ins).  Create drops status of custom resources with the status
  subresource; pods start as status {phase: Pending, qosClass}.
- Delete: finalizers (deletionTimestamp set, deletionGracePeriodSeconds 0,
  generation +1, object stays until an update empties the finalizers; no
  new finalizers may be added then); pods' graceful deletion (a scheduled,
  non-terminal pod gets deletionTimestamp now+grace and stays until deleted
  again with gracePeriodSeconds=0, as kubelet does); preconditions (uid,
  resourceVersion); pods and most built-ins answer the deleted object,
  custom resources a Status Success; garbage collection by ownerReferences
  (background; Orphan and Foreground propagation via the orphan and
  foregroundDeletion finalizers), namespace deletion (Terminating, contents
  deleted, then the namespace), CRD deletion (instances deleted, then the
  CRD).  These "controllers" run asynchronously on a worker thread.
- Namespaces must exist (404 namespaces "x" not found) and not be
  terminating (403) to create into; default, kube-system, kube-public and
  kube-node-lease exist.  A pod naming a RuntimeClass that does not exist
  is rejected (403, the RuntimeClass admission plugin).
- list: labelSelector (=, ==, !=, in, notin, exists, !exists, gt, lt),
  fieldSelector (=, ==, !=; metadata.name, metadata.namespace; pods:
  spec.nodeName, spec.restartPolicy, spec.schedulerName,
  spec.serviceAccountName, spec.hostNetwork, status.phase, status.podIP,
  status.nominatedNodeName; nodes: spec.unschedulable; events:
  involvedObject.*, reason, type, source, reportingComponent; namespaces:
  status.phase; CRDs' selectableFields), limit/continue with consistent
  pages (the list is served at the first page's resourceVersion;
  remainingItemCount without selectors), resourceVersion ""/"0"/N with
  resourceVersionMatch NotOlderThan/Exact (Exact and continue read the
  watch history: older than the window is 410 Expired), a resourceVersion
  in the future waits, then 504 "Too large resource version".
- watch (?watch=1): chunked JSON lines {"type", "object"} with ADDED,
  MODIFIED, DELETED, BOOKMARK, ERROR; without resourceVersion or with "0"
  the current objects come first as ADDED; from resourceVersion N the events
  after N; objects entering/leaving a selector's set come as ADDED/DELETED
  (like the watch cache); allowWatchBookmarks (BOOKMARK with only
  metadata.resourceVersion, every bookmark_interval seconds);
  sendInitialEvents=true (+ the k8s.io/initial-events-end bookmark);
  timeoutSeconds; a resourceVersion older than the retained window
  (watch_window events per resource type, or compact()) gets HTTP 200 and
  an ERROR event with Status 410 Expired "too old resource version: N (M)",
  as the watch cache does.
- Custom resources of registered CRDs (group/version/plural, scope, served
  versions, short names, categories, status subresource): structural
  pruning of unknown fields, defaults, and validation against
  openAPIV3Schema: type, nullable, enum, format (date-time, date, uuid,
  byte), pattern, minLength/maxLength, minimum/maximum (+exclusive),
  multipleOf, items, minItems/maxItems, uniqueItems, x-kubernetes-list-type
  set/map, properties, required, additionalProperties,
  minProperties/maxProperties, allOf/anyOf/oneOf/not,
  x-kubernetes-int-or-string, x-kubernetes-preserve-unknown-fields,
  x-kubernetes-embedded-resource; kind/apiVersion checks; and the
  x-kubernetes-validations CEL rules within a subset (self, oldSelf
  transition rules, has(), size(), comparisons, &&, ||, !, ?:, in,
  arithmetic, startsWith/endsWith/contains/matches, all/exists/exists_one;
  the error "<path>: Invalid value: "object": <message>"), run only when no
  blocking error came first, as the real strategy does.  CRDs themselves
  are checked for the main rules (name = plural.group, scope, one storage
  version, a structural schema).
- Pods: defaults (restartPolicy, terminationGracePeriodSeconds, dnsPolicy,
  schedulerName, imagePullPolicy, terminationMessagePath/Policy, requests
  from limits, quantities as strings), status {phase: Pending, qosClass};
  spec immutability on update; pods/binding (409 when already bound); the
  RuntimeClass admission plugin (403 for an unknown class; its
  scheduling.nodeSelector and tolerations merged into the pod).
- Authentication: optional bearer tokens (401 Unauthorized otherwise), TLS
  with a CA, server and client certificate made with the openssl CLI (a
  client certificate's CN/O are user and groups).  Optional RBAC
  (rbac=True): Roles/ClusterRoles and bindings stored in the double
  authorize requests; users in group system:masters may do anything; 403
  messages as the real authorizer words them.

What is NOT faithful (known gaps):

- No protobuf, CBOR or YAML bodies (JSON only; other media types answer 415
  or 406), no Table output (as=Table), no aggregated discovery (v2), no
  OpenAPI documents (/openapi/v2, /openapi/v3 answer 404).
- No server-side apply (application/apply-patch+yaml answers 415); the
  strategic merge patch is a subset (merge keys of common fields, finalizers
  as a set, $patch: delete/replace; no $retainKeys, no $setElementOrder).
- Built-in types are not schema-validated beyond metadata and a few rules
  (pod containers/name/image/restartPolicy and pod spec immutability;
  RuntimeClass handler; namespace names); unknown fields of built-in types
  are stored as sent.  Only the pod defaults listed above are applied (no
  service account admission, no default tolerations, no quantity
  canonicalisation such as 0.5 -> 500m); no events.k8s.io/v1 (core v1
  events only).
- CEL rules outside the subset are skipped (listed in
  Cluster.cel_skipped; the project's CRDs use none), no messageExpression,
  no CEL cost limits, no validation ratcheting; ECMA regexps run as
  Python regexps; validation messages of rare cases may differ in wording;
  no conversion webhooks (all served versions share one schema-less
  conversion: apiVersion is rewritten).
- No scheduler or controllers beyond GC, namespace and CRD cleanup, CRD
  establishment; Deployments/DaemonSets are only stored.  Events do not
  expire; leases are plain objects (no lease controller).
- The watch window counts events per resource type (the real cache sizes
  itself); bookmarks of built-in types carry only kind, apiVersion and
  metadata.resourceVersion (the real ones carry empty typed fields too);
  a 410 on continue carries no inconsistent-continue token.
- No admission webhooks, no priority & fairness, no audit, no
  impersonation; RBAC has no escalation checks and no aggregation.
- Anonymous requests are refused (401) when tokens are configured, as with
  --anonymous-auth=false.
"""

import argparse
import base64
import copy
import datetime
import http.server
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `tests.doubles` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.doubles import kube_schema as ks  # noqa: E402
else:
    from . import kube_schema as ks

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
VERSION_INFO = {"major": "1", "minor": "31", "gitVersion": "v1.31.0-kybernate-double",
                "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean", "buildDate": "2024-08-13T07:28:49Z",
                "goVersion": "go1.22.5", "compiler": "gc", "platform": "linux/amd64"}
OPTIMISTIC_LOCK = ("the object has been modified; please apply your changes to the latest "
                   "version and try again")
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
MAX_BODY = 3 * 1024 * 1024


# ---------------------------------------------------------------- Status errors

class ApiError(Exception):
    """A request failed with a metav1.Status (ApiError.status) and HTTP code."""

    def __init__(self, code: int, reason: str, message: str, details=None, headers=None):
        super().__init__(message)
        self.code = code
        self.status = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                       "status": "Failure", "message": message, "reason": reason}
        if details:
            self.status["details"] = details
        self.status["code"] = code
        self.headers = dict(headers or {})

    @property
    def reason(self) -> str:
        return self.status["reason"]


def _details(group="", kind="", name="", **extra) -> dict:
    d = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    if kind:
        d["kind"] = kind
    d.update({k: v for k, v in extra.items() if v not in (None, "", [])})
    return d


def qualified(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def err_not_found(group, resource, name) -> ApiError:
    return ApiError(404, "NotFound", f'{qualified(group, resource)} "{name}" not found',
                    _details(group, resource, name))


def err_already_exists(group, resource, name) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{qualified(group, resource)} "{name}" already exists',
                    _details(group, resource, name))


def err_conflict(group, resource, name, why=OPTIMISTIC_LOCK) -> ApiError:
    q = qualified(group, resource)
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {q} "{name}": {why}',
                    _details(group, resource, name))


def err_invalid(group, kind, name, errs) -> ApiError:
    gk = f"{kind}.{group}" if group else kind
    return ApiError(422, "Invalid", f'{gk} "{name}" is invalid: {ks.aggregate(errs)}',
                    _details(group, kind, name, causes=[e.cause() for e in errs]))


def err_bad_request(message) -> ApiError:
    return ApiError(400, "BadRequest", message)


def err_forbidden(group, resource, name, why) -> ApiError:
    q = qualified(group, resource)
    msg = f'{q} "{name}" is forbidden: {why}' if name else f"{q} is forbidden: {why}"
    return ApiError(403, "Forbidden", msg, _details(group, resource, name))


def err_method_not_supported(group, resource, action) -> ApiError:
    q = qualified(group, resource)
    return ApiError(405, "MethodNotAllowed",
                    f'{action} is not supported on resources of kind "{q}"',
                    _details(group, resource))


def err_expired(message) -> ApiError:
    return ApiError(410, "Expired", message)


def err_internal(message) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}",
                    {"causes": [{"message": message}]})


def err_too_large_rv(rv, current) -> ApiError:
    return ApiError(504, "Timeout",
                    f"Timeout: Too large resource version: {rv}, current: {current}",
                    {"causes": [{"reason": "ResourceVersionTooLarge",
                                 "message": "Too large resource version"}],
                     "retryAfterSeconds": 1})


def err_unsupported_media(message) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", message)


def _page_not_found() -> ApiError:
    e = ApiError(404, "NotFound", "the server could not find the requested resource")
    e.plain = "404 page not found\n"
    return e


# ---------------------------------------------------------------- helpers

def now_rfc3339(offset: float = 0.0) -> str:
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(s: str) -> float:
    return datetime.datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def _dig(obj, dotted: str):
    cur = obj
    for part in dotted.strip(".").split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _field_str(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _version_key(v: str):
    """Kubernetes version priority: GA > beta > alpha, higher numbers first,
    then the rest alphabetically."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", v)
    if not m:
        return (3, 0, 0, v)
    major, stage, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -major, -minor, v)


def _go_strings(items) -> str:
    return "[]string{" + ", ".join(json.dumps(i) for i in items) + "}"


# ---------------------------------------------------------------- resource types

@dataclass(eq=False)
class ResourceType:
    """One resource of one group/version as the server serves it."""
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple = ()
    categories: tuple = ()
    status_subresource: bool = False
    generation: bool = False
    unconditional_update: bool = True
    create_on_update: bool = False
    return_deleted: bool = True
    custom: bool = False
    schema: dict = None
    crd_name: str = ""
    storage_version: str = ""
    field_labels: dict = field(default_factory=dict)  # selector label -> fn(obj) -> value
    subresources: tuple = ()  # besides status, e.g. ("binding",)
    name_check: object = ks.dns1123_subdomain
    strategy: object = None

    def __post_init__(self):
        self.singular = self.singular or self.kind.lower()
        self.storage_version = self.storage_version or self.version
        if self.strategy is None:
            self.strategy = Strategy()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def store_key(self) -> tuple:
        return (self.group, self.plural)

    @property
    def group_version(self) -> str:
        return self.api_version

    def fields(self, obj) -> dict:
        m = obj.get("metadata") or {}
        out = {"metadata.name": m.get("name", "")}
        if self.namespaced:
            out["metadata.namespace"] = m.get("namespace", "")
        for label, fn in self.field_labels.items():
            out[label] = _field_str(fn(obj))
        return out


@dataclass
class Event:
    rv: int
    type: str
    key: tuple
    obj: dict   # the object after the change (DELETED: last state, rv = deletion)
    prev: dict  # the object before (None for ADDED)


class TypeData:
    """The stored objects of one group/resource (all its versions) and its
    watch history."""

    def __init__(self, floor: int):
        self.objects = {}   # (namespace, name) -> object (never mutated once stored)
        self.history = []   # Events, oldest first
        self.floor = floor  # every event with rv > floor is in history


# ---------------------------------------------------------------- strategies

class Strategy:
    """Per-type behaviour (the registry strategy of the real server)."""

    def prepare_create(self, api, rt, obj):
        if rt.status_subresource and rt.custom:
            obj.pop("status", None)
        if rt.generation:
            obj["metadata"]["generation"] = 1

    def prepare_update(self, api, rt, new, old):
        if rt.status_subresource:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        self.bump_generation(rt, new, old)

    def prepare_status_update(self, api, rt, new, old):
        if rt.custom:
            status = new.get("status", _MISSING)
            rv = new["metadata"].get("resourceVersion")
            new.clear()
            new.update(copy.deepcopy(old))
            if status is _MISSING:
                new.pop("status", None)
            else:
                new["status"] = status
            if rv is not None:
                new["metadata"]["resourceVersion"] = rv
        else:
            if "spec" in old:
                new["spec"] = copy.deepcopy(old["spec"])
            else:
                new.pop("spec", None)
            om = old["metadata"]
            for k in ("ownerReferences",):
                if k in om:
                    new["metadata"][k] = copy.deepcopy(om[k])
                else:
                    new["metadata"].pop(k, None)

    def bump_generation(self, rt, new, old):
        if not rt.generation:
            return
        if rt.custom:
            skip = {"metadata"} | ({"status"} if rt.status_subresource else set())
            changed = ({k: v for k, v in new.items() if k not in skip} !=
                       {k: v for k, v in old.items() if k not in skip})
        else:
            changed = new.get("spec") != old.get("spec")
        if changed:
            new["metadata"]["generation"] = old["metadata"].get("generation", 0) + 1

    def validate(self, api, rt, obj, old) -> list:
        return ks.validate_object_meta(obj["metadata"], rt.namespaced, rt.name_check)

    def admit_create(self, api, rt, obj):
        pass

    def grace_period(self, api, rt, obj, options):
        """Seconds of graceful deletion, or None when deleted at once."""
        return None

    def on_delete(self, api, rt, new):
        """Changes a delete makes besides deletionTimestamp (namespaces)."""


_MISSING = object()


class PodStrategy(Strategy):
    MUTABLE_NOTE = ("pod updates may not change fields other than `spec.containers[*].image`,"
                    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                    "`spec.tolerations` (only additions to existing tolerations),"
                    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                    "previously negative)")

    def prepare_create(self, api, rt, obj):
        super().prepare_create(api, rt, obj)
        spec = obj.setdefault("spec", {})
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("securityContext", {})
        spec.setdefault("enableServiceLinks", True)
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            if not isinstance(c, dict):
                continue
            image = c.get("image") or ""
            tag = image.rsplit("/", 1)[-1]
            latest = "@" not in image and (":" not in tag or tag.endswith(":latest"))
            c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            res = c.setdefault("resources", {})
            for kind in ("limits", "requests"):  # quantities are strings on the wire
                if isinstance(res.get(kind), dict):
                    res[kind] = {k: str(v) if isinstance(v, (int, float)) and
                                 not isinstance(v, bool) else v for k, v in res[kind].items()}
            if res.get("limits"):  # requests default to limits
                res["requests"] = dict(res["limits"], **(res.get("requests") or {}))
        obj["status"] = {"phase": "Pending", "qosClass": _qos_class(spec)}

    def validate(self, api, rt, obj, old) -> list:
        errs = super().validate(api, rt, obj, old)
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return errs + [ks.FieldError("Required", "spec")]
        containers = spec.get("containers")
        if not containers:
            errs.append(ks.FieldError("Required", "spec.containers"))
        names = set()
        for i, c in enumerate(containers or []):
            p = f"spec.containers[{i}]"
            if not isinstance(c, dict):
                errs.append(ks.FieldError("Invalid", p, c, "must be an object"))
                continue
            if not c.get("name"):
                errs.append(ks.FieldError("Required", p + ".name"))
            else:
                for m in ks.dns1123_label(c["name"]):
                    errs.append(ks.FieldError("Invalid", p + ".name", c["name"], m))
                if c["name"] in names:
                    errs.append(ks.FieldError("Duplicate", p + ".name", c["name"]))
                names.add(c["name"])
            if not c.get("image") and old is None:
                errs.append(ks.FieldError("Required", p + ".image"))
        rp = spec.get("restartPolicy")
        if rp not in ("Always", "OnFailure", "Never"):
            errs.append(ks.FieldError("NotSupported", "spec.restartPolicy", rp,
                                      'supported values: "Always", "OnFailure", "Never"'))
        if spec.get("nodeName"):
            for m in ks.dns1123_subdomain(spec["nodeName"]):
                errs.append(ks.FieldError("Invalid", "spec.nodeName", spec["nodeName"], m))
        if old is not None and _pod_spec_fixed(spec) != _pod_spec_fixed(old.get("spec") or {}):
            errs.append(ks.FieldError("Forbidden", "spec", detail=self.MUTABLE_NOTE))
        return errs

    def admit_create(self, api, rt, obj):
        """The RuntimeClass admission plugin: the class must exist; its
        scheduling.nodeSelector and tolerations are merged into the pod."""
        spec = obj.get("spec") or {}
        rc = spec.get("runtimeClassName")
        if not rc:
            return
        rco = api._data(("node.k8s.io", "runtimeclasses")).objects.get(("", rc))
        name = obj["metadata"]["name"]
        if rco is None:
            raise err_forbidden("", "pods", name, f'pod rejected: RuntimeClass "{rc}" not found')
        sched = rco.get("scheduling") or {}
        sel = dict(spec.get("nodeSelector") or {})
        for k, v in (sched.get("nodeSelector") or {}).items():
            if k in sel and sel[k] != v:
                raise err_forbidden("", "pods", name,
                                    f"conflict: runtimeClass.scheduling.nodeSelector[{k}] = "
                                    f"{v}; pod.spec.nodeSelector[{k}] = {sel[k]}")
            sel[k] = v
        if sel:
            spec["nodeSelector"] = sel
        tols = list(spec.get("tolerations") or [])
        for t in sched.get("tolerations") or []:
            if t not in tols:
                tols.append(t)
        if tols:
            spec["tolerations"] = tols
        if rco.get("overhead", {}).get("podFixed"):
            spec["overhead"] = copy.deepcopy(rco["overhead"]["podFixed"])

    def grace_period(self, api, rt, obj, options):
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Failed", "Succeeded"):
            return 0
        g = options.get("gracePeriodSeconds")
        if g is None:
            g = spec.get("terminationGracePeriodSeconds", 30)
        return max(int(g), 0)


def _pod_spec_fixed(spec: dict) -> dict:
    s = copy.deepcopy(spec)
    for key in ("containers", "initContainers"):
        for c in s.get(key) or []:
            if isinstance(c, dict):
                c.pop("image", None)
    for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
        s.pop(key, None)
    return s


def _qos_class(spec) -> str:
    reqs, lims, all_guaranteed = False, False, True
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if not isinstance(c, dict):
            continue
        r = (c.get("resources") or {})
        rq, lm = r.get("requests") or {}, r.get("limits") or {}
        reqs |= bool(rq)
        lims |= bool(lm)
        for res in ("cpu", "memory"):
            if res not in lm or rq.get(res, lm[res]) != lm[res]:
                all_guaranteed = False
    if not reqs and not lims:
        return "BestEffort"
    return "Guaranteed" if all_guaranteed else "Burstable"


class NamespaceStrategy(Strategy):
    def prepare_create(self, api, rt, obj):
        super().prepare_create(api, rt, obj)
        obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]
        obj["status"] = {"phase": "Active"}
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = \
            obj["metadata"]["name"]

    def prepare_update(self, api, rt, new, old):
        super().prepare_update(api, rt, new, old)
        new["spec"] = copy.deepcopy(old.get("spec") or {})
        new["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = \
            new["metadata"]["name"]

    def on_delete(self, api, rt, new):
        new.setdefault("status", {})["phase"] = "Terminating"
        fins = new["metadata"].get("finalizers") or []
        new.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        return fins


class RuntimeClassStrategy(Strategy):
    def validate(self, api, rt, obj, old) -> list:
        errs = super().validate(api, rt, obj, old)
        h = obj.get("handler")
        if not h:
            errs.append(ks.FieldError("Required", "handler"))
        else:
            for m in ks.dns1123_label(h):
                errs.append(ks.FieldError("Invalid", "handler", h, m))
        if old is not None and h != old.get("handler"):
            errs.append(ks.FieldError("Invalid", "handler", h, "field is immutable"))
        return errs


class CRDStrategy(Strategy):
    def prepare_create(self, api, rt, obj):
        super().prepare_create(api, rt, obj)
        obj.pop("status", None)

    def validate(self, api, rt, obj, old) -> list:
        errs = super().validate(api, rt, obj, old)
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return errs + [ks.FieldError("Required", "spec")]
        group, names = spec.get("group") or "", spec.get("names") or {}
        plural, kind = names.get("plural") or "", names.get("kind") or ""
        if not group:
            errs.append(ks.FieldError("Required", "spec.group"))
        elif "." not in group:
            errs.append(ks.FieldError("Invalid", "spec.group", group,
                                      "should be a domain with at least one dot"))
        if not plural:
            errs.append(ks.FieldError("Required", "spec.names.plural"))
        else:
            for m in ks.dns1123_label(plural):
                errs.append(ks.FieldError("Invalid", "spec.names.plural", plural, m))
        if not kind:
            errs.append(ks.FieldError("Required", "spec.names.kind"))
        name = obj["metadata"].get("name", "")
        if plural and group and name != f"{plural}.{group}":
            errs.append(ks.FieldError("Invalid", "metadata.name", name,
                                      "must be spec.names.plural+\".\"+spec.group"))
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            errs.append(ks.FieldError("NotSupported", "spec.scope", spec.get("scope"),
                                      'supported values: "Cluster", "Namespaced"'))
        versions = spec.get("versions") or []
        if not versions:
            errs.append(ks.FieldError("Invalid", "spec.versions", versions,
                                      "must have exactly one version marked as storage version"))
        storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
        if versions and len(storage) != 1:
            errs.append(ks.FieldError("Invalid", "spec.versions", versions,
                                      "must have exactly one version marked as storage version"))
        seen = set()
        for i, v in enumerate(versions):
            p = f"spec.versions[{i}]"
            if not isinstance(v, dict) or not v.get("name"):
                errs.append(ks.FieldError("Required", p + ".name"))
                continue
            if v["name"] in seen:
                errs.append(ks.FieldError("Duplicate", p + ".name", v["name"]))
            seen.add(v["name"])
            schema = (v.get("schema") or {}).get("openAPIV3Schema")
            if schema is None:
                errs.append(ks.FieldError("Required", p + ".schema.openAPIV3Schema",
                                          detail="schemas are required"))
            else:
                ks.check_structural(schema, p + ".schema.openAPIV3Schema", errs)
            for j, sf in enumerate(v.get("selectableFields") or []):
                if not (isinstance(sf, dict) and str(sf.get("jsonPath", "")).startswith(".")):
                    errs.append(ks.FieldError("Invalid", f"{p}.selectableFields[{j}].jsonPath",
                                              sf, "must be a simple path starting with '.'"))
        if old is not None:
            o = old.get("spec") or {}
            if o.get("group") != group:
                errs.append(ks.FieldError("Invalid", "spec.group", group, "field is immutable"))
            if (o.get("names") or {}).get("plural") != plural:
                errs.append(ks.FieldError("Invalid", "spec.names.plural", plural,
                                          "field is immutable"))
            if o.get("scope") != spec.get("scope"):
                errs.append(ks.FieldError("Invalid", "spec.scope", spec.get("scope"),
                                          "field is immutable"))
        return errs


class CustomResourceStrategy(Strategy):
    def validate(self, api, rt, obj, old) -> list:
        errs = []
        if obj.get("kind") != rt.kind:
            errs.append(ks.FieldError("Invalid", "kind", obj.get("kind"), f"must be {rt.kind}"))
        if obj.get("apiVersion") != rt.api_version:
            errs.append(ks.FieldError("Invalid", "apiVersion", obj.get("apiVersion"),
                                      f"must be {rt.api_version}"))
        if errs:
            return errs
        errs = ks.validate_object_meta(obj["metadata"], rt.namespaced, rt.name_check)
        if rt.schema:
            ks.validate_value(obj, rt.schema, "", errs, root=True)
            # CEL rules run only when nothing "blocking" failed (as in
            # customResourceStrategy.Validate).
            if not any(e.type in ks.BLOCKING for e in errs):
                skipped = []
                ks.validate_cel(obj, rt.schema, "", errs,
                                old if old is not None else ks._CEL_MISSING, root=True,
                                skipped=skipped)
                api.cel_skipped.update(skipped)
        return errs


# ---------------------------------------------------------------- built-in types

def _builtin_types() -> list:
    pod_fields = {
        "spec.nodeName": lambda o: _dig(o, "spec.nodeName"),
        "spec.restartPolicy": lambda o: _dig(o, "spec.restartPolicy"),
        "spec.schedulerName": lambda o: _dig(o, "spec.schedulerName"),
        "spec.serviceAccountName": lambda o: _dig(o, "spec.serviceAccountName"),
        "spec.hostNetwork": lambda o: bool(_dig(o, "spec.hostNetwork")),
        "status.phase": lambda o: _dig(o, "status.phase"),
        "status.podIP": lambda o: _dig(o, "status.podIP"),
        "status.nominatedNodeName": lambda o: _dig(o, "status.nominatedNodeName"),
    }
    event_fields = {f"involvedObject.{k}": (lambda k: lambda o: _dig(o, f"involvedObject.{k}"))(k)
                    for k in ("kind", "namespace", "name", "uid", "apiVersion",
                              "resourceVersion", "fieldPath")}
    event_fields.update({
        "reason": lambda o: o.get("reason"), "type": lambda o: o.get("type"),
        "source": lambda o: _dig(o, "source.component") or o.get("reportingComponent"),
        "reportingComponent": lambda o: o.get("reportingComponent"),
    })
    T = ResourceType
    return [
        T("", "v1", "namespaces", "Namespace", False, short_names=("ns",),
          status_subresource=True, name_check=ks.dns1123_label, strategy=NamespaceStrategy(),
          field_labels={"status.phase": lambda o: _dig(o, "status.phase")}),
        T("", "v1", "pods", "Pod", True, short_names=("po",), categories=("all",),
          status_subresource=True, generation=True, subresources=("binding",),
          strategy=PodStrategy(), field_labels=pod_fields),
        T("", "v1", "nodes", "Node", False, short_names=("no",), status_subresource=True,
          field_labels={"spec.unschedulable": lambda o: bool(_dig(o, "spec.unschedulable"))}),
        T("", "v1", "events", "Event", True, short_names=("ev",), create_on_update=True,
          return_deleted=False, field_labels=event_fields),
        T("", "v1", "configmaps", "ConfigMap", True, short_names=("cm",)),
        T("", "v1", "secrets", "Secret", True,
          field_labels={"type": lambda o: o.get("type")}),
        T("", "v1", "serviceaccounts", "ServiceAccount", True, short_names=("sa",)),
        T("coordination.k8s.io", "v1", "leases", "Lease", True, return_deleted=False),
        T("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", False,
          return_deleted=False, strategy=RuntimeClassStrategy()),
        T("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
          False, short_names=("crd", "crds"), status_subresource=True, generation=True,
          unconditional_update=False, strategy=CRDStrategy()),
        T("rbac.authorization.k8s.io", "v1", "roles", "Role", True, return_deleted=False),
        T("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False,
          return_deleted=False),
        T("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True,
          return_deleted=False),
        T("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False,
          return_deleted=False),
        T("apps", "v1", "deployments", "Deployment", True, short_names=("deploy",),
          categories=("all",), status_subresource=True, generation=True,
          return_deleted=False),
        T("apps", "v1", "daemonsets", "DaemonSet", True, short_names=("ds",),
          categories=("all",), status_subresource=True, generation=True,
          return_deleted=False),
    ]


CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


# ---------------------------------------------------------------- the cluster state

class Cluster:
    """Objects, resourceVersions, watch history and the server-side
    behaviour of every verb.  Thread-safe (one lock)."""

    def __init__(self, *, watch_window: int = 1000, too_large_wait: float = 3.0,
                 namespaces=DEFAULT_NAMESPACES):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = 0
        self.watch_window = watch_window
        self.too_large_wait = too_large_wait
        self.types = {}   # (group, version, plural) -> ResourceType
        self.data = {}    # (group, plural) -> TypeData
        self._kick = threading.Event()
        self._stopping = False
        self.cel_skipped = set()  # x-kubernetes-validations rules outside the CEL subset
        self._worker = None
        for rt in _builtin_types():
            self.register(rt)
        for ns in namespaces:
            self.create(self.type_for("v1", "namespaces"), "",
                        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    # ------------------------------------------------------------ registry
    def register(self, rt: ResourceType) -> None:
        with self.lock:
            self.types[(rt.group, rt.version, rt.plural)] = rt
            self.data.setdefault(rt.store_key, TypeData(self.rv))

    def _data(self, store_key) -> TypeData:
        return self.data.setdefault(store_key, TypeData(self.rv))

    def type_for(self, api_version: str, plural_or_kind: str) -> ResourceType:
        group, _, version = api_version.rpartition("/")
        with self.lock:
            rt = self.types.get((group, version, plural_or_kind))
            if rt:
                return rt
            for rt in self.types.values():
                if (rt.group, rt.version) == (group, version) and \
                        plural_or_kind in (rt.kind, rt.singular, *rt.short_names):
                    return rt
        raise _page_not_found()

    def group_versions(self) -> dict:
        """{group: [versions, preferred first]} of everything served."""
        out = {}
        with self.lock:
            for (g, v, _) in self.types:
                out.setdefault(g, set()).add(v)
        return {g: sorted(vs, key=_version_key) for g, vs in out.items()}

    # ------------------------------------------------------------ workers
    def start_worker(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._worker_loop, name="kube-double-ctrl",
                                            daemon=True)
            self._worker.start()
            self._kick.set()

    def stop_worker(self) -> None:
        self._stopping = True
        self._kick.set()
        with self.cond:
            self.cond.notify_all()
        if self._worker is not None:
            self._worker.join(5)
            self._worker = None

    def _worker_loop(self) -> None:
        while not self._stopping:
            self._kick.wait(0.5)
            self._kick.clear()
            if self._stopping:
                return
            try:
                with self.lock:
                    self._controllers_pass()
            except Exception:  # a controller bug must not kill the double
                traceback.print_exc()

    # ------------------------------------------------------------ commit
    def _commit(self, rt, etype: str, key: tuple, obj: dict, prev) -> dict:
        td = self._data(rt.store_key)
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        if etype == "DELETED":
            td.objects.pop(key, None)
        else:
            td.objects[key] = obj
        td.history.append(Event(self.rv, etype, key, obj, prev))
        if len(td.history) > self.watch_window:
            drop = len(td.history) - self.watch_window
            td.floor = td.history[drop - 1].rv
            del td.history[:drop]
        if rt.store_key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._sync_crd_types(obj, deleted=(etype == "DELETED"))
        self.cond.notify_all()
        if etype == "DELETED" or obj["metadata"].get("deletionTimestamp") or \
                obj["metadata"].get("ownerReferences") or \
                rt.store_key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._kick.set()
        return obj

    def _out(self, rt, obj, *, with_type=True) -> dict:
        """An object as the API answers it: kind and apiVersion of the
        requested version first (list items of built-in types have none)."""
        o = copy.deepcopy(obj)
        o.pop("kind", None)
        o.pop("apiVersion", None)
        if not with_type:
            return o
        return {"kind": rt.kind, "apiVersion": rt.api_version, **o}

    # ------------------------------------------------------------ checks
    def _type_meta(self, rt, obj) -> None:
        av, kind = obj.get("apiVersion"), obj.get("kind")
        if rt.custom:
            if not kind:
                raise err_bad_request(f"Object 'Kind' is missing in "
                                      f"'{json.dumps(obj, separators=(',', ':'))}'")
            return  # mismatches are 422 (customResourceValidator.ValidateTypeMeta)
        if av and av != rt.api_version:
            raise err_bad_request(f"the API version in the data ({av}) does not match the "
                                  f"expected API version ({rt.api_version})")
        if kind and kind != rt.kind:
            raise err_bad_request(f"the kind in the data ({kind}) does not match the expected "
                                  f"kind ({rt.kind})")
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind

    META_FIELDS = ("name", "generateName", "namespace", "selfLink", "uid", "resourceVersion",
                   "generation", "creationTimestamp", "deletionTimestamp",
                   "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences",
                   "finalizers", "managedFields")

    def _meta_of(self, obj) -> dict:
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise err_bad_request("metadata must be an object")
        return meta

    def _schema_prepare(self, rt, obj, field_validation: str) -> list:
        """Prune unknown fields and apply defaults (custom resources);
        returns warnings, or raises 400 for fieldValidation=Strict."""
        unknown = []
        meta = obj["metadata"]
        for k in list(meta):
            if k not in self.META_FIELDS:
                unknown.append(f"metadata.{k}")
                del meta[k]
        meta.pop("managedFields", None)
        meta.pop("selfLink", None)
        if rt.custom and rt.schema:
            ks.prune(obj, rt.schema, "", unknown, root=True)
            ks.apply_defaults(obj, rt.schema)
        if unknown and field_validation == "Strict":
            raise err_bad_request("strict decoding error: " +
                                  ", ".join(f'unknown field "{u}"' for u in unknown))
        if field_validation == "Ignore":
            return []
        return [f'unknown field "{u}"' for u in unknown]

    def _admit_namespace(self, rt, ns: str, name: str) -> None:
        nso = self._data(("", "namespaces")).objects.get(("", ns))
        if nso is None:
            raise err_not_found("", "namespaces", ns)
        if nso["metadata"].get("deletionTimestamp"):
            raise err_forbidden(rt.group, rt.plural, name,
                                f"unable to create new content in namespace {ns} because it "
                                f"is being terminated")

    def _crd_terminating(self, rt) -> bool:
        if not rt.custom:
            return False
        crd = self._data(("apiextensions.k8s.io", "customresourcedefinitions")).objects.get(
            ("", rt.crd_name))
        return bool(crd and crd["metadata"].get("deletionTimestamp"))

    # ------------------------------------------------------------ get
    def get(self, rt, ns: str, name: str) -> dict:
        with self.lock:
            obj = self._data(rt.store_key).objects.get((ns or "", name))
            if obj is None:
                raise err_not_found(rt.group, rt.plural, name)
            return self._out(rt, obj)

    # ------------------------------------------------------------ list
    def _parse_selectors(self, rt, label_selector, field_selector):
        try:
            lreqs = ks.parse_label_selector(label_selector or "")
            freqs = ks.parse_field_selector(field_selector or "")
        except ks.SelectorError as e:
            raise err_bad_request(str(e)) from None
        sample = rt.fields({"metadata": {}})
        for f, _, _ in freqs:
            if f not in sample:
                if rt.custom:
                    known = ", ".join(json.dumps(k) for k in sample)
                    raise err_bad_request(f'"{f}" is not a known field selector: only {known}')
                raise err_bad_request(f"field label not supported: {f}")
        return lreqs, freqs

    def _matches(self, rt, obj, ns, lreqs, freqs) -> bool:
        if obj is None:
            return False
        if ns and obj["metadata"].get("namespace") != ns:
            return False
        return ks.labels_match(lreqs, obj["metadata"].get("labels")) and \
            ks.fields_match(freqs, rt.fields(obj))

    def _wait_rv(self, rv: int) -> None:
        """Wait (lock held) until the store reached rv; 504 after
        too_large_wait seconds (the watch cache's waitUntilFreshAndBlock)."""
        deadline = time.monotonic() + self.too_large_wait
        while self.rv < rv:
            left = deadline - time.monotonic()
            if left <= 0:
                raise err_too_large_rv(rv, self.rv)
            self.cond.wait(left)

    def _state_at(self, td: TypeData, rv: int, what: str = "list") -> dict:
        if rv < td.floor:
            raise err_expired(f"too old resource version: {rv} ({td.floor})")
        objs = dict(td.objects)
        for ev in reversed(td.history):
            if ev.rv <= rv:
                break
            if ev.type == "ADDED":
                objs.pop(ev.key, None)
            else:
                objs[ev.key] = ev.prev
        return objs

    @staticmethod
    def _parse_rv(value, what="resourceVersion") -> int:
        try:
            n = int(value)
            if n < 0:
                raise ValueError
            return n
        except (TypeError, ValueError):
            raise err_bad_request(f'{what}: Invalid value: "{value}": invalid resource version'
                                  ) from None

    def list(self, rt, ns: str = "", *, label_selector="", field_selector="", limit=0,
             continue_token="", resource_version=None, resource_version_match="") -> dict:
        lreqs, freqs = self._parse_selectors(rt, label_selector, field_selector)
        limit = int(limit or 0)
        with self.lock:
            td = self._data(rt.store_key)
            start = ""
            if continue_token:
                try:
                    tok = json.loads(base64.b64decode(continue_token, validate=False))
                    list_rv, start = int(tok["rv"]), str(tok["start"])
                except (ValueError, KeyError, TypeError):
                    raise err_bad_request("continue key is not valid: incorrect encoded start "
                                          "resourceVersion (version meta.k8s.io/v1)") from None
                if list_rv < td.floor:
                    raise err_expired(
                        "The provided continue parameter is too old to display a consistent "
                        "list result. You can start a new list without the continue parameter, "
                        "or use the continue token in this response to retrieve the remainder "
                        "of the results. Continuing with the provided token results in an "
                        "inconsistent list - objects that were created, modified, or deleted "
                        "between the time the first chunk was returned and now may show up in "
                        "the list.")
                objs = self._state_at(td, list_rv)
            elif resource_version in (None, "", "0"):
                if resource_version_match and resource_version in (None, ""):
                    raise err_bad_request("resourceVersionMatch is forbidden unless "
                                          "resourceVersion is provided")
                list_rv, objs = self.rv, td.objects
            else:
                want = self._parse_rv(resource_version)
                self._wait_rv(want)
                exact = resource_version_match == "Exact" or \
                    (limit > 0 and not resource_version_match)
                if exact:
                    if want < td.floor:
                        raise err_expired("The resourceVersion for the provided list is too old.")
                    list_rv, objs = want, self._state_at(td, want)
                else:
                    list_rv, objs = self.rv, td.objects
            def sort_key(k):
                return f"{k[0]}/{k[1]}" if rt.namespaced else k[1]
            keys = sorted((k for k in objs if sort_key(k) + "\x00" > start or not start),
                          key=sort_key)
            items, more, remaining = [], False, 0
            for i, k in enumerate(keys):
                o = objs[k]
                if not self._matches(rt, o, ns, lreqs, freqs):
                    continue
                if limit and len(items) >= limit:
                    more = True
                    remaining = sum(1 for kk in keys[i:] if
                                    self._matches(rt, objs[kk], ns, lreqs, freqs))
                    break
                items.append(self._out(rt, o, with_type=rt.custom))
                last = sort_key(k)
            meta = {"resourceVersion": str(list_rv)}
            if more:
                tok = {"v": "meta.k8s.io/v1", "rv": list_rv, "start": last + "\x00"}
                meta["continue"] = base64.b64encode(
                    json.dumps(tok, separators=(",", ":")).encode()).decode()
                if not lreqs and not freqs:
                    meta["remainingItemCount"] = remaining
            return {"kind": rt.kind + "List", "apiVersion": rt.api_version, "metadata": meta,
                    "items": items}

    # ------------------------------------------------------------ create
    def create(self, rt, ns: str, body, *, dry_run=False, field_validation="Warn"):
        """Returns (object, warnings)."""
        if not isinstance(body, dict):
            raise err_bad_request("the body of the request must be a JSON object")
        obj = copy.deepcopy(body)
        self._type_meta(rt, obj)
        meta = self._meta_of(obj)
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise err_bad_request("the namespace of the provided object does not match the "
                                      "namespace sent on the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise err_internal("resourceVersion should not be set on objects to be created")
        with self.lock:
            if rt.custom and (rt.group, rt.version, rt.plural) not in self.types:
                raise _page_not_found()
            if rt.namespaced:
                self._admit_namespace(rt, ns, meta.get("name") or meta.get("generateName", ""))
            if self._crd_terminating(rt):
                raise err_method_not_supported(rt.group, rt.plural, "create")
            td = self._data(rt.store_key)
            if not meta.get("name") and meta.get("generateName"):
                for _ in range(8):
                    cand = meta["generateName"][:58] + "".join(
                        random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
                    if ((ns or ""), cand) not in td.objects:
                        break
                else:
                    raise ApiError(409, "AlreadyExists",
                                   f'{qualified(rt.group, rt.plural)} "{cand}" already exists, '
                                   f'the server was not able to generate a unique name for '
                                   f'the object',
                                   _details(rt.group, rt.plural, cand, retryAfterSeconds=1))
                meta["name"] = cand
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            for k in ("deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
                meta.pop(k, None)
            rt.strategy.prepare_create(self, rt, obj)
            warnings = self._schema_prepare(rt, obj, field_validation)
            errs = rt.strategy.validate(self, rt, obj, None)
            if errs:
                raise err_invalid(rt.group, rt.kind, meta.get("name", ""), errs)
            rt.strategy.admit_create(self, rt, obj)
            key = (ns or "", meta["name"])
            if key in td.objects:
                raise err_already_exists(rt.group, rt.plural, meta["name"])
            if dry_run:
                return self._out(rt, obj), warnings
            stored = self._commit(rt, "ADDED", key, obj, None)
            return self._out(rt, stored), warnings

    # ------------------------------------------------------------ update / patch
    def update(self, rt, ns: str, name: str, body, *, subresource=None, dry_run=False,
               field_validation="Warn"):
        """PUT.  Returns (object, created, warnings)."""
        if not isinstance(body, dict):
            raise err_bad_request("the body of the request must be a JSON object")
        obj = copy.deepcopy(body)
        self._type_meta(rt, obj)
        meta = self._meta_of(obj)
        if meta.get("name") != name:
            raise err_bad_request(f"the name of the object ({meta.get('name', '')}) does not "
                                  f"match the name on the URL ({name})")
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise err_bad_request("the namespace of the provided object does not match the "
                                      "namespace sent on the request")
            meta["namespace"] = ns
        with self.lock:
            td = self._data(rt.store_key)
            old = td.objects.get((ns or "", name))
            if old is None:
                if rt.create_on_update and not subresource:
                    meta.pop("resourceVersion", None)
                    o, w = self.create(rt, ns, obj, dry_run=dry_run,
                                       field_validation=field_validation)
                    return o, True, w
                raise err_not_found(rt.group, rt.plural, name)
            uid = meta.get("uid")
            if uid and uid != old["metadata"].get("uid"):  # the object's uid is a precondition
                raise err_conflict(rt.group, rt.plural, name,
                                   f"Precondition failed: UID in precondition: {uid}, UID in "
                                   f"object meta: {old['metadata'].get('uid')}")
            rv = meta.get("resourceVersion")
            if not rv:
                if not rt.unconditional_update:
                    raise err_invalid(rt.group, rt.plural, name, [ks.FieldError(
                        "Invalid", "metadata.resourceVersion", ks.RawValue("0x0"),
                        "must be specified for an update")])
            elif rv != old["metadata"]["resourceVersion"]:
                raise err_conflict(rt.group, rt.plural, name)
            o, w = self._update_locked(rt, old, obj, subresource, dry_run, field_validation)
            return o, False, w

    def patch(self, rt, ns: str, name: str, patch_type: str, patch, *, subresource=None,
              dry_run=False, field_validation="Warn"):
        """PATCH with a parsed patch document.  Returns (object, warnings)."""
        with self.lock:
            td = self._data(rt.store_key)
            old = td.objects.get((ns or "", name))
            if old is None:
                raise err_not_found(rt.group, rt.plural, name)
            current = self._out(rt, old)
            try:
                if patch_type == "merge":
                    if not isinstance(patch, dict):
                        raise ks.PatchError("a merge patch must be a JSON object")
                    new = ks.merge_patch(current, patch)
                elif patch_type == "json":
                    new = ks.json_patch(current, patch)
                elif patch_type == "strategic":
                    if not isinstance(patch, dict):
                        raise ks.PatchError("a strategic merge patch must be a JSON object")
                    new = ks.strategic_merge_patch(current, patch)
                else:
                    raise err_unsupported_media(f"unsupported patch type {patch_type}")
            except ks.PatchError as e:
                raise ApiError(422, "Invalid", str(e), _details(rt.group, rt.kind, name)) \
                    from None
            if not isinstance(new, dict):
                raise ApiError(422, "Invalid", "the patched object is not a JSON object")
            new.setdefault("metadata", {})
            if not isinstance(new["metadata"], dict):
                raise err_bad_request("metadata must be an object")
            nm = new["metadata"]
            if nm.get("name", name) != name:
                raise err_bad_request(f"the name of the object ({nm.get('name')}) does not "
                                      f"match the name on the URL ({name})")
            nm["name"] = name
            if rt.namespaced:
                nm["namespace"] = ns
            rv = nm.get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise err_conflict(rt.group, rt.plural, name)
            if not rt.custom:
                self._type_meta(rt, new)
            return self._update_locked(rt, old, new, subresource, dry_run, field_validation)

    def _update_locked(self, rt, old, obj, subresource, dry_run, field_validation):
        meta, om = obj["metadata"], old["metadata"]
        name = om["name"]
        errs = []
        if meta.get("uid") and meta["uid"] != om.get("uid"):
            errs.append(ks.FieldError("Invalid", "metadata.uid", meta["uid"],
                                      "field is immutable"))
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "generation"):
            if k in om:
                meta[k] = om[k]
            else:
                meta.pop(k, None)
        if subresource == "status":
            rt.strategy.prepare_status_update(self, rt, obj, old)
            meta = obj["metadata"]
        else:
            rt.strategy.prepare_update(self, rt, obj, old)
        warnings = self._schema_prepare(rt, obj, field_validation)
        if om.get("deletionTimestamp"):
            added = [f for f in meta.get("finalizers") or [] if f not in
                     (om.get("finalizers") or [])]
            if added:
                errs.append(ks.FieldError(
                    "Forbidden", "metadata.finalizers",
                    detail=f"no new finalizers can be added if the object is being deleted, "
                           f"found new finalizers {_go_strings(added)}"))
        errs += rt.strategy.validate(self, rt, obj, old)
        if errs:
            raise err_invalid(rt.group, rt.kind, name, errs)
        meta["resourceVersion"] = om["resourceVersion"]
        if not meta.get("finalizers"):
            meta.pop("finalizers", None)
        if _same(obj, old):
            return self._out(rt, old), warnings
        if dry_run:
            return self._out(rt, obj), warnings
        key = (om.get("namespace", ""), name)
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and \
                meta.get("deletionGracePeriodSeconds", 0) == 0:
            stored = self._commit(rt, "DELETED", key, obj, old)
        else:
            stored = self._commit(rt, "MODIFIED", key, obj, old)
        return self._out(rt, stored), warnings

    # ------------------------------------------------------------ delete
    def delete(self, rt, ns: str, name: str, options=None, *, dry_run=False):
        """Returns (http code, object or Status)."""
        options = options or {}
        with self.lock:
            td = self._data(rt.store_key)
            key = (ns or "", name)
            old = td.objects.get(key)
            if old is None:
                raise err_not_found(rt.group, rt.plural, name)
            om = old["metadata"]
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != om.get("uid"):
                raise err_conflict(rt.group, rt.plural, name,
                                   f"Precondition failed: UID in precondition: {pre['uid']}, "
                                   f"UID in object meta: {om.get('uid')}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != om["resourceVersion"]:
                raise err_conflict(rt.group, rt.plural, name,
                                   f"Precondition failed: ResourceVersion in precondition: "
                                   f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                   f"{om['resourceVersion']}")
            if dry_run:
                return 200, self._out(rt, old)
            return self._delete_locked(rt, old, options)

    def _delete_locked(self, rt, old, options):
        om = old["metadata"]
        key = (om.get("namespace", ""), om["name"])
        new = copy.deepcopy(old)
        nm = new["metadata"]
        policy = options.get("propagationPolicy")
        if options.get("orphanDependents") is True:
            policy = "Orphan"
        fins = list(nm.get("finalizers") or [])
        if policy == "Orphan" and "orphan" not in fins:
            fins.append("orphan")
        if policy == "Foreground" and "foregroundDeletion" not in fins:
            fins.append("foregroundDeletion")
        if fins:
            nm["finalizers"] = fins
        grace = rt.strategy.grace_period(self, rt, old, options)
        if rt.store_key == ("", "namespaces"):
            rt.strategy.on_delete(self, rt, new)
            if not nm.get("deletionTimestamp"):
                nm["deletionTimestamp"] = now_rfc3339()
                nm["deletionGracePeriodSeconds"] = 0
            if _same(new, old):
                return 200, self._out(rt, old)
            return 200, self._out(rt, self._commit(rt, "MODIFIED", key, new, old))
        if grace:
            when = now_rfc3339(grace)
            if nm.get("deletionTimestamp") and nm["deletionTimestamp"] <= when:
                return 200, self._out(rt, old)  # only shortening is allowed
            if not nm.get("deletionTimestamp") and nm.get("generation"):
                nm["generation"] += 1
            nm["deletionTimestamp"] = when
            nm["deletionGracePeriodSeconds"] = grace
            return 200, self._out(rt, self._commit(rt, "MODIFIED", key, new, old))
        if fins:
            now = now_rfc3339()
            if not nm.get("deletionTimestamp") and nm.get("generation"):
                nm["generation"] += 1
            if not nm.get("deletionTimestamp") or nm["deletionTimestamp"] > now:
                nm["deletionTimestamp"] = now
            nm["deletionGracePeriodSeconds"] = 0
            if _same(new, old):
                return 200, self._out(rt, old)
            return 200, self._out(rt, self._commit(rt, "MODIFIED", key, new, old))
        self._commit(rt, "DELETED", key, old, old)
        if rt.return_deleted:
            return 200, self._out(rt, old)
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                     "details": _details(rt.group, rt.plural, om["name"], uid=om.get("uid"))}

    def delete_collection(self, rt, ns, *, label_selector="", field_selector="", options=None,
                          dry_run=False) -> dict:
        lst = self.list(rt, ns, label_selector=label_selector, field_selector=field_selector)
        items = []
        for item in lst["items"]:
            m = item["metadata"]
            try:
                _, o = self.delete(rt, m.get("namespace", ""), m["name"], options,
                                   dry_run=dry_run)
                items.append(item)
            except ApiError as e:
                if e.code != 404:
                    raise
        lst["items"] = items
        return lst

    # ------------------------------------------------------------ pods/binding
    def bind(self, ns: str, name: str, binding) -> dict:
        rt = self.type_for("v1", "pods")
        if not isinstance(binding, dict) or not (binding.get("target") or {}).get("name"):
            raise err_invalid("", "Binding", name, [ks.FieldError("Required", "target.name")])
        node = binding["target"]["name"]
        with self.lock:
            td = self._data(rt.store_key)
            old = td.objects.get((ns, name))
            if old is None:
                raise err_not_found("", "pods", name)
            if old["metadata"].get("deletionTimestamp"):
                raise err_conflict("", "pods/binding", name,
                                   f"pod {name} is being deleted, cannot be assigned to a host")
            if (old.get("spec") or {}).get("nodeName"):
                raise err_conflict("", "pods/binding", name,
                                   f"pod {name} is already assigned to node "
                                   f"\"{old['spec']['nodeName']}\"")
            new = copy.deepcopy(old)
            new["spec"]["nodeName"] = node
            conds = [c for c in new.setdefault("status", {}).get("conditions") or []
                     if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": now_rfc3339()})
            new["status"]["conditions"] = conds
            self._commit(rt, "MODIFIED", (ns, name), new, old)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "code": 201}

    # ------------------------------------------------------------ watch
    def open_watch(self, rt, ns, *, label_selector="", field_selector="", resource_version=None,
                   send_initial=None, allow_bookmarks=False, resource_version_match=""):
        """A Watcher, or raises ApiError for a bad request (before the
        stream starts)."""
        lreqs, freqs = self._parse_selectors(rt, label_selector, field_selector)
        if send_initial is not None:
            errs = []
            if resource_version_match != "NotOlderThan":
                errs.append(ks.FieldError("Forbidden", "resourceVersionMatch",
                                          detail="sendInitialEvents requires setting "
                                                 "resourceVersionMatch to NotOlderThan"))
            if send_initial and not allow_bookmarks:
                errs.append(ks.FieldError("Forbidden", "allowWatchBookmarks",
                                          detail="allowWatchBookmarks required when "
                                                 "sendInitialEvents is true"))
            if errs:
                raise err_invalid("meta.k8s.io", "ListOptions", "", errs)
        elif resource_version_match:
            raise err_invalid("meta.k8s.io", "ListOptions", "", [ks.FieldError(
                "Forbidden", "resourceVersionMatch",
                detail="resourceVersionMatch is forbidden for watch unless sendInitialEvents "
                       "is provided")])
        return Watcher(self, rt, ns, lreqs, freqs, resource_version, send_initial,
                       allow_bookmarks)

    # ------------------------------------------------------------ controllers
    def _controllers_pass(self) -> None:
        """Runs with the lock held: CRD establishment and cleanup, namespace
        cleanup, garbage collection (ownerReferences, orphan and foreground
        finalizers)."""
        crd_rt = self.type_for("apiextensions.k8s.io/v1", "customresourcedefinitions")
        for key, crd in list(self._data(crd_rt.store_key).objects.items()):
            self._crd_controller(crd_rt, key, crd)
        ns_rt = self.type_for("v1", "namespaces")
        for key, nso in list(self._data(ns_rt.store_key).objects.items()):
            if nso["metadata"].get("deletionTimestamp"):
                self._namespace_controller(ns_rt, key, nso)
        self._gc_pass()

    def _rt_of_store(self, store_key):
        best = None
        for rt in self.types.values():
            if rt.store_key == store_key and (best is None or
                                              rt.version == rt.storage_version):
                best = rt
        return best

    def _crd_controller(self, crd_rt, key, crd):
        status = crd.get("status") or {}
        conds = {c.get("type"): c for c in status.get("conditions") or []}
        meta = crd["metadata"]
        if meta.get("deletionTimestamp"):
            spec = crd["spec"]
            store_key = (spec["group"], spec["names"]["plural"])
            td = self._data(store_key)
            rt = self._rt_of_store(store_key)
            if td.objects and rt is not None:
                for okey, o in list(td.objects.items()):
                    if not o["metadata"].get("deletionTimestamp"):
                        self._delete_locked(rt, o, {})
                if (conds.get("Terminating") or {}).get("status") != "True":
                    new = copy.deepcopy(crd)
                    _set_condition(new, "Terminating", "True", "InstanceDeletionInProgress",
                                   "CustomResource deletion is in progress")
                    self._commit(crd_rt, "MODIFIED", key, new, crd)
                return
            if CRD_CLEANUP_FINALIZER in (meta.get("finalizers") or []):
                new = copy.deepcopy(crd)
                new["metadata"]["finalizers"] = [f for f in meta["finalizers"]
                                                 if f != CRD_CLEANUP_FINALIZER]
                if not new["metadata"]["finalizers"]:
                    self._commit(crd_rt, "DELETED", key, new, crd)
                else:
                    self._commit(crd_rt, "MODIFIED", key, new, crd)
            return
        spec = crd.get("spec") or {}
        storage = next((v["name"] for v in spec.get("versions") or [] if v.get("storage")), None)
        if (conds.get("Established") or {}).get("status") == "True" and \
                storage in (status.get("storedVersions") or []):
            return
        new = copy.deepcopy(crd)
        names = dict(spec.get("names") or {})
        names.setdefault("singular", names.get("kind", "").lower())
        names.setdefault("listKind", names.get("kind", "") + "List")
        st = new.setdefault("status", {})
        st["acceptedNames"] = names
        stored = list(st.get("storedVersions") or [])
        if storage and storage not in stored:
            stored.append(storage)
        st["storedVersions"] = stored
        _set_condition(new, "NamesAccepted", "True", "NoConflicts", "no conflicts found")
        _set_condition(new, "Established", "True", "InitialNamesAccepted",
                       "the initial names have been accepted")
        self._commit(crd_rt, "MODIFIED", key, new, crd)

    def _sync_crd_types(self, crd, deleted: bool) -> None:
        spec = crd.get("spec") or {}
        group, names = spec.get("group"), spec.get("names") or {}
        plural = names.get("plural")
        if not group or not plural:
            return
        for k in [k for k in self.types if k[0] == group and k[2] == plural]:
            del self.types[k]
        if deleted:
            self.data.pop((group, plural), None)
            return
        conds = {c.get("type"): c.get("status") for c in
                 (crd.get("status") or {}).get("conditions") or []}
        if conds.get("Established") != "True":
            return
        storage = next((v["name"] for v in spec.get("versions") or [] if v.get("storage")), "")
        for v in spec.get("versions") or []:
            if not v.get("served"):
                continue
            fl = {}
            for sf in v.get("selectableFields") or []:
                path = sf["jsonPath"]
                fl[path.lstrip(".")] = (lambda p: lambda o: _dig(o, p))(path)
            self.register(ResourceType(
                group, v["name"], plural, names.get("kind", ""),
                spec.get("scope") == "Namespaced", singular=names.get("singular", ""),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status_subresource="status" in (v.get("subresources") or {}),
                generation=True, unconditional_update=False, return_deleted=False, custom=True,
                schema=(v.get("schema") or {}).get("openAPIV3Schema"),
                crd_name=crd["metadata"]["name"], storage_version=storage, field_labels=fl,
                strategy=CustomResourceStrategy()))

    def _namespace_controller(self, ns_rt, key, nso):
        ns = nso["metadata"]["name"]
        remaining = 0
        for store_key, td in list(self.data.items()):
            rt = self._rt_of_store(store_key)
            if rt is None or not rt.namespaced:
                continue
            for okey, o in list(td.objects.items()):
                if okey[0] != ns:
                    continue
                remaining += 1
                if not o["metadata"].get("deletionTimestamp"):
                    self._delete_locked(rt, o, {})
        if remaining:
            return
        cur = self._data(ns_rt.store_key).objects.get(key)
        if cur is None:
            return
        new = copy.deepcopy(cur)
        new.setdefault("spec", {})["finalizers"] = []
        if not new["metadata"].get("finalizers"):
            self._commit(ns_rt, "DELETED", key, new, cur)

    def _gc_pass(self) -> None:
        by_uid, dependents = {}, []
        for store_key, td in self.data.items():
            rt = self._rt_of_store(store_key)
            if rt is None:
                continue
            for key, o in td.objects.items():
                by_uid[o["metadata"].get("uid")] = (rt, key, o)
                if o["metadata"].get("ownerReferences"):
                    dependents.append((rt, key, o))
        # owners being deleted with orphan / foregroundDeletion finalizers
        for uid, (rt, key, owner) in list(by_uid.items()):
            om = owner["metadata"]
            if not om.get("deletionTimestamp"):
                continue
            fins = om.get("finalizers") or []
            deps = [d for d in dependents if any(r.get("uid") == uid for r in
                                                 d[2]["metadata"].get("ownerReferences") or [])]
            if "orphan" in fins:
                for drt, dkey, dep in deps:
                    cur = self._data(drt.store_key).objects.get(dkey)
                    if cur is None:
                        continue
                    new = copy.deepcopy(cur)
                    new["metadata"]["ownerReferences"] = [
                        r for r in cur["metadata"]["ownerReferences"] if r.get("uid") != uid]
                    if not new["metadata"]["ownerReferences"]:
                        del new["metadata"]["ownerReferences"]
                    self._commit(drt, "MODIFIED", dkey, new, cur)
                self._remove_finalizer(rt, key, "orphan")
            elif "foregroundDeletion" in fins:
                live = [d for d in deps if self._data(d[0].store_key).objects.get(d[1])]
                for drt, dkey, dep in live:
                    if not dep["metadata"].get("deletionTimestamp"):
                        self._delete_locked(drt, dep, {"propagationPolicy": "Foreground"})
                if not any(self._data(d[0].store_key).objects.get(d[1]) for d in deps):
                    self._remove_finalizer(rt, key, "foregroundDeletion")
        # dependents whose owners are gone
        for rt, key, dep in dependents:
            cur = self._data(rt.store_key).objects.get(key)
            if cur is None or cur["metadata"].get("deletionTimestamp"):
                continue
            refs = cur["metadata"].get("ownerReferences") or []
            gone = [r for r in refs if r.get("uid") not in by_uid]
            if not gone:
                continue
            if len(gone) == len(refs):
                self._delete_locked(rt, cur, {})
            else:
                new = copy.deepcopy(cur)
                new["metadata"]["ownerReferences"] = [r for r in refs if r not in gone]
                self._commit(rt, "MODIFIED", key, new, cur)

    def _remove_finalizer(self, rt, key, fin) -> None:
        cur = self._data(rt.store_key).objects.get(key)
        if cur is None or fin not in (cur["metadata"].get("finalizers") or []):
            return
        new = copy.deepcopy(cur)
        new["metadata"]["finalizers"] = [f for f in cur["metadata"]["finalizers"] if f != fin]
        if not new["metadata"]["finalizers"]:
            del new["metadata"]["finalizers"]
        grace0 = new["metadata"].get("deletionGracePeriodSeconds", 0) == 0
        if not new["metadata"].get("finalizers") and grace0:
            self._commit(rt, "DELETED", key, new, cur)
        else:
            self._commit(rt, "MODIFIED", key, new, cur)

    # ------------------------------------------------------------ hooks
    def compact(self) -> int:
        """Forget every watch event: watches and continue tokens from an
        older resourceVersion get 410 Expired.  Returns the current rv."""
        with self.lock:
            for td in self.data.values():
                td.history.clear()
                td.floor = self.rv
            return self.rv

    def snapshot(self) -> dict:
        with self.lock:
            objs = []
            for store_key, td in sorted(self.data.items()):
                rt = self._rt_of_store(store_key)
                if rt is None:
                    continue
                for key in sorted(td.objects):
                    objs.append(self._out(rt, td.objects[key]))
            return {"resourceVersion": str(self.rv), "objects": objs}


def _set_condition(obj, ctype, status, reason, message):
    conds = obj.setdefault("status", {}).setdefault("conditions", [])
    for c in conds:
        if c.get("type") == ctype:
            if c.get("status") != status:
                c["lastTransitionTime"] = now_rfc3339()
            c.update(status=status, reason=reason, message=message)
            return
    conds.append({"type": ctype, "status": status, "lastTransitionTime": now_rfc3339(),
                  "reason": reason, "message": message})


def _same(a, b) -> bool:
    """Equal as stored (resourceVersion aside)."""
    def strip(o):
        o = dict(o)
        o["metadata"] = {k: v for k, v in o.get("metadata", {}).items() if k != "resourceVersion"}
        return o
    return strip(a) == strip(b)


class Watcher:
    """The server side of one watch: initial events, then the history of
    its resource type from a cursor on, filtered and translated."""

    def __init__(self, cluster, rt, ns, lreqs, freqs, resource_version, send_initial,
                 allow_bookmarks):
        self.c, self.rt, self.ns = cluster, rt, ns
        self.lreqs, self.freqs = lreqs, freqs
        self.allow_bookmarks = allow_bookmarks
        self.pending = []   # (type, object) ready to send
        self.error = None   # a Status to send as ERROR, then end
        self.initial_end = False
        with cluster.lock:
            td = cluster._data(rt.store_key)
            if send_initial is None:
                initial = resource_version in (None, "", "0")
            else:
                initial = bool(send_initial)
            want = cluster.rv
            if resource_version not in (None, "", "0"):
                want = Cluster._parse_rv(resource_version)
                try:
                    cluster._wait_rv(want)
                except ApiError as e:
                    self.error = e.status
                    self.cursor = cluster.rv
                    return
                if not initial and want < td.floor:
                    self.error = err_expired(
                        f"too old resource version: {want} ({td.floor})").status
                    self.cursor = cluster.rv
                    return
            if initial:
                for key in sorted(td.objects):
                    o = td.objects[key]
                    if cluster._matches(rt, o, ns, lreqs, freqs):
                        self.pending.append(("ADDED", cluster._out(rt, o)))
                self.cursor = cluster.rv
                if send_initial:
                    self.initial_end = True
            else:
                self.cursor = want
                self._collect(td)

    def _collect(self, td) -> bool:
        """Move events after the cursor into pending (lock held); False when
        the watcher fell behind the retained window."""
        if self.cursor < td.floor:
            return False
        for ev in td.history:
            if ev.rv <= self.cursor:
                continue
            self._translate(ev)
        if td.history:
            self.cursor = max(self.cursor, td.history[-1].rv)
        return True

    def _translate(self, ev: Event) -> None:
        c, rt = self.c, self.rt
        new_ok = ev.type != "DELETED" and c._matches(rt, ev.obj, self.ns, self.lreqs, self.freqs)
        if ev.type == "ADDED":
            if new_ok:
                self.pending.append(("ADDED", c._out(rt, ev.obj)))
        elif ev.type == "MODIFIED":
            old_ok = c._matches(rt, ev.prev, self.ns, self.lreqs, self.freqs)
            if new_ok and old_ok:
                self.pending.append(("MODIFIED", c._out(rt, ev.obj)))
            elif new_ok:
                self.pending.append(("ADDED", c._out(rt, ev.obj)))
            elif old_ok:
                gone = c._out(rt, ev.prev)
                gone["metadata"]["resourceVersion"] = str(ev.rv)
                self.pending.append(("DELETED", gone))
        elif ev.type == "DELETED":
            if c._matches(rt, ev.obj, self.ns, self.lreqs, self.freqs):
                self.pending.append(("DELETED", c._out(rt, ev.obj)))

    def bookmark(self, initial_end=False) -> dict:
        meta = {"resourceVersion": str(self.c.rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"kind": self.rt.kind, "apiVersion": self.rt.api_version, "metadata": meta}

    def wait(self, timeout: float) -> bool:
        """Wait for events (lock taken here); False when the watcher fell
        behind the window and must be closed."""
        with self.c.cond:
            td = self.c._data(self.rt.store_key)
            if not (td.history and td.history[-1].rv > self.cursor) and timeout > 0:
                self.c.cond.wait(timeout)
            return self._collect(td)


# ---------------------------------------------------------------- TLS material

def make_tls(directory) -> dict:
    """A CA, a server certificate (127.0.0.1, ::1, localhost,
    kubernetes.default.svc) and a client certificate (CN
    kybernate-test-admin, O system:masters), made with the openssl CLI
    (EC P-256).  Returns the file paths."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = {k: d / f for k, f in (
        ("ca", "ca.crt"), ("ca_key", "ca.key"), ("server", "server.crt"),
        ("server_key", "server.key"), ("client", "client.crt"), ("client_key", "client.key"))}
    if all(p.exists() for p in paths.values()):
        return {k: str(p) for k, p in paths.items()}

    def run(*args):
        p = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=d)
        if p.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)} failed: {p.stderr.strip()}")

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "30",
        "-subj", "/CN=kube-apiserver-double-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    (d / "server.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,"
        "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n")
    (d / "client.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=kube-apiserver")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "30", "-extfile", "server.ext")
    run("req", *ec, "-keyout", "client.key", "-out", "client.csr",
        "-subj", "/O=system:masters/CN=kybernate-test-admin")
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "client.crt", "-days", "30", "-extfile", "client.ext")
    for k in ("ca_key", "server_key", "client_key"):
        os.chmod(paths[k], 0o600)
    return {k: str(p) for k, p in paths.items()}


# ---------------------------------------------------------------- injections

@dataclass
class Injection:
    """The next `count` requests (None: all) whose path matches `path` (a
    regular expression, re.search) and method (None: any) fail.
    action: "status" (answer code with a Status), "close" (drop the
    connection without an answer), "delay" (sleep, then serve normally)."""
    path: str
    code: int = 500
    count: object = 1
    method: object = None
    reason: str = ""
    message: str = ""
    action: str = "status"
    delay: float = 0.0
    retry_after: object = None
    watch: object = None  # True: watch requests only, False: never watch requests
    hits: int = 0

    def matches(self, method, path, is_watch) -> bool:
        if self.count is not None and self.count <= 0:
            return False
        if self.method and self.method.upper() != method:
            return False
        if self.watch is not None and bool(self.watch) != is_watch:
            return False
        return re.search(self.path, path) is not None

    def error(self, path) -> ApiError:
        reasons = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                   405: "MethodNotAllowed", 409: "Conflict", 410: "Expired", 422: "Invalid",
                   429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
                   504: "Timeout"}
        reason = self.reason or reasons.get(self.code, "Unknown")
        msg = self.message
        details = None
        if not msg:
            if self.code == 409:
                parts = [p for p in path.split("/") if p]
                name = parts[-1] if len(parts) >= 2 else ""
                res = parts[-2] if len(parts) >= 2 else ""
                msg = f'Operation cannot be fulfilled on {res} "{name}": {OPTIMISTIC_LOCK}'
                details = _details(kind=res, name=name)
            elif self.code == 500:
                msg = "Internal error occurred: injected failure"
                details = {"causes": [{"message": "injected failure"}]}
            elif self.code == 429:
                msg = "Too many requests, please try again later."
            else:
                msg = f"injected failure ({self.code})"
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
            details = dict(details or {}, retryAfterSeconds=int(self.retry_after))
        return ApiError(self.code, reason, msg, details, headers)


# ---------------------------------------------------------------- HTTP

class _WatchState:
    def __init__(self, path, sock):
        self.path, self.sock = path, sock
        self.drop = None        # None, "close", "abort", "expire"
        self.bookmark_now = False


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-apiserver-double/1.31"
    sys_version = ""

    # ------------------------------------------------------------ plumbing
    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError):
                self.request.close()
                raise
            self.request.settimeout(None)
        if self.request.family in (socket.AF_INET, socket.AF_INET6):
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()
        self.api.register_conn(self.request)

    def finish(self):
        try:
            super().finish()
        finally:
            self.api.unregister_conn(self.request)

    @property
    def api(self) -> "KubeApiServer":
        return self.server.api

    def log_message(self, fmt, *args):
        if self.api.verbose:
            sys.stderr.write("kube-apiserver-double: " + (fmt % args) + "\n")

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
                if len(out) > MAX_BODY:
                    raise ApiError(413, "RequestEntityTooLarge",
                                   "Request entity too large: limit is 3145728")
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            raise ApiError(413, "RequestEntityTooLarge",
                           "Request entity too large: limit is 3145728")
        return self.rfile.read(n) if n else b""

    def _send(self, code: int, obj, headers=None, ctype="application/json"):
        body = obj if isinstance(obj, bytes) else \
            (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            if isinstance(v, list):
                for item in v:
                    self.send_header(k, item)
            else:
                self.send_header(k, v)
        # Headers and body in one write: no Nagle / delayed-ACK stall.
        self._headers_buffer.append(b"\r\n" + body)
        self.flush_headers()
        self._code = code

    def _send_error(self, e: ApiError):
        if getattr(e, "plain", None):
            self._send(e.code, e.plain.encode(), e.headers, "text/plain; charset=utf-8")
        else:
            self._send(e.code, e.status, e.headers)

    # ------------------------------------------------------------ dispatch
    def _dispatch(self, method: str):
        self._code = 0
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        is_watch = q.get("watch", "") in ("1", "true", "True") or "/watch/" in path
        record = {"method": method, "path": path, "query": q, "watch": is_watch,
                  "time": time.time(), "user": None}
        try:
            body = self._read_body() if method in ("POST", "PUT", "PATCH", "DELETE") else b""
            if path.startswith("/__double__/"):
                return self._admin(method, path, q, body)
            if path in ("/healthz", "/livez", "/readyz"):
                return self._send(200, b"ok", ctype="text/plain; charset=utf-8")
            user = self.api.authenticate(self)
            record["user"] = user["name"] if user else None
            inj = self.api.take_injection(method, path, is_watch)
            if inj is not None:
                if inj.action == "delay":
                    time.sleep(inj.delay)
                elif inj.action == "close":
                    self.close_connection = True
                    try:
                        self.request.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    self._code = -1
                    return
                else:
                    raise inj.error(path)
            accept = self.headers.get("Accept", "")
            if accept and not any(t.strip().split(";")[0] in ("application/json", "*/*",
                                                              "application/*", "")
                                  for t in accept.split(",")):
                raise ApiError(406, "NotAcceptable",
                               "only the following media types are accepted: application/json")
            self._route(method, path, q, body, user, is_watch)
        except ApiError as e:
            if not self._code:
                self._send_error(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        except Exception as e:  # a bug in the double: answer 500, say so
            traceback.print_exc()
            if not self._code:
                self._send_error(err_internal(f"kube-apiserver double: {e!r}"))
        finally:
            record["code"] = self._code
            self.api.record(record)

    def _route(self, method, path, q, body, user, is_watch):
        parts = [urllib.parse.unquote(p) for p in path.split("/") if p]
        c = self.api.cluster
        if path in ("/version", "/version/"):
            return self._send(200, VERSION_INFO)
        if parts == ["api"]:
            host = self.headers.get("Host") or f"127.0.0.1:{self.api.port}"
            return self._send(200, {"kind": "APIVersions", "versions": ["v1"],
                                    "serverAddressByClientCIDRs": [
                                        {"clientCIDR": "0.0.0.0/0", "serverAddress": host}]})
        if parts == ["apis"]:
            return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1",
                                    "groups": [_api_group(g, vs) for g, vs in
                                               sorted(c.group_versions().items()) if g]})
        if not parts or parts[0] not in ("api", "apis"):
            raise _page_not_found()
        if parts[0] == "api":
            if len(parts) < 2 or parts[1] != "v1":
                raise _page_not_found()
            group, version, rest = "", "v1", parts[2:]
        else:
            if len(parts) == 2:
                vs = c.group_versions().get(parts[1])
                if not vs:
                    raise _page_not_found()
                return self._send(200, dict(_api_group(parts[1], vs), kind="APIGroup",
                                            apiVersion="v1"))
            if len(parts) < 3:
                raise _page_not_found()
            group, version, rest = parts[1], parts[2], parts[3:]
        with c.lock:
            gv_types = {rt.plural: rt for (g, v, _), rt in c.types.items()
                        if (g, v) == (group, version)}
        if not gv_types:
            raise _page_not_found()
        if not rest:
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed",
                               "the server does not allow this method on the requested resource")
            return self._send(200, _resource_list(group, version, gv_types))
        watch_prefix = False
        if rest[0] == "watch":
            watch_prefix, rest = True, rest[1:]
            if not rest:
                raise _page_not_found()
        ns = ""
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] in gv_types and \
                gv_types[rest[2]].namespaced:
            ns, rest = rest[1], rest[2:]
        rt = gv_types.get(rest[0])
        if rt is None or len(rest) > 3:
            raise _page_not_found()
        name = rest[1] if len(rest) >= 2 else ""
        sub = rest[2] if len(rest) == 3 else ""
        if sub and sub != "status" and sub not in rt.subresources:
            raise _page_not_found()
        if sub == "status" and not rt.status_subresource:
            raise _page_not_found()
        if rt.namespaced and name and not ns:
            raise _page_not_found()
        if watch_prefix and (method != "GET" or sub):
            raise _page_not_found()
        verb = self._verb(method, name, sub, is_watch)
        self.api.authorize(user, verb, rt, ns, name, sub)
        self._serve(method, rt, ns, name, sub, q, body, is_watch)

    @staticmethod
    def _verb(method, name, sub, is_watch) -> str:
        if method == "GET":
            return "watch" if is_watch else ("get" if name else "list")
        return {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if name else "deletecollection"}[method]

    # ------------------------------------------------------------ resources
    def _json_body(self, body: bytes):
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if ctype not in ("application/json", "*/*", ""):
            raise err_unsupported_media(
                'the body of the request was in an unknown format - accepted media types '
                'include: application/json')
        try:
            return json.loads(body or b"null")
        except ValueError as e:
            raise err_bad_request(f"couldn't get version/kind; json parse error: {e}") from None

    def _serve(self, method, rt, ns, name, sub, q, body, is_watch):
        c = self.api.cluster
        dry = q.get("dryRun", "")
        if dry not in ("", "All"):
            raise err_bad_request(f'Invalid dry run option: dryRun: Unsupported value: '
                                  f'"{dry}": supported values: "All"')
        dry_run = dry == "All"
        fv = q.get("fieldValidation", "") or "Warn"
        if fv not in ("Ignore", "Warn", "Strict"):
            raise err_bad_request(f"fieldValidation: Unsupported value: \"{fv}\"")
        if method == "GET" and is_watch:
            if sub:
                raise _page_not_found()
            fs = q.get("fieldSelector", "")
            if name:
                fs = ",".join(x for x in (fs, f"metadata.name={name}") if x)
            return self._watch(rt, ns, q, fs)
        if method == "GET":
            if name:
                return self._send(200, c.get(rt, ns, name))
            try:
                limit = int(q.get("limit") or 0)
            except ValueError:
                raise err_bad_request(f"limit: Invalid value: \"{q['limit']}\": must be an "
                                      f"integer") from None
            return self._send(200, c.list(
                rt, ns, label_selector=q.get("labelSelector", ""),
                field_selector=q.get("fieldSelector", ""), limit=limit,
                continue_token=q.get("continue", ""),
                resource_version=q.get("resourceVersion"),
                resource_version_match=q.get("resourceVersionMatch", "")))
        if method == "POST":
            if sub == "binding":
                return self._send(201, c.bind(ns, name, self._json_body(body)))
            if name:
                raise ApiError(405, "MethodNotAllowed",
                               "the server does not allow this method on the requested resource")
            if rt.namespaced and not ns:
                raise ApiError(405, "MethodNotAllowed",
                               "the server does not allow this method on the requested resource")
            obj, warnings = c.create(rt, ns, self._json_body(body), dry_run=dry_run,
                                     field_validation=fv)
            return self._send(201, obj, _warning_headers(warnings))
        if method == "PUT":
            if not name or sub == "binding":
                raise ApiError(405, "MethodNotAllowed",
                               "the server does not allow this method on the requested resource")
            obj, created, warnings = c.update(rt, ns, name, self._json_body(body),
                                              subresource=sub or None, dry_run=dry_run,
                                              field_validation=fv)
            return self._send(201 if created else 200, obj, _warning_headers(warnings))
        if method == "PATCH":
            if not name or sub == "binding":
                raise ApiError(405, "MethodNotAllowed",
                               "the server does not allow this method on the requested resource")
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            ptype = {"application/merge-patch+json": "merge",
                     "application/json-patch+json": "json",
                     "application/strategic-merge-patch+json": "strategic",
                     "application/apply-patch+yaml": "apply"}.get(ctype)
            if ptype is None or ptype == "apply" or (ptype == "strategic" and rt.custom):
                accepted = "application/json-patch+json, application/merge-patch+json"
                if not rt.custom:
                    accepted += ", application/strategic-merge-patch+json"
                raise err_unsupported_media(
                    f"the body of the request was in an unknown format - accepted media types "
                    f"include: {accepted}")
            try:
                patch = json.loads(body or b"null")
            except ValueError as e:
                raise err_bad_request(f"error decoding patch: {e}") from None
            obj, warnings = c.patch(rt, ns, name, ptype, patch, subresource=sub or None,
                                    dry_run=dry_run, field_validation=fv)
            return self._send(200, obj, _warning_headers(warnings))
        if method == "DELETE":
            if sub:
                raise ApiError(405, "MethodNotAllowed",
                               "the server does not allow this method on the requested resource")
            opts = self._json_body(body) if body.strip() else {}
            if not isinstance(opts, dict):
                raise err_bad_request("DeleteOptions must be a JSON object")
            if "gracePeriodSeconds" in q:
                opts.setdefault("gracePeriodSeconds", int(q["gracePeriodSeconds"]))
            if "propagationPolicy" in q:
                opts.setdefault("propagationPolicy", q["propagationPolicy"])
            if opts.get("dryRun") == ["All"]:
                dry_run = True
            if not name:
                return self._send(200, c.delete_collection(
                    rt, ns, label_selector=q.get("labelSelector", ""),
                    field_selector=q.get("fieldSelector", ""), options=opts, dry_run=dry_run))
            code, obj = c.delete(rt, ns, name, opts, dry_run=dry_run)
            return self._send(code, obj)
        raise ApiError(405, "MethodNotAllowed",
                       "the server does not allow this method on the requested resource")

    # ------------------------------------------------------------ watch
    def _watch(self, rt, ns, q, field_selector):
        si = q.get("sendInitialEvents")
        send_initial = None if si is None else si in ("true", "1")
        bookmarks = q.get("allowWatchBookmarks", "") in ("true", "1")
        w = self.api.cluster.open_watch(
            rt, ns, label_selector=q.get("labelSelector", ""), field_selector=field_selector,
            resource_version=q.get("resourceVersion"), send_initial=send_initial,
            allow_bookmarks=bookmarks, resource_version_match=q.get("resourceVersionMatch", ""))
        try:
            timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else \
                self.api.watch_timeout
        except ValueError:
            raise err_bad_request(f"invalid timeoutSeconds: {q['timeoutSeconds']}") from None
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._code = 200
        state = _WatchState(self.path, self.request)
        self.api.register_watch(state)
        deadline = time.monotonic() + timeout
        last_bookmark = time.monotonic()
        try:
            if w.error:
                self._chunk({"type": "ERROR", "object": w.error})
                return self._end_chunks()
            while True:
                while w.pending:
                    etype, obj = w.pending.pop(0)
                    self._chunk({"type": etype, "object": obj})
                if w.initial_end:
                    w.initial_end = False
                    self._chunk({"type": "BOOKMARK", "object": w.bookmark(initial_end=True)})
                    last_bookmark = time.monotonic()
                if state.drop:
                    break
                now = time.monotonic()
                if now >= deadline or self.api.stopping:
                    break
                if w.allow_bookmarks and (state.bookmark_now or
                                          now - last_bookmark >= self.api.bookmark_interval):
                    state.bookmark_now = False
                    self._chunk({"type": "BOOKMARK", "object": w.bookmark()})
                    last_bookmark = now
                if self._client_gone():
                    self.close_connection = True
                    return
                wait = min(0.25, deadline - now)
                if w.allow_bookmarks:
                    wait = min(wait, max(0.0, self.api.bookmark_interval - (now - last_bookmark)))
                if not w.wait(max(wait, 0.0)):
                    break  # fell behind the window: the real cacher closes such watchers
            if state.drop == "abort":
                self.close_connection = True
                try:
                    self.request.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if state.drop == "expire":
                self._chunk({"type": "ERROR", "object": err_expired(
                    f"too old resource version: {w.cursor} ({self.api.cluster.rv})").status})
            self._end_chunks()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True
        finally:
            self.api.unregister_watch(state)

    def _chunk(self, event):
        data = (json.dumps(event, separators=(",", ":")) + "\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _client_gone(self) -> bool:
        sock = self.request
        try:
            if isinstance(sock, ssl.SSLSocket):
                if sock.pending():
                    return False
            r, _, _ = select.select([sock], [], [], 0)
            if not r:
                return False
            if isinstance(sock, ssl.SSLSocket):
                return False  # cannot peek through TLS; the next write tells
            return sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    # ------------------------------------------------------------ admin
    def _admin(self, method, path, q, body):
        api = self.api
        cmd = path[len("/__double__/"):].strip("/")
        data = json.loads(body) if body.strip() else {}
        if cmd == "inject" and method == "POST":
            api.inject(**data)
        elif cmd == "clear-injections" and method == "POST":
            api.clear_injections()
        elif cmd == "drop-watches" and method == "POST":
            return self._send(200, {"dropped": api.drop_watches(**data)})
        elif cmd == "bookmark" and method == "POST":
            api.bookmark_now()
        elif cmd == "compact" and method == "POST":
            return self._send(200, {"resourceVersion": str(api.compact())})
        elif cmd == "snapshot" and method == "GET":
            return self._send(200, api.snapshot())
        elif cmd == "requests" and method == "GET":
            return self._send(200, {"requests": api.requests})
        elif cmd == "clear-requests" and method == "POST":
            api.clear_requests()
        elif cmd == "watches" and method == "GET":
            return self._send(200, {"watches": api.watch_count()})
        else:
            raise _page_not_found()
        return self._send(200, {"ok": True})


def _warning_headers(warnings) -> dict:
    if not warnings:
        return {}
    return {"Warning": [f'299 - "{w.replace(chr(34), chr(92) + chr(34))}"' for w in warnings]}


def _api_group(group, versions) -> dict:
    vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": vs, "preferredVersion": vs[0]}


def _resource_list(group, version, types: dict) -> dict:
    res = []
    for plural in sorted(types):
        rt = types[plural]
        r = {"name": plural, "singularName": rt.singular, "namespaced": rt.namespaced,
             "kind": rt.kind, "verbs": list(ALL_VERBS)}
        if rt.short_names:
            r["shortNames"] = list(rt.short_names)
        if rt.categories:
            r["categories"] = list(rt.categories)
        res.append(r)
        if rt.status_subresource:
            res.append({"name": f"{plural}/status", "singularName": "",
                        "namespaced": rt.namespaced, "kind": rt.kind,
                        "verbs": ["get", "patch", "update"]})
        if "binding" in rt.subresources:
            res.append({"name": f"{plural}/binding", "singularName": "",
                        "namespaced": rt.namespaced, "kind": "Binding", "verbs": ["create"]})
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": res}


class _TCPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, addr, api):
        self.api = api
        super().__init__(addr, _Handler)

    def server_bind(self):  # no getfqdn(): no DNS lookups here
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        sock, addr = super().get_request()
        if self.api.ssl_context is not None:
            sock = self.api.ssl_context.wrap_socket(sock, server_side=True,
                                                    do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        if self.api.verbose:
            super().handle_error(request, client_address)


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, path, api):
        self.api = api
        super().__init__(path, _Handler)

    def get_request(self):
        sock, _ = super().get_request()
        return sock, ("unix", 0)

    def handle_error(self, request, client_address):
        if self.api.verbose:
            super().handle_error(request, client_address)


# ---------------------------------------------------------------- the server

class KubeApiServer:
    """The API server double, in this process (threads).

    port: TCP port on host (0: a free one); unix_socket: also serve a unix
    socket; token / tokens: bearer tokens ({token: user name or {"name",
    "groups"}}); with any token set, requests without a valid one (or a
    client certificate) get 401.  tls: serve HTTPS with certificates made
    in tls_dir (default: a temp dir); rbac: authorize by the RBAC objects
    stored in the double (users in system:masters bypass).  watch_window:
    watch events kept per resource type; bookmark_interval: seconds between
    BOOKMARKs on watches that allow them; watch_timeout: default watch
    length; too_large_wait: how long a future resourceVersion is waited for.
    """

    def __init__(self, *, host="127.0.0.1", port=0, unix_socket=None, token=None, tokens=None,
                 tls=False, tls_dir=None, rbac=False, watch_window=1000,
                 bookmark_interval=60.0, watch_timeout=1800.0, too_large_wait=3.0,
                 namespaces=DEFAULT_NAMESPACES, verbose=False):
        self.host, self.port = host, port
        self.unix_socket = str(unix_socket) if unix_socket else None
        self.tokens = {}
        if token:
            self.tokens[token] = {"name": "kybernate-test-admin", "groups": ["system:masters"]}
        for t, u in (tokens or {}).items():
            self.tokens[t] = {"name": u, "groups": []} if isinstance(u, str) else dict(u)
        self.token = token or (next(iter(self.tokens)) if self.tokens else None)
        self.tls = tls
        self._tls_tmp = None
        self.tls_dir = tls_dir
        self.tls_files = {}
        self.ssl_context = None
        self.rbac = rbac
        self.bookmark_interval = bookmark_interval
        self.watch_timeout = watch_timeout
        self.verbose = verbose
        self.cluster = Cluster(watch_window=watch_window, too_large_wait=too_large_wait,
                               namespaces=namespaces)
        self.stopping = False
        self._servers = []
        self._threads = []
        self._lock = threading.Lock()
        self._injections = []
        self._watches = set()
        self._conns = set()
        self.requests = []

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "KubeApiServer":
        if self.tls:
            if not self.tls_dir:
                self._tls_tmp = tempfile.mkdtemp(prefix="kube-double-tls-")
                self.tls_dir = self._tls_tmp
            self.tls_files = make_tls(self.tls_dir)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls_files["server"], self.tls_files["server_key"])
            ctx.load_verify_locations(self.tls_files["ca"])
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.set_alpn_protocols(["http/1.1"])
            self.ssl_context = ctx
        tcp = _TCPServer((self.host, self.port), self)
        self.port = tcp.server_address[1]
        self._servers.append(tcp)
        if self.unix_socket:
            try:
                os.unlink(self.unix_socket)
            except FileNotFoundError:
                pass
            self._servers.append(_UnixServer(self.unix_socket, self))
        for s in self._servers:
            t = threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2},
                                 name="kube-double-http", daemon=True)
            t.start()
            self._threads.append(t)
        self.cluster.start_worker()
        return self

    def stop(self) -> None:
        self.stopping = True
        with self.cluster.cond:
            self.cluster.cond.notify_all()
        for s in self._servers:
            s.shutdown()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for s in self._servers:
            s.server_close()
        for t in self._threads:
            t.join(5)
        self.cluster.stop_worker()
        if self.unix_socket:
            try:
                os.unlink(self.unix_socket)
            except FileNotFoundError:
                pass
        if self._tls_tmp:
            shutil.rmtree(self._tls_tmp, ignore_errors=True)
        self._servers, self._threads = [], []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def ca_file(self):
        return self.tls_files.get("ca")

    # ------------------------------------------------------------ connections
    def register_conn(self, sock):
        with self._lock:
            self._conns.add(sock)

    def unregister_conn(self, sock):
        with self._lock:
            self._conns.discard(sock)

    def register_watch(self, state):
        with self._lock:
            self._watches.add(state)

    def unregister_watch(self, state):
        with self._lock:
            self._watches.discard(state)

    def watch_count(self, path=None) -> int:
        with self._lock:
            return sum(1 for w in self._watches if path is None or re.search(path, w.path))

    def record(self, entry):
        with self._lock:
            self.requests.append(entry)
            if len(self.requests) > 100000:
                del self.requests[:10000]

    def clear_requests(self):
        with self._lock:
            self.requests = []

    # ------------------------------------------------------------ auth
    def authenticate(self, handler):
        """The user of a request (dict name, groups) or None when no
        authentication is configured; raises 401."""
        user = None
        authz = handler.headers.get("Authorization", "")
        if authz.startswith("Bearer ") and self.tokens:
            info = self.tokens.get(authz[7:].strip())
            if info is None:
                raise ApiError(401, "Unauthorized", "Unauthorized")
            user = info
        elif isinstance(handler.request, ssl.SSLSocket):
            cert = handler.request.getpeercert()
            if cert:
                subj = [x for rdn in cert.get("subject", ()) for x in rdn]
                user = {"name": next((v for k, v in subj if k == "commonName"), ""),
                        "groups": [v for k, v in subj if k == "organizationName"]}
        if user is None and self.tokens:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        if user is not None:
            user = dict(user)
            user["groups"] = list(user.get("groups") or []) + ["system:authenticated"]
        return user

    def authorize(self, user, verb, rt, ns, name, sub):
        if not self.rbac or user is None or "system:masters" in user["groups"]:
            return
        if _rbac_allows(self.cluster, user, verb, rt.group, rt.plural, sub, ns, name):
            return
        res = rt.plural + (f"/{sub}" if sub else "")
        where = f'in the namespace "{ns}"' if ns else "at the cluster scope"
        raise err_forbidden(rt.group, rt.plural, name,
                            f'User "{user["name"]}" cannot {verb} resource "{res}" in API group '
                            f'"{rt.group}" {where}')

    # ------------------------------------------------------------ hooks
    def inject(self, path, code=500, count=1, method=None, reason="", message="",
               action="status", delay=0.0, retry_after=None, watch=None) -> Injection:
        """The next `count` requests (None: every one) to a path matching the
        regular expression `path` (and method) fail with `code` (a Status
        with `reason` and `message`; defaults fit the code), or with
        action="close" lose their connection, or with action="delay" wait
        `delay` seconds first.  watch=True/False limits it to (non-)watch
        requests."""
        inj = Injection(path=path, code=code, count=count, method=method, reason=reason,
                        message=message, action=action, delay=delay, retry_after=retry_after,
                        watch=watch)
        with self._lock:
            self._injections.append(inj)
        return inj

    def clear_injections(self) -> None:
        with self._lock:
            self._injections = []

    def take_injection(self, method, path, is_watch):
        with self._lock:
            for inj in self._injections:
                if inj.matches(method, path, is_watch):
                    if inj.count is not None:
                        inj.count -= 1
                    inj.hits += 1
                    return inj
        return None

    def drop_watches(self, path=None, mode="close") -> int:
        """End open watches (whose request path matches the regex `path`):
        mode "close" ends the stream cleanly (as a server timeout does),
        "abort" resets the connection, "expire" sends an ERROR event with a
        410 Expired Status first.  Returns how many."""
        if mode not in ("close", "abort", "expire"):
            raise ValueError(f"mode must be close, abort or expire, not {mode!r}")
        with self._lock:
            hit = [w for w in self._watches if path is None or re.search(path, w.path)]
            for w in hit:
                w.drop = mode
        with self.cluster.cond:
            self.cluster.cond.notify_all()
        return len(hit)

    def bookmark_now(self) -> None:
        """A BOOKMARK on every open watch that allows them, now."""
        with self._lock:
            for w in self._watches:
                w.bookmark_now = True
        with self.cluster.cond:
            self.cluster.cond.notify_all()

    def compact(self) -> int:
        return self.cluster.compact()

    def snapshot(self) -> dict:
        return self.cluster.snapshot()

    def wait_for_watches(self, n=1, path=None, timeout=10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.watch_count(path) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.watch_count(path)} watches open, waited for {n}")
            time.sleep(0.02)

    # ------------------------------------------------------------ direct API
    def _rt(self, obj_or_av, kind=None) -> ResourceType:
        if isinstance(obj_or_av, dict):
            return self.cluster.type_for(obj_or_av["apiVersion"], obj_or_av["kind"])
        return self.cluster.type_for(obj_or_av, kind)

    def create(self, obj, namespace=None) -> dict:
        rt = self._rt(obj)
        ns = namespace or (obj.get("metadata") or {}).get("namespace") or \
            ("default" if rt.namespaced else "")
        return self.cluster.create(rt, ns, obj)[0]

    def get(self, api_version, kind, name, namespace=None) -> dict:
        rt = self._rt(api_version, kind)
        return self.cluster.get(rt, namespace or ("default" if rt.namespaced else ""), name)

    def list(self, api_version, kind, namespace="", **kw) -> dict:
        return self.cluster.list(self._rt(api_version, kind), namespace, **kw)

    def update(self, obj, subresource=None) -> dict:
        rt = self._rt(obj)
        m = obj["metadata"]
        return self.cluster.update(rt, m.get("namespace", ""), m["name"], obj,
                                   subresource=subresource)[0]

    def patch(self, api_version, kind, name, patch, namespace=None, patch_type="merge",
              subresource=None) -> dict:
        rt = self._rt(api_version, kind)
        return self.cluster.patch(rt, namespace or ("default" if rt.namespaced else ""), name,
                                  patch_type, patch, subresource=subresource)[0]

    def delete(self, api_version, kind, name, namespace=None, **options):
        rt = self._rt(api_version, kind)
        return self.cluster.delete(rt, namespace or ("default" if rt.namespaced else ""), name,
                                   options)[1]

    def objects(self, api_version, kind, namespace="") -> list:
        return self.list(api_version, kind, namespace)["items"]

    def create_crd(self, crd, timeout=10.0) -> dict:
        """Create a CustomResourceDefinition and wait until it is Established."""
        self.create(crd)
        return self.wait_crd(crd["metadata"]["name"], timeout)

    def wait_crd(self, name, timeout=10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            crd = self.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
            conds = {c["type"]: c["status"] for c in crd.get("status", {}).get("conditions", [])}
            if conds.get("Established") == "True":
                return crd
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not Established after {timeout}s")
            time.sleep(0.02)

    def load(self, path) -> list:
        """Create every object of a JSON or YAML manifest file (CRDs are
        waited for); returns them."""
        return [self.apply(o) for o in load_manifests(path)]

    def apply(self, obj) -> dict:
        """Create, or replace when it exists (a test helper, not SSA)."""
        if obj.get("kind") == "CustomResourceDefinition":
            try:
                return self.create_crd(obj)
            except ApiError as e:
                if e.code != 409:
                    raise
        try:
            return self.create(obj)
        except ApiError as e:
            if e.code != 409:
                raise
        m = obj["metadata"]
        cur = self.get(obj["apiVersion"], obj["kind"], m["name"], m.get("namespace"))
        new = copy.deepcopy(obj)
        new["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
        return self.update(new)

    # ------------------------------------------------------------ client config
    def kubeconfig(self, path, *, user_token=None, client_cert=False, namespace="default",
                   inline=False) -> str:
        """Write a kubeconfig (YAML, the layout kubectl writes) for this
        server: token auth (user_token or the server's token), or the client
        certificate (client_cert=True, TLS only); inline embeds the CA and
        certificates as *-data.  Returns the path."""
        lines = ["apiVersion: v1", "kind: Config", "clusters:", "- cluster:"]
        if self.tls:
            if inline:
                lines.append(f"    certificate-authority-data: {_b64file(self.ca_file)}")
            else:
                lines.append(f"    certificate-authority: {self.ca_file}")
        lines += [f"    server: {self.url}", "  name: double", "contexts:", "- context:",
                  "    cluster: double", f"    namespace: {namespace}", "    user: test",
                  "  name: double", "current-context: double", "preferences: {}", "users:",
                  "- name: test", "  user:"]
        token = user_token or self.token
        if client_cert:
            f = self.tls_files
            if inline:
                lines += [f"    client-certificate-data: {_b64file(f['client'])}",
                          f"    client-key-data: {_b64file(f['client_key'])}"]
            else:
                lines += [f"    client-certificate: {f['client']}",
                          f"    client-key: {f['client_key']}"]
        elif token:
            lines.append(f"    token: {token}")
        else:
            lines[-1] = "  user: {}"
        Path(path).write_text("\n".join(lines) + "\n")
        return str(path)

    def service_account_dir(self, path, namespace="default", token=None) -> str:
        """Write token, ca.crt (TLS) and namespace the way a pod's service
        account volume holds them (/var/run/secrets/kubernetes.io/
        serviceaccount); see in_cluster_env()."""
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        (d / "token").write_text(token or self.token or "")
        (d / "namespace").write_text(namespace)
        if self.ca_file:
            shutil.copy(self.ca_file, d / "ca.crt")
        return str(d)

    def in_cluster_env(self) -> dict:
        return {"KUBERNETES_SERVICE_HOST": self.host, "KUBERNETES_SERVICE_PORT": str(self.port)}


def _b64file(path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def load_manifests(path) -> list:
    """The objects of a JSON or YAML (multi-document; needs python3-yaml)
    manifest file; List kinds are expanded."""
    text = Path(path).read_text()
    if str(path).endswith(".json"):
        docs = [json.loads(text)]
    else:
        import yaml  # python3-yaml (scripts/setup)
        docs = list(yaml.safe_load_all(text))
    out = []
    for d in docs:
        if not d:
            continue
        if d.get("kind", "").endswith("List") and "items" in d:
            out += d["items"]
        else:
            out.append(d)
    return out


# ---------------------------------------------------------------- RBAC

def _rbac_allows(cluster, user, verb, group, plural, sub, ns, name) -> bool:
    resource = plural + (f"/{sub}" if sub else "")
    groups = set(user.get("groups") or [])
    uname = user["name"]
    if uname.startswith("system:serviceaccount:"):
        sa_ns = uname.split(":")[2]
        groups |= {"system:serviceaccounts", f"system:serviceaccounts:{sa_ns}"}

    def subject_ok(subjects) -> bool:
        for s in subjects or []:
            k = s.get("kind")
            if k == "User" and s.get("name") == uname:
                return True
            if k == "Group" and s.get("name") in groups:
                return True
            if k == "ServiceAccount" and uname == \
                    f"system:serviceaccount:{s.get('namespace')}:{s.get('name')}":
                return True
        return False

    def rule_ok(rule) -> bool:
        if not any(g in ("*", group) for g in rule.get("apiGroups") or []):
            return False
        res = rule.get("resources") or []
        if not any(r in ("*", resource) or (r == f"{plural}/*" and sub) or
                   (r == f"*/{sub}" and sub) for r in res):
            return False
        if not any(v in ("*", verb) for v in rule.get("verbs") or []):
            return False
        names = rule.get("resourceNames") or []
        return not names or (name and name in names)

    def role_rules(ref, binding_ns):
        if ref.get("kind") == "ClusterRole":
            r = cluster._data(("rbac.authorization.k8s.io", "clusterroles")).objects.get(
                ("", ref.get("name")))
        else:
            r = cluster._data(("rbac.authorization.k8s.io", "roles")).objects.get(
                (binding_ns, ref.get("name")))
        return (r or {}).get("rules") or []

    with cluster.lock:
        for b in cluster._data(("rbac.authorization.k8s.io", "clusterrolebindings")
                               ).objects.values():
            if subject_ok(b.get("subjects")) and any(rule_ok(r) for r in
                                                     role_rules(b.get("roleRef") or {}, "")):
                return True
        if ns:
            for (bns, _), b in cluster._data(("rbac.authorization.k8s.io", "rolebindings")
                                             ).objects.items():
                if bns == ns and subject_ok(b.get("subjects")) and \
                        any(rule_ok(r) for r in role_rules(b.get("roleRef") or {}, ns)):
                    return True
    return False


# ---------------------------------------------------------------- as a subprocess

class KubeApiServerProcess:
    """The double as a subprocess (`python3 -m tests.doubles.kube_apiserver`)
    with the hooks of KubeApiServer (inject, clear_injections, drop_watches,
    bookmark_now, compact, snapshot, requests, watch_count), reached through
    its /__double__/ endpoints; objects go through the REST API (e.g.
    tests.harness.kubeapi.KubeClient.for_server(proc))."""

    def __init__(self, *, port=0, unix_socket=None, token=None, tls=False, tls_dir=None,
                 rbac=False, watch_window=1000, bookmark_interval=60.0, watch_timeout=1800.0,
                 extra_args=(), python=None, log_path=None):
        self.args = ["--port", str(port), "--watch-window", str(watch_window),
                     "--bookmark-interval", str(bookmark_interval),
                     "--watch-timeout", str(watch_timeout), *extra_args]
        if unix_socket:
            self.args += ["--unix", str(unix_socket)]
        if token:
            self.args += ["--token", token]
        if rbac:
            self.args += ["--rbac"]
        self.tls = tls
        self.tls_dir = tls_dir
        self.token = token
        self.python = python or sys.executable
        self.log_path = log_path
        self.proc = None
        self.info = {}
        self._tmp = None

    def start(self) -> "KubeApiServerProcess":
        self._tmp = tempfile.mkdtemp(prefix="kube-double-")
        ready = Path(self._tmp) / "ready.json"
        args = list(self.args) + ["--ready-file", str(ready)]
        if self.tls:
            args += ["--tls-dir", str(self.tls_dir or Path(self._tmp) / "tls")]
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO_ROOT) + (":" + env["PYTHONPATH"]
                                              if env.get("PYTHONPATH") else "")
        log = open(self.log_path or Path(self._tmp) / "server.log", "ab")
        self.proc = subprocess.Popen([self.python, "-m", "tests.doubles.kube_apiserver", *args],
                                     cwd=REPO_ROOT, env=env, stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"kube-apiserver double did not start: "
                                   f"{self.log_tail()}")
            time.sleep(0.05)
        self.info = json.loads(ready.read_text())
        return self

    def log_tail(self, n=30) -> str:
        p = Path(self.log_path or Path(self._tmp or "/nonexistent") / "server.log")
        try:
            return "\n".join(p.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def url(self) -> str:
        return self.info["url"]

    @property
    def port(self) -> int:
        return self.info["port"]

    @property
    def ca_file(self):
        return self.info.get("ca")

    def _admin(self, method, cmd, data=None):
        req = urllib.request.Request(f"{self.url}/__double__/{cmd}", method=method,
                                     data=json.dumps(data or {}).encode() if method == "POST"
                                     else None, headers={"Content-Type": "application/json"})
        ctx = None
        if self.url.startswith("https"):
            ctx = ssl.create_default_context(cafile=self.ca_file)
        with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
            return json.loads(r.read())

    def inject(self, path, **kw):
        self._admin("POST", "inject", dict(kw, path=path))

    def clear_injections(self):
        self._admin("POST", "clear-injections")

    def drop_watches(self, path=None, mode="close") -> int:
        return self._admin("POST", "drop-watches", {"path": path, "mode": mode})["dropped"]

    def bookmark_now(self):
        self._admin("POST", "bookmark")

    def compact(self) -> int:
        return int(self._admin("POST", "compact")["resourceVersion"])

    def snapshot(self) -> dict:
        return self._admin("GET", "snapshot")

    @property
    def requests(self) -> list:
        return self._admin("GET", "requests")["requests"]

    def clear_requests(self):
        self._admin("POST", "clear-requests")

    def watch_count(self, path=None) -> int:
        return self._admin("GET", "watches")["watches"]


# ---------------------------------------------------------------- CLI

def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m tests.doubles.kube_apiserver",
                                description="Kubernetes API server TEST DOUBLE (see the module "
                                            "docstring for what is faithful)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    p.add_argument("--unix", help="also serve this unix socket")
    p.add_argument("--token", help="require this bearer token (user in system:masters)")
    p.add_argument("--tls-dir", help="serve HTTPS; CA and certificates made in (or read from) "
                                     "this dir")
    p.add_argument("--rbac", action="store_true", help="authorize with stored RBAC objects")
    p.add_argument("--watch-window", type=int, default=1000)
    p.add_argument("--bookmark-interval", type=float, default=60.0)
    p.add_argument("--watch-timeout", type=float, default=1800.0)
    p.add_argument("--load", action="append", default=[],
                   help="create the objects of this JSON/YAML manifest (repeatable)")
    p.add_argument("--kubeconfig", help="write a kubeconfig for the server here")
    p.add_argument("--ready-file", help="write {url, port, unix, ca, token} as JSON here once "
                                        "serving")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    a = p.parse_args(argv)
    api = KubeApiServer(host=a.host, port=a.port, unix_socket=a.unix, token=a.token,
                        tls=bool(a.tls_dir), tls_dir=a.tls_dir, rbac=a.rbac,
                        watch_window=a.watch_window, bookmark_interval=a.bookmark_interval,
                        watch_timeout=a.watch_timeout, verbose=a.verbose)
    api.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        for f in a.load:
            for o in api.load(f):
                print(f"loaded {o['kind']} {o['metadata']['name']}", flush=True)
        if a.kubeconfig:
            api.kubeconfig(a.kubeconfig)
        info = {"url": api.url, "port": api.port, "unix": api.unix_socket, "ca": api.ca_file,
                "token": api.token, "pid": os.getpid()}
        if a.ready_file:
            tmp = a.ready_file + ".tmp"
            Path(tmp).write_text(json.dumps(info))
            os.rename(tmp, a.ready_file)
        print(f"kube-apiserver double serving {api.url}" +
              (f" and unix:{api.unix_socket}" if api.unix_socket else ""), flush=True)
        stop.wait()
    finally:
        api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
