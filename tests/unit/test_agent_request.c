/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of CheckpointRequest validation (lib/agent/request.c): what
 * the privileged agent accepts from the API server -- defaults, names,
 * store URIs and image references (no host path a request makes up), the
 * pod's namespace, the node label, limits -- the request-fixed image names,
 * the local API's checkpoint body (lib/agent/api.c), and kybernate-runc's
 * restore outcome body with the pod annotation made from it
 * (lib/agent/report.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "agent/api.h"
#include "agent/report.h"
#include "agent/request.h"
#include "image/image.h"
#include "util/cleanup.h"

#define SEC 1000000LL

/* A valid Checkpoint request of node n1; tests change one thing. */
static json_t *request(void) {
  json_t *o = json_pack(
      "{s:s, s:s, s:{s:s, s:s, s:s, s:s, s:I, s:{s:s}},"
      " s:{s:s, s:s, s:s, s:s, s:[s], s:{s:s, s:s}}}",
      "apiVersion", "kybernate.io/v1alpha1", "kind", "CheckpointRequest", "metadata", "name",
      "web-ckpt-x7k2p", "namespace", "shop", "uid", "0b7e1c58-5f5e-4b8f-9a53-6a3c0d2f4e11",
      "resourceVersion", "42", "generation", (json_int_t)1, "labels", "kybernate.io/node", "n1",
      "spec", "nodeName", "n1", "podNamespace", "shop", "podName", "web", "podUID", "uid-1",
      "containers", "main", "checkpointRef", "name", "web-ckpt", "uid", "c-1");
  assert_non_null(o);
  return o;
}

static json_t *spec(json_t *o) {
  return json_object_get(o, "spec");
}

/* Parses o and expects EINVAL with `needle` in the message. */
static void expect_invalid(json_t *o, const char *needle) {
  kyb_agent_request r;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_agent_request_parse(o, &r, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
  if (strstr(kyb_error_message(err), needle) == NULL)
    fail_msg("\"%s\" not in \"%s\"", needle, kyb_error_message(err));
  kyb_agent_request_clear(&r);
  json_decref(o);
}

static void test_valid_with_defaults(void **state) {
  (void)state;
  cleanup_json json_t *o = request();
  kyb_agent_request r;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_agent_request_parse(o, &r, &err), 0);
  assert_string_equal(r.ns, "shop");
  assert_string_equal(r.name, "web-ckpt-x7k2p");
  assert_string_equal(r.resource_version, "42");
  assert_int_equal(r.generation, 1);
  assert_int_equal(r.action, KYB_AGENT_ACTION_CHECKPOINT);
  assert_string_equal(r.node, "n1");
  assert_string_equal(r.pod_uid, "uid-1");
  assert_int_equal(r.ncontainers, 1);
  assert_string_equal(r.containers[0], "main");
  assert_null(r.containers[1]);
  assert_null(r.storage);
  assert_true(r.leave_running);
  assert_int_equal(r.gpu_lock_timeout_s, 10);
  assert_int_equal(r.deadline_s, 3600);
  assert_int_equal(r.phase, KYB_AGENT_PHASE_PENDING);
  assert_null(r.holder_pod);
  assert_int_equal(r.started_us, 0);
  assert_false(kyb_agent_request_final(&r));
  kyb_agent_request_clear(&r);
  assert_null(r.name);
}

static void test_status_fields(void **state) {
  (void)state;
  cleanup_json json_t *o = request();
  json_object_set_new(o, "status",
                      json_pack("{s:s, s:s, s:i, s:s, s:{s:s, s:s, s:s}}", "phase", "Running",
                                "step", "dump", "attempts", 2, "startedAt", "2026-12-01T13:40:00Z",
                                "agent", "podName", "agent-a", "podUID", "u-a", "renewTime",
                                "2026-12-01T13:40:15.5Z"));
  kyb_agent_request r;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_agent_request_parse(o, &r, &err), 0);
  assert_int_equal(r.phase, KYB_AGENT_PHASE_RUNNING);
  assert_string_equal(r.step, "dump");
  assert_int_equal(r.attempts, 2);
  assert_string_equal(r.holder_pod, "agent-a");
  assert_string_equal(r.holder_uid, "u-a");
  assert_int_equal(r.renew_us - r.started_us, 15 * SEC + SEC / 2);
  kyb_agent_request_clear(&r);
  json_object_set_new(json_object_get(o, "status"), "phase", json_string("Done"));
  expect_invalid(json_incref(o), "status.phase");
}

static void test_invalid_specs(void **state) {
  (void)state;
  json_t *o = request();
  json_object_del(spec(o), "podUID");
  expect_invalid(o, "spec.podUID is missing");

  o = request();
  json_object_set_new(spec(o), "containers", json_array());
  expect_invalid(o, "spec.containers is empty");

  o = request();
  json_object_set_new(spec(o), "containers", json_pack("[s, s]", "main", "main"));
  expect_invalid(o, "names main twice");

  o = request();
  json_object_set_new(spec(o), "containers", json_pack("[s]", "Main_1"));
  expect_invalid(o, "spec.containers[0] is not a valid container name");

  o = request();
  json_t *many = json_array();
  for (int i = 0; i < KYB_AGENT_MAX_ITEMS + 1; i++) {
    char n[16];
    snprintf(n, sizeof(n), "c%d", i);
    json_array_append_new(many, json_string(n));
  }
  json_object_set_new(spec(o), "containers", many);
  expect_invalid(o, "65 entries");

  /* The pod is looked up in the request's own namespace only. */
  o = request();
  json_object_set_new(spec(o), "podNamespace", json_string("kube-system"));
  expect_invalid(o, "not the request's namespace");

  o = request();
  json_object_set_new(spec(o), "action", json_string("Restore"));
  expect_invalid(o, "spec.action");

  o = request();
  json_object_set_new(spec(o), "gpuLockTimeoutSeconds", json_integer(0));
  expect_invalid(o, "from 1 to 600");

  o = request();
  json_object_set_new(spec(o), "deadlineSeconds", json_string("60"));
  expect_invalid(o, "deadlineSeconds");

  o = request();
  json_object_set_new(spec(o), "leaveRunning", json_string("yes"));
  expect_invalid(o, "not a boolean");

  o = request();
  json_object_del(spec(o), "checkpointRef");
  expect_invalid(o, "checkpointRef");

  /* The label the agents select by must agree with spec.nodeName. */
  o = request();
  json_object_set_new(spec(o), "nodeName", json_string("n2"));
  expect_invalid(o, "differs from spec.nodeName");

  o = request();
  json_object_set_new(spec(o), "nodeName", json_string("N1!"));
  expect_invalid(o, "not a node name");

  o = request();
  json_object_set_new(spec(o), "podName", json_integer(3));
  expect_invalid(o, "spec.podName is not a string");
}

/* Metadata and status survive a bad spec: the agent can still fail it. */
static void test_invalid_spec_keeps_identity(void **state) {
  (void)state;
  cleanup_json json_t *o = request();
  json_object_set_new(spec(o), "storage", json_string("file:///etc/../root"));
  kyb_agent_request r;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_agent_request_parse(o, &r, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "spec.storage"));
  assert_string_equal(r.name, "web-ckpt-x7k2p");
  assert_string_equal(r.node_label, "n1");
  assert_int_equal(r.phase, KYB_AGENT_PHASE_PENDING);
  kyb_agent_request_clear(&r);
}

static void test_store_uris(void **state) {
  (void)state;
  const char *good[] = {"file:///var/lib/kybernate/images",
                        "file://localhost/mnt/shared",
                        "file:///a..b/c",
                        "oci://registry:5000/team/ckpt",
                        "s3://kybernate-ckpt",
                        "s3://kybernate-ckpt/inference/x"};
  const char *bad[] = {"",
                       "/var/lib/kybernate/images",
                       "file://relative/x",
                       "file:///a/../etc",
                       "file:///a/..",
                       "file:///a b",
                       "file:///a,b",
                       "file:///a=b",
                       "oci://registry",
                       "oci:///repo",
                       "s3://Bad_Bucket",
                       "s3://ab",
                       "s3://bucket/../other",
                       "http://x/y",
                       "file:///tab\there"};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
    if (!kyb_agent_store_uri_valid(good[i]))
      fail_msg("refused %s", good[i]);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (kyb_agent_store_uri_valid(bad[i]))
      fail_msg("accepted %s", bad[i]);
}

static void test_delete_image_requests(void **state) {
  (void)state;
  cleanup_json json_t *o = request();
  json_object_set_new(spec(o), "action", json_string("DeleteImage"));
  json_object_set_new(spec(o), "imageRefs",
                      json_pack("[s, s]", "web-main-20261201-134000-0b7e1",
                                "file:///var/lib/kybernate/images/old-1"));
  kyb_agent_request r;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_agent_request_parse(o, &r, &err), 0);
  assert_int_equal(r.action, KYB_AGENT_ACTION_DELETE_IMAGE);
  assert_int_equal(r.nimage_refs, 2);
  assert_string_equal(r.image_refs[1], "file:///var/lib/kybernate/images/old-1");
  kyb_agent_request_clear(&r);

  json_t *bad = json_deep_copy(o);
  json_object_set_new(spec(bad), "imageRefs", json_pack("[s]", "/etc/passwd"));
  expect_invalid(bad, "image reference");
  bad = json_deep_copy(o);
  json_object_set_new(spec(bad), "imageRefs", json_pack("[s]", "file:///x/../y"));
  expect_invalid(bad, "image reference");
  bad = json_deep_copy(o);
  json_object_del(spec(bad), "imageRefs");
  expect_invalid(bad, "spec.imageRefs is empty");
}

static void test_image_names(void **state) {
  (void)state;
  cleanup_json json_t *o = request();
  kyb_agent_request r;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_agent_request_parse(o, &r, &err), 0);
  cleanup_free char *none = NULL;
  assert_int_equal(kyb_agent_image_name(&r, "main", &none, &err), -1); /* never claimed */
  kyb_error_clear(&err);
  r.started_us = 1796132400LL * SEC + 123; /* 2026-12-01T13:40:00Z */
  cleanup_free char *a = NULL, *b = NULL;
  assert_int_equal(kyb_agent_image_name(&r, "main", &a, &err), 0);
  assert_string_equal(a, "web-main-20261201-134000-0b7e1");
  /* The same request after a takeover: the same name. */
  assert_int_equal(kyb_agent_image_name(&r, "main", &b, &err), 0);
  assert_string_equal(a, b);
  /* A very long pod name is shortened; the result is a valid name. */
  char pod[254];
  memset(pod, 'p', 253);
  pod[253] = '\0';
  free(r.pod_name);
  r.pod_name = strdup(pod);
  cleanup_free char *c = NULL;
  assert_int_equal(kyb_agent_image_name(&r, "sidecar", &c, &err), 0);
  assert_int_equal(strlen(c), KYB_IMAGE_NAME_MAX);
  assert_true(kyb_image_name_valid(c));
  assert_non_null(strstr(c, "-sidecar-20261201-134000-0b7e1"));
  kyb_agent_request_clear(&r);
}

static json_t *job_of(const char *body, int *status, char *msg) {
  cleanup_json json_t *b = json_loads(body, 0, NULL);
  assert_non_null(b);
  return kyb_agent_api_checkpoint_job(b, "/run/c.sock", "file:///var/lib/kybernate/images", status,
                                      msg, 256);
}

static void test_local_checkpoint_body(void **state) {
  (void)state;
  int st = 0;
  char msg[256];
  cleanup_json json_t *j =
      job_of("{\"pod\": \"shop/web\", \"container\": \"main\", \"leaveRunning\": true}", &st, msg);
  assert_non_null(j);
  assert_int_equal(st, 200);
  assert_string_equal(json_string_value(json_object_get(j, "podNamespace")), "shop");
  assert_string_equal(json_string_value(json_object_get(j, "podName")), "web");
  assert_string_equal(json_string_value(json_object_get(j, "store")),
                      "file:///var/lib/kybernate/images");
  assert_true(json_is_true(json_object_get(j, "leaveRunning")));
  assert_int_equal(json_integer_value(json_object_get(j, "gpuLockTimeoutMs")), 10000);
  cleanup_json json_t *k = job_of("{\"container\": \"c1\", \"store\": \"file:///tmp/s\", "
                                  "\"name\": \"c1-img\", \"gpuLockTimeoutSeconds\": 3}",
                                  &st, msg);
  assert_non_null(k);
  assert_string_equal(json_string_value(json_object_get(k, "containerId")), "c1");
  assert_string_equal(json_string_value(json_object_get(k, "namespace")), "default");
  assert_int_equal(json_integer_value(json_object_get(k, "gpuLockTimeoutMs")), 3000);
  const char *bad[][2] = {{"{\"container\": \"c1\", \"rm\": true}", "unknown field"},
                          {"{\"namespace\": \"x\"}", "\"container\" is required"},
                          {"{\"container\": \"c\", \"store\": \"/tmp\"}", "not a store URI"},
                          {"{\"container\": \"c\", \"name\": \"../x\"}", "not an image name"},
                          {"{\"container\": \"c\", \"pod\": \"web\"}", "NAMESPACE/NAME"},
                          {"{\"container\": \"C!\", \"pod\": \"a/b\"}", "Kubernetes names"},
                          {"{\"container\": \"c\", \"gpuLockTimeoutSeconds\": 0}", "1 to 600"}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    json_t *x = job_of(bad[i][0], &st, msg);
    assert_null(x);
    assert_int_equal(st, 400);
    if (strstr(msg, bad[i][1]) == NULL)
      fail_msg("%s: \"%s\" not in \"%s\"", bad[i][0], bad[i][1], msg);
  }
}

static int report_of(const char *body, kyb_agent_restore_report *r, kyb_error **err) {
  cleanup_json json_t *b = json_loads(body, JSON_ALLOW_NUL, NULL); /* the parser's own NUL check */
  assert_non_null(b);
  return kyb_agent_restore_report_parse(b, r, err);
}

#define GOOD_POD "\"podNamespace\": \"shop\", \"podName\": \"web-1\", \"podUID\": \"0b7e1c58-5f5e\""

static void test_restore_outcome_body(void **state) {
  (void)state;
  kyb_agent_restore_report r = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(report_of("{" GOOD_POD ", \"container\": \"main\", \"outcome\": \"cold\","
                             " \"reason\": \"no such image\", \"imageRef\": \"web-1-x\"}",
                             &r, &err),
                   0);
  assert_true(r.cold);
  assert_string_equal(r.pod_ns, "shop");
  assert_string_equal(r.pod_name, "web-1");
  assert_string_equal(r.pod_uid, "0b7e1c58-5f5e");
  assert_string_equal(r.container, "main");
  assert_string_equal(r.reason, "no such image");
  assert_string_equal(r.image_ref, "web-1-x");
  kyb_agent_restore_report_clear(&r);
  /* A restore needs no reason and no reference. */
  assert_int_equal(
      report_of("{" GOOD_POD ", \"container\": \"main\", \"outcome\": \"restored\"}", &r, &err), 0);
  assert_false(r.cold);
  assert_null(r.reason);
  assert_null(r.image_ref);
  kyb_agent_restore_report_clear(&r);

  char long_reason[KYB_AGENT_REPORT_MAX_REASON + 256];
  snprintf(long_reason, sizeof(long_reason),
           "{" GOOD_POD ", \"container\": \"main\", \"outcome\": \"cold\", \"reason\": \"%0*d\"}",
           (int)KYB_AGENT_REPORT_MAX_REASON + 1, 0);
  const char *bad[][2] = {
      {"[]", "must be a JSON object"},
      {"{" GOOD_POD ", \"container\": \"main\", \"outcome\": \"warm\"}", "\"outcome\" must be"},
      {"{" GOOD_POD ", \"container\": \"main\"}", "\"outcome\" must be"},
      {"{" GOOD_POD ", \"container\": \"main\", \"outcome\": \"cold\"}", "\"reason\" is required"},
      {"{" GOOD_POD ", \"container\": \"main\", \"outcome\": \"cold\", \"reason\": \"\"}",
       "\"reason\" is not"},
      {"{" GOOD_POD ", \"container\": \"main\", \"outcome\": \"cold\", \"reason\": \"a\\nb\"}",
       "without control characters"},
      {"{" GOOD_POD ", \"container\": \"main\", \"outcome\": \"cold\", \"reason\": 3}",
       "\"reason\" must be a string"},
      {"{" GOOD_POD ", \"outcome\": \"restored\"}", "\"container\" is required"},
      {"{" GOOD_POD ", \"container\": \"Main!\", \"outcome\": \"restored\"}",
       "not a container name"},
      {"{\"podNamespace\": \"Shop\", \"podName\": \"w\", \"podUID\": \"u\", \"container\": \"m\","
       " \"outcome\": \"restored\"}",
       "not a namespace name"},
      {"{\"podNamespace\": \"s\", \"podName\": \"../w\", \"podUID\": \"u\", \"container\": \"m\","
       " \"outcome\": \"restored\"}",
       "not a pod name"},
      {"{\"podNamespace\": \"s\", \"podName\": \"w\", \"podUID\": \"u/1\", \"container\": \"m\","
       " \"outcome\": \"restored\"}",
       "not a pod uid"},
      {"{\"podNamespace\": \"s\", \"podName\": \"w\", \"container\": \"m\", \"outcome\": "
       "\"restored\"}",
       "\"podUID\" is required"},
      {"{" GOOD_POD ", \"container\": \"m\", \"outcome\": \"restored\", \"node\": \"x\"}",
       "unknown field \"node\""},
      {"{" GOOD_POD
       ", \"container\": \"m\", \"outcome\": \"restored\", \"imageRef\": \"a\\u0000b\"}",
       "\"imageRef\" is not"},
      {long_reason, "\"reason\" is not"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    kyb_error_clear(&err);
    kyb_agent_restore_report x = {0};
    assert_int_equal(report_of(bad[i][0], &x, &err), -1);
    assert_int_equal(kyb_error_code(err), EINVAL);
    if (strstr(kyb_error_message(err), bad[i][1]) == NULL)
      fail_msg("%.80s: \"%s\" not in \"%s\"", bad[i][0], bad[i][1], kyb_error_message(err));
    assert_null(x.pod_ns);
  }
}

static void test_restore_outcome_annotation(void **state) {
  (void)state;
  kyb_agent_restore_report r = {
      .container = "main", .cold = true, .reason = "bad digest", .image_ref = "web-1-x"};
  int64_t t = 1796140800LL * SEC; /* 2026-12-01T16:00:00Z */
  cleanup_free char *a = kyb_agent_outcome_annotation(NULL, &r, t);
  assert_string_equal(a, "{\"main\":{\"at\":\"2026-12-01T16:00:00Z\",\"imageRef\":\"web-1-x\","
                         "\"outcome\":\"cold\",\"reason\":\"bad digest\"}}");
  /* Another container's entry stays; this one's is replaced. */
  kyb_agent_restore_report side = {.container = "side", .cold = false};
  cleanup_free char *b = kyb_agent_outcome_annotation(a, &side, t);
  assert_string_equal(b, "{\"main\":{\"at\":\"2026-12-01T16:00:00Z\",\"imageRef\":\"web-1-x\","
                         "\"outcome\":\"cold\",\"reason\":\"bad digest\"},\"side\":{\"at\":"
                         "\"2026-12-01T16:00:00Z\",\"outcome\":\"restored\"}}");
  r.cold = false;
  r.reason = NULL;
  cleanup_free char *c = kyb_agent_outcome_annotation(b, &r, t);
  assert_non_null(strstr(c, "\"main\":{\"at\":\"2026-12-01T16:00:00Z\",\"imageRef\":\"web-1-x\","
                            "\"outcome\":\"restored\"}"));
  /* A malformed value on the pod is replaced, not kept. */
  cleanup_free char *d = kyb_agent_outcome_annotation("[1,2", &side, t);
  assert_string_equal(d, "{\"side\":{\"at\":\"2026-12-01T16:00:00Z\",\"outcome\":\"restored\"}}");
  /* A long reason is cut on a character boundary, marked. */
  char reason[KYB_AGENT_REPORT_KEPT_REASON * 2];
  memset(reason, 'a', sizeof(reason));
  memcpy(reason + KYB_AGENT_REPORT_KEPT_REASON - 5, "\xc3\xa9\xc3\xa9",
         4); /* the cut falls on the 2nd */
  reason[sizeof(reason) - 1] = '\0';
  kyb_agent_restore_report l = {.container = "main", .cold = true, .reason = reason};
  cleanup_free char *e = kyb_agent_outcome_annotation(NULL, &l, t);
  cleanup_json json_t *j = json_loads(e, 0, NULL);
  assert_non_null(j);
  const char *kept = json_string_value(json_object_get(json_object_get(j, "main"), "reason"));
  assert_true(strlen(kept) <= KYB_AGENT_REPORT_KEPT_REASON);
  assert_non_null(strstr(kept, "\xc3\xa9..."));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_valid_with_defaults),
      cmocka_unit_test(test_status_fields),
      cmocka_unit_test(test_invalid_specs),
      cmocka_unit_test(test_invalid_spec_keeps_identity),
      cmocka_unit_test(test_store_uris),
      cmocka_unit_test(test_delete_image_requests),
      cmocka_unit_test(test_image_names),
      cmocka_unit_test(test_local_checkpoint_body),
      cmocka_unit_test(test_restore_outcome_body),
      cmocka_unit_test(test_restore_outcome_annotation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
