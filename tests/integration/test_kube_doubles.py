# SPDX-License-Identifier: Apache-2.0
"""The Kubernetes test doubles checked against the real API's wire
behaviour: the API server double (tests/doubles/kube_apiserver.py) through
HTTP with the test client (tests/harness/kubeapi.py) -- CRUD, errors as
metav1.Status, resourceVersion, watch from a resourceVersion, bookmarks,
410 then relist, 409 on conflict, selectors, paging, status subresource,
finalizers, CRD schemas, patches, GC, auth/TLS/RBAC, failure injection, the
subprocess mode -- and the kubelet stand-in (tests/harness/kubelet.py)
bringing a pod bound to a harness node to Running through CRI.

Only the last tests need root and containerd; the others run anywhere."""

import json
import ssl
import threading

import pytest

from tests.doubles.kube_apiserver import KubeApiServer, KubeApiServerProcess
from tests.harness.checks import Leftovers, assert_consecutive, wait_for
from tests.harness.kubeapi import KubeApiError, KubeClient, resource_path

KYB = "kybernate.io/v1alpha1"


# ---------------------------------------------------------------- objects

def crd(kind, plural, spec_schema, status_schema=None, *, scope="Namespaced", status=True,
        short_names=(), selectable=()):
    version = {
        "name": "v1alpha1", "served": True, "storage": True,
        "schema": {"openAPIV3Schema": {
            "type": "object",
            "properties": {"spec": spec_schema,
                           "status": status_schema or {"type": "object",
                                                       "x-kubernetes-preserve-unknown-fields":
                                                           True}}}},
        "additionalPrinterColumns": [{"name": "Phase", "type": "string",
                                      "jsonPath": ".status.phase"}]}
    if status:
        version["subresources"] = {"status": {}}
    if selectable:
        version["selectableFields"] = [{"jsonPath": p} for p in selectable]
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.kybernate.io"},
            "spec": {"group": "kybernate.io", "scope": scope,
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower(),
                               "listKind": kind + "List", "shortNames": list(short_names)},
                     "versions": [version]}}


CHECKPOINT_SPEC = {
    "type": "object", "required": ["podName"],
    "properties": {
        "podName": {"type": "string", "minLength": 1, "maxLength": 63,
                    "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "containers": {"type": "array", "items": {"type": "string"}, "maxItems": 3,
                       "x-kubernetes-list-type": "set"},
        "keepRunning": {"type": "boolean", "default": True},
        "mode": {"type": "string", "enum": ["cold", "warm"]},
        "retention": {"type": "integer", "minimum": 1, "maximum": 100},
        "storage": {"type": "string", "pattern": "^(file|oci|s3)://"},
        "timeout": {"x-kubernetes-int-or-string": True},
        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    }}
STATUS_SPEC = {
    "type": "object",
    "properties": {
        "phase": {"type": "string", "enum": ["Pending", "Running", "Completed", "Failed"]},
        "node": {"type": "string"},
        "conditions": {"type": "array", "items": {
            "type": "object", "required": ["type", "status"],
            "properties": {"type": {"type": "string"},
                           "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                           "reason": {"type": "string"}, "message": {"type": "string"},
                           "lastTransitionTime": {"type": "string", "format": "date-time"}}},
            "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    }}
REQUEST_SPEC = {"type": "object", "properties": {"node": {"type": "string"},
                                                 "checkpoint": {"type": "string"}}}


def checkpoint(name, pod="web", ns="shop", **spec):
    return {"apiVersion": KYB, "kind": "Checkpoint",
            "metadata": {"name": name, "namespace": ns}, "spec": dict({"podName": pod}, **spec)}


def pod(name, ns="default", node=None, labels=None, **spec):
    p = {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": name, "namespace": ns, "labels": dict(labels or {})},
         "spec": dict({"containers": [{"name": "main", "image": "kybernate.test/busybox:1"}]},
                      **spec)}
    if node:
        p["spec"]["nodeName"] = node
    return p


def rv_of(obj) -> int:
    return int(obj["metadata"]["resourceVersion"])


def api_error(fn, *args, **kw) -> KubeApiError:
    with pytest.raises(KubeApiError) as exc:
        fn(*args, **kw)
    return exc.value


def wait_gone(kc, api_version, plural, name, ns=None, timeout=10):
    def gone():
        try:
            kc.get(api_version, plural, name, ns)
        except KubeApiError as e:
            return e.code == 404
        return False
    wait_for(gone, timeout, f"{plural} {name} to be gone")


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def api(kube_api):
    return kube_api


@pytest.fixture
def kc(kube_client):
    return kube_client


@pytest.fixture
def kyb(api, kc):
    """The API with Checkpoint and CheckpointRequest CRDs and namespace shop."""
    api.create_crd(crd("Checkpoint", "checkpoints", CHECKPOINT_SPEC, STATUS_SPEC,
                       short_names=("ckpt",)))
    api.create_crd(crd("CheckpointRequest", "checkpointrequests", REQUEST_SPEC,
                       selectable=(".spec.node",)))
    kc.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": "shop"}})
    return api


# ---------------------------------------------------------------- discovery

def test_discovery(kyb, kc):
    code, _, version = kc.request("GET", "/version")
    assert code == 200 and version["major"] == "1" and version["gitVersion"].startswith("v1.")
    assert kc.request("GET", "/api")[2]["versions"] == ["v1"]
    groups = {g["name"]: g for g in kc.request("GET", "/apis")[2]["groups"]}
    assert {"apiextensions.k8s.io", "coordination.k8s.io", "node.k8s.io", "kybernate.io"} <= \
        set(groups)
    assert groups["kybernate.io"]["preferredVersion"] == {"groupVersion": KYB,
                                                          "version": "v1alpha1"}
    res = kc.request("GET", f"/apis/{KYB}")[2]
    assert (res["kind"], res["groupVersion"]) == ("APIResourceList", KYB)
    by_name = {r["name"]: r for r in res["resources"]}
    assert by_name["checkpoints"]["kind"] == "Checkpoint"
    assert by_name["checkpoints"]["namespaced"] is True
    assert by_name["checkpoints"]["shortNames"] == ["ckpt"]
    assert set(by_name["checkpoints"]["verbs"]) >= {"get", "list", "watch", "create", "patch"}
    assert by_name["checkpoints/status"]["verbs"] == ["get", "patch", "update"]
    core = {r["name"] for r in kc.request("GET", "/api/v1")[2]["resources"]}
    assert {"pods", "pods/status", "pods/binding", "events", "nodes", "namespaces"} <= core
    leases = kc.request("GET", "/apis/coordination.k8s.io/v1")[2]
    assert [r["name"] for r in leases["resources"]] == ["leases"]
    e = api_error(kc.request, "GET", "/apis/nosuch.io/v1/things")
    assert e.code == 404
    assert kc.request("GET", "/healthz", raw=True)[2] == b"ok"


# ---------------------------------------------------------------- CRUD and errors

def test_crud_errors_and_resource_versions(kyb, kc):
    created = kc.create(KYB, "checkpoints", checkpoint("c1"), "shop")
    m = created["metadata"]
    assert (created["kind"], created["apiVersion"]) == ("Checkpoint", KYB)
    assert m["uid"] and m["creationTimestamp"].endswith("Z") and m["generation"] == 1
    assert isinstance(m["resourceVersion"], str)
    assert created["spec"]["keepRunning"] is True, "schema default applied"
    assert kc.get(KYB, "checkpoints", "c1", "shop") == created

    # 409 AlreadyExists, exactly as metav1.Status
    e = api_error(kc.create, KYB, "checkpoints", checkpoint("c1"), "shop")
    assert e.status == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure",
                        "message": 'checkpoints.kybernate.io "c1" already exists',
                        "reason": "AlreadyExists",
                        "details": {"name": "c1", "group": "kybernate.io",
                                    "kind": "checkpoints"}, "code": 409}
    e = api_error(kc.get, KYB, "checkpoints", "nope", "shop")
    assert (e.code, e.reason, e.status["message"]) == (
        404, "NotFound", 'checkpoints.kybernate.io "nope" not found')
    assert e.status["details"] == {"name": "nope", "group": "kybernate.io",
                                   "kind": "checkpoints"}
    e = api_error(kc.get, "v1", "pods", "nope", "default")
    assert e.status["message"] == 'pods "nope" not found'
    assert e.status["details"] == {"name": "nope", "kind": "pods"}

    # Update: the current resourceVersion wins, a stale one is 409 Conflict.
    upd = json.loads(json.dumps(created))
    upd["spec"]["retention"] = 5
    new = kc.update(KYB, "checkpoints", upd, "shop")
    assert rv_of(new) > rv_of(created) and new["metadata"]["generation"] == 2
    e = api_error(kc.update, KYB, "checkpoints", upd, "shop")  # upd still has the old rv
    assert (e.code, e.reason) == (409, "Conflict")
    assert e.status["message"] == (
        'Operation cannot be fulfilled on checkpoints.kybernate.io "c1": the object has been '
        'modified; please apply your changes to the latest version and try again')
    # A custom resource needs a resourceVersion on update; a pod does not.
    del upd["metadata"]["resourceVersion"]
    e = api_error(kc.update, KYB, "checkpoints", upd, "shop")
    assert (e.code, e.reason) == (422, "Invalid")
    assert e.status["message"] == ('checkpoints.kybernate.io "c1" is invalid: '
                                   'metadata.resourceVersion: Invalid value: 0x0: must be '
                                   'specified for an update')
    # An update that changes nothing changes no resourceVersion.
    same = kc.update(KYB, "checkpoints", new, "shop")
    assert same["metadata"]["resourceVersion"] == new["metadata"]["resourceVersion"]

    p = kc.create("v1", "pods", pod("p1"), "default")
    assert p["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert p["spec"]["restartPolicy"] == "Always" and p["spec"]["schedulerName"] == \
        "default-scheduler"
    p2 = json.loads(json.dumps(p))
    del p2["metadata"]["resourceVersion"]
    p2["metadata"]["labels"] = {"x": "y"}
    assert kc.update("v1", "pods", p2, "default")["metadata"]["labels"] == {"x": "y"}
    p2["spec"]["containers"][0]["name"] = "renamed"
    e = api_error(kc.update, "v1", "pods", p2, "default")
    assert e.code == 422 and "pod updates may not change fields" in e.status["message"]

    # generateName, the namespace must exist, the names must be valid.
    g = kc.create(KYB, "checkpoints", {"apiVersion": KYB, "kind": "Checkpoint",
                                        "metadata": {"generateName": "web-"},
                                        "spec": {"podName": "web"}}, "shop")
    assert g["metadata"]["name"].startswith("web-") and len(g["metadata"]["name"]) == 9
    e = api_error(kc.create, KYB, "checkpoints", checkpoint("c2", ns="nowhere"), "nowhere")
    assert (e.code, e.status["message"]) == (404, 'namespaces "nowhere" not found')
    e = api_error(kc.create, KYB, "checkpoints", checkpoint("Bad_Name"), "shop")
    assert e.code == 422 and 'metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 ' \
        'subdomain' in e.status["message"]
    e = api_error(kc.create, KYB, "checkpoints", checkpoint("c3", ns="default"), "shop")
    assert (e.code, e.reason) == (400, "BadRequest")
    assert e.status["message"] == ("the namespace of the provided object does not match the "
                                   "namespace sent on the request")
    bad = checkpoint("c4")
    bad["metadata"]["resourceVersion"] = "5"
    e = api_error(kc.create, KYB, "checkpoints", bad, "shop")
    assert e.code == 500 and "resourceVersion should not be set" in e.status["message"]

    # Delete: a custom resource answers a Status, a pod the object.
    st = kc.delete(KYB, "checkpoints", "c1", "shop")
    assert st["status"] == "Success" and st["details"]["name"] == "c1" and \
        st["details"]["uid"] == m["uid"]
    e = api_error(kc.delete, KYB, "checkpoints", "c1", "shop")
    assert e.code == 404
    assert kc.delete("v1", "pods", "p1", "default")["metadata"]["name"] == "p1"

    # resourceVersion: one counter over every type, strictly increasing.
    rvs = [rv_of(kc.create("v1", "configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                                 "metadata": {"name": f"cm{i}"}}, "default"))
           for i in range(3)]
    rvs.append(rv_of(kc.create(KYB, "checkpoints", checkpoint("c9"), "shop")))
    assert rvs == sorted(rvs) and len(set(rvs)) == 4
    assert int(kc.list("v1", "configmaps")["metadata"]["resourceVersion"]) >= rvs[-1]


def test_delete_preconditions_and_dry_run(kyb, kc):
    c = kc.create(KYB, "checkpoints", checkpoint("c1"), "shop")
    e = api_error(kc.delete, KYB, "checkpoints", "c1", "shop", preconditions={"uid": "x"})
    assert e.code == 409 and "Precondition failed: UID in precondition: x" in \
        e.status["message"]
    dry = kc.create(KYB, "checkpoints", checkpoint("c2"), "shop", dryRun="All")
    assert dry["metadata"]["name"] == "c2" and "resourceVersion" not in dry["metadata"]
    assert api_error(kc.get, KYB, "checkpoints", "c2", "shop").code == 404
    kc.delete(KYB, "checkpoints", "c1", "shop",
              preconditions={"uid": c["metadata"]["uid"],
                             "resourceVersion": c["metadata"]["resourceVersion"]})


# ---------------------------------------------------------------- selectors, paging

def test_label_and_field_selectors(kyb, kc):
    specs = {"a": {"app": "web", "tier": "front"}, "b": {"app": "web", "tier": "back"},
             "c": {"app": "db"}, "d": {}}
    for name, labels in specs.items():
        kc.create("v1", "pods", pod(name, labels=labels, node="n1" if name in "ab" else "n2"),
                  "default")

    def names(**kw):
        return sorted(i["metadata"]["name"] for i in kc.list("v1", "pods", "default",
                                                              **kw)["items"])
    assert names(label_selector="app=web") == ["a", "b"]
    assert names(label_selector="app==web,tier=front") == ["a"]
    assert names(label_selector="app!=web") == ["c", "d"]
    assert names(label_selector="tier in (front, back)") == ["a", "b"]
    assert names(label_selector="tier notin (front)") == ["b", "c", "d"]
    assert names(label_selector="tier") == ["a", "b"]
    assert names(label_selector="!tier") == ["c", "d"]
    assert names(field_selector="metadata.name=c") == ["c"]
    assert names(field_selector="spec.nodeName=n1") == ["a", "b"]
    assert names(field_selector="spec.nodeName!=n1,metadata.name!=d") == ["c"]
    assert names(field_selector="status.phase=Pending", label_selector="app=db") == ["c"]
    e = api_error(kc.list, "v1", "pods", "default", field_selector="spec.image=x")
    assert (e.code, e.status["message"]) == (400, "field label not supported: spec.image")
    e = api_error(kc.list, "v1", "pods", "default", label_selector="app in web")
    assert e.code == 400 and e.reason == "BadRequest"
    e = api_error(kc.list, KYB, "checkpoints", "shop", field_selector="spec.podName=x")
    assert e.status["message"] == ('"spec.podName" is not a known field selector: only '
                                   '"metadata.name", "metadata.namespace"')
    # A CRD's selectableFields are field selectors of its objects.
    for n, node in (("r1", "n1"), ("r2", "n2")):
        kc.create(KYB, "checkpointrequests", {"apiVersion": KYB, "kind": "CheckpointRequest",
                                              "metadata": {"name": n},
                                              "spec": {"node": node}}, "shop")
    got = kc.list(KYB, "checkpointrequests", "shop", field_selector="spec.node=n2")["items"]
    assert [i["metadata"]["name"] for i in got] == ["r2"]
    assert got[0]["kind"] == "CheckpointRequest", "custom resource list items carry kind"
    # All namespaces; items of built-in lists carry no kind.
    lst = kc.list("v1", "pods", None)
    assert lst["kind"] == "PodList" and len(lst["items"]) == 4
    assert "kind" not in lst["items"][0]


def test_paging_is_consistent_and_expires(kyb, kc):
    for i in range(5):
        kc.create(KYB, "checkpoints", checkpoint(f"c{i}"), "shop")
    page1 = kc.list(KYB, "checkpoints", "shop", limit=2)
    assert [i["metadata"]["name"] for i in page1["items"]] == ["c0", "c1"]
    assert page1["metadata"]["remainingItemCount"] == 3 and page1["metadata"]["continue"]
    kc.create(KYB, "checkpoints", checkpoint("c15"), "shop")  # after page 1: not in this list
    kc.delete(KYB, "checkpoints", "c3", "shop")                # deleted later: still listed
    page2 = kc.list(KYB, "checkpoints", "shop", limit=2,
                    continue_token=page1["metadata"]["continue"])
    page3 = kc.list(KYB, "checkpoints", "shop", limit=2,
                    continue_token=page2["metadata"]["continue"])
    assert [i["metadata"]["name"] for i in page2["items"] + page3["items"]] == ["c2", "c3", "c4"]
    assert "continue" not in page3["metadata"]
    assert page2["metadata"]["resourceVersion"] == page1["metadata"]["resourceVersion"]
    # Exact reads of an older resourceVersion come from the history ...
    old = kc.list(KYB, "checkpoints", "shop",
                  resource_version=page1["metadata"]["resourceVersion"],
                  resource_version_match="Exact")
    assert len(old["items"]) == 5
    # ... until it is compacted: then 410 Expired.
    kyb.compact()
    e = api_error(kc.list, KYB, "checkpoints", "shop", limit=2,
                  continue_token=page1["metadata"]["continue"])
    assert (e.code, e.reason) == (410, "Expired")
    assert e.status["message"].startswith("The provided continue parameter is too old")
    # A resourceVersion in the future: 504 Too large resource version.
    e = api_error(kc.list, KYB, "checkpoints", "shop", resource_version="999999",
                  resource_version_match="NotOlderThan")
    assert (e.code, e.reason) == (504, "Timeout")
    assert e.status["message"].startswith("Timeout: Too large resource version: 999999")


# ---------------------------------------------------------------- watch

def test_watch_from_resource_version(kyb, kc):
    kc.create(KYB, "checkpoints", checkpoint("before"), "shop")
    lst = kc.list(KYB, "checkpoints", "shop")
    rv = lst["metadata"]["resourceVersion"]
    with kc.watch(KYB, "checkpoints", "shop", resource_version=rv) as w:
        a = kc.create(KYB, "checkpoints", checkpoint("c1"), "shop")
        b = kc.patch(KYB, "checkpoints", "c1", {"spec": {"retention": 3}}, "shop")
        kc.delete(KYB, "checkpoints", "c1", "shop")
        events = w.collect(3)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[0]["object"] == a and events[1]["object"] == b
    assert (events[0]["object"]["kind"], events[0]["object"]["apiVersion"]) == ("Checkpoint", KYB)
    rvs = [rv_of(e["object"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(rv), "events after the list's rv only"
    assert events[2]["object"]["spec"]["retention"] == 3  # the last state, with the delete's rv
    # From the list's rv again: the same three events, replayed from history.
    with kc.watch(KYB, "checkpoints", "shop", resource_version=rv) as w:
        assert [e["type"] for e in w.collect(3)] == ["ADDED", "MODIFIED", "DELETED"]
    # Without a resourceVersion: the current objects come first as ADDED.
    with kc.watch(KYB, "checkpoints", "shop") as w:
        first = w.next(5)
        assert first["type"] == "ADDED" and first["object"]["metadata"]["name"] == "before"
        assert w.next(0.3) is None
    # Selectors: objects entering the set come as ADDED, leaving as DELETED.
    kc.create("v1", "pods", pod("p", labels={"app": "web"}), "default")
    with kc.watch("v1", "pods", "default", label_selector="app=web",
                  resource_version=kc.list("v1", "pods")["metadata"]["resourceVersion"]) as w:
        kc.patch("v1", "pods", "p", {"metadata": {"labels": {"app": "db"}}}, "default")
        kc.patch("v1", "pods", "p", {"metadata": {"labels": {"app": "web"}}}, "default")
        ev = w.collect(2)
    assert [e["type"] for e in ev] == ["DELETED", "ADDED"]
    # Watching one object by name (fieldSelector metadata.name)
    with kc.watch("v1", "pods", "default", field_selector="metadata.name=p") as w:
        assert w.next(5)["object"]["metadata"]["name"] == "p"


def test_watch_bookmarks_and_initial_events(kyb, kc):
    kc.create(KYB, "checkpoints", checkpoint("c1"), "shop")
    rv = kc.list(KYB, "checkpoints", "shop")["metadata"]["resourceVersion"]
    with kc.watch(KYB, "checkpoints", "shop", resource_version=rv, bookmarks=True) as w:
        ev = w.next(5)
    assert ev == {"type": "BOOKMARK", "object": {"kind": "Checkpoint", "apiVersion": KYB,
                                                 "metadata": {"resourceVersion": rv}}}
    with kc.watch(KYB, "checkpoints", "shop", bookmarks=True, send_initial_events=True,
                  resource_version=rv) as w:
        added, end = w.next(5), w.next(5)
    assert added["type"] == "ADDED"
    assert end["type"] == "BOOKMARK" and \
        end["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    # sendInitialEvents requires resourceVersionMatch=NotOlderThan (422).
    e = api_error(kc.request, "GET", resource_path(KYB, "checkpoints", "shop"),
                  query={"watch": "1", "sendInitialEvents": "true"})
    assert e.code == 422
    # Bookmarks can be had on demand, and not at all without allowWatchBookmarks.
    with kc.watch(KYB, "checkpoints", "shop", resource_version=rv) as w:
        kyb.bookmark_now()
        assert w.next(1.0) is None


def test_watch_410_then_relist(kyb, kc):
    rv0 = kc.list(KYB, "checkpoints", "shop")["metadata"]["resourceVersion"]
    for i in range(3):
        kc.create(KYB, "checkpoints", checkpoint(f"c{i}"), "shop")
    kyb.compact()
    kc.create(KYB, "checkpoints", checkpoint("late"), "shop")
    # Too old: HTTP 200 and an ERROR event carrying a 410 Expired Status.
    code, headers, _ = kc.request("GET", resource_path(KYB, "checkpoints", "shop"),
                                  query={"watch": "1", "resourceVersion": rv0,
                                         "timeoutSeconds": "1"}, raw=True)
    assert code == 200
    with kc.watch(KYB, "checkpoints", "shop", resource_version=rv0) as w:
        ev = w.next(5)
        assert w.next(2) is None and w.ended.is_set(), "the server ends the watch"
    assert ev["type"] == "ERROR"
    st = ev["object"]
    assert (st["kind"], st["status"], st["code"], st["reason"]) == ("Status", "Failure", 410,
                                                                     "Expired")
    assert st["message"].startswith(f"too old resource version: {rv0} (")
    # Relist, then watch from the new rv: works, and sees new events only.
    lst = kc.list(KYB, "checkpoints", "shop")
    assert len(lst["items"]) == 4
    with kc.watch(KYB, "checkpoints", "shop",
                  resource_version=lst["metadata"]["resourceVersion"]) as w:
        kc.create(KYB, "checkpoints", checkpoint("after"), "shop")
        ev = w.next(5)
    assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "after"


def test_watch_window_and_dropped_watches():
    with KubeApiServer(watch_window=3) as api:
        kc = KubeClient.for_server(api)
        rv = kc.list("v1", "configmaps", "default")["metadata"]["resourceVersion"]
        for i in range(5):
            kc.create("v1", "configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                           "metadata": {"name": f"cm{i}"}}, "default")
        with kc.watch("v1", "configmaps", "default", resource_version=rv) as w:
            assert w.next(5)["object"]["code"] == 410, "events older than the window are gone"
        # Another type's window is its own: pods still resume from rv.
        with kc.watch("v1", "pods", "default", resource_version=rv) as w:
            assert w.next(0.3) is None and not w.ended.is_set()
        # drop_watches: close ends the stream cleanly, expire sends a 410 first.
        w1 = kc.watch("v1", "configmaps", "default")
        w2 = kc.watch("v1", "pods", "default")
        assert len(w1.collect(5, timeout=2)) == 5
        api.wait_for_watches(2)
        assert api.drop_watches(path="configmaps") == 1
        wait_for(w1.ended.is_set, 5, "the dropped watch to end")
        assert w1.error is None and not w2.ended.is_set()
        assert api.drop_watches(mode="expire") == 1
        ev = w2.next(5)
        assert ev["type"] == "ERROR" and ev["object"]["code"] == 410
        wait_for(w2.ended.is_set, 5, "the expired watch to end")
        w3 = kc.watch("v1", "pods", "default")
        api.wait_for_watches(1)
        api.drop_watches(mode="abort")
        wait_for(w3.ended.is_set, 5, "the aborted watch to end")
        for w in (w1, w2, w3):
            w.close()
        kc.close()


# ---------------------------------------------------------------- status, finalizers

def test_status_subresource_and_generation(kyb, kc):
    c = checkpoint("c1")
    c["status"] = {"phase": "Completed"}
    created = kc.create(KYB, "checkpoints", c, "shop")
    assert "status" not in created, "create drops status when /status exists"
    # /status writes change status only; spec changes there are ignored.
    s = json.loads(json.dumps(created))
    s["status"] = {"phase": "Running", "node": "n1"}
    s["spec"]["retention"] = 7
    s["metadata"]["labels"] = {"ignored": "yes"}
    after = kc.update_status(KYB, "checkpoints", s, "shop")
    assert after["status"] == {"phase": "Running", "node": "n1"}
    assert "retention" not in after["spec"] and "labels" not in after["metadata"]
    assert after["metadata"]["generation"] == 1, "status changes leave generation alone"
    # Main resource writes keep the old status; spec changes bump generation.
    m = json.loads(json.dumps(after))
    m["status"] = {"phase": "Failed"}
    m["spec"]["retention"] = 9
    main = kc.update(KYB, "checkpoints", m, "shop")
    assert main["status"] == {"phase": "Running", "node": "n1"}
    assert main["spec"]["retention"] == 9 and main["metadata"]["generation"] == 2
    # Status writes are optimistic too; a merge patch on /status needs no rv.
    e = api_error(kc.update_status, KYB, "checkpoints", s, "shop")
    assert e.code == 409
    p = kc.patch_status(KYB, "checkpoints", "c1", {"status": {"phase": "Completed"}}, "shop")
    assert p["status"] == {"phase": "Completed", "node": "n1"}
    e = api_error(kc.patch_status, KYB, "checkpoints", "c1",
                  {"metadata": {"resourceVersion": "1"}, "status": {"phase": "Failed"}}, "shop")
    assert e.code == 409, "a resourceVersion in a patch is a precondition"
    # The status schema is enforced on /status writes.
    e = api_error(kc.patch_status, KYB, "checkpoints", "c1", {"status": {"phase": "Odd"}},
                  "shop")
    assert e.code == 422 and 'status.phase: Unsupported value: "Odd": supported values: ' \
        '"Pending", "Running", "Completed", "Failed"' in e.status["message"]
    # Pods: /status keeps the spec; the main resource keeps the status.
    kc.create("v1", "pods", pod("p1", node="n1"), "default")
    st = kc.patch_status("v1", "pods", "p1", {"status": {"phase": "Running"},
                                              "spec": {"nodeName": "elsewhere"}}, "default")
    assert st["status"]["phase"] == "Running" and st["spec"]["nodeName"] == "n1"
    main = kc.patch("v1", "pods", "p1", {"status": {"phase": "Failed"}}, "default")
    assert main["status"]["phase"] == "Running"


def test_finalizers_and_graceful_pod_deletion(kyb, kc):
    c = checkpoint("c1")
    c["metadata"]["finalizers"] = ["kybernate.io/image"]
    created = kc.create(KYB, "checkpoints", c, "shop")
    with kc.watch(KYB, "checkpoints", "shop", resource_version=created["metadata"][
            "resourceVersion"]) as w:
        deleting = kc.request("DELETE", resource_path(KYB, "checkpoints", "shop", "c1"))[2]
        assert deleting["metadata"]["deletionTimestamp"]
        assert deleting["metadata"]["deletionGracePeriodSeconds"] == 0
        assert deleting["metadata"]["generation"] == 2
        got = kc.get(KYB, "checkpoints", "c1", "shop")
        assert got["metadata"]["deletionTimestamp"], "the object stays while finalizers remain"
        # No new finalizers on an object being deleted.
        e = api_error(kc.patch, KYB, "checkpoints", "c1",
                      {"metadata": {"finalizers": ["kybernate.io/image", "x.io/more"]}}, "shop")
        assert e.code == 422 and 'metadata.finalizers: Forbidden: no new finalizers can be ' \
            'added if the object is being deleted, found new finalizers []string{"x.io/more"}' \
            in e.status["message"]
        # Status updates still work; emptying the finalizers deletes it.
        kc.patch_status(KYB, "checkpoints", "c1", {"status": {"phase": "Completed"}}, "shop")
        kc.patch(KYB, "checkpoints", "c1", {"metadata": {"finalizers": None}}, "shop")
        events = w.collect(3)
    assert [e["type"] for e in events] == ["MODIFIED", "MODIFIED", "DELETED"]
    assert api_error(kc.get, KYB, "checkpoints", "c1", "shop").code == 404

    # A scheduled pod is deleted gracefully: it stays until kubelet's delete
    # with gracePeriodSeconds=0; an unscheduled pod goes at once.
    kc.create("v1", "pods", pod("bound", node="n1", terminationGracePeriodSeconds=20),
              "default")
    d = kc.delete("v1", "pods", "bound", "default")
    assert d["metadata"]["deletionGracePeriodSeconds"] == 20 and d["metadata"][
        "deletionTimestamp"]
    assert kc.get("v1", "pods", "bound", "default")["metadata"]["deletionTimestamp"]
    kc.delete("v1", "pods", "bound", "default", grace_period=0,
              preconditions={"uid": d["metadata"]["uid"]})
    assert api_error(kc.get, "v1", "pods", "bound", "default").code == 404
    kc.create("v1", "pods", pod("free"), "default")
    kc.delete("v1", "pods", "free", "default")
    assert api_error(kc.get, "v1", "pods", "free", "default").code == 404


def test_garbage_collection_and_namespace_deletion(kyb, kc):
    owner = kc.create(KYB, "checkpoints", checkpoint("owner"), "shop")
    ref = {"apiVersion": KYB, "kind": "Checkpoint", "name": "owner",
           "uid": owner["metadata"]["uid"], "controller": True}
    for n in ("r1", "r2"):
        kc.create(KYB, "checkpointrequests", {
            "apiVersion": KYB, "kind": "CheckpointRequest",
            "metadata": {"name": n, "ownerReferences": [ref]}, "spec": {"node": "n1"}}, "shop")
    kc.delete(KYB, "checkpoints", "owner", "shop")
    wait_gone(kc, KYB, "checkpointrequests", "r1", "shop")
    wait_gone(kc, KYB, "checkpointrequests", "r2", "shop")
    # Orphan: the dependent stays and loses its ownerReference.
    owner = kc.create(KYB, "checkpoints", checkpoint("owner2"), "shop")
    kc.create(KYB, "checkpointrequests", {
        "apiVersion": KYB, "kind": "CheckpointRequest",
        "metadata": {"name": "kept", "ownerReferences": [dict(ref, name="owner2",
                                                              uid=owner["metadata"]["uid"])]},
        "spec": {}}, "shop")
    kc.delete(KYB, "checkpoints", "owner2", "shop", propagation_policy="Orphan")
    wait_gone(kc, KYB, "checkpoints", "owner2", "shop")
    assert "ownerReferences" not in kc.get(KYB, "checkpointrequests", "kept",
                                           "shop")["metadata"]
    # Namespace deletion: Terminating, no new objects, contents deleted, then gone.
    c = checkpoint("held")
    c["metadata"]["finalizers"] = ["kybernate.io/image"]
    kc.create(KYB, "checkpoints", c, "shop")
    ns = kc.delete("v1", "namespaces", "shop")
    assert ns["status"]["phase"] == "Terminating"
    e = api_error(kc.create, KYB, "checkpoints", checkpoint("new"), "shop")
    assert e.code == 403 and "because it is being terminated" in e.status["message"]
    wait_for(lambda: kc.get(KYB, "checkpoints", "held", "shop")["metadata"].get(
        "deletionTimestamp"), 10, "the namespace's contents to be deleted")
    assert kc.get("v1", "namespaces", "shop")["status"]["phase"] == "Terminating"
    kc.patch(KYB, "checkpoints", "held", {"metadata": {"finalizers": []}}, "shop")
    wait_gone(kc, "v1", "namespaces", "shop")


# ---------------------------------------------------------------- CRD schemas, patches

def test_crd_schema_validation_pruning_defaults(kyb, kc):
    def invalid(**spec):
        e = api_error(kc.create, KYB, "checkpoints", checkpoint("x", **spec), "shop")
        assert (e.code, e.reason) == (422, "Invalid"), e.status
        return e.status["message"], e.status["details"]["causes"]

    msg, causes = invalid(podName=None)
    # podName: null is neither nullable nor defaulted: a type error
    assert 'spec.podName: Invalid value: "null": spec.podName in body must be of type string: ' \
        '"null"' in msg
    e = api_error(kc.create, KYB, "checkpoints", {"apiVersion": KYB, "kind": "Checkpoint",
                                                   "metadata": {"name": "x"}, "spec": {}},
                  "shop")
    assert e.status["message"] == ('Checkpoint.kybernate.io "x" is invalid: spec.podName: '
                                   'Required value')
    assert e.status["details"]["causes"] == [{"reason": "FieldValueRequired",
                                              "message": "Required value",
                                              "field": "spec.podName"}]
    assert e.status["details"]["kind"] == "Checkpoint"
    msg, _ = invalid(retention="3")
    assert 'spec.retention: Invalid value: "string": spec.retention in body must be of type ' \
        'integer: "string"' in msg
    msg, _ = invalid(retention=0)
    assert "spec.retention: Invalid value: 0: spec.retention in body should be greater than " \
        "or equal to 1" in msg
    msg, _ = invalid(retention=101)
    assert "should be less than or equal to 100" in msg
    msg, _ = invalid(mode="hot")
    assert 'spec.mode: Unsupported value: "hot": supported values: "cold", "warm"' in msg
    msg, _ = invalid(storage="http://x")
    assert "spec.storage in body should match '^(file|oci|s3)://'" in msg
    msg, _ = invalid(podName="x" * 64)
    assert "spec.podName: Too long: may not be longer than 63" in msg
    msg, causes = invalid(containers=["a", "b", "c", "d"])
    assert "spec.containers: Too many: 4: must have at most 3 items" in msg
    msg, _ = invalid(containers=["a", "a"])
    assert 'spec.containers[1]: Duplicate value: "a"' in msg
    msg, causes = invalid(retention=0, mode="hot")
    assert msg.startswith('Checkpoint.kybernate.io "x" is invalid: [') and len(causes) == 2
    # int-or-string, preserved unknown fields, pruning with warnings, Strict.
    ok = kc.create(KYB, "checkpoints", checkpoint("ok", timeout="5m", extra={"any": {"x": 1}},
                                                   bogus=1), "shop")
    assert "bogus" not in ok["spec"] and ok["spec"]["extra"] == {"any": {"x": 1}}
    code, headers, obj = kc.request("POST", resource_path(KYB, "checkpoints", "shop"),
                                    checkpoint("warned", bogus=2))
    assert code == 201 and headers["warning"] == ['299 - "unknown field \\"spec.bogus\\""']
    e = api_error(kc.create, KYB, "checkpoints", checkpoint("strict", bogus=3), "shop",
                  fieldValidation="Strict")
    assert e.code == 400 and e.status["message"] == \
        'strict decoding error: unknown field "spec.bogus"'
    # kind and apiVersion must match the endpoint.
    wrong = checkpoint("w")
    wrong["kind"] = "Restore"
    e = api_error(kc.create, KYB, "checkpoints", wrong, "shop")
    assert e.code == 422 and 'kind: Invalid value: "Restore": must be Checkpoint' in \
        e.status["message"]
    # Conditions: map list keyed by type, date-time format.
    e = api_error(kc.patch_status, KYB, "checkpoints", "ok", {"status": {"conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "yesterday"}]}}, "shop")
    assert "must be of type date-time" in e.status["message"]
    good = kc.patch_status(KYB, "checkpoints", "ok", {"status": {"conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-02T03:04:05Z"}]}},
        "shop")
    assert good["status"]["conditions"][0]["type"] == "Ready"
    # A CRD that is not structural is refused.
    bad = crd("Broken", "brokens", {"type": "object", "properties": {"x": {}}})
    e = api_error(kc.create, "apiextensions.k8s.io/v1", "customresourcedefinitions", bad)
    assert e.code == 422 and "spec.versions[0].schema.openAPIV3Schema.properties[spec]." \
        "properties[x].type: Required value" in e.status["message"]
    bad = crd("Broken", "brokens", {"type": "object"})
    bad["metadata"]["name"] = "wrong.kybernate.io"
    e = api_error(kc.create, "apiextensions.k8s.io/v1", "customresourcedefinitions", bad)
    assert e.code == 422 and "must be spec.names.plural" in e.status["message"]


def test_patches(kyb, kc):
    kc.create(KYB, "checkpoints", checkpoint("c1", containers=["a"], extra={"k": 1}), "shop")
    p = kc.patch(KYB, "checkpoints", "c1", {"spec": {"extra": None, "retention": 2}}, "shop")
    assert "extra" not in p["spec"] and p["spec"]["retention"] == 2
    p = kc.patch(KYB, "checkpoints", "c1", [{"op": "add", "path": "/spec/containers/-",
                                              "value": "b"},
                                             {"op": "test", "path": "/spec/retention",
                                              "value": 2}], "shop", patch_type="json")
    assert p["spec"]["containers"] == ["a", "b"]
    e = api_error(kc.patch, KYB, "checkpoints", "c1",
                  [{"op": "test", "path": "/spec/retention", "value": 9}], "shop",
                  patch_type="json")
    assert e.code == 422
    e = api_error(kc.patch, KYB, "checkpoints", "c1", {"spec": {}}, "shop",
                  patch_type="strategic")
    assert (e.code, e.reason) == (415, "UnsupportedMediaType")
    e = api_error(kc.patch, KYB, "checkpoints", "nope", {"spec": {}}, "shop")
    assert e.code == 404
    # Strategic merge patch of a pod: containers merge by name.
    kc.create("v1", "pods", pod("p", containers=[{"name": "a", "image": "i:1"},
                                                  {"name": "b", "image": "i:1"}]), "default")
    p = kc.patch("v1", "pods", "p", {"spec": {"containers": [{"name": "b", "image": "i:2"}]}},
                 "default", patch_type="strategic")
    assert [(c["name"], c["image"]) for c in p["spec"]["containers"]] == [("a", "i:1"),
                                                                         ("b", "i:2")]
    e = api_error(kc.request, "PATCH", resource_path("v1", "pods", "default", "p"), {},
                  ctype="application/apply-patch+yaml")
    assert e.code == 415


def test_deploy_crds_and_examples(api, kc):
    """The project's own CRDs (deploy/crds) serve in the double; every
    example of deploy/examples is accepted (status through /status); the
    CRDs' CEL rules are enforced (spec immutability, one-of, annotation
    keys) and none falls outside the double's CEL subset."""
    from tests.doubles.kube_apiserver import load_manifests
    from tests.harness import REPO_ROOT
    deploy = REPO_ROOT / "deploy"
    crds = sorted((deploy / "crds").glob("kybernate.io_*.yaml"))
    assert len(crds) == 3, crds
    for f in crds:
        api.load(f)
    api.load(deploy / "cluster" / "runtimeclass.yaml")
    served = {r["name"] for r in kc.request("GET", f"/apis/{KYB}")[2]["resources"]}
    assert {"checkpoints", "checkpoints/status", "restores", "restores/status",
            "checkpointrequests", "checkpointrequests/status"} <= served
    where = {}  # (kind, name) -> namespace; files show one object in several states
    for i, f in enumerate(sorted((deploy / "examples").glob("*.yaml"))):
        for obj in load_manifests(f):
            av, kind, m = obj["apiVersion"], obj["kind"], obj["metadata"]
            ns = f"ex{i}-{m.get('namespace', 'default')}"
            m = dict(m, namespace=ns)
            where[(kind, m["name"])] = ns
            try:
                kc.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": ns}})
            except KubeApiError as e:
                assert e.code == 409
            rt = api.cluster.type_for(av, kind)
            body = {k: v for k, v in obj.items() if k != "status"}
            # Owner references name uids of the example's own world: without
            # that owner the garbage collector removes the object (below).
            body["metadata"] = {k: v for k, v in m.items()
                                if k not in ("generation", "ownerReferences")}
            created = kc.create(av, rt.plural, body, ns)
            if m.get("ownerReferences"):
                orphan = dict(body, metadata=dict(body["metadata"], name="orphan",
                                                  ownerReferences=m["ownerReferences"]))
                kc.create(av, rt.plural, orphan, ns)
                wait_gone(kc, av, rt.plural, "orphan", ns)
            if "status" in obj and rt.status_subresource:
                got = kc.patch_status(av, rt.plural, m["name"], {"status": obj["status"]}, ns)
                assert got["status"] == obj["status"], f.name
            else:
                got = created
            if rt.custom:
                assert {k: got["spec"][k] for k in obj["spec"]} == obj["spec"], f.name
    assert not api.cluster.cel_skipped, api.cluster.cel_skipped
    # The RuntimeClass's scheduling.nodeSelector was merged into the pod.
    rp = kc.get("v1", "pods", "llm-0-wake", where[("Pod", "llm-0-wake")])
    assert rp["spec"]["nodeSelector"]["kybernate.io/runtime"] == "ready"
    # CEL: spec is immutable.
    e = api_error(kc.patch, KYB, "checkpoints", "llm-0-warm", {"spec": {"podName": "other"}},
                  where[("Checkpoint", "llm-0-warm")])
    assert e.code == 422 and 'spec: Invalid value: "object": spec is immutable' in \
        e.status["message"], e.status
    # CEL: exactly one of checkpointName and imageRef.
    both = {"apiVersion": KYB, "kind": "Restore", "metadata": {"name": "both"},
            "spec": {"checkpointName": "a", "imageRef": "file:///x"}}
    e = api_error(kc.create, KYB, "restores", both, "default")
    assert e.code == 422 and "set exactly one of checkpointName and imageRef" in \
        e.status["message"]


# ---------------------------------------------------------------- hooks

def test_injected_failures_and_request_log(kyb, kc):
    kyb.clear_requests()
    kyb.inject(r"/checkpoints$", code=500, count=2, method="POST")
    for _ in range(2):
        e = api_error(kc.create, KYB, "checkpoints", checkpoint("c1"), "shop")
        assert (e.code, e.reason) == (500, "InternalError")
        assert e.status["message"] == "Internal error occurred: injected failure"
    kc.create(KYB, "checkpoints", checkpoint("c1"), "shop")  # the third goes through
    kyb.inject(r"/checkpoints/c1$", code=409, count=1, method="PUT")
    e = api_error(kc.update, KYB, "checkpoints", kc.get(KYB, "checkpoints", "c1", "shop"),
                  "shop")
    assert (e.code, e.reason) == (409, "Conflict") and "the object has been modified" in \
        e.status["message"]
    kyb.inject(r"/checkpoints", code=429, count=1, retry_after=2)
    code, headers, _ = kc.request("GET", resource_path(KYB, "checkpoints", "shop"), raw=True)
    assert code == 429 and headers["retry-after"] == "2"
    kyb.inject(r"/checkpoints", action="close", count=1)
    with pytest.raises((ConnectionError, OSError, Exception)):
        KubeClient.for_server(kyb).get(KYB, "checkpoints", "c1", "shop")
    kyb.inject(r"/checkpoints", code=503, count=1, watch=True)
    e = api_error(kc.watch, KYB, "checkpoints", "shop")
    assert e.code == 503
    assert kc.get(KYB, "checkpoints", "c1", "shop")["metadata"]["name"] == "c1"
    log = [(r["method"], r["code"]) for r in kyb.requests if "checkpoints" in r["path"]]
    assert log[:4] == [("POST", 500), ("POST", 500), ("POST", 201), ("GET", 200)]
    snap = kyb.snapshot()
    names = {(o["kind"], o["metadata"]["name"]) for o in snap["objects"]}
    assert ("Checkpoint", "c1") in names and ("Namespace", "shop") in names
    assert int(snap["resourceVersion"]) >= rv_of(kc.get(KYB, "checkpoints", "c1", "shop"))


def test_tls_token_client_cert_kubeconfig_and_unix_socket(tmp_path):
    sock = tmp_path / "api.sock"
    with KubeApiServer(tls=True, tls_dir=tmp_path / "tls", token="s3cret",
                       unix_socket=sock) as api:
        assert api.url.startswith("https://127.0.0.1:")
        kc = KubeClient.for_server(api)
        assert kc.get("v1", "namespaces", "default")["metadata"]["name"] == "default"
        e = api_error(KubeClient(api.url, ca_file=api.ca_file).get, "v1", "namespaces",
                      "default")
        assert e.status == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "message": "Unauthorized",
                            "reason": "Unauthorized", "code": 401}
        assert api_error(KubeClient(api.url, ca_file=api.ca_file, token="wrong").get, "v1",
                         "namespaces", "default").code == 401
        # The client certificate (O=system:masters) authenticates too.
        f = api.tls_files
        certed = KubeClient(api.url, ca_file=api.ca_file, client_cert=f["client"],
                            client_key=f["client_key"])
        assert certed.get("v1", "namespaces", "default")
        # Without the CA the server is not trusted.
        with pytest.raises(ssl.SSLError):
            KubeClient(api.url, token="s3cret").get("v1", "namespaces", "default")
        # kubeconfig and service-account files for the C client's tests.
        cfg = open(api.kubeconfig(tmp_path / "kubeconfig")).read()
        assert f"server: {api.url}" in cfg and f"certificate-authority: {api.ca_file}" in cfg
        assert "token: s3cret" in cfg
        inline = open(api.kubeconfig(tmp_path / "kc2", client_cert=True, inline=True)).read()
        assert "client-certificate-data: " in inline and "certificate-authority-data: " in inline
        sa = api.service_account_dir(tmp_path / "sa", namespace="kybernate")
        assert (tmp_path / "sa" / "token").read_text() == "s3cret"
        assert (tmp_path / "sa" / "ca.crt").read_bytes() == open(api.ca_file, "rb").read()
        assert api.in_cluster_env()["KUBERNETES_SERVICE_PORT"] == str(api.port)
        del sa
        # The unix socket speaks plain HTTP with the same auth.
        ux = KubeClient(unix_socket=str(sock), token="s3cret")
        assert ux.get("v1", "namespaces", "default")["metadata"]["name"] == "default"
        for c in (kc, certed, ux):
            c.close()


def test_rbac(tmp_path):
    sa_user = "system:serviceaccount:kybernate:agent"
    with KubeApiServer(token="admin", tokens={"agent-token": sa_user}, rbac=True) as api:
        admin = KubeClient.for_server(api)
        agent = KubeClient(api.url, token="agent-token")
        e = api_error(agent.list, "v1", "pods", "default")
        assert (e.code, e.reason) == (403, "Forbidden")
        assert e.status["message"] == (f'pods is forbidden: User "{sa_user}" cannot list '
                                       f'resource "pods" in API group "" in the namespace '
                                       f'"default"')
        admin.create("rbac.authorization.k8s.io/v1", "clusterroles", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                      {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch"]}]})
        admin.create("rbac.authorization.k8s.io/v1", "rolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "agent-pods"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "agent",
                          "namespace": "kybernate"}]}, "default")
        assert agent.list("v1", "pods", "default")["items"] == []
        e = api_error(agent.list, "v1", "pods", "kube-system")
        assert e.code == 403
        e = api_error(agent.create, "v1", "pods", pod("x"), "default")
        assert e.code == 403 and 'cannot create resource "pods"' in e.status["message"]
        admin.create("v1", "pods", pod("x"), "default")
        agent.patch_status("v1", "pods", "x", {"status": {"phase": "Running"}}, "default")
        e = api_error(agent.patch, "v1", "pods", "x", {"metadata": {"labels": {"a": "b"}}},
                      "default")
        assert e.code == 403 and 'cannot patch resource "pods" in API group ""' in \
            e.status["message"]


def test_subprocess_mode(tmp_path):
    with KubeApiServerProcess(token="t0k", bookmark_interval=0.2) as proc:
        kc = KubeClient.for_server(proc)
        kc.create("v1", "configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                       "metadata": {"name": "cm"}, "data": {"a": "b"}},
                  "default")
        proc.inject("/configmaps/cm$", code=500, count=1)
        assert api_error(kc.get, "v1", "configmaps", "cm", "default").code == 500
        assert kc.get("v1", "configmaps", "cm", "default")["data"] == {"a": "b"}
        with kc.watch("v1", "configmaps", "default", bookmarks=True) as w:
            assert w.next(5)["type"] == "ADDED"
            wait_for(lambda: proc.watch_count() == 1, 5, "the watch to register")
            assert proc.drop_watches() == 1
            wait_for(w.ended.is_set, 5, "the watch to end")
        rv = proc.compact()
        assert rv >= rv_of(kc.get("v1", "configmaps", "cm", "default"))
        assert any(o["kind"] == "ConfigMap" for o in proc.snapshot()["objects"])
        assert any(r["code"] == 500 for r in proc.requests)
        kc.close()
    assert proc.proc.returncode == 0


def test_cli_serves_and_loads_manifests(tmp_path):
    import subprocess
    import sys
    from tests.harness import REPO_ROOT
    manifest = tmp_path / "crd.yaml"
    import yaml
    manifest.write_text(yaml.safe_dump_all([
        crd("Restore", "restores", {"type": "object", "properties": {
            "checkpoint": {"type": "string"}}}),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}]))
    ready = tmp_path / "ready.json"
    p = subprocess.Popen([sys.executable, "-m", "tests.doubles.kube_apiserver", "--port", "0",
                          "--load", str(manifest), "--ready-file", str(ready),
                          "--kubeconfig", str(tmp_path / "kubeconfig")],
                         cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    try:
        wait_for(ready.exists, 30, "the CLI to serve")
        info = json.loads(ready.read_text())
        kc = KubeClient(info["url"])
        kc.create(KYB, "restores", {"apiVersion": KYB, "kind": "Restore",
                                    "metadata": {"name": "r"}, "spec": {"checkpoint": "c"}},
                  "team")
        assert f"server: {info['url']}" in (tmp_path / "kubeconfig").read_text()
        kc.close()
    finally:
        p.terminate()
        out, _ = p.communicate(timeout=10)
    assert p.returncode == 0, out
    assert "loaded CustomResourceDefinition restores.kybernate.io" in out
    assert "kube-apiserver double serving http://127.0.0.1:" in out


def test_concurrent_writers_conflict(kyb, kc):
    """Two writers of one object: exactly one of each pair of updates from
    the same resourceVersion wins; the loser sees 409 and retries."""
    kc.create(KYB, "checkpoints", checkpoint("c1", retention=1), "shop")
    wins, conflicts = [], []

    def writer(n):
        c = KubeClient.for_server(kyb)
        for _ in range(10):
            while True:
                cur = c.get(KYB, "checkpoints", "c1", "shop")
                cur["spec"]["retention"] = cur["spec"]["retention"] + 1
                try:
                    c.update(KYB, "checkpoints", cur, "shop")
                    wins.append(n)
                    break
                except KubeApiError as e:
                    assert e.code == 409
                    conflicts.append(n)
        c.close()
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(wins) == 30
    assert kc.get(KYB, "checkpoints", "c1", "shop")["spec"]["retention"] == 31


# ---------------------------------------------------------------- scheduler

def test_mini_scheduler_binds_by_selector(api, kc):
    from tests.harness.kubelet import MiniScheduler
    for name, gpu in (("node-a", "h200"), ("node-b", "a100")):
        kc.create("v1", "nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": name, "labels": {"gpu": gpu}}, "status": {"conditions": [
                {"type": "Ready", "status": "True"}]}})
    kc.create("v1", "pods", pod("wants-h200", nodeSelector={"gpu": "h200"}), "default")
    kc.create("v1", "pods", pod("wants-b", affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "gpu", "operator": "NotIn", "values": ["h200"]}]}]}}}),
        "default")
    kc.create("v1", "pods", pod("nowhere", nodeSelector={"gpu": "v100"}), "default")
    with MiniScheduler(kc, interval=0.1) as sched:
        wait_for(lambda: kc.get("v1", "pods", "wants-h200", "default")["spec"].get("nodeName"),
                 10, "the pod to be bound")
        wait_for(lambda: kc.get("v1", "pods", "wants-b", "default")["spec"].get("nodeName"),
                 10, "the pod to be bound")
        wait_for(lambda: (kc.get("v1", "pods", "nowhere", "default").get("status") or {}).get(
            "conditions"), 10, "the Unschedulable condition")
    assert not sched.errors
    assert kc.get("v1", "pods", "wants-h200", "default")["spec"]["nodeName"] == "node-a"
    bound = kc.get("v1", "pods", "wants-b", "default")
    assert bound["spec"]["nodeName"] == "node-b"
    assert {"type": "PodScheduled", "status": "True"}.items() <= \
        bound["status"]["conditions"][0].items()
    cond = kc.get("v1", "pods", "nowhere", "default")["status"]["conditions"][0]
    assert (cond["status"], cond["reason"]) == ("False", "Unschedulable")
    e = api_error(kc.create, "v1", "pods/wants-b/binding", {
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "wants-b"},
        "target": {"kind": "Node", "name": "node-a"}}, "default")
    assert e.code == 409 and 'is already assigned to node "node-b"' in e.status["message"]


# ---------------------------------------------------------------- the kubelet stand-in

RUNTIME_CLASS = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                 "metadata": {"name": "kybernate"}, "handler": "kybernate"}
NOTE = "kybernate.io/test-note"


def counts_of(lines) -> list:
    return [int(line.split()[1]) for line in lines
            if line.startswith("count ") and line.split()[1].isdigit()]


@pytest.fixture
def kube_node(make_node, make_kubelet):
    """A harness node "kn" (with its Leftovers record) registered as node
    kn-1 by a running kubelet stand-in."""
    node = make_node("kn", start=False)
    left = Leftovers(node)
    node.start()
    kubelet = make_kubelet(node, "kn-1", labels={"kybernate.io/gpu": "none"}, backoff=1.0)
    return node, left, kubelet


def test_kubelet_stand_in_runs_pod(kube_node, api, kc):
    node, left, kubelet = kube_node
    n = kc.get("v1", "nodes", "kn-1")
    assert n["metadata"]["labels"]["kybernate.io/gpu"] == "none"
    assert n["status"]["conditions"][0]["type"] == "Ready"
    assert n["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    kc.create("node.k8s.io/v1", "runtimeclasses", RUNTIME_CLASS)
    # The API misbehaves first: the kubelet's watch expires (410: it must
    # relist) and its first status writes fail with 500.
    api.wait_for_watches(1)
    api.compact()
    assert api.drop_watches(mode="expire") == 1
    api.inject(r"/pods/counter/status$", code=500, count=2)
    p = pod("counter", node="kn-1", runtimeClassName="kybernate",
            containers=[{"name": "main", "image": "kybernate.test/busybox:1",
                         "command": ["/usr/bin/counter", "--interval", "50"]}])
    p["metadata"]["annotations"] = {NOTE: "hello", "example.com/other": "x"}
    created = kc.create("v1", "pods", p, "default")
    uid = created["metadata"]["uid"]
    running = kubelet.wait_phase("default", "counter", "Running")
    assert [e.code for e in kubelet.api_errors] == [500, 500]
    st = running["status"]
    cs = st["containerStatuses"][0]
    assert cs["name"] == "main" and cs["ready"] is True and cs["restartCount"] == 0
    assert cs["containerID"].startswith("containerd://") and "running" in cs["state"]
    assert cs["imageID"].startswith("sha256:")
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds["Ready"] == "True" and conds["ContainersReady"] == "True"
    cid = cs["containerID"].split("://", 1)[1]

    # What reached CRI: the handler from the RuntimeClass, the pod's
    # identity, kybernate.io/* annotations into the OCI spec via the sandbox.
    cri = kubelet.cri
    sandboxes = cri.list_pods(labels={"io.kubernetes.pod.uid": uid})
    assert len(sandboxes) == 1
    sst = cri.pod_status(sandboxes[0].id).status
    assert sst.runtime_handler == "kybernate"
    assert (sst.metadata.name, sst.metadata.namespace, sst.metadata.uid) == (
        "counter", "default", uid)
    assert dict(sst.annotations)[NOTE] == "hello"
    cst = cri.container_status(cid)
    assert cst.labels["io.kubernetes.container.name"] == "main"
    assert cst.labels["io.kubernetes.pod.uid"] == uid
    assert cst.annotations["io.kubernetes.container.restartCount"] == "0"
    from tests.harness.cri import bundle_spec
    spec = bundle_spec(node, cid)["annotations"]
    assert spec[NOTE] == "hello" and "example.com/other" not in spec
    assert spec["io.kubernetes.cri.container-type"] == "container"
    lines = cri.wait_log(cid, lambda ls: len(counts_of(ls)) >= 5)
    assert_consecutive(counts_of(lines)[:5])
    reasons = {e["reason"] for e in kc.list("v1", "events", "default",
                                            field_selector="involvedObject.name=counter")["items"]}
    assert {"Created", "Started"} <= reasons

    # Deleting the pod: the stand-in stops it, removes the sandbox, and
    # makes the final delete.
    pids = [cri.container_pid(cid)]
    left.record(*pids)
    with kc.watch("v1", "pods", "default", field_selector="metadata.name=counter",
                  resource_version=running["metadata"]["resourceVersion"]) as w:
        kc.delete("v1", "pods", "counter", "default")
        wait_gone(kc, "v1", "pods", "counter", "default", timeout=30)
        types = [e["type"] for e in w.collect(10, timeout=2)]
    assert types[0] == "MODIFIED" and types[-1] == "DELETED"
    assert not cri.list_pods(labels={"io.kubernetes.pod.uid": uid})
    assert not kubelet.errors
    kubelet.stop()
    node.stop()
    left.check()


def test_kubelet_stand_in_reports_failures(kube_node, api, kc):
    node, left, kubelet = kube_node
    # A start the runtime refuses, restartPolicy Never: Failed, StartError.
    kc.create("v1", "pods", pod("broken", node="kn-1", restartPolicy="Never", containers=[
        {"name": "main", "image": "kybernate.test/busybox:1", "command": ["/no/such/program"]}]),
        "default")
    failed = kubelet.wait_phase("default", "broken", "Failed")
    term = failed["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["reason"], term["exitCode"]) == ("StartError", 128)
    assert "/no/such/program" in term["message"]
    # The same with restartPolicy Always: CrashLoopBackOff, restarts counted.
    kc.create("v1", "pods", pod("looping", node="kn-1", containers=[
        {"name": "main", "image": "kybernate.test/busybox:1", "command": ["/no/such/program"]}]),
        "default")

    def restarted():
        s = kc.get("v1", "pods", "looping", "default").get("status") or {}
        cs = (s.get("containerStatuses") or [{}])[0]
        return s.get("phase") == "Running" and cs.get("restartCount", 0) >= 1 and \
            cs["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff" and cs
    cs = wait_for(restarted, 30, "a restart after the failed start")
    assert cs["lastState"]["terminated"]["reason"] == "StartError"
    # A pod whose node selector this node does not match: rejected.
    kc.create("v1", "pods", pod("elsewhere", node="kn-1", nodeSelector={"gpu": "h200"}),
              "default")
    rejected = kubelet.wait_phase("default", "elsewhere", "Failed")
    assert rejected["status"]["reason"] == "NodeAffinity"
    assert not kubelet.cri.list_pods(labels={"io.kubernetes.pod.name": "elsewhere"})
    # A missing image: Pending, ErrImagePull.
    kc.create("v1", "pods", pod("noimage", node="kn-1", containers=[
        {"name": "main", "image": "kybernate.test/absent:1"}]), "default")
    wait_for(lambda: ((kc.get("v1", "pods", "noimage", "default").get("status") or {}).get(
        "containerStatuses") or [{}])[0].get("state", {}).get("waiting", {}).get(
        "reason") == "ErrImagePull", 30, "ErrImagePull")
    assert kc.get("v1", "pods", "noimage", "default")["status"]["phase"] == "Pending"
    # A container that exits 0 under OnFailure: Succeeded.
    kc.create("v1", "pods", pod("once", node="kn-1", restartPolicy="OnFailure", containers=[
        {"name": "main", "image": "kybernate.test/busybox:1",
         "command": ["/bin/sh", "-c", "echo done"]}]), "default")
    done = kubelet.wait_phase("default", "once", "Succeeded")
    assert done["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == \
        "Completed"
    warnings = {e["reason"] for e in kc.list("v1", "events", "default")["items"]
                if e["type"] == "Warning"}
    assert {"Failed", "BackOff"} <= warnings
    for name in ("broken", "looping", "noimage", "once", "elsewhere"):
        kc.delete("v1", "pods", name, "default")
    for name in ("broken", "looping", "noimage", "once", "elsewhere"):
        wait_gone(kc, "v1", "pods", name, "default", timeout=30)
    # Terminal pods are deleted at once; the stand-in tears them down after.
    wait_for(lambda: not kubelet.cri.list_pods(), 30, "the sandboxes to be removed")
    assert not kubelet.errors
    kubelet.stop()
    node.stop()
    left.check()
