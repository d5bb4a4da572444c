#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Rebuild k8s-openapi.json (beside this file): the Kubernetes OpenAPI schemas of the built-in
objects deploy/ uses, cut from the specs Debian ships as test data of the Kubernetes Go modules.

    cd /tmp && apt-get download golang-k8s-kubectl-dev/trixie golang-k8s-cli-runtime-dev/trixie
    for d in golang-k8s-kubectl-dev_*.deb golang-k8s-cli-runtime-dev_*.deb; do dpkg-deb -x "$d" x; done
    python3 tests/integration/data/k8s-openapi/regenerate.py /tmp/x

(the trixie apt source is the one scripts/setup configures). Sources, first one wins per
definition:
  1. kubectl's testdata/openapi/v3/api/v1.json and apis/apps/v1.json  (info.version v1.27.0)
  2. cli-runtime's artifacts/openapi/swagger.json  (Swagger 2.0; Kubernetes 1.23 era) for the
     rest: rbac.authorization.k8s.io/v1, node.k8s.io/v1, apiextensions.k8s.io/v1.
Only definitions reachable from ROOTS are kept; "description" texts are dropped (they validate
nothing). Everything else is copied unchanged: the test translates it (test_deploy_manifests.py).
Standard library only.
"""

import hashlib
import json
import sys
from pathlib import Path

GO = "usr/share/gocode/src/k8s.io"
SOURCES = [
    ("golang-k8s-kubectl-dev", f"{GO}/kubectl/testdata/openapi/v3/api/v1.json"),
    ("golang-k8s-kubectl-dev", f"{GO}/kubectl/testdata/openapi/v3/apis/apps/v1.json"),
    ("golang-k8s-cli-runtime-dev", f"{GO}/cli-runtime/artifacts/openapi/swagger.json"),
]
ROOTS = [
    "io.k8s.api.apps.v1.DaemonSet",
    "io.k8s.api.apps.v1.Deployment",
    "io.k8s.api.core.v1.ConfigMap",
    "io.k8s.api.core.v1.Namespace",
    "io.k8s.api.core.v1.Pod",
    "io.k8s.api.core.v1.ResourceQuota",
    "io.k8s.api.core.v1.Secret",
    "io.k8s.api.core.v1.Service",
    "io.k8s.api.core.v1.ServiceAccount",
    "io.k8s.api.node.v1.RuntimeClass",
    "io.k8s.api.rbac.v1.ClusterRole",
    "io.k8s.api.rbac.v1.ClusterRoleBinding",
    "io.k8s.api.rbac.v1.Role",
    "io.k8s.api.rbac.v1.RoleBinding",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
]


def _strip(o):
    """Drops description texts and turns OpenAPI v3 refs into #/definitions/ refs."""
    if isinstance(o, dict):
        out = {}
        for k, v in o.items():
            if k == "description" and isinstance(v, str):
                continue
            if k == "$ref" and isinstance(v, str):
                v = "#/definitions/" + v.rsplit("/", 1)[-1]
            out[k] = _strip(v)
        return out
    if isinstance(o, list):
        return [_strip(v) for v in o]
    return o


def _refs(o, out):
    if isinstance(o, dict):
        for k, v in o.items():
            if k == "$ref" and isinstance(v, str):
                out.append(v.rsplit("/", 1)[-1])
            else:
                _refs(v, out)
    elif isinstance(o, list):
        for v in o:
            _refs(v, out)


def build(root: Path) -> dict:
    defs, provenance = {}, []
    for package, rel in SOURCES:
        path = root / rel
        data = path.read_bytes()
        doc = json.loads(data)
        schemas = doc.get("definitions") or doc["components"]["schemas"]
        for name, schema in schemas.items():
            defs.setdefault(name, (schema, rel))
        provenance.append({"package": package, "path": "/" + rel,
                           "sha256": hashlib.sha256(data).hexdigest(),
                           "info": doc.get("info", {})})
    seen, todo = set(), list(ROOTS)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        found = []
        _refs(defs[name][0], found)
        todo.extend(found)
    return {
        "_about": "Kubernetes OpenAPI definitions used by tests/integration/test_deploy_manifests.py;"
                  " made by regenerate.py (see its docstring). Kubernetes is Apache-2.0.",
        "_sources": provenance,
        "_from": {name: "/" + defs[name][1] for name in sorted(seen)},
        "definitions": {name: _strip(defs[name][0]) for name in sorted(seen)},
    }


def main(argv) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(__file__).with_name("k8s-openapi.json")
    out.write_text(json.dumps(build(Path(argv[1])), indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
