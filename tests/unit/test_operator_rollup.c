/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the Checkpoint side (pod checks, request names and objects,
 * the roll-up of a request's status, NodeLost on both clocks, the failure
 * reasons) and of a Restore's status from its pod. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "operator/fields.h"
#include "operator/rollup.h"
#include "operator/rstatus.h"
#include "util/cleanup.h"

#define SEC 1000000LL
#define MIN (60 * SEC)

static json_t *parse(const char *s) {
  json_error_t e;
  json_t *j = json_loads(s, 0, &e);
  if (j == NULL)
    fail_msg("bad JSON in test: %s (line %d col %d)", e.text, e.line, e.column);
  return j;
}

static int64_t at(const char *t) {
  cleanup_json json_t *o = json_pack("{s:s}", "t", t);
  return kyb_op_time(o, "t", NULL);
}

static const char *const CKPT =
    "{\"apiVersion\": \"kybernate.io/v1alpha1\", \"kind\": \"Checkpoint\", \"metadata\":"
    " {\"name\": \"llm-0-warm\", \"namespace\": \"inference\", \"uid\": \"ck-uid\","
    " \"generation\": 1}, \"spec\": {\"podName\": \"llm-0\", %s \"leaveRunning\": true,"
    " \"gpuLockTimeoutSeconds\": 10}}";

static json_t *ckpt_with(const char *extra) {
  char buf[1024];
  snprintf(buf, sizeof(buf), CKPT, extra);
  return parse(buf);
}

static const char *const POD =
    "{\"metadata\": {\"name\": \"llm-0\", \"namespace\": \"inference\", \"uid\": \"pod-uid\"},"
    " \"spec\": {\"nodeName\": \"gpu-a\", \"containers\": [{\"name\": \"server\"},"
    " {\"name\": \"side\"}]}, \"status\": {\"phase\": \"Running\", \"containerStatuses\": ["
    " {\"name\": \"server\", \"state\": {\"running\": {}}},"
    " {\"name\": \"side\", \"state\": {\"waiting\": {\"reason\": \"CrashLoopBackOff\"}}}]}}";

static void expect_verdict(const json_t *ck, const json_t *pod, const char *reason,
                           const char *needle) {
  kyb_op_pod_verdict v;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_op_check_pod(ck, pod, &v, &err), 0);
  if (reason == NULL) {
    assert_null(v.reason);
  } else {
    assert_non_null(v.reason);
    assert_string_equal(v.reason, reason);
    if (strstr(v.message, needle) == NULL)
      fail_msg("message \"%s\" lacks \"%s\"", v.message, needle);
  }
  kyb_op_pod_verdict_clear(&v);
}

static void test_pod_checks(void **state) {
  (void)state;
  cleanup_json json_t *ck = ckpt_with("");
  cleanup_json json_t *server = ckpt_with("\"containers\": [\"server\"],");
  cleanup_json json_t *ghost = ckpt_with("\"containers\": [\"ghost\"],");
  cleanup_json json_t *pod = parse(POD);
  /* The contract's exact message for a missing pod. */
  expect_verdict(ck, NULL, "PodNotFound", "pod inference/llm-0 does not exist");
  /* All containers by default: "side" is not running. */
  expect_verdict(ck, pod, "ContainerNotRunning", "container side of pod inference/llm-0");
  expect_verdict(server, pod, NULL, NULL);
  expect_verdict(ghost, pod, "ContainerNotFound",
                 "no container ghost (its containers: server, side)");
  kyb_op_pod_verdict v;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_op_check_pod(server, pod, &v, &err), 0);
  assert_int_equal(json_array_size(v.containers), 1);
  assert_string_equal(json_string_value(json_array_get(v.containers, 0)), "server");
  kyb_op_pod_verdict_clear(&v);

  json_object_set_new(kyb_op_get(pod, "status", NULL), "phase", json_string("Pending"));
  expect_verdict(server, pod, "PodNotRunning", "is Pending, not Running");
  json_object_del(kyb_op_get(pod, "spec", NULL), "nodeName");
  expect_verdict(server, pod, "PodNotScheduled", "not scheduled");
}

static void test_request_names_are_deterministic(void **state) {
  (void)state;
  char a[260], b[260], c[260];
  kyb_op_request_name("llm-0-warm", "checkpoint:ck-uid", a, sizeof(a));
  kyb_op_request_name("llm-0-warm", "checkpoint:ck-uid", b, sizeof(b));
  kyb_op_request_name("llm-0-warm", "delete:ck-uid", c, sizeof(c));
  assert_string_equal(a, b);
  assert_string_not_equal(a, c);
  assert_int_equal(strlen(a), strlen("llm-0-warm") + 6);
  assert_memory_equal(a, "llm-0-warm-", 11);
  for (const char *p = a + 11; *p; p++)
    assert_non_null(strchr("bcdfghjklmnpqrstvwxz2456789", *p));
  /* Long bases are cut like generateName's, without a trailing '-'/'.'. */
  char longname[120];
  memset(longname, 'a', sizeof(longname));
  longname[56] = '-';
  longname[57] = '.';
  longname[119] = '\0';
  kyb_op_request_name(longname, "x", a, sizeof(a));
  assert_int_equal(strlen(a), 56 + 6);
  assert_int_equal(a[56], '-');
  assert_int_not_equal(a[55], '-');
}

static void test_request_objects(void **state) {
  (void)state;
  cleanup_json json_t *ck = ckpt_with("\"storage\": \"file:///mnt/shared\",");
  cleanup_json json_t *pod = parse(POD);
  cleanup_json json_t *cs = parse("[\"server\"]");
  cleanup_json json_t *req = kyb_op_request_build(ck, pod, cs, "llm-0-warm-x7k2p");
  assert_non_null(req);
  assert_string_equal(kyb_op_str(req, "metadata", "labels", "kybernate.io/node", NULL), "gpu-a");
  json_t *owner = json_array_get(kyb_op_get(req, "metadata", "ownerReferences", NULL), 0);
  assert_string_equal(kyb_op_str(owner, "kind", NULL), "Checkpoint");
  assert_string_equal(kyb_op_str(owner, "uid", NULL), "ck-uid");
  assert_true(kyb_op_bool(false, owner, "controller", NULL));
  assert_true(kyb_op_bool(false, owner, "blockOwnerDeletion", NULL));
  json_t *spec = kyb_op_get(req, "spec", NULL);
  assert_string_equal(kyb_op_str(spec, "action", NULL), "Checkpoint");
  assert_string_equal(kyb_op_str(spec, "nodeName", NULL), "gpu-a");
  assert_string_equal(kyb_op_str(spec, "podNamespace", NULL), "inference");
  assert_string_equal(kyb_op_str(spec, "podUID", NULL), "pod-uid");
  assert_string_equal(kyb_op_str(spec, "storage", NULL), "file:///mnt/shared");
  assert_string_equal(kyb_op_str(spec, "checkpointRef", "uid", NULL), "ck-uid");
  assert_true(json_equal(json_object_get(spec, "containers"), cs));
  cleanup_json json_t *refs = parse("[\"file:///mnt/shared/a\"]");
  cleanup_json json_t *del = kyb_op_delete_request_build(ck, "d", "gpu-b", refs);
  assert_string_equal(kyb_op_str(del, "spec", "action", NULL), "DeleteImage");
  assert_string_equal(kyb_op_str(del, "spec", "nodeName", NULL), "gpu-b");
  assert_string_equal(kyb_op_str(del, "metadata", "labels", "kybernate.io/node", NULL), "gpu-b");
  assert_true(json_equal(kyb_op_get(del, "spec", "imageRefs", NULL), refs));
  assert_null(kyb_op_get(del, "spec", "podUID", NULL));
}

static json_t *request(const char *status) {
  char buf[4096];
  snprintf(buf, sizeof(buf),
           "{\"metadata\": {\"name\": \"llm-0-warm-x7k2p\", \"namespace\": \"inference\","
           " \"creationTimestamp\": \"2026-12-01T13:40:00Z\", \"resourceVersion\": \"9\"},"
           " \"spec\": {\"nodeName\": \"gpu-a\", \"containers\": [\"server\"]}, \"status\": %s}",
           status);
  return parse(buf);
}

static void test_rollup_pending_and_unclaimed(void **state) {
  (void)state;
  cleanup_json json_t *ck = ckpt_with("");
  cleanup_json json_t *req = request("{}");
  cleanup_json json_t *st = json_object();
  kyb_op_rollup_result r;
  cleanup_error kyb_error *err = NULL;
  int64_t t0 = at("2026-12-01T13:40:00Z");
  assert_int_equal(kyb_op_rollup(st, ck, req, t0 + 30 * SEC, 2 * MIN, &r, &err), 0);
  assert_int_equal(r.outcome, KYB_OP_ROLLUP_WAIT);
  assert_int_equal(r.recheck_us, 90 * SEC);
  assert_string_equal(kyb_op_str(st, "phase", NULL), "Running");
  assert_true(kyb_op_cond_is(st, "Ready", "Unknown"));
  assert_string_equal(kyb_op_str(kyb_op_cond(st, "Ready"), "reason", NULL), "InProgress");
  /* Nobody claimed it for 2 minutes: the caller deletes it, NodeLost. */
  cleanup_json json_t *st2 = json_object();
  assert_int_equal(kyb_op_rollup(st2, ck, req, t0 + 2 * MIN, 2 * MIN, &r, &err), 0);
  assert_int_equal(r.outcome, KYB_OP_ROLLUP_UNCLAIMED);
  assert_string_equal(r.message,
                      "no agent on node gpu-a claimed checkpoint request llm-0-warm-x7k2p within "
                      "2m0s");
  free(r.message);
}

static void test_rollup_running_and_node_lost(void **state) {
  (void)state;
  cleanup_json json_t *ck = ckpt_with("");
  cleanup_json json_t *req = request(
      "{\"phase\": \"Running\", \"step\": \"dump\", \"attempts\": 1, \"startedAt\":"
      " \"2026-12-01T13:40:00Z\", \"agent\": {\"podName\": \"agent-4xk9d\", \"podUID\": \"a\","
      " \"claimedAt\": \"2026-12-01T13:40:00Z\", \"renewTime\": \"2026-12-01T13:40:15Z\"},"
      " \"timings\": {\"gpu_lock\": 12, \"bogus\": -1, \"gpu_checkpoint\": 4310}}");
  cleanup_json json_t *st = json_object();
  kyb_op_rollup_result r;
  cleanup_error kyb_error *err = NULL;
  int64_t renew = at("2026-12-01T13:40:15Z");
  assert_int_equal(kyb_op_rollup(st, ck, req, renew + 100 * SEC, 2 * MIN, &r, &err), 0);
  assert_int_equal(r.outcome, KYB_OP_ROLLUP_WAIT);
  assert_int_equal(r.recheck_us, 20 * SEC);
  assert_string_equal(kyb_op_str(st, "startedAt", NULL), "2026-12-01T13:40:00Z");
  assert_int_equal(kyb_op_int(0, st, "timings", "gpu_checkpoint", NULL), 4310);
  assert_null(kyb_op_get(st, "timings", "bogus", NULL)); /* not a size: dropped */
  assert_null(kyb_op_get(st, "timings", "total", NULL)); /* only on a finished one */
  assert_string_equal(kyb_op_str(kyb_op_cond(st, "Ready"), "message", NULL),
                      "agent agent-4xk9d on node gpu-a: step dump");
  /* Not renewed for 2 minutes: Failed, NodeLost. */
  assert_int_equal(kyb_op_rollup(st, ck, req, renew + 2 * MIN, 2 * MIN, &r, &err), 0);
  assert_int_equal(r.outcome, KYB_OP_ROLLUP_DONE);
  assert_string_equal(kyb_op_str(st, "phase", NULL), "Failed");
  json_t *ready = kyb_op_cond(st, "Ready");
  assert_string_equal(kyb_op_str(ready, "status", NULL), "False");
  assert_string_equal(kyb_op_str(ready, "reason", NULL), "NodeLost");
  assert_non_null(strstr(kyb_op_str(ready, "message", NULL), "agent-4xk9d"));
  assert_non_null(strstr(kyb_op_str(ready, "message", NULL), "2026-12-01T13:40:15Z"));
  assert_non_null(kyb_op_str(st, "completedAt", NULL));
  assert_null(kyb_op_cond(st, "PodResolved")); /* not a pod reason */
}

static void test_rollup_completed(void **state) {
  (void)state;
  cleanup_json json_t *ck = ckpt_with("");
  cleanup_json json_t *req = request(
      "{\"phase\": \"Completed\", \"step\": \"done\", \"startedAt\": \"2026-12-01T13:40:00Z\","
      " \"completedAt\": \"2026-12-01T13:40:21Z\", \"sizeBytes\": 17481234567,"
      " \"images\": [{\"container\": \"server\", \"imageRef\": "
      "\"file:///var/lib/kybernate/images/llm-0-server-1\", \"imageDigest\": \"sha256:"
      "3f0d6c0b5a1e9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706\", \"sizeBytes\":"
      " 17481234567, \"extra\": 1}],"
      " \"gpus\": [{\"uuid\": \"GPU-5a8c\", \"model\": \"NVIDIA H200\", \"memoryBytes\": 1},"
      " {\"model\": \"no uuid: dropped\"}],"
      " \"timings\": {\"gpu_lock\": 12, \"dump\": 9120, \"total\": 20950}}");
  cleanup_json json_t *st = json_object();
  kyb_op_rollup_result r;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_op_rollup(st, ck, req, at("2026-12-01T13:40:30Z"), 2 * MIN, &r, &err), 0);
  assert_int_equal(r.outcome, KYB_OP_ROLLUP_DONE);
  assert_string_equal(kyb_op_str(st, "phase", NULL), "Completed");
  assert_string_equal(kyb_op_str(st, "completedAt", NULL), "2026-12-01T13:40:21Z");
  assert_string_equal(kyb_op_str(st, "imageRef", NULL),
                      "file:///var/lib/kybernate/images/llm-0-server-1");
  assert_non_null(kyb_op_str(st, "imageDigest", NULL));
  assert_int_equal(kyb_op_int(0, st, "sizeBytes", NULL), 17481234567LL);
  assert_string_equal(kyb_op_str(st, "restoreFrom", NULL),
                      "server=file:///var/lib/kybernate/images/llm-0-server-1");
  assert_int_equal(kyb_op_int(-1, st, "gpuCount", NULL), 1);
  assert_int_equal(json_array_size(json_object_get(st, "gpus")), 1);
  assert_null(kyb_op_get(json_array_get(json_object_get(st, "images"), 0), "extra", NULL));
  assert_int_equal(kyb_op_int(0, st, "timings", "total", NULL), 20950);
  json_t *ready = kyb_op_cond(st, "Ready");
  assert_string_equal(kyb_op_str(ready, "status", NULL), "True");
  assert_string_equal(kyb_op_str(ready, "reason", NULL), "Completed");
  assert_string_equal(kyb_op_str(ready, "message", NULL), "1 image published (17.5 GB) in 20.95 s");
}

static void test_rollup_completed_two_images_no_total(void **state) {
  (void)state;
  cleanup_json json_t *ck = ckpt_with("");
  cleanup_json json_t *req = request(
      "{\"phase\": \"Completed\", \"startedAt\": \"2026-12-01T13:40:00Z\", \"completedAt\":"
      " \"2026-12-01T13:40:03Z\", \"images\": [{\"container\": \"a\", \"imageRef\": \"s3://b/p/a\","
      " \"sizeBytes\": 1000}, {\"container\": \"b\", \"imageRef\": \"s3://b/p/b\", \"sizeBytes\":"
      " 500}]}");
  cleanup_json json_t *st = parse("{\"imageRef\": \"stale\"}");
  kyb_op_rollup_result r;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_op_rollup(st, ck, req, at("2026-12-01T13:41:00Z"), 2 * MIN, &r, &err), 0);
  assert_null(kyb_op_get(st, "imageRef", NULL)); /* only for exactly one image */
  assert_int_equal(kyb_op_int(0, st, "sizeBytes", NULL), 1500);
  assert_string_equal(kyb_op_str(st, "restoreFrom", NULL), "a=s3://b/p/a,b=s3://b/p/b");
  assert_int_equal(kyb_op_int(0, st, "timings", "total", NULL), 3000);
  assert_int_equal(kyb_op_int(-1, st, "gpuCount", NULL), 0);
  assert_string_equal(kyb_op_str(kyb_op_cond(st, "Ready"), "message", NULL),
                      "2 images published (1.5 kB) in 3.00 s");
  /* Completed without any image: that is a failure. */
  cleanup_json json_t *empty = request("{\"phase\": \"Completed\"}");
  cleanup_json json_t *st2 = json_object();
  assert_int_equal(kyb_op_rollup(st2, ck, empty, at("2026-12-01T13:41:00Z"), 2 * MIN, &r, &err), 0);
  assert_string_equal(kyb_op_str(st2, "phase", NULL), "Failed");
  assert_string_equal(kyb_op_str(kyb_op_cond(st2, "Ready"), "reason", NULL), "AgentFailed");
}

static void expect_failure(const char *req_reason, const char *want_reason, const char *want_msg,
                           bool pod_resolved) {
  char buf[1024];
  snprintf(buf, sizeof(buf),
           "{\"phase\": \"Failed\", \"completedAt\": \"2026-12-01T13:40:05Z\", \"conditions\": ["
           "{\"type\": \"Succeeded\", \"status\": \"False\", \"reason\": \"%s\", \"message\":"
           " \"lock: timed out after 10 s\", \"lastTransitionTime\": \"2026-12-01T13:40:05Z\"}]}",
           req_reason);
  cleanup_json json_t *ck = ckpt_with("");
  cleanup_json json_t *req = request(buf);
  cleanup_json json_t *st = json_object();
  kyb_op_rollup_result r;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_op_rollup(st, ck, req, at("2026-12-01T13:41:00Z"), 2 * MIN, &r, &err), 0);
  assert_int_equal(r.outcome, KYB_OP_ROLLUP_DONE);
  assert_string_equal(kyb_op_str(st, "phase", NULL), "Failed");
  assert_string_equal(kyb_op_str(st, "completedAt", NULL), "2026-12-01T13:40:05Z");
  json_t *ready = kyb_op_cond(st, "Ready");
  assert_string_equal(kyb_op_str(ready, "reason", NULL), want_reason);
  assert_string_equal(kyb_op_str(ready, "message", NULL), want_msg);
  assert_int_equal(kyb_op_cond(st, "PodResolved") != NULL, pod_resolved);
}

static void test_rollup_failure_reasons(void **state) {
  (void)state;
  expect_failure("GPULockTimeout", "AgentFailed", "GPULockTimeout: lock: timed out after 10 s",
                 false);
  expect_failure("AgentRestarted", "AgentFailed", "AgentRestarted: lock: timed out after 10 s",
                 false);
  expect_failure("DeadlineExceeded", "DeadlineExceeded", "lock: timed out after 10 s", false);
  expect_failure("StoreNotConfigured", "InvalidStorage", "lock: timed out after 10 s", false);
  expect_failure("PodNotFound", "PodNotFound", "lock: timed out after 10 s", true);
  expect_failure("ContainerNotFound", "ContainerNotFound", "lock: timed out after 10 s", true);
}

static void test_image_refs(void **state) {
  (void)state;
  cleanup_json json_t *ck = parse("{\"status\": {\"images\": [{\"container\": \"a\", \"imageRef\":"
                                  " \"x\"}]}}");
  cleanup_json json_t *reqs = parse(
      "[{\"spec\": {\"action\": \"Checkpoint\"}, \"status\": {\"images\": [{\"container\": \"a\","
      " \"imageRef\": \"x\"}, {\"container\": \"b\", \"imageRef\": \"y\"}]}},"
      " {\"spec\": {\"action\": \"DeleteImage\"}, \"status\": {\"images\": [{\"imageRef\": "
      "\"z\"}]}}]");
  cleanup_json json_t *refs = kyb_op_image_refs(ck, reqs);
  cleanup_json json_t *want = parse("[\"x\", \"y\"]");
  assert_true(json_equal(refs, want));
}

/* ---- Restore ---- */

static const char *const RESTORE =
    "{\"metadata\": {\"name\": \"wake\", \"namespace\": \"ns\", \"generation\": 1}}";

static json_t *pod_status(const char *status) {
  char buf[4096];
  snprintf(buf, sizeof(buf),
           "{\"metadata\": {\"name\": \"wake\", \"uid\": \"p1\"}, \"spec\": {\"nodeName\": "
           "\"node-b\", \"containers\": [{\"name\": \"main\"}]}, \"status\": %s}",
           status);
  return parse(buf);
}

static json_t *restoring(void) {
  return parse("{\"phase\": \"Restoring\", \"podName\": \"wake\", \"podUID\": \"p1\","
               " \"startedAt\": \"2026-12-01T14:00:00Z\"}");
}

static void test_restore_observe_running(void **state) {
  (void)state;
  cleanup_json json_t *r = parse(RESTORE);
  cleanup_json json_t *st = restoring();
  cleanup_error kyb_error *err = NULL;
  bool done = true;
  cleanup_json json_t *pending = pod_status(
      "{\"phase\": \"Pending\", \"conditions\": [{\"type\": \"PodScheduled\", \"status\": \"True\","
      " \"lastTransitionTime\": \"2026-12-01T14:00:01Z\"}], \"containerStatuses\": [{\"name\":"
      " \"main\", \"state\": {\"waiting\": {\"reason\": \"ContainerCreating\"}}}]}");
  assert_int_equal(kyb_op_restore_observe(st, r, pending, at("2026-12-01T14:00:02Z"), &done, &err),
                   0);
  assert_false(done);
  assert_string_equal(kyb_op_str(st, "phase", NULL), "Restoring");
  assert_string_equal(kyb_op_str(st, "nodeName", NULL), "node-b");
  assert_int_equal(kyb_op_int(0, st, "timings", "scheduled", NULL), 1000);
  assert_string_equal(kyb_op_str(kyb_op_cond(st, "Ready"), "message", NULL),
                      "pod wake: container main is waiting (ContainerCreating)");
  cleanup_json json_t *running = pod_status(
      "{\"phase\": \"Running\", \"conditions\": [{\"type\": \"PodScheduled\", \"status\": \"True\","
      " \"lastTransitionTime\": \"2026-12-01T14:00:01Z\"}, {\"type\": "
      "\"PodReadyToStartContainers\","
      " \"status\": \"True\", \"lastTransitionTime\": \"2026-12-01T14:00:02Z\"}],"
      " \"containerStatuses\": [{\"name\": \"main\", \"state\": {\"running\": {\"startedAt\":"
      " \"2026-12-01T14:00:05Z\"}}}]}");
  assert_int_equal(kyb_op_restore_observe(st, r, running, at("2026-12-01T14:00:09Z"), &done, &err),
                   0);
  assert_true(done);
  assert_string_equal(kyb_op_str(st, "phase", NULL), "Completed");
  assert_int_equal(kyb_op_int(0, st, "timings", "created", NULL), 2000);
  assert_int_equal(kyb_op_int(0, st, "timings", "running", NULL), 5000);
  assert_int_equal(kyb_op_int(0, st, "timings", "total", NULL), 9000);
  json_t *ready = kyb_op_cond(st, "Ready");
  assert_string_equal(kyb_op_str(ready, "reason", NULL), "Running");
  assert_string_equal(kyb_op_str(ready, "message", NULL),
                      "every container of pod wake runs from the checkpoint");
}

/* kybernate-runc took the cold fallback and the agent recorded it on the
 * pod: Completed still, but Ready says ColdStarted and why; an outcome
 * "restored", a malformed annotation or another container's name does not. */
static void test_restore_observe_cold_started(void **state) {
  (void)state;
  static const char *const running =
      "{\"phase\": \"Running\", \"containerStatuses\": [{\"name\": \"main\", \"state\":"
      " {\"running\": {\"startedAt\": \"2026-12-01T14:00:05Z\"}}}]}";
  static const struct {
    const char *annotation, *reason, *needle;
  } cases[] = {
      {"{\"main\": {\"outcome\": \"cold\", \"reason\": \"file criu/pages-1.img has sha256 x\"}}",
       "ColdStarted",
       "pod wake runs, started afresh (fallback Cold), not from the checkpoint: container main: "
       "file criu/pages-1.img has sha256 x"},
      {"{\"main\": {\"outcome\": \"cold\"}}", "ColdStarted", "container main: (no reason given)"},
      {"{\"main\": {\"outcome\": \"restored\", \"imageRef\": \"file:///x/web-1\"}}", "Running",
       "every container of pod wake runs from the checkpoint"},
      {"{\"other\": {\"outcome\": \"cold\", \"reason\": \"r\"}}", "Running", "runs from"},
      {"not json", "Running", "runs from"},
      {"[\"main\"]", "Running", "runs from"},
      {"{\"main\": \"cold\"}", "Running", "runs from"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    cleanup_json json_t *r = parse(RESTORE);
    cleanup_json json_t *st = restoring();
    cleanup_json json_t *pod = pod_status(running);
    json_object_set_new(json_object_get(pod, "metadata"), "annotations",
                        json_pack("{s:s}", "kybernate.io/restore-outcome", cases[i].annotation));
    cleanup_error kyb_error *err = NULL;
    bool done = false;
    assert_int_equal(kyb_op_restore_observe(st, r, pod, at("2026-12-01T14:00:09Z"), &done, &err),
                     0);
    assert_true(done);
    assert_string_equal(kyb_op_str(st, "phase", NULL), "Completed");
    json_t *ready = kyb_op_cond(st, "Ready");
    assert_string_equal(kyb_op_str(ready, "status", NULL), "True");
    assert_string_equal(kyb_op_str(ready, "reason", NULL), cases[i].reason);
    if (strstr(kyb_op_str0(ready, "message", NULL), cases[i].needle) == NULL)
      fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, kyb_op_str0(ready, "message", NULL),
               cases[i].needle);
  }
}

static void expect_restore_failure(const char *pod_st, bool have_pod, const char *reason,
                                   const char *needle) {
  cleanup_json json_t *r = parse(RESTORE);
  cleanup_json json_t *st = restoring();
  cleanup_json json_t *pod = have_pod ? pod_status(pod_st) : NULL;
  cleanup_error kyb_error *err = NULL;
  bool done = false;
  assert_int_equal(kyb_op_restore_observe(st, r, pod, at("2026-12-01T14:00:09Z"), &done, &err), 0);
  assert_true(done);
  assert_string_equal(kyb_op_str(st, "phase", NULL), "Failed");
  json_t *ready = kyb_op_cond(st, "Ready");
  assert_string_equal(kyb_op_str(ready, "reason", NULL), reason);
  if (strstr(kyb_op_str0(ready, "message", NULL), needle) == NULL)
    fail_msg("message \"%s\" lacks \"%s\"", kyb_op_str0(ready, "message", NULL), needle);
  assert_null(kyb_op_cond(st, "PodCreated")); /* a pod existed: not a PodCreated reason */
}

static void test_restore_observe_failures(void **state) {
  (void)state;
  /* kubelet's StartError, here as the last state of a restarting container. */
  expect_restore_failure(
      "{\"phase\": \"Running\", \"containerStatuses\": [{\"name\": \"main\", \"state\":"
      " {\"waiting\": {\"reason\": \"CrashLoopBackOff\"}}, \"lastState\": {\"terminated\":"
      " {\"reason\": \"StartError\", \"exitCode\": 128, \"message\": \"kybernate-runc: restore of"
      " web-1: no such image\"}}}]}",
      true, "RestoreFailed", "container main: StartError: kybernate-runc: restore of web-1");
  expect_restore_failure("{\"phase\": \"Failed\", \"reason\": \"NodeAffinity\", \"message\":"
                         " \"Pod was rejected: Predicate NodeAffinity failed\"}",
                         true, "Unschedulable", "NodeAffinity");
  expect_restore_failure("{\"phase\": \"Failed\", \"reason\": \"Evicted\"}", true, "PodFailed",
                         "Evicted");
  expect_restore_failure("{\"phase\": \"Succeeded\"}", true, "PodFailed", "Succeeded");
  expect_restore_failure("{}", false, "PodDeleted", "pod ns/wake was deleted");
}

static void test_restore_unschedulable_is_not_final(void **state) {
  (void)state;
  cleanup_json json_t *r = parse(RESTORE);
  cleanup_json json_t *st = restoring();
  cleanup_json json_t *pod =
      pod_status("{\"phase\": \"Pending\", \"conditions\": [{\"type\": \"PodScheduled\", "
                 "\"status\": \"False\","
                 " \"reason\": \"Unschedulable\", \"message\": \"0/3 nodes are available\"}]}");
  json_object_del(kyb_op_get(pod, "spec", NULL), "nodeName");
  cleanup_error kyb_error *err = NULL;
  bool done = true;
  assert_int_equal(kyb_op_restore_observe(st, r, pod, at("2026-12-01T14:00:09Z"), &done, &err), 0);
  assert_false(done);
  assert_string_equal(kyb_op_str(st, "phase", NULL), "Restoring");
  json_t *ready = kyb_op_cond(st, "Ready");
  assert_string_equal(kyb_op_str(ready, "status", NULL), "False");
  assert_string_equal(kyb_op_str(ready, "reason", NULL), "Unschedulable");
}

static void test_restore_fail_sets_pod_created(void **state) {
  (void)state;
  cleanup_json json_t *st = json_object();
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(
      kyb_op_restore_fail(st, 1, "GPUModelMismatch", "wrong GPU", at("2026-12-01T14:00:00Z"), &err),
      0);
  assert_string_equal(kyb_op_str(kyb_op_cond(st, "PodCreated"), "reason", NULL),
                      "GPUModelMismatch");
  assert_string_equal(kyb_op_str(kyb_op_cond(st, "Ready"), "reason", NULL), "GPUModelMismatch");
  assert_string_equal(kyb_op_str(st, "completedAt", NULL), "2026-12-01T14:00:00Z");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pod_checks),
      cmocka_unit_test(test_request_names_are_deterministic),
      cmocka_unit_test(test_request_objects),
      cmocka_unit_test(test_rollup_pending_and_unclaimed),
      cmocka_unit_test(test_rollup_running_and_node_lost),
      cmocka_unit_test(test_rollup_completed),
      cmocka_unit_test(test_rollup_completed_two_images_no_total),
      cmocka_unit_test(test_rollup_failure_reasons),
      cmocka_unit_test(test_image_refs),
      cmocka_unit_test(test_restore_observe_running),
      cmocka_unit_test(test_restore_observe_cold_started),
      cmocka_unit_test(test_restore_observe_failures),
      cmocka_unit_test(test_restore_unschedulable_is_not_final),
      cmocka_unit_test(test_restore_fail_sets_pod_created),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
