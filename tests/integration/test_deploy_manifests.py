# SPDX-License-Identifier: Apache-2.0
"""Every manifest in deploy/ (and every YAML example in docs/api.md and docs/install.md), checked
without a cluster (issue 6: no kube-apiserver can be installed here).

How each kind of object is checked:

- Custom objects (Checkpoint, Restore, CheckpointRequest) against their CRD's openAPIV3Schema with
  jsonschema. The structural schema is translated the way the API server applies it: `nullable`
  adds null, `x-kubernetes-int-or-string` is integer-or-string, `x-kubernetes-list-type: set|map`
  items must be unique (by the map keys), unknown fields fail unless
  `x-kubernetes-preserve-unknown-fields` (kubectl's default is strict field validation), `default`s
  are applied, formats date-time/int32/int64 are checked. CEL rules (`x-kubernetes-validations`)
  have no CEL engine here: each rule the CRDs use has a Python twin in CEL_TWINS, and a rule
  without one fails the test. metadata is checked against the real ObjectMeta schema.
- The CRDs themselves: against the real CustomResourceDefinition schema, and for Kubernetes'
  structural-schema rules (apiextensions validation: every node typed, no additionalProperties
  beside properties or `false`, no type/default/... inside allOf/anyOf/oneOf/not, metadata only
  name/generateName, list-type rules, no forbidden keywords, RE2-compatible patterns, valid
  defaults and enums), names, versions, subresources and printer-column JSONPaths.
- Built-in objects (DaemonSet, Deployment, Service, ServiceAccount, RBAC, RuntimeClass, Namespace,
  Secret, Pod, ConfigMap) against the REAL Kubernetes OpenAPI schemas: Debian ships them as test
  data of the Kubernetes Go modules (core/v1 and apps/v1 from Kubernetes v1.27.0, rbac, node and
  apiextensions from a 1.23-era spec); tests/integration/data/k8s-openapi/ holds the subset and
  how it was made. Unknown fields fail (strict), IntOrString and Quantity accept both forms. What
  the API server checks beyond the schema (selector matches template labels, names, volume and
  port references, RBAC words) is checked by hand below, and least privilege is asserted as
  exact permission tables per component.
- The kustomize base and overlays are built with `kubectl kustomize` (kubectl is on the machine
  image) and the output checked like the files; the containerd handler snippet is parsed as TOML
  and compared with the handler tests/harness/node.py declares; deploy/node/node-setup.sh runs
  against a fake host root under dash and under busybox (the image's shell).
"""

import copy
import json
import os
import re
import shutil
import stat
import subprocess
import tomllib
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.harness import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
DOCS_WITH_EXAMPLES = [REPO_ROOT / "docs" / "api.md", REPO_ROOT / "docs" / "install.md"]
K8S_OPENAPI = REPO_ROOT / "tests" / "integration" / "data" / "k8s-openapi" / "k8s-openapi.json"
NAMESPACE = "kybernate-system"
GROUP = "kybernate.io"
HANDLER = "kybernate"
CRI_RUNTIMES = ("plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes")
# Handler options that must equal the runc handler's on the same node (docs/runtime.md); the
# snippet leaves them out and node-setup.sh copies them from the runc handler.
MIRRORED_OPTIONS = {"Root", "SystemdCgroup"}

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
IANA_SVC_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


# ---------------------------------------------------------------------------- loading

def _manifest_files():
    """Every YAML file under deploy/ (kustomizations included)."""
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def _is_kustomization(path):
    return path.name in ("kustomization.yaml", "kustomization.yml")


def _load_docs(text, where):
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise AssertionError(f"{where}: not YAML: {e}") from None


def _doc_blocks(md: Path, lang: str):
    """(md:line, text) of each ```lang fenced block."""
    out, lines = [], md.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == f"```{lang}":
            start, body = i + 1, []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            out.append((f"{md.relative_to(REPO_ROOT)}:{start}", "\n".join(body) + "\n"))
        i += 1
    return out


def _deploy_objects(include_examples=True):
    objs = []
    for p in _manifest_files():
        if _is_kustomization(p) or (not include_examples and "examples" in p.parts):
            continue
        for i, d in enumerate(_load_docs(p.read_text(), p)):
            objs.append((f"{p.relative_to(REPO_ROOT)}#{i}", d))
    return objs


def _doc_objects():
    objs = []
    for md in DOCS_WITH_EXAMPLES:
        for where, text in _doc_blocks(md, "yaml"):
            for i, d in enumerate(_load_docs(text, where)):
                objs.append((f"{where}#{i}", d))
    return objs


def _crds():
    out = {}
    for p in sorted((DEPLOY / "crds").glob("*.yaml")):
        if _is_kustomization(p):
            continue
        for d in _load_docs(p.read_text(), p):
            out[d["spec"]["names"]["kind"]] = d
    return out


# ---------------------------------------------------------------------------- JSON Schema

def _format_checker():
    fc = jsonschema.FormatChecker(formats=())

    @fc.checks("date-time")
    def _date_time(v):
        if not isinstance(v, str):
            return True
        if not RFC3339.match(v):
            return False
        datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00").replace("t", "T"))
        return True

    @fc.checks("int32")
    def _int32(v):
        return not isinstance(v, int) or -(2**31) <= v < 2**31

    @fc.checks("int64")
    def _int64(v):
        return not isinstance(v, int) or -(2**63) <= v < 2**63

    return fc


def _list_map_keys(validator, keys, instance, schema):
    if not isinstance(instance, list):
        return
    seen = set()
    for item in instance:
        if isinstance(item, dict):
            k = tuple(json.dumps(item.get(key), sort_keys=True) for key in keys)
            if k in seen:
                yield jsonschema.ValidationError(f"duplicate entry for list-map keys {keys}: {k}")
            seen.add(k)


Validator = jsonschema.validators.extend(jsonschema.Draft4Validator,
                                         {"x-test-list-map-keys": _list_map_keys})
FORMATS = _format_checker()


def _k8s_definitions():
    """The real Kubernetes schemas, translated for jsonschema (see the module docstring)."""
    raw = json.loads(K8S_OPENAPI.read_text())["definitions"]

    def tr(node):
        if isinstance(node, list):
            return [tr(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for k, v in node.items():
            if k.startswith("x-kubernetes-") or k == "default":
                continue
            if k == "properties":
                out[k] = {name: tr(s) for name, s in v.items()}
            else:
                out[k] = tr(v)
        if out.get("format") in ("int-or-string",):
            return {"anyOf": [{"type": "integer"}, {"type": "string"}]}
        if node.get("nullable"):
            t = out.get("type")
            if isinstance(t, str):
                out["type"] = [t, "null"]
            out.pop("nullable", None)
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False  # strict field validation
        return out

    defs = {name: tr(s) for name, s in raw.items()}
    defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {
        "anyOf": [{"type": "integer"}, {"type": "string"}]}
    defs["io.k8s.apimachinery.pkg.api.resource.Quantity"] = {
        "anyOf": [{"type": "string", "pattern": r"^[+-]?[0-9.]+([eE][+-]?[0-9]+|[munkMGTPE]i?|Ki|)$"},
                  {"type": "number"}]}
    return defs, raw


K8S_DEFS, K8S_RAW = _k8s_definitions()
GVK_TO_DEF = {}
for _name, _schema in K8S_RAW.items():
    for _gvk in _schema.get("x-kubernetes-group-version-kind", []):
        _api = f"{_gvk['group']}/{_gvk['version']}" if _gvk["group"] else _gvk["version"]
        GVK_TO_DEF.setdefault((_api, _gvk["kind"]), _name)


def _k8s_errors(obj):
    d = GVK_TO_DEF.get((obj.get("apiVersion"), obj.get("kind")))
    assert d, f"no Kubernetes schema for {obj.get('apiVersion')} {obj.get('kind')}"
    v = Validator({"$ref": f"#/definitions/{d}", "definitions": K8S_DEFS}, format_checker=FORMATS)
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                  for e in v.iter_errors(obj))


def _crd_to_jsonschema(node):
    """A CRD structural schema as the API server applies it, in JSON Schema draft 4 terms."""
    if not isinstance(node, dict):
        return node
    if node.get("x-kubernetes-int-or-string"):
        return {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    out = {}
    for k, v in node.items():
        if k in ("properties",):
            out[k] = {n: _crd_to_jsonschema(s) for n, s in v.items()}
        elif k in ("items", "not") or (k == "additionalProperties" and isinstance(v, dict)):
            out[k] = _crd_to_jsonschema(v)
        elif k in ("allOf", "anyOf", "oneOf"):
            out[k] = [_crd_to_jsonschema(s) for s in v]
        elif k.startswith("x-kubernetes-") or k in ("description", "default", "nullable", "example"):
            continue
        else:
            out[k] = v
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    lt = node.get("x-kubernetes-list-type")
    if lt == "set":
        out["uniqueItems"] = True
    elif lt == "map":
        out["x-test-list-map-keys"] = node["x-kubernetes-list-map-keys"]
    if (node.get("type") == "object" and "properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def _crd_validator(crd):
    schema = copy.deepcopy(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    js = _crd_to_jsonschema(schema)
    js["properties"]["metadata"] = {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    js["definitions"] = K8S_DEFS
    return Validator(js, format_checker=FORMATS)


def _apply_defaults(schema, value):
    """Defaulting as the API server does it before validation (objects only; no list items)."""
    if isinstance(value, dict) and schema.get("type") == "object":
        for name, sub in schema.get("properties", {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                _apply_defaults(sub, value[name])
        ap = schema.get("additionalProperties")
        if isinstance(ap, dict):
            for v in value.values():
                _apply_defaults(ap, v)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for v in value:
            _apply_defaults(schema["items"], v)


# CEL rules the CRDs use, each with a Python twin (self, oldSelf or None on create). A rule that
# refers to oldSelf is a transition rule: evaluated on updates only, as the API server does.
CEL_TWINS = {
    "self == oldSelf": lambda s, old: s == old,
    "has(self.checkpointName) != has(self.imageRef)":
        lambda s, old: ("checkpointName" in s) != ("imageRef" in s),
    "!has(self.imageRef) || (has(self.podTemplate) && has(self.podTemplate.spec))":
        lambda s, old: "imageRef" not in s or "spec" in s.get("podTemplate", {}),
    "!(has(self.nodeName) && has(self.nodeSelector))":
        lambda s, old: not ("nodeName" in s and "nodeSelector" in s),
    "self.all(k, !k.startsWith('kybernate.io/'))":
        lambda s, old: all(not k.startswith("kybernate.io/") for k in s),
    "self.action != 'Checkpoint' || (has(self.podName) && has(self.podUID) && has(self.containers) && size(self.containers) > 0)":
        lambda s, old: s["action"] != "Checkpoint" or (
            "podName" in s and "podUID" in s and len(s.get("containers", [])) > 0),
    "self.action != 'DeleteImage' || (has(self.imageRefs) && size(self.imageRefs) > 0)":
        lambda s, old: s["action"] != "DeleteImage" or len(s.get("imageRefs", [])) > 0,
}


def _cel_sites(schema, value, path="self"):
    """(rule dict, value, path) for every x-kubernetes-validations site present in value."""
    for rule in schema.get("x-kubernetes-validations", []):
        yield rule, value, path
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                yield from _cel_sites(sub, value[name], f"{path}.{name}")
        ap = schema.get("additionalProperties")
        if isinstance(ap, dict):
            for k, v in value.items():
                yield from _cel_sites(ap, v, f"{path}[{k}]")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            yield from _cel_sites(schema["items"], v, f"{path}[{i}]")


def _cel_errors(schema, obj, old=None):
    errors = []
    old_sites = {p: v for _, v, p in _cel_sites(schema, old)} if old is not None else {}
    for rule, value, path in _cel_sites(schema, obj):
        expr = rule["rule"]
        twin = CEL_TWINS.get(expr)
        if twin is None:
            errors.append(f"{path}: CEL rule without a Python twin in CEL_TWINS: {expr}")
            continue
        if "oldSelf" in expr:
            if path not in old_sites:
                continue
            ok = twin(value, old_sites[path])
        else:
            ok = twin(value, None)
        if not ok:
            errors.append(f"{path}: {rule.get('message', expr)}")
    return errors


def _custom_errors(obj, crds, old=None):
    """Schema + CEL errors of a custom object, after defaulting (as the API server would)."""
    crd = crds[obj["kind"]]
    version = crd["spec"]["versions"][0]
    api = f"{crd['spec']['group']}/{version['name']}"
    if obj.get("apiVersion") != api:
        return [f"apiVersion {obj.get('apiVersion')} is not {api}"]
    obj = copy.deepcopy(obj)
    schema = version["schema"]["openAPIV3Schema"]
    _apply_defaults(schema, obj)
    errs = sorted(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                  for e in _crd_validator(crd).iter_errors(obj))
    name = obj.get("metadata", {}).get("name", "")
    if not DNS_SUBDOMAIN.match(name) or len(name) > 253:
        errs.append(f"metadata.name {name!r} is not a DNS subdomain")
    if old is not None:
        old = copy.deepcopy(old)
        _apply_defaults(schema, old)
    return errs + _cel_errors(schema, obj, old)


# ---------------------------------------------------------------------------- checks beyond the schema
# What kube-apiserver's Go validation adds to the OpenAPI schema, for the fields we use.

FIELD_PATHS = {"metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
               "spec.serviceAccountName", "status.hostIP", "status.podIP", "status.podIPs"}
HOSTPATH_TYPES = {"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket",
                  "CharDevice", "BlockDevice"}
RBAC_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
NAMESPACED_KINDS = {"ServiceAccount", "Role", "RoleBinding", "DaemonSet", "Deployment", "Service",
                    "ResourceQuota", "ConfigMap", "Secret", "Pod", "Checkpoint", "Restore",
                    "CheckpointRequest"}


def _pod_spec_errors(spec, where):
    errs = []
    all_c = spec.get("initContainers", []) + spec.get("containers", [])
    names = [c["name"] for c in all_c]
    if len(set(names)) != len(names):
        errs.append(f"{where}: duplicate container names {names}")
    vols = {}
    for v in spec.get("volumes", []):
        if v["name"] in vols:
            errs.append(f"{where}: duplicate volume {v['name']}")
        vols[v["name"]] = v
        if not DNS_LABEL.match(v["name"]):
            errs.append(f"{where}: volume name {v['name']!r} is not a DNS label")
        if "hostPath" in v:
            if not v["hostPath"]["path"].startswith("/"):
                errs.append(f"{where}: hostPath {v['hostPath']['path']} is not absolute")
            if v["hostPath"].get("type", "") not in HOSTPATH_TYPES:
                errs.append(f"{where}: hostPath type {v['hostPath']['type']}")
        for src in ("configMap", "secret", "projected"):
            mode = v.get(src, {}).get("defaultMode")
            if mode is not None and not 0 <= mode <= 0o777:
                errs.append(f"{where}: volume {v['name']} defaultMode {mode} out of range")
    for c in all_c:
        cw = f"{where} container {c['name']}"
        if not DNS_LABEL.match(c["name"]):
            errs.append(f"{cw}: name is not a DNS label")
        if not c.get("image"):
            errs.append(f"{cw}: no image")
        mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
        if len(set(mounts)) != len(mounts):
            errs.append(f"{cw}: duplicate mountPath")
        for m in c.get("volumeMounts", []):
            if m["name"] not in vols:
                errs.append(f"{cw}: volumeMount of unknown volume {m['name']}")
            if not m["mountPath"].startswith("/"):
                errs.append(f"{cw}: mountPath {m['mountPath']} is not absolute")
        envs = [e["name"] for e in c.get("env", [])]
        if len(set(envs)) != len(envs):
            errs.append(f"{cw}: duplicate env names")
        for e in c.get("env", []):
            fp = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if fp is not None and fp not in FIELD_PATHS:
                errs.append(f"{cw}: env {e['name']} fieldPath {fp} is not one the kubelet serves")
        ports = {p.get("name") for p in c.get("ports", [])}
        for p in c.get("ports", []):
            if "name" in p and (len(p["name"]) > 15 or not IANA_SVC_NAME.match(p["name"])):
                errs.append(f"{cw}: port name {p['name']!r} is not an IANA service name")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            port = c.get(probe, {}).get("httpGet", {}).get("port")
            if isinstance(port, str) and port not in ports:
                errs.append(f"{cw}: {probe} port {port} is not a container port name")
    return errs


def _builtin_semantic_errors(obj, where):
    errs = []
    kind, meta = obj["kind"], obj.get("metadata", {})
    name = meta.get("name", "")
    rule = DNS_LABEL if kind in ("Namespace", "Service") else DNS_SUBDOMAIN
    if not rule.match(name) or len(name) > (63 if rule is DNS_LABEL else 253):
        errs.append(f"{where}: metadata.name {name!r} is not valid for a {kind}")
    for k in meta.get("labels", {}):
        if len(k.split("/")[-1]) > 63:
            errs.append(f"{where}: label key {k} too long")
    if kind in ("Deployment", "DaemonSet"):
        sel = obj["spec"]["selector"].get("matchLabels", {})
        labels = obj["spec"]["template"]["metadata"].get("labels", {})
        if not sel or any(labels.get(k) != v for k, v in sel.items()):
            errs.append(f"{where}: selector {sel} does not match template labels {labels}")
    if kind in ("Deployment", "DaemonSet", "Pod"):
        spec = obj["spec"]["template"]["spec"] if kind != "Pod" else obj["spec"]
        errs += _pod_spec_errors(spec, where)
    if kind in ("ClusterRole", "Role"):
        for r in obj.get("rules", []):
            for v in r["verbs"]:
                if v not in RBAC_VERBS:
                    errs.append(f"{where}: verb {v!r} is not one of {sorted(RBAC_VERBS)}")
            for field in ("apiGroups", "resources", "verbs"):
                if "*" in r.get(field, []):
                    errs.append(f"{where}: wildcard in {field}")
            if "create" in r["verbs"] and r.get("resourceNames"):
                errs.append(f"{where}: resourceNames cannot restrict create")
    return errs


# ---------------------------------------------------------------------------- parametrisation

ALL_FILES = _manifest_files()
DEPLOY_OBJECTS = _deploy_objects()
DOC_OBJECTS = _doc_objects()
CRDS = _crds()
CUSTOM_KINDS = set(CRDS)


def _ids(items):
    return [w for w, _ in items]


def test_deploy_has_manifests():
    assert len(ALL_FILES) >= 20, ALL_FILES
    assert set(CRDS) == {"Checkpoint", "Restore", "CheckpointRequest"}
    assert DOC_OBJECTS, "docs/api.md and docs/install.md show no YAML example"


@pytest.mark.parametrize("path", ALL_FILES, ids=[str(p.relative_to(DEPLOY)) for p in ALL_FILES])
def test_yaml_parses(path):
    docs = _load_docs(path.read_text(), path)
    assert docs, f"{path}: no YAML document"
    for d in docs:
        assert isinstance(d, dict) and d.get("apiVersion") and d.get("kind"), \
            f"{path}: a document without apiVersion/kind"
        if not _is_kustomization(path):
            assert d.get("metadata", {}).get("name"), f"{path}: a {d['kind']} without a name"


@pytest.mark.parametrize("where,obj", DEPLOY_OBJECTS + DOC_OBJECTS,
                         ids=_ids(DEPLOY_OBJECTS + DOC_OBJECTS))
def test_object_is_valid(where, obj):
    """Custom objects against their CRD, built-in objects against the real Kubernetes schema."""
    if obj["kind"] in CUSTOM_KINDS:
        errs = _custom_errors(obj, CRDS)
    else:
        errs = _k8s_errors(obj) + _builtin_semantic_errors(obj, where)
    assert not errs, f"{where} ({obj['kind']} {obj['metadata'].get('name')}):\n  " + "\n  ".join(errs)


@pytest.mark.parametrize("where,obj", DEPLOY_OBJECTS, ids=_ids(DEPLOY_OBJECTS))
def test_namespaced_objects_say_where(where, obj):
    if obj["kind"] not in NAMESPACED_KINDS:
        assert "namespace" not in obj["metadata"], f"{where}: a cluster-scoped {obj['kind']} with a namespace"
    elif "examples" not in where:
        assert obj["metadata"].get("namespace") == NAMESPACE, f"{where}: not in {NAMESPACE}"


def test_every_custom_kind_has_examples():
    kinds = [o["kind"] for w, o in DEPLOY_OBJECTS if "examples" in w]
    for k in CUSTOM_KINDS:
        assert k in kinds, f"deploy/examples/ has no {k}"
        assert any(o["kind"] == k and "status" in o for w, o in DEPLOY_OBJECTS if "examples" in w), \
            f"deploy/examples/ shows no {k} with a status"


# ---------------------------------------------------------------------------- negative cases
# Objects the API server must refuse: each proves that a rule of the schema (or a CEL twin) bites.

def _example(name):
    return next(copy.deepcopy(o) for w, o in DEPLOY_OBJECTS if w.startswith(f"deploy/examples/{name}"))


def _set(obj, path, value):
    cur = obj
    keys = path.split(".")
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
    if value is _DELETE:
        del cur[keys[-1]]
    else:
        cur[keys[-1]] = value


_DELETE = object()
INVALID = [
    ("checkpoint.yaml", "spec.podName", "Web-1", "does not match"),
    ("checkpoint.yaml", "spec.podName", _DELETE, "required"),
    ("checkpoint.yaml", "spec.containers", ["app", "app"], "non-unique"),
    ("checkpoint.yaml", "spec.storage", "http://example.com/x", "does not match"),
    ("checkpoint.yaml", "spec.storage", "file:///a b", "does not match"),
    ("checkpoint.yaml", "spec.leaveRunning", "yes", "is not of type"),
    ("checkpoint.yaml", "spec.gpuLockTimeoutSeconds", 0, "minimum"),
    ("checkpoint.yaml", "spec.gpuLockTimeoutSeconds", 601, "maximum"),
    ("checkpoint.yaml", "spec.retention.keepLast", -1, "minimum"),
    ("checkpoint.yaml", "spec.podname", "typo", "Additional properties"),
    ("checkpoint-completed.yaml", "status.phase", "Done", "is not one of"),
    ("checkpoint-completed.yaml", "status.imageDigest", "sha256:abc", "does not match"),
    ("checkpoint-completed.yaml", "status.completedAt", "yesterday", "is not a"),
    ("checkpoint-completed.yaml", "status.sizeBytes", -5, "minimum"),
    ("checkpoint-completed.yaml", "status.timings.total", "20 s", "is not of type"),
    ("checkpoint-completed.yaml", "status.conditions",
     [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T13:40:21Z",
       "message": ""}], "required"),
    ("checkpoint-completed.yaml", "status.conditions",
     [{"type": "Ready", "status": "Yes", "lastTransitionTime": "2026-12-01T13:40:21Z",
       "reason": "Completed", "message": ""}], "is not one of"),
    ("checkpoint-completed.yaml", "status.conditions",
     [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T13:40:21Z",
       "reason": "not a reason", "message": ""}] , "does not match"),
    ("checkpoint-completed.yaml", "status.images",
     [{"container": "a", "imageRef": "x"}, {"container": "a", "imageRef": "y"}], "duplicate entry"),
    ("checkpoint-completed.yaml", "status.gpus", [{"uuid": "GPU-x!", "model": "m"}], "does not match"),
    ("restore.yaml", "spec.imageRef", "web-1-20261128-134000", "exactly one of"),
    ("restore.yaml", "spec.checkpointName", _DELETE, "exactly one of"),
    ("restore-from-image.yaml", "spec.podTemplate.spec", _DELETE, "needs podTemplate.spec"),
    ("restore-elsewhere.yaml", "spec.nodeName", "node-b", "at most one of"),
    ("restore-elsewhere.yaml", "spec.fallback", "cold", "is not one of"),
    ("restore-elsewhere.yaml", "spec.podTemplate.annotations",
     {"kybernate.io/restore-from": "x"}, "set by the operator"),
    ("restore-from-image.yaml", "spec.imageRef", "/var/lib/kybernate/images/x", "does not match"),
    ("restore-from-image.yaml", "spec.imageRef", "a=b", "does not match"),
    ("restore-completed.yaml", "status.phase", "Running", "is not one of"),
    ("checkpointrequest.yaml", "spec.containers", [], "at least one container"),
    ("checkpointrequest.yaml", "spec.podUID", _DELETE, "at least one container"),
    ("checkpointrequest.yaml", "spec.action", "DeleteImage", "needs imageRefs"),
    ("checkpointrequest.yaml", "spec.action", "Delete", "is not one of"),
    ("checkpointrequest.yaml", "spec.nodeName", _DELETE, "required"),
    ("checkpointrequest.yaml", "spec.checkpointRef", {"name": "x"}, "required"),
    ("checkpointrequest.yaml", "status.agent", {"podName": "a"}, "required"),
    ("checkpointrequest.yaml", "status.attempts", -1, "minimum"),
    ("checkpointrequest.yaml", "metadata.name", "Bad_Name", "DNS subdomain"),
    ("checkpointrequest.yaml", "metadata.labels", {"kybernate.io/node": 5}, "is not of type"),
]


@pytest.mark.parametrize("example,path,value,expect", INVALID,
                         ids=[f"{e}:{p}={'<deleted>' if v is _DELETE else json.dumps(v)[:30]}"
                              for e, p, v, _ in INVALID])
def test_invalid_object_is_refused(example, path, value, expect):
    obj = _example(example)
    assert not _custom_errors(obj, CRDS), "the unchanged example must be valid"
    _set(obj, path, value)
    errs = _custom_errors(obj, CRDS)
    assert any(expect in e for e in errs), f"expected an error with {expect!r}, got {errs}"


@pytest.mark.parametrize("example,path,value", [
    ("checkpoint.yaml", "spec.podName", "other"),
    ("restore.yaml", "spec.fallback", "Cold"),
    ("checkpointrequest.yaml", "spec.nodeName", "node-z"),
])
def test_spec_is_immutable(example, path, value):
    old = _example(example)
    new = copy.deepcopy(old)
    _set(new, path, value)
    errs = _custom_errors(new, CRDS, old=old)
    assert any("immutable" in e for e in errs), errs
    assert not _custom_errors(copy.deepcopy(old), CRDS, old=old), "an unchanged update is fine"


def test_defaults_are_applied():
    obj = _example("checkpoint.yaml")
    _apply_defaults(CRDS["Checkpoint"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"], obj)
    assert obj["spec"]["leaveRunning"] is True and obj["spec"]["gpuLockTimeoutSeconds"] == 10
    r = _example("restore.yaml")
    _apply_defaults(CRDS["Restore"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"], r)
    assert r["spec"]["fallback"] == "None"


# ---------------------------------------------------------------------------- CRDs

FORBIDDEN_SCHEMA_KEYS = {"$ref", "definitions", "dependencies", "deprecated", "discriminator", "id",
                         "patternProperties", "readOnly", "writeOnly", "xml", "additionalItems",
                         "$schema"}
JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
TYPES = {"object", "array", "string", "integer", "number", "boolean"}
FORMATS_OK = {"int32", "int64", "float", "double", "byte", "date", "date-time", "password", "uri",
              "email", "uuid", "hostname", "ipv4", "ipv6", "cidr", "mac", "duration", ""}


def _structural_errors(node, path, *, root=False, in_junctor=False):
    """Kubernetes' structural-schema rules (apiextensions validation), for one schema node."""
    errs = []
    if not isinstance(node, dict):
        return [f"{path}: not a schema object"]
    for k in node:
        if k in FORBIDDEN_SCHEMA_KEYS:
            errs.append(f"{path}: {k} is not allowed in a CRD schema")
    if in_junctor:
        for k in ("type", "description", "default", "additionalProperties", "nullable"):
            if k in node:
                errs.append(f"{path}: {k} inside allOf/anyOf/oneOf/not")
    elif not (node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")):
        if node.get("type") not in TYPES:
            errs.append(f"{path}: no valid type ({node.get('type')!r})")
    elif node.get("type") is not None and node.get("type") not in TYPES:
        errs.append(f"{path}: invalid type {node.get('type')!r}")
    if "x-kubernetes-preserve-unknown-fields" in node and node["x-kubernetes-preserve-unknown-fields"] is not True:
        errs.append(f"{path}: x-kubernetes-preserve-unknown-fields must be true when set")
    if "properties" in node and "additionalProperties" in node:
        errs.append(f"{path}: properties and additionalProperties together")
    if node.get("additionalProperties") is False:
        errs.append(f"{path}: additionalProperties: false is not allowed (the server prunes)")
    if node.get("uniqueItems"):
        errs.append(f"{path}: uniqueItems: true is not allowed (use x-kubernetes-list-type: set)")
    t = node.get("type")
    if t == "array" and not in_junctor and "items" not in node:
        errs.append(f"{path}: array without items")
    if node.get("format", "") not in FORMATS_OK:
        errs.append(f"{path}: unknown format {node['format']}")
    if "pattern" in node:
        p = node["pattern"]
        try:
            re.compile(p)
        except re.error as e:
            errs.append(f"{path}: pattern does not compile: {e}")
        if re.search(r"\(\?[=!<]|\\[1-9]", p):
            errs.append(f"{path}: pattern uses lookaround or backreferences (not RE2)")
    for e in node.get("enum", []):
        want = {"string": str, "integer": int, "boolean": bool, "number": (int, float)}.get(t)
        if want and not isinstance(e, want):
            errs.append(f"{path}: enum value {e!r} is not a {t}")
    lt = node.get("x-kubernetes-list-type")
    if lt is not None:
        if t != "array" or lt not in ("atomic", "set", "map"):
            errs.append(f"{path}: bad x-kubernetes-list-type {lt!r} on {t}")
        items = node.get("items", {})
        if lt == "map":
            keys = node.get("x-kubernetes-list-map-keys") or []
            if not keys or items.get("type") != "object":
                errs.append(f"{path}: list-type map needs list-map-keys and object items")
            for k in keys:
                ks = items.get("properties", {}).get(k)
                if ks is None or ks.get("type") not in ("string", "integer", "number", "boolean"):
                    errs.append(f"{path}: list-map key {k} is not a scalar property of the items")
                elif k not in items.get("required", []) and "default" not in ks:
                    errs.append(f"{path}: list-map key {k} must be required or defaulted")
        if lt == "set" and items.get("type") in ("object", "array"):
            errs.append(f"{path}: list-type set needs scalar items")
    if "x-kubernetes-list-map-keys" in node and lt != "map":
        errs.append(f"{path}: list-map-keys without list-type map")
    for rule in node.get("x-kubernetes-validations", []):
        if not rule.get("rule") or "\n" in rule.get("message", ""):
            errs.append(f"{path}: bad x-kubernetes-validations entry {rule}")
    for k in ("required",):
        for r in node.get(k, []):
            if r not in node.get("properties", {}):
                errs.append(f"{path}: required {r} is not a property")
    if root:
        if t != "object":
            errs.append(f"{path}: the root must be an object")
        md = node.get("properties", {}).get("metadata")
        if md is not None:
            extra = set(md) - {"type"} - ({"properties"} if set(md.get("properties", {})) <= {"name", "generateName"} else set())
            if extra or md.get("type") != "object":
                errs.append(f"{path}.metadata: only restrictions of name and generateName are allowed")
    if "default" in node:
        try:
            Validator(_crd_to_jsonschema(node), format_checker=FORMATS).validate(node["default"])
        except jsonschema.ValidationError as e:
            errs.append(f"{path}: default {node['default']!r} is invalid: {e.message}")
    for name, sub in node.get("properties", {}).items():
        errs += _structural_errors(sub, f"{path}.{name}", in_junctor=in_junctor)
    if isinstance(node.get("additionalProperties"), dict):
        errs += _structural_errors(node["additionalProperties"], f"{path}[*]", in_junctor=in_junctor)
    if isinstance(node.get("items"), dict):
        errs += _structural_errors(node["items"], f"{path}[]", in_junctor=in_junctor)
    for j in JUNCTORS:
        subs = node.get(j)
        for i, sub in enumerate([subs] if isinstance(subs, dict) else subs or []):
            errs += _structural_errors(sub, f"{path}.{j}[{i}]", in_junctor=True)
    return errs


def _json_path_exists(schema, jp):
    """Resolves a printer column's JSONPath (.a.b, .a[?(@.x=="y")].b) against the schema."""
    node = schema
    for part in re.findall(r"\.([A-Za-z0-9_-]+)(\[\?\(@\.[A-Za-z]+==\"[^\"]*\"\)\])?", jp):
        name, filt = part
        if node.get("type") == "object" and name in node.get("properties", {}):
            node = node["properties"][name]
        elif name in ("metadata", "creationTimestamp") or node.get("x-kubernetes-preserve-unknown-fields"):
            return True
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return False
        if filt:
            if node.get("type") != "array":
                return False
            node = node["items"]
    return True


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_crd_is_structural(kind):
    crd = CRDS[kind]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    errs = _structural_errors(schema, kind, root=True)
    assert not errs, "\n".join(errs)
    assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_crd_definition(kind):
    crd = CRDS[kind]
    spec, names = crd["spec"], crd["spec"]["names"]
    assert spec["group"] == GROUP and spec["scope"] == "Namespaced"
    assert crd["metadata"]["name"] == f"{names['plural']}.{GROUP}"
    assert names["kind"] == kind and names["listKind"] == kind + "List"
    assert names["singular"] == kind.lower() and names["plural"] == kind.lower() + "s"
    assert "kybernate" in names["categories"] and names["shortNames"]
    assert [v["name"] for v in spec["versions"]] == ["v1alpha1"]
    v = spec["versions"][0]
    assert v["served"] and v["storage"] and v["subresources"] == {"status": {}}
    cols = v["additionalPrinterColumns"]
    col_names = [c["name"] for c in cols]
    assert len(set(col_names)) == len(col_names)
    for must in ("Phase", "Age"):
        assert must in col_names
    assert "Node" in col_names
    schema = v["schema"]["openAPIV3Schema"]
    for c in cols:
        assert c["type"] in ("integer", "number", "string", "boolean", "date"), c
        assert _json_path_exists(schema, c["jsonPath"]), f"column {c['name']}: {c['jsonPath']} is not in the schema"
    conds = schema["properties"]["status"]["properties"]["conditions"]
    assert conds["x-kubernetes-list-type"] == "map" and conds["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conds["items"]["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}


def test_crd_short_names_are_unique():
    short = [s for c in CRDS.values() for s in c["spec"]["names"]["shortNames"]]
    builtin = {"po", "no", "ns", "svc", "ds", "deploy", "rs", "sts", "cm", "sa", "pv", "pvc", "ev",
               "ing", "cj", "hpa", "pdb", "crd", "netpol", "rc", "ep", "limits", "quota", "sc"}
    assert len(set(short)) == len(short) and not set(short) & builtin, short


def test_sizes_and_printer_columns_agree():
    """The Checkpoint's size column is its sizeBytes; CheckpointRequest status mirrors it."""
    ck = CRDS["Checkpoint"]["spec"]["versions"][0]
    cols = {c["name"]: c for c in ck["additionalPrinterColumns"]}
    assert cols["Bytes"]["jsonPath"] == ".status.sizeBytes"
    st = CRDS["CheckpointRequest"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    for f in ("imageRef", "imageDigest", "sizeBytes", "images", "gpus", "timings", "attempts", "agent"):
        assert f in st["properties"], f


# ---------------------------------------------------------------------------- RBAC and least privilege

def _rbac_objects():
    return [o for _, o in _deploy_objects(include_examples=False)
            if o["kind"] in ("ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding", "ServiceAccount")]


def _rights(sa):
    """{(namespace or '*', apiGroup, resource, verb, resourceName or '*')} of a ServiceAccount."""
    objs = _rbac_objects()
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
             for o in objs if o["kind"] in ("ClusterRole", "Role")}
    out = set()
    for b in objs:
        if b["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        if not any(s["kind"] == "ServiceAccount" and s["name"] == sa and s["namespace"] == NAMESPACE
                   for s in b["subjects"]):
            continue
        ref = b["roleRef"]
        ns = b["metadata"].get("namespace") if b["kind"] == "RoleBinding" else "*"
        role = roles[(ref["kind"], ns if ref["kind"] == "Role" else None, ref["name"])]
        for r in role["rules"]:
            for g in r["apiGroups"]:
                for res in r["resources"]:
                    for v in r["verbs"]:
                        for rn in r.get("resourceNames", ["*"]):
                            out.add((ns, g, res, v, rn))
    return out


def _table(ns, group, resources, verbs, names=("*",)):
    return {(ns, group, r, v, n) for r in resources for v in verbs for n in names}


K = GROUP
EXPECTED_RIGHTS = {
    "kybernate-operator":
        _table("*", K, ["checkpoints", "restores"], ["get", "list", "watch", "update", "patch", "delete"])
        | _table("*", K, ["checkpoints/status", "restores/status"], ["get", "update", "patch"])
        | _table("*", K, ["checkpoints/finalizers"], ["update"])
        | _table("*", K, ["checkpointrequests"], ["get", "list", "watch", "create", "delete"])
        | _table("*", "", ["pods"], ["get", "list", "watch", "create", "delete"])
        | _table("*", "", ["nodes"], ["get", "list", "watch"])
        | _table("*", "", ["events"], ["create", "patch"])
        | _table("*", "events.k8s.io", ["events"], ["create", "patch"])
        | _table(NAMESPACE, "coordination.k8s.io", ["leases"], ["create"])
        | _table(NAMESPACE, "coordination.k8s.io", ["leases"], ["get", "update"], ["kybernate-operator"]),
    "kybernate-agent":
        _table("*", K, ["checkpointrequests"], ["get", "list", "watch"])
        | _table("*", K, ["checkpointrequests/status"], ["get", "update", "patch"])
        | _table("*", "", ["pods"], ["get", "list", "watch", "patch"])
        | _table("*", "", ["nodes"], ["get"])
        | _table("*", "", ["events"], ["create", "patch"])
        | _table("*", "events.k8s.io", ["events"], ["create", "patch"]),
}


@pytest.mark.parametrize("sa", sorted(EXPECTED_RIGHTS))
def test_rights_are_exactly_these(sa):
    """Any added or missing right fails: least privilege is a table, not a hope."""
    got = _rights(sa)
    want = EXPECTED_RIGHTS[sa]
    assert got == want, f"extra: {sorted(got - want)}\nmissing: {sorted(want - got)}"


def test_least_privilege_facts():
    agent, operator = _rights("kybernate-agent"), _rights("kybernate-operator")

    def can(rights, group, res, verb):
        return any(r[1] == group and r[2] == res and r[3] == verb for r in rights)

    assert not can(agent, "", "pods", "create"), "the agent must not create pods"
    # patch only (the restore-outcome annotation): no update, no delete, no status
    for verb in ("update", "delete", "deletecollection"):
        assert not can(agent, "", "pods", verb), f"the agent must not {verb} pods"
    assert not can(agent, "", "pods/status", "patch"), "the kubelet writes pod status"
    assert not can(agent, K, "checkpointrequests", "update"), "the agent must not change a request's spec"
    assert not can(agent, K, "checkpoints", "get"), "the agent works from CheckpointRequests only"
    assert not can(operator, K, "checkpointrequests/status", "update"), "the agent is the only status writer"
    assert not can(operator, K, "checkpointrequests/status", "patch")
    for role in _rbac_objects():
        for r in role.get("rules", []):
            assert "secrets" not in r["resources"], f"{role['metadata']['name']} reaches Secrets"
    names = {o["metadata"]["name"] for o in _rbac_objects() if o["kind"] == "ServiceAccount"}
    assert names == {"kybernate-operator", "kybernate-agent"}, "the uploader has no ServiceAccount of its own"


def test_rbac_references_resolve():
    objs = _rbac_objects()
    roles = {(o["kind"], o["metadata"]["name"]) for o in objs if o["kind"] in ("ClusterRole", "Role")}
    sas = {o["metadata"]["name"] for o in objs if o["kind"] == "ServiceAccount"}
    known = {"": {"pods", "nodes", "events"}, "events.k8s.io": {"events"},
             "coordination.k8s.io": {"leases"},
             K: {p for c in CRDS.values() for n in [c["spec"]["names"]["plural"]]
                 for p in (n, n + "/status", n + "/finalizers")}}
    for o in objs:
        if o["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            assert (o["roleRef"]["kind"], o["roleRef"]["name"]) in roles, o["metadata"]["name"]
            assert o["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
            for s in o["subjects"]:
                assert s["kind"] == "ServiceAccount" and s["name"] in sas and s["namespace"] == NAMESPACE
        if o["kind"] in ("ClusterRole", "Role"):
            for r in o["rules"]:
                for g in r["apiGroups"]:
                    for res in r["resources"]:
                        assert res in known.get(g, set()), f"{o['metadata']['name']}: {g}/{res} unknown"
    for _, o in _deploy_objects(include_examples=False):
        if o["kind"] in ("DaemonSet", "Deployment"):
            assert o["spec"]["template"]["spec"]["serviceAccountName"] in sas


def test_user_roles_aggregate_and_skip_internal_objects():
    by_name = {o["metadata"]["name"]: o for o in _rbac_objects() if o["kind"] == "ClusterRole"}
    edit, view = by_name["kybernate-edit"], by_name["kybernate-view"]
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    for role in (edit, view):
        for r in role["rules"]:
            assert set(r["resources"]) <= {"checkpoints", "restores"}, r
    assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in view["rules"])


# ---------------------------------------------------------------------------- the workloads

def _workload(kind, name):
    return next(o for _, o in _deploy_objects(include_examples=False)
                if o["kind"] == kind and o["metadata"]["name"] == name)


def _containers(pod_spec):
    return {c["name"]: c for c in pod_spec.get("initContainers", []) + pod_spec["containers"]}


def test_agent_daemonset():
    ds = _workload("DaemonSet", "kybernate-agent")
    spec = ds["spec"]["template"]["spec"]
    cs = _containers(spec)
    assert set(cs) == {"node-setup", "agent", "uploader"}
    vols = {v["name"]: v for v in spec["volumes"]}
    agent, uploader = cs["agent"], cs["uploader"]
    # privileged, host PID namespace, no network port, the node from the downward API
    assert spec["hostPID"] is True and not spec.get("hostNetwork")
    assert agent["securityContext"]["privileged"] is True
    assert not agent.get("ports") and not uploader.get("ports")
    env = {e["name"]: e for e in agent["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    # containerd's socket: its directory mounted where KYBERNATE_CONTAINERD_ADDRESS points
    mounts = {m["name"]: m for m in agent["volumeMounts"]}
    sock = env["KYBERNATE_CONTAINERD_ADDRESS"]["value"]
    assert sock == "/run/containerd/containerd.sock"
    assert os.path.dirname(sock) == mounts["containerd-run"]["mountPath"]
    assert vols["containerd-run"]["hostPath"]["path"] == "/run/containerd"
    # host paths at the same place inside: containerd and CRIU hand out host paths
    for name in ("kybernate-data", "kybernate-run", "containerd-root"):
        assert mounts[name]["mountPath"] == vols[name]["hostPath"]["path"], name
    assert vols["kybernate-data"]["hostPath"]["path"] == "/var/lib/kybernate"
    assert mounts["containerd-root"].get("readOnly") is True
    # resources everywhere
    for c in cs.values():
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"], c["name"]
        assert c["resources"]["limits"]["memory"], c["name"]
    # never two agents on a node
    ru = ds["spec"]["updateStrategy"]["rollingUpdate"]
    assert ds["spec"]["updateStrategy"]["type"] == "RollingUpdate" and ru["maxSurge"] == 0
    # GPU nodes: tolerated; Linux only
    assert any(t["key"] == "nvidia.com/gpu" and t["operator"] == "Exists" for t in spec["tolerations"])
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}


def test_uploader_is_unprivileged_and_alone_with_the_credentials():
    ds = _workload("DaemonSet", "kybernate-agent")
    spec = ds["spec"]["template"]["spec"]
    cs = _containers(spec)
    vols = {v["name"]: v for v in spec["volumes"]}
    up = cs["uploader"]
    sc = up["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
    assert sc["readOnlyRootFilesystem"] is True and sc["seccompProfile"]["type"] == "RuntimeDefault"
    # the storage Secret: mounted in the uploader, nowhere else
    secret_vols = {n for n, v in vols.items() if "secret" in v}
    assert secret_vols == {"storage-credentials"}
    assert vols["storage-credentials"]["secret"]["secretName"] == "kybernate-storage"
    for name, c in cs.items():
        used = {m["name"] for m in c.get("volumeMounts", [])}
        assert ("storage-credentials" in used) == (name == "uploader"), name
        assert not c.get("envFrom"), f"{name}: envFrom could carry a Secret"
        for e in c.get("env", []):
            assert "secretKeyRef" not in e.get("valueFrom", {}), f"{name}: {e['name']} from a Secret"
    # no API token in the uploader: not automounted, projected into the agent only
    assert spec["automountServiceAccountToken"] is False
    sa = _workload("ServiceAccount", "kybernate-agent")
    assert sa["automountServiceAccountToken"] is False
    token_vols = {n for n, v in vols.items()
                  if any("serviceAccountToken" in s for s in v.get("projected", {}).get("sources", []))}
    assert token_vols == {"kube-api-access"}
    for name, c in cs.items():
        used = {m["name"] for m in c.get("volumeMounts", [])}
        assert ("kube-api-access" in used) == (name == "agent"), name
    agent_mount = next(m for m in cs["agent"]["volumeMounts"] if m["name"] == "kube-api-access")
    assert agent_mount["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount"
    # the socket between agent and uploader: a volume of the pod, not the host
    assert "emptyDir" in vols["uploader-socket"]
    a_env = {e["name"]: e["value"] for e in cs["agent"]["env"] if "value" in e}
    u_env = {e["name"]: e["value"] for e in up["env"] if "value" in e}
    assert a_env["KYBERNATE_UPLOADER_SOCKET"] == u_env["KYBERNATE_UPLOADER_SOCKET"]
    for c in (cs["agent"], up):
        m = next(m for m in c["volumeMounts"] if m["name"] == "uploader-socket")
        assert os.path.dirname(u_env["KYBERNATE_UPLOADER_SOCKET"]) == m["mountPath"]
    # the uploader sees none of containerd, the host root, or the agent's host socket dir
    assert {m["name"] for m in up["volumeMounts"]} <= {
        "kybernate-data", "uploader-socket", "kybernate-etc", "storage-credentials", "uploader-tmp"}


def test_no_mount_is_nested_in_a_host_path():
    """A mount inside a hostPath mount would make the runtime create its mount point on the host."""
    spec = _workload("DaemonSet", "kybernate-agent")["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in spec["volumes"]}
    for c in _containers(spec).values():
        host = [m["mountPath"] for m in c.get("volumeMounts", []) if "hostPath" in vols[m["name"]]]
        for m in c.get("volumeMounts", []):
            for h in host:
                assert not m["mountPath"].startswith(h.rstrip("/") + "/"), \
                    f"{c['name']}: {m['mountPath']} inside host mount {h}"


def test_operator_deployment():
    dep = _workload("Deployment", "kybernate-operator")
    spec = dep["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert "--leader-elect" in c["args"] and "--lease-name=kybernate-operator" in c["args"]
    assert "--metrics-bind-address=:8080" in c["args"]
    ports = {p["name"]: p for p in c["ports"]}
    assert ports["metrics"]["containerPort"] == 8080
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert not c["securityContext"].get("privileged")
    svc = _workload("Service", "kybernate-operator-metrics")
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    # the Lease the Role allows is the one the operator takes
    role = _workload("Role", "kybernate-operator-leader-election")
    assert any(r.get("resourceNames") == ["kybernate-operator"] for r in role["rules"])


def test_images_are_the_documented_placeholder():
    meson_version = re.search(r"version\s*:\s*'([^']+)'", (REPO_ROOT / "meson.build").read_text()).group(1)
    for _, o in _deploy_objects(include_examples=False):
        if o["kind"] in ("DaemonSet", "Deployment"):
            for c in _containers(o["spec"]["template"]["spec"]).values():
                assert c["image"] == f"ghcr.io/kybernate/kybernate:{meson_version}", c["image"]
    k = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert k["images"] == [{"name": "ghcr.io/kybernate/kybernate", "newTag": meson_version}]


def test_runtimeclass_names_the_handler():
    rc = _workload("RuntimeClass", HANDLER)
    assert rc["handler"] == HANDLER
    assert rc["scheduling"]["nodeSelector"] == {"kybernate.io/runtime": "ready"}


def test_node_config_is_what_the_node_parser_accepts():
    """deploy/node/config.json holds only the keys lib/ops/nodeconf.c accepts (it refuses others)."""
    conf = json.loads((DEPLOY / "node" / "config.json").read_text())
    assert set(conf) <= {"defaultStore", "stores", "runtime", "agentSocket"}
    assert set(conf.get("runtime", {})) <= {"delegate"}
    assert conf["defaultStore"] == "file:///var/lib/kybernate/images"
    # kybernate-runc asks the agent for remote images: the socket the DaemonSet's agent serves.
    assert conf["agentSocket"] == "/run/kybernate/agent.sock"
    assert all(isinstance(s, str) for s in conf["stores"])
    src = (REPO_ROOT / "lib" / "ops" / "nodeconf.c").read_text()
    for key in ("defaultStore", "stores", "runtime", "delegate", "agentSocket"):
        assert f'"{key}"' in src, f"nodeconf.c no longer knows {key}"


# ---------------------------------------------------------------------------- containerd handler

def _harness_config(tmp_path):
    from tests.harness.node import Node
    return tomllib.loads(Node("cfg", base_dir=tmp_path, build_dir=tmp_path / "build").config_text())


def _runtimes(conf):
    cur = conf
    for k in CRI_RUNTIMES:
        cur = cur[k]
    return cur


def _snippet():
    return (DEPLOY / "node" / "kybernate-runtime.toml").read_text()


def test_snippet_declares_exactly_the_harness_handler(tmp_path):
    snippet = tomllib.loads(_snippet())
    assert set(snippet) == {"plugins"} and set(_runtimes(snippet)) == {HANDLER}, \
        "the snippet declares the kybernate handler and nothing else"
    ours = _runtimes(snippet)[HANDLER]
    harness_rts = _runtimes(_harness_config(tmp_path))
    theirs = harness_rts[HANDLER]
    assert set(ours) == set(theirs), (ours, theirs)
    assert ours["runtime_type"] == theirs["runtime_type"] == "io.containerd.runc.v2"
    assert ours["pod_annotations"] == theirs["pod_annotations"] == ["kybernate.io/*"]
    assert set(ours["options"]) | MIRRORED_OPTIONS == set(theirs["options"]) | MIRRORED_OPTIONS
    for key in MIRRORED_OPTIONS & set(theirs["options"]):
        assert theirs["options"][key] == harness_rts["runc"]["options"].get(key), key
    assert Path(ours["options"]["BinaryName"]).name == Path(theirs["options"]["BinaryName"]).name == "kybernate-runc"
    assert ours["options"]["BinaryName"] == "/usr/local/bin/kybernate-runc"
    assert "version" not in snippet, "appended after other tables a version line would land in one"
    last_header = [l for l in _snippet().splitlines() if l.strip().startswith("[")][-1]
    assert last_header.strip() == f'[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{HANDLER}.options]', \
        "node-setup appends mirrored keys after the snippet: it must end in the options table"


def test_runtimeclass_handler_matches_the_snippet():
    assert HANDLER in _runtimes(tomllib.loads(_snippet()))
    assert _workload("RuntimeClass", HANDLER)["handler"] == HANDLER


@pytest.mark.parametrize("where,text", [b for md in DOCS_WITH_EXAMPLES for b in _doc_blocks(md, "toml")],
                         ids=[w for md in DOCS_WITH_EXAMPLES for w, _ in _doc_blocks(md, "toml")])
def test_doc_toml_parses(where, text):
    tomllib.loads(text)


# ---------------------------------------------------------------------------- node-setup.sh

KUBEADM_LIKE = """version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true   # kubelet's cgroupDriver: systemd
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
"""
# Shaped like MicroK8s' containerd-template.toml: placeholders, a runc handler without options.
MICROK8S_LIKE = """version = 2
oom_score = 0
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "${SNAPSHOTTER}"
    default_runtime_name = "${RUNTIME}"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "${RUNTIME_TYPE}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "${SNAP_DATA}/args/certs.d"
"""


def _shells():
    out = [("dash", ["/bin/sh"], None)]
    bb = shutil.which("busybox")
    if bb:
        out.append(("busybox", [bb, "sh"], bb))
    return out


@pytest.fixture(params=_shells(), ids=lambda s: s[0])
def node_setup(request, tmp_path):
    """Runs deploy/node/node-setup.sh against tmp_path/host as the host root."""
    name, shell, bb = request.param
    path = "/usr/sbin:/usr/bin:/sbin:/bin"
    if bb:  # only busybox applets on PATH, as in a busybox-based image
        bindir = tmp_path / "bb"
        bindir.mkdir()
        for applet in ("awk", "cmp", "cp", "mv", "chmod", "mkdir", "dirname", "basename", "date",
                       "grep", "cat", "rm", "head", "tail", "tr", "chroot"):
            (bindir / applet).symlink_to(bb)
        path = f"{bindir}:/bin"  # /bin: what chroot'ed commands find inside the fake host
    host = tmp_path / "host"
    (host / "etc" / "containerd").mkdir(parents=True)
    src = tmp_path / "src"
    src.mkdir()
    (src / "kybernate-runc").write_text("#!/bin/sh\necho kybernate-runc test\n")
    setup = DEPLOY / "node"

    def run(mode="check", config="/etc/containerd/config.toml", exec_checks=False, runc_src=None):
        env = {"PATH": path, "HOST_ROOT": str(host), "HOST_EXEC_CHECKS": "1" if exec_checks else "0",
               "KYBERNATE_RUNC_SRC": str(runc_src or src / "kybernate-runc"),
               "NODE_CONFIG_SRC": str(setup / "config.json"),
               "CONTAINERD_SNIPPET": str(setup / "kybernate-runtime.toml"),
               "CONTAINERD_CONFIG": config, "CONTAINERD_CONFIG_MODE": mode}
        return subprocess.run(shell + [str(setup / "node-setup.sh")], env=env, capture_output=True,
                              text=True, timeout=30)

    return host, run


def test_node_setup_installs_binary_and_config(node_setup):
    host, run = node_setup
    r = run()
    assert r.returncode == 0, r.stdout + r.stderr
    binary = host / "usr" / "local" / "bin" / "kybernate-runc"
    assert stat.S_IMODE(binary.stat().st_mode) == 0o755
    assert (host / "etc" / "kybernate" / "config.json").read_text() == (DEPLOY / "node" / "config.json").read_text()
    assert "no containerd config" in r.stdout
    r2 = run()
    assert "kybernate-runc is up to date" in r2.stdout and r2.returncode == 0


def test_node_setup_check_mode_changes_no_config(node_setup):
    host, run = node_setup
    cfg = host / "etc" / "containerd" / "config.toml"
    cfg.write_text(KUBEADM_LIKE)
    r = run("check")
    assert r.returncode == 0, r.stderr
    assert "does not declare the kybernate runtime handler" in r.stdout
    assert cfg.read_text() == KUBEADM_LIKE


def test_node_setup_appends_the_handler_once(node_setup):
    host, run = node_setup
    cfg = host / "etc" / "containerd" / "config.toml"
    cfg.write_text(KUBEADM_LIKE)
    r = run("append")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "restart" in r.stdout
    conf = tomllib.loads(cfg.read_text())
    rts = _runtimes(conf)
    assert rts["runc"]["options"] == {"SystemdCgroup": True}, "the node's runc handler is untouched"
    assert rts[HANDLER]["options"] == {"BinaryName": "/usr/local/bin/kybernate-runc", "SystemdCgroup": True}
    assert rts[HANDLER]["pod_annotations"] == ["kybernate.io/*"]
    assert conf["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"] == "registry.k8s.io/pause:3.9"
    backups = list(cfg.parent.glob("config.toml.kybernate-backup-*"))
    assert len(backups) == 1 and backups[0].read_text() == KUBEADM_LIKE
    once = cfg.read_text()
    r = run("append")
    assert r.returncode == 0 and cfg.read_text() == once, "a second run appends nothing"
    assert "declares the kybernate runtime handler" in r.stdout and "warning:" not in r.stdout


def test_node_setup_appends_to_a_microk8s_template(node_setup):
    host, run = node_setup
    tpl = host / "var" / "snap" / "microk8s" / "current" / "args" / "containerd-template.toml"
    tpl.parent.mkdir(parents=True)
    tpl.write_text(MICROK8S_LIKE)
    r = run("append", "/var/snap/microk8s/current/args/containerd-template.toml")
    assert r.returncode == 0, r.stdout + r.stderr
    rts = _runtimes(tomllib.loads(tpl.read_text()))
    assert rts[HANDLER]["options"] == {"BinaryName": "/usr/local/bin/kybernate-runc"}
    assert rts["runc"] == {"runtime_type": "${RUNTIME_TYPE}"}


def test_node_setup_refuses_what_it_cannot_do_safely(node_setup):
    host, run = node_setup
    cfg = host / "etc" / "containerd" / "config.toml"
    cfg.write_text(KUBEADM_LIKE.replace("version = 2\n", ""))
    r = run("append")
    assert r.returncode != 0 and "not a version 2 config" in r.stderr
    assert not list(cfg.parent.glob("*.kybernate-*")), "nothing written"
    r = run("restart")
    assert r.returncode != 0 and "check or append" in r.stderr


def test_node_setup_reports_a_handler_that_differs_from_runc(node_setup):
    host, run = node_setup
    cfg = host / "etc" / "containerd" / "config.toml"
    cfg.write_text(KUBEADM_LIKE + "\n" + _snippet())  # appended by hand, SystemdCgroup forgotten
    r = run("check")
    assert r.returncode == 0
    assert "SystemdCgroup is 'unset' for the kybernate handler but 'true' for runc" in r.stdout


def test_node_setup_checks_what_runs_on_the_host(node_setup, tmp_path):
    """HOST_EXEC_CHECKS=1 (the default): kybernate-runc and criu are run in the host (chroot)."""
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    bb = shutil.which("busybox")
    if not bb:
        pytest.skip("busybox (busybox-static, installed by scripts/setup) is missing")
    host, run = node_setup
    (host / "bin").mkdir()
    shutil.copy(bb, host / "bin" / "busybox")
    (host / "bin" / "sh").symlink_to("busybox")
    r = run(exec_checks=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "kybernate-runc runs on the host" in r.stdout
    assert "warning: no criu on the host's default PATH" in r.stdout
    (host / "bin" / "criu").write_text("#!/bin/sh\n")
    (host / "bin" / "criu").chmod(0o755)
    r = run(exec_checks=True)
    assert "criu found on the host PATH" in r.stdout and "warning: no criu" not in r.stdout
    # a dynamically linked program whose libraries the (fake) host lacks
    dynamic = tmp_path / "dynamic-runc"
    shutil.copy(shutil.which("ls"), dynamic)
    r = run(exec_checks=True, runc_src=dynamic)
    assert r.returncode == 0, r.stderr
    assert "warning: kybernate-runc does not run on the host (its libraries" in r.stdout


# ---------------------------------------------------------------------------- kustomize

def _kubectl():
    k = shutil.which("kubectl")
    if not k:
        pytest.skip("kubectl is not installed: the kustomize builds are not checked here "
                    "(test_kustomizations_list_every_manifest still is)")
    return k


def _build(path):
    r = subprocess.run([_kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return _load_docs(r.stdout, path)


def _key(o):
    return (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])


def test_kustomizations_list_every_manifest():
    """Every manifest outside examples/ and overlays/ is in a kustomization the base uses."""
    base = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    listed = set()
    for part in base["resources"]:
        k = yaml.safe_load((DEPLOY / part / "kustomization.yaml").read_text())
        for r in k.get("resources", []):
            assert (DEPLOY / part / r).is_file(), f"{part}/{r} is listed but missing"
            listed.add(DEPLOY / part / r)
        for g in k.get("configMapGenerator", []):
            for f in g["files"]:
                assert (DEPLOY / part / f).is_file()
    for p in ALL_FILES:
        if _is_kustomization(p) or {"examples", "overlays"} & set(p.relative_to(DEPLOY).parts):
            continue
        assert p in listed, f"{p.relative_to(REPO_ROOT)} is in no kustomization"


def test_kustomize_base_builds_and_validates():
    built = _build(DEPLOY)
    files = {_key(o) for _, o in _deploy_objects(include_examples=False)}
    keys = {_key(o) for o in built}
    cm = [o for o in built if o["kind"] == "ConfigMap"]
    assert len(cm) == 1 and cm[0]["metadata"]["name"].startswith("kybernate-node-setup-")
    assert keys - {_key(cm[0])} == files, (keys ^ files)
    for name in ("node-setup.sh", "config.json", "kybernate-runtime.toml"):
        assert cm[0]["data"][name] == (DEPLOY / "node" / name).read_text()
    ds = next(o for o in built if o["kind"] == "DaemonSet")
    vol = next(v for v in ds["spec"]["template"]["spec"]["volumes"] if v["name"] == "node-setup")
    assert vol["configMap"]["name"] == cm[0]["metadata"]["name"], "the generated name is referenced"
    for o in built:
        where = f"kustomize build deploy/ {o['kind']} {o['metadata']['name']}"
        errs = (_custom_errors(o, CRDS) if o["kind"] in CUSTOM_KINDS
                else _k8s_errors(o) + _builtin_semantic_errors(o, where))
        assert not errs, f"{where}: {errs}"
        if o["kind"] in NAMESPACED_KINDS:
            assert o["metadata"]["namespace"] == NAMESPACE, where


def _diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(k), b.get(k), f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [(path, a, b)]


OVERLAY_CHANGES = {
    "microk8s": {
        ".spec.template.spec.volumes[3].hostPath.path": "/var/snap/microk8s/common/run",
        ".spec.template.spec.volumes[4].hostPath.path": "/var/snap/microk8s/common/var/lib/containerd",
        ".spec.template.spec.containers[0].volumeMounts[2].mountPath": "/var/snap/microk8s/common/var/lib/containerd",
        ".spec.template.spec.initContainers[0].env[0].value": "/var/snap/microk8s/current/args/containerd-template.toml",
        ".spec.template.spec.initContainers[0].env[2].value": "snap restart microk8s.daemon-containerd",
    },
    "gpu-nodes": {".spec.template.spec.nodeSelector.nvidia.com/gpu.present": "true"},
}


@pytest.mark.parametrize("overlay", sorted(OVERLAY_CHANGES))
def test_overlay_changes_only_what_it_says(overlay):
    base = {_key(o): o for o in _build(DEPLOY)}
    over = {_key(o): o for o in _build(DEPLOY / "overlays" / overlay)}
    assert set(base) == set(over)
    changes = {}
    for k in base:
        for path, _, new in _diff(base[k], over[k]):
            assert k == ("DaemonSet", NAMESPACE, "kybernate-agent"), f"{overlay} changed {k} {path}"
            changes[path] = new
    assert changes == OVERLAY_CHANGES[overlay]
    ds = over[("DaemonSet", NAMESPACE, "kybernate-agent")]
    assert not _k8s_errors(ds) and not _builtin_semantic_errors(ds, overlay)
    if overlay == "microk8s":
        spec = ds["spec"]["template"]["spec"]
        vols = {v["name"]: v for v in spec["volumes"]}
        agent = _containers(spec)["agent"]
        mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
        # /var/snap/microk8s/common/run/containerd.sock appears at the agent's address
        assert vols["containerd-run"]["hostPath"]["path"] + "/containerd.sock" == \
            "/var/snap/microk8s/common/run/containerd.sock"
        assert mounts["containerd-run"] + "/containerd.sock" == next(
            e["value"] for e in agent["env"] if e["name"] == "KYBERNATE_CONTAINERD_ADDRESS")
        assert mounts["containerd-root"] == vols["containerd-root"]["hostPath"]["path"]


# ---------------------------------------------------------------------------- the vendored schema

def test_vendored_schema_matches_debian_files_when_present():
    """When the Debian files regenerate.py reads are on this machine, the vendored subset is
    exactly what they give (otherwise the recorded sha256s are what ties it to them)."""
    data = json.loads(K8S_OPENAPI.read_text())
    assert {s["package"] for s in data["_sources"]} == {"golang-k8s-kubectl-dev", "golang-k8s-cli-runtime-dev"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", s["sha256"]) for s in data["_sources"])
    if not all(Path(s["path"]).is_file() for s in data["_sources"]):
        pytest.skip("the Debian packages golang-k8s-kubectl-dev/cli-runtime-dev are not installed")
    import importlib.util
    spec = importlib.util.spec_from_file_location("regen", K8S_OPENAPI.with_name("regenerate.py"))
    regen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(regen)
    assert regen.build(Path("/")) == data
