/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kybernate-runc's reading of a container's annotations (lib/runtime/
 * decide.c): whether `create` becomes a restore, from where, with which
 * fallback, and the namespace rule.  Input: the spec's "annotations" as
 * JSON (anything else, too: a spec may hold any JSON there).  A restore
 * decided has one reference without blanks, controls, ',' or '='; a create
 * says why.  The namespace rule agrees with the CRI sandbox namespace
 * annotation: a pod's image only into a pod of its namespace, a plain
 * container's image only outside Kubernetes.
 */
#include <errno.h>
#include <jansson.h>

#include "fuzz.h"
#include "runtime/decide.h"

static json_t *pod_manifest, *plain_manifest;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_quiet_log();
  pod_manifest = json_pack("{s:{s:s,s:{s:s,s:s}}}", "source", "containerId", "3f2a", "pod", "name",
                           "web-1", "namespace", "shop");
  plain_manifest = json_pack("{s:{s:s}}", "source", "containerId", "3f2a");
  FUZZ_ASSERT(pod_manifest != NULL && plain_manifest != NULL);
  return 0;
}

static void check_ref(const char *ref) {
  FUZZ_ASSERT(ref != NULL && ref[0] != '\0');
  for (const unsigned char *c = (const unsigned char *)ref; *c; c++)
    FUZZ_ASSERT(*c > 0x20 && *c != 0x7f && *c != ',' && *c != '=');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_error_t jerr;
  json_t *ann = json_loadb((const char *)data, size, JSON_DECODE_ANY, &jerr);
  kyb_error *err = NULL;
  kyb_rt_decision d;
  int rc = kyb_rt_decide(ann, &d, &err);
  fuzz_check_rc(rc, &err);
  if (rc == 0) {
    FUZZ_ASSERT(d.action == KYB_RT_CREATE || d.action == KYB_RT_RESTORE);
    if (d.action == KYB_RT_RESTORE)
      check_ref(d.ref);
    else
      FUZZ_ASSERT(d.ref == NULL && d.reason != NULL);
  }
  FUZZ_ASSERT(d.fallback == KYB_RT_FALLBACK_NONE || d.fallback == KYB_RT_FALLBACK_COLD);
  kyb_rt_decision_clear(&d);

  if (json_is_object(ann)) {
    const char *ns = json_string_value(json_object_get(ann, KYB_ANN_CRI_SANDBOX_NAMESPACE));
    rc = kyb_rt_check_namespace(pod_manifest, ann, &err);
    FUZZ_ASSERT((rc == 0) == (ns != NULL && strcmp(ns, "shop") == 0));
    FUZZ_ASSERT(rc == 0 || kyb_error_code(err) == EPERM);
    fuzz_check_rc(rc, &err);
    rc = kyb_rt_check_namespace(plain_manifest, ann, &err);
    FUZZ_ASSERT((rc == 0) == (ns == NULL));
    fuzz_check_rc(rc, &err);
  }
  json_decref(ann);
  return 0;
}
