/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The JSON the agent and the uploader take from outside: a CheckpointRequest
 * as the API server returns it (kyb_agent_request_parse, then the image
 * names derived from it) and a job request on the uploader's local API
 * (kyb_job_request_parse), from the same input.  A request the agent
 * accepts names a valid image for each of its containers; a failure that
 * keeps the name (to fail the request in its status) keeps the metadata.
 * A job accepted has an operation, a valid image name and its references.
 * And a restore outcome from kybernate-runc (kyb_agent_restore_report_parse,
 * POST /v1/restore-outcome): one accepted names a pod and a container, a
 * cold one has its reason, and the annotation made from it is a JSON
 * object with the container's entry.
 */
#include <jansson.h>

#include "agent/report.h"
#include "agent/request.h"
#include "fuzz.h"
#include "image/image.h"
#include "uploader/request.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_quiet_log();
  return 0;
}

static void agent(const json_t *obj) {
  kyb_error *err = NULL;
  kyb_agent_request r;
  int rc = kyb_agent_request_parse(obj, &r, &err);
  fuzz_check_rc(rc, &err);
  if (rc == 0) {
    FUZZ_ASSERT(r.ns != NULL && r.name != NULL);
    FUZZ_ASSERT(r.action == KYB_AGENT_ACTION_CHECKPOINT ||
                r.action == KYB_AGENT_ACTION_DELETE_IMAGE);
    FUZZ_ASSERT(kyb_agent_phase_name(r.phase) != NULL);
    (void)kyb_agent_request_final(&r);
    for (size_t i = 0; i < r.ncontainers; i++) {
      FUZZ_ASSERT(r.containers[i] != NULL);
      char *name = NULL;
      int nr = kyb_agent_image_name(&r, r.containers[i], &name, &err);
      fuzz_check_rc(nr, &err);
      if (nr == 0)
        FUZZ_ASSERT(kyb_image_name_valid(name));
      free(name);
    }
    FUZZ_ASSERT(r.containers == NULL || r.containers[r.ncontainers] == NULL);
    for (size_t i = 0; i < r.nimage_refs; i++)
      FUZZ_ASSERT(kyb_agent_image_ref_valid(r.image_refs[i]));
  }
  kyb_agent_request_clear(&r);
}

static void outcome(const json_t *obj) {
  kyb_error *err = NULL;
  kyb_agent_restore_report r = {0};
  int rc = kyb_agent_restore_report_parse(obj, &r, &err);
  fuzz_check_rc(rc, &err);
  if (rc == 0) {
    FUZZ_ASSERT(r.pod_ns != NULL && r.pod_name != NULL && r.pod_uid != NULL && r.container != NULL);
    FUZZ_ASSERT(!r.cold || r.reason != NULL);
    /* The earlier value comes from the pod: the body's reason stands in. */
    char *a = kyb_agent_outcome_annotation(r.reason, &r, 0);
    FUZZ_ASSERT(a != NULL);
    json_error_t jerr;
    json_t *j = json_loads(a, 0, &jerr);
    FUZZ_ASSERT(json_is_object(json_object_get(j, r.container)));
    json_decref(j);
    free(a);
  }
  kyb_agent_restore_report_clear(&r);
}

static void job(const char *body, size_t len) {
  static const char *const locals[] = {"file:///var/lib/kybernate/images", "file:///mnt/shared"};
  kyb_job_policy pol = {
      .default_store = "file:///var/lib/kybernate/images", .locals = locals, .nlocals = 2};
  kyb_error *err = NULL;
  kyb_job_request r;
  memset(&r, 0, sizeof(r));
  int rc = kyb_job_request_parse(body, len, &pol, &r, &err);
  fuzz_check_rc(rc, &err);
  if (rc == 0) {
    FUZZ_ASSERT(r.op == KYB_JOB_UPLOAD || r.op == KYB_JOB_FETCH);
    FUZZ_ASSERT(kyb_job_op_name(r.op) != NULL);
    FUZZ_ASSERT(r.name != NULL && kyb_image_name_valid(r.name));
    FUZZ_ASSERT(r.source != NULL && r.destination != NULL && r.source_store != NULL &&
                r.dest_store != NULL);
    FUZZ_ASSERT(kyb_job_request_same(&r, &r));
  }
  kyb_job_request_clear(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_error_t jerr;
  json_t *obj = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
  if (obj != NULL) {
    agent(obj);
    outcome(obj);
  }
  json_decref(obj);
  job((const char *)data, size);
  return 0;
}
