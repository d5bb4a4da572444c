/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the claim protocol's state machine (lib/agent/claim.c) with
 * a fake clock: Pending -> claim -> renewals -> a restart (takeover keeps
 * startedAt, the step and the condition's lastTransitionTime) -> final, and
 * final stays final; decisions for other nodes and for the request this
 * process runs; the deadline; metav1.Condition rules; results in the final
 * status; how worker errors map onto the API's reasons. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "agent/claim.h"
#include "agent/request.h"
#include "util/cleanup.h"

#define SEC 1000000LL
#define T0 (1796132400LL * SEC) /* 2026-12-01T13:40:00Z */

static const kyb_agent_identity me = {"agent-b", "uid-b"};

static json_t *pending(void) {
  json_t *o = json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:s, s:I, s:{s:s}},"
                        " s:{s:s, s:s, s:s, s:s, s:[s], s:{s:s, s:s}, s:i}}",
                        "apiVersion", "kybernate.io/v1alpha1", "kind", "CheckpointRequest",
                        "metadata", "name", "r1", "namespace", "shop", "uid", "abcde-123",
                        "resourceVersion", "7", "generation", (json_int_t)1, "labels",
                        "kybernate.io/node", "n1", "spec", "nodeName", "n1", "podNamespace", "shop",
                        "podName", "web", "podUID", "p1", "containers", "main", "checkpointRef",
                        "name", "c", "uid", "cu", "deadlineSeconds", 600);
  assert_non_null(o);
  return o;
}

static void parse(const json_t *o, kyb_agent_request *r) {
  cleanup_error kyb_error *err = NULL;
  if (kyb_agent_request_parse(o, r, &err) < 0)
    fail_msg("%s", kyb_error_message(err));
}

static const json_t *status(const json_t *o) {
  return json_object_get(o, "status");
}
static const char *sget(const json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}
static const json_t *condition(const json_t *o, const char *type) {
  const json_t *conds = json_object_get(status(o), "conditions");
  for (size_t i = 0; i < json_array_size(conds); i++)
    if (strcmp(sget(json_array_get(conds, i), "type"), type) == 0)
      return json_array_get(conds, i);
  return NULL;
}

static void test_full_lifecycle(void **state) {
  (void)state;
  cleanup_json json_t *o = pending();
  cleanup_error kyb_error *err = NULL;
  kyb_agent_request r;
  const char *why = NULL;

  /* Pending: claim. */
  parse(o, &r);
  assert_int_equal(kyb_agent_decide(&r, "n1", false, &why), KYB_AGENT_CLAIM);
  assert_string_equal(why, "pending");
  kyb_agent_request_clear(&r);
  assert_int_equal(kyb_agent_status_claim(o, &me, false, T0, &err), 0);
  const json_t *st = status(o);
  assert_string_equal(sget(st, "phase"), "Running");
  assert_string_equal(sget(st, "step"), "claimed");
  assert_int_equal(json_integer_value(json_object_get(st, "attempts")), 1);
  assert_string_equal(sget(st, "startedAt"), "2026-12-01T13:40:00Z");
  assert_int_equal(json_integer_value(json_object_get(st, "observedGeneration")), 1);
  const json_t *agent = json_object_get(st, "agent");
  assert_string_equal(sget(agent, "podName"), "agent-b");
  assert_string_equal(sget(agent, "podUID"), "uid-b");
  assert_string_equal(sget(agent, "claimedAt"), "2026-12-01T13:40:00Z");
  assert_string_equal(sget(agent, "renewTime"), "2026-12-01T13:40:00Z");
  const json_t *c = condition(o, "Succeeded");
  assert_string_equal(sget(c, "status"), "Unknown");
  assert_string_equal(sget(c, "reason"), "InProgress");
  assert_string_equal(sget(c, "lastTransitionTime"), "2026-12-01T13:40:00Z");
  assert_int_equal(json_integer_value(json_object_get(c, "observedGeneration")), 1);

  /* Running here: the informer's echo of our own writes changes nothing. */
  parse(o, &r);
  assert_int_equal(kyb_agent_decide(&r, "n1", true, &why), KYB_AGENT_SKIP);
  assert_string_equal(why, "running here");
  assert_int_equal(r.started_us, T0);

  /* Renewals: due every KYB_AGENT_RENEW_INTERVAL_US, well inside 15 s. */
  assert_true(KYB_AGENT_RENEW_INTERVAL_US <= 15 * SEC);
  assert_false(kyb_agent_renew_due(T0, T0 + 5 * SEC));
  assert_true(kyb_agent_renew_due(T0, T0 + KYB_AGENT_RENEW_INTERVAL_US));
  assert_true(kyb_agent_renew_due(0, T0));
  cleanup_json json_t *timings = json_pack("{s:i}", "gpu_checkpoint", 12);
  cleanup_json json_t *patch = kyb_agent_renew_patch("dump", timings, T0 + 10 * SEC);
  cleanup_json json_t *want =
      json_pack("{s:{s:{s:s}, s:s, s:{s:i}}}", "status", "agent", "renewTime",
                "2026-12-01T13:40:10Z", "step", "dump", "timings", "gpu_checkpoint", 12);
  assert_true(json_equal(patch, want));
  cleanup_json json_t *bare = kyb_agent_renew_patch(NULL, NULL, T0 + 20 * SEC);
  assert_int_equal(json_object_size(json_object_get(bare, "status")), 1);

  /* The agent dies at step dump.  A new incarnation sees Running, not run
   * by it: take over. */
  json_object_set_new((json_t *)status(o), "step", json_string("dump"));
  assert_int_equal(kyb_agent_decide(&r, "n1", false, &why), KYB_AGENT_TAKE_OVER);
  kyb_agent_request_clear(&r);
  kyb_agent_identity next = {"agent-c", "uid-c"};
  assert_int_equal(kyb_agent_status_claim(o, &next, true, T0 + 300 * SEC, &err), 0);
  st = status(o);
  assert_int_equal(json_integer_value(json_object_get(st, "attempts")), 2);
  assert_string_equal(sget(st, "startedAt"), "2026-12-01T13:40:00Z"); /* kept */
  assert_string_equal(sget(st, "step"), "dump");                      /* where it died */
  assert_string_equal(sget(json_object_get(st, "agent"), "podName"), "agent-c");
  assert_string_equal(sget(json_object_get(st, "agent"), "claimedAt"), "2026-12-01T13:45:00Z");
  c = condition(o, "Succeeded");
  assert_string_equal(sget(c, "reason"), "Recovering");
  /* Still Unknown: no transition, the time stays. */
  assert_string_equal(sget(c, "lastTransitionTime"), "2026-12-01T13:40:00Z");

  /* Failed AgentRestarted: final. */
  kyb_agent_outcome out = {.succeeded = false,
                           .reason = "AgentRestarted",
                           .message = "the agent restarted during step dump"};
  assert_int_equal(kyb_agent_status_finish(o, &out, T0 + 301 * SEC, &err), 0);
  st = status(o);
  assert_string_equal(sget(st, "phase"), "Failed");
  assert_string_equal(sget(st, "step"), "done");
  assert_string_equal(sget(st, "completedAt"), "2026-12-01T13:45:01Z");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "timings"), "total")),
                   301000);
  assert_null(json_object_get(st, "images"));
  c = condition(o, "Succeeded");
  assert_string_equal(sget(c, "status"), "False");
  assert_string_equal(sget(c, "reason"), "AgentRestarted");
  assert_string_equal(sget(c, "lastTransitionTime"), "2026-12-01T13:45:01Z");
  assert_int_equal(json_array_size(json_object_get(st, "conditions")), 1);

  /* Final is final, for every incarnation. */
  parse(o, &r);
  assert_true(kyb_agent_request_final(&r));
  assert_int_equal(kyb_agent_decide(&r, "n1", false, &why), KYB_AGENT_SKIP);
  assert_string_equal(why, "finished");
  kyb_agent_request_clear(&r);
}

static void test_other_node_and_attempt_limit(void **state) {
  (void)state;
  cleanup_json json_t *o = pending();
  kyb_agent_request r;
  parse(o, &r);
  const char *why = NULL;
  assert_int_equal(kyb_agent_decide(&r, "n2", false, &why), KYB_AGENT_SKIP);
  assert_string_equal(why, "for another node");
  kyb_agent_request_clear(&r);
  json_object_set_new(o, "status", json_pack("{s:i}", "attempts", 100));
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_agent_status_claim(o, &me, false, T0, &err), -1);
  assert_int_equal(kyb_error_code(err), ELOOP);
}

static void test_deadline(void **state) {
  (void)state;
  cleanup_json json_t *o = pending();
  kyb_agent_request r;
  parse(o, &r);
  /* Never started: the whole budget is left. */
  assert_int_equal(kyb_agent_deadline_left(&r, T0), 600 * SEC);
  assert_false(kyb_agent_deadline_passed(&r, T0 + 10000 * SEC));
  r.started_us = T0;
  assert_false(kyb_agent_deadline_passed(&r, T0 + 599 * SEC));
  assert_true(kyb_agent_deadline_passed(&r, T0 + 600 * SEC));
  assert_int_equal(kyb_agent_deadline_left(&r, T0 + 601 * SEC), -SEC);
  kyb_agent_request_clear(&r);
  /* The default when the API server applied none: one hour. */
  json_object_del(json_object_get(o, "spec"), "deadlineSeconds");
  parse(o, &r);
  assert_int_equal(r.deadline_s, 3600);
  kyb_agent_request_clear(&r);
}

static void test_condition_rules(void **state) {
  (void)state;
  cleanup_json json_t *o = pending();
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_agent_set_condition(o, "Succeeded", "False", "DumpFailed", "x", T0, &err),
                   0);
  /* Same status, new reason and message: lastTransitionTime stays. */
  assert_int_equal(
      kyb_agent_set_condition(o, "Succeeded", "False", "PublishFailed", "y", T0 + SEC, &err), 0);
  const json_t *c = condition(o, "Succeeded");
  assert_string_equal(sget(c, "reason"), "PublishFailed");
  assert_string_equal(sget(c, "message"), "y");
  assert_string_equal(sget(c, "lastTransitionTime"), "2026-12-01T13:40:00Z");
  /* Another type is another entry. */
  assert_int_equal(kyb_agent_set_condition(o, "Other", "True", "Yes", NULL, T0, &err), 0);
  assert_int_equal(json_array_size(json_object_get(status(o), "conditions")), 2);
  assert_string_equal(sget(condition(o, "Other"), "message"), "");
  /* A message over 32 KiB is cut, never inside a UTF-8 character. */
  size_t n = KYB_AGENT_MAX_MESSAGE + 100;
  cleanup_free char *big = malloc(n + 1);
  for (size_t i = 0; i + 1 < n; i += 2)
    memcpy(big + i, "\xc3\xa4", 2); /* "ä" */
  big[n - 1] = 'z';
  big[n] = '\0';
  assert_int_equal(kyb_agent_set_condition(o, "Succeeded", "True", "Completed", big, T0, &err), 0);
  const char *m = sget(condition(o, "Succeeded"), "message");
  assert_non_null(m); /* jansson refuses invalid UTF-8: a string means valid */
  assert_true(strlen(m) <= KYB_AGENT_MAX_MESSAGE);
  assert_string_equal(m + strlen(m) - 3, "...");
}

static void test_finish_results(void **state) {
  (void)state;
  cleanup_json json_t *o = pending();
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_agent_status_claim(o, &me, false, T0, &err), 0);
  const char *dig = "sha256:3f0d6c0b5a1e9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706";
  cleanup_json json_t *one =
      json_pack("[{s:s, s:s, s:s, s:I}]", "container", "main", "imageRef", "file:///s/web-main-1",
                "imageDigest", dig, "sizeBytes", (json_int_t)1000);
  cleanup_json json_t *gpus = json_pack("[{s:s, s:s, s:I}]", "uuid", "GPU-5a8c2b1e", "model",
                                        "NVIDIA H200", "memoryBytes", (json_int_t)1);
  cleanup_json json_t *timings = json_pack("{s:i, s:i}", "criu_dump", 800, "total", 950);
  kyb_agent_outcome out = {.succeeded = true,
                           .reason = "Completed",
                           .message = "1 image(s)",
                           .images = one,
                           .gpus = gpus,
                           .timings = timings};
  assert_int_equal(kyb_agent_status_finish(o, &out, T0 + SEC, &err), 0);
  const json_t *st = status(o);
  assert_string_equal(sget(st, "phase"), "Completed");
  assert_string_equal(sget(st, "imageRef"), "file:///s/web-main-1");
  assert_string_equal(sget(st, "imageDigest"), dig);
  assert_int_equal(json_integer_value(json_object_get(st, "sizeBytes")), 1000);
  assert_true(json_equal(json_object_get(st, "gpus"), gpus));
  assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "timings"), "total")),
                   950); /* the outcome's own total wins */
  assert_string_equal(sget(condition(o, "Succeeded"), "status"), "True");
  assert_string_equal(sget(json_object_get(st, "agent"), "renewTime"), "2026-12-01T13:40:01Z");

  /* Two images: no single imageRef, sizeBytes is the sum. */
  cleanup_json json_t *o2 = pending();
  assert_int_equal(kyb_agent_status_claim(o2, &me, false, T0, &err), 0);
  cleanup_json json_t *two = json_pack("[{s:s, s:s, s:I}, {s:s, s:s, s:I}]", "container", "a",
                                       "imageRef", "x-a", "sizeBytes", (json_int_t)1, "container",
                                       "b", "imageRef", "x-b", "sizeBytes", (json_int_t)2);
  kyb_agent_outcome out2 = {.succeeded = true, .reason = "Completed", .message = "", .images = two};
  assert_int_equal(kyb_agent_status_finish(o2, &out2, T0 + 2 * SEC, &err), 0);
  assert_null(json_object_get(status(o2), "imageRef"));
  assert_int_equal(json_integer_value(json_object_get(status(o2), "sizeBytes")), 3);
  assert_int_equal(json_array_size(json_object_get(status(o2), "images")), 2);
  assert_int_equal(
      json_integer_value(json_object_get(json_object_get(status(o2), "timings"), "total")), 2000);
}

static void test_reasons_and_steps(void **state) {
  (void)state;
  assert_string_equal(kyb_agent_failure_reason(NULL, ENOENT, "x"), "ContainerNotFound");
  assert_string_equal(kyb_agent_failure_reason(NULL, ESRCH, "not running"), "ContainerNotFound");
  assert_string_equal(kyb_agent_failure_reason(NULL, ECONNREFUSED, "x"), "DumpFailed");
  assert_string_equal(
      kyb_agent_failure_reason("gpu_checkpoint", 0, "GPU lock timeout of 10 ms ran out: ..."),
      "GPULockTimeout");
  assert_string_equal(kyb_agent_failure_reason("gpu_checkpoint", EIO, "CUDA_ERROR_x"),
                      "GPUCheckpointFailed");
  assert_string_equal(kyb_agent_failure_reason("pause", 0, NULL), "DumpFailed");
  assert_string_equal(kyb_agent_failure_reason("criu_dump", EIO, "CRIU"), "DumpFailed");
  assert_string_equal(kyb_agent_failure_reason("rootfs_diff", ENOSPC, ""), "PublishFailed");
  assert_string_equal(kyb_agent_failure_reason("package", EEXIST, ""), "PublishFailed");
  assert_string_equal(kyb_agent_failure_reason("upload", EIO, ""), "UploadFailed");
  assert_string_equal(kyb_agent_step_of_phase("criu_dump"), "dump");
  assert_string_equal(kyb_agent_step_of_phase("pause"), "dump");
  assert_string_equal(kyb_agent_step_of_phase("package"), "publish");
  assert_string_equal(kyb_agent_step_of_phase("gpu_checkpoint"), "gpu_checkpoint");
  assert_string_equal(kyb_agent_step_of_phase("resume"), "gpu_restore");
  assert_string_equal(kyb_agent_step_of_phase("stop"), "stop");
  assert_null(kyb_agent_step_of_phase("whatever"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full_lifecycle), cmocka_unit_test(test_other_node_and_attempt_limit),
      cmocka_unit_test(test_deadline),       cmocka_unit_test(test_condition_rules),
      cmocka_unit_test(test_finish_results), cmocka_unit_test(test_reasons_and_steps),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
