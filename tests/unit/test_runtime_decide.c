/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the restore decision (lib/runtime/decide.h): sandbox vs
 * application container, no annotation, a plain reference, the map form by
 * container name, the fallback annotation, malformed values; and the
 * namespace rule between an image's source pod and the new container; the
 * restore outcome's body for the agent (lib/runtime/report.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/decide.h"
#include "runtime/report.h"
#include "util/cleanup.h"

static json_t *ann(const char *json) {
  json_error_t jerr;
  json_t *o = json_loads(json, 0, &jerr);
  assert_non_null(o);
  return o;
}

static void decide_ok(const char *json, kyb_rt_action action, const char *ref,
                      kyb_rt_fallback fallback) {
  cleanup_json json_t *a = ann(json);
  cleanup_error kyb_error *err = NULL;
  kyb_rt_decision d;
  int r = kyb_rt_decide(a, &d, &err);
  if (r != 0)
    fail_msg("decide(%s): %s", json, kyb_error_message(err));
  assert_int_equal(d.action, action);
  if (ref == NULL)
    assert_null(d.ref);
  else
    assert_string_equal(d.ref, ref);
  assert_int_equal(d.fallback, fallback);
  if (action == KYB_RT_CREATE)
    assert_non_null(d.reason);
  kyb_rt_decision_clear(&d);
}

static void decide_fails(const char *json, const char *needle, kyb_rt_fallback fallback) {
  cleanup_json json_t *a = ann(json);
  cleanup_error kyb_error *err = NULL;
  kyb_rt_decision d;
  assert_int_equal(kyb_rt_decide(a, &d, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
  if (strstr(kyb_error_message(err), needle) == NULL)
    fail_msg("decide(%s): \"%s\" lacks \"%s\"", json, kyb_error_message(err), needle);
  assert_int_equal(d.fallback, fallback);
  assert_null(d.ref);
  kyb_rt_decision_clear(&d);
}

static void test_no_annotation(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  kyb_rt_decision d;
  assert_int_equal(kyb_rt_decide(NULL, &d, &err), 0);
  assert_int_equal(d.action, KYB_RT_CREATE);
  decide_ok("{}", KYB_RT_CREATE, NULL, KYB_RT_FALLBACK_NONE);
  decide_ok("{\"io.kubernetes.cri.container-type\":\"container\"}", KYB_RT_CREATE, NULL,
            KYB_RT_FALLBACK_NONE);
  /* A fallback alone does nothing. */
  decide_ok("{\"kybernate.io/restore-fallback\":\"cold\"}", KYB_RT_CREATE, NULL,
            KYB_RT_FALLBACK_NONE);
}

/* The pod sandbox gets the pod's annotations too and must pass through,
 * even when the value is malformed. */
static void test_sandbox_passes(void **state) {
  (void)state;
  decide_ok("{\"kybernate.io/restore-from\":\"web-1\","
            "\"io.kubernetes.cri.container-type\":\"sandbox\"}",
            KYB_RT_CREATE, NULL, KYB_RT_FALLBACK_NONE);
  decide_ok("{\"kybernate.io/restore-from\":\"=,=\","
            "\"io.kubernetes.cri.container-type\":\"sandbox\"}",
            KYB_RT_CREATE, NULL, KYB_RT_FALLBACK_NONE);
  decide_ok("{\"kybernate.io/restore-from\":\"web-1\","
            "\"io.kubernetes.cri.container-type\":\"something-new\"}",
            KYB_RT_CREATE, NULL, KYB_RT_FALLBACK_NONE);
}

static void test_plain_reference(void **state) {
  (void)state;
  /* A CRI application container, and one made without CRI. */
  decide_ok("{\"kybernate.io/restore-from\":\"web-1-20261128-134000\","
            "\"io.kubernetes.cri.container-type\":\"container\","
            "\"io.kubernetes.cri.container-name\":\"app\"}",
            KYB_RT_RESTORE, "web-1-20261128-134000", KYB_RT_FALLBACK_NONE);
  decide_ok("{\"kybernate.io/restore-from\":\"  file:///mnt/images/web-1 \"}", KYB_RT_RESTORE,
            "file:///mnt/images/web-1", KYB_RT_FALLBACK_NONE);
  /* Path-like references are the resolver's to refuse, not the parser's. */
  decide_ok("{\"kybernate.io/restore-from\":\"/tmp/x\"}", KYB_RT_RESTORE, "/tmp/x",
            KYB_RT_FALLBACK_NONE);
}

static void test_map_form(void **state) {
  (void)state;
  const char *two = "{\"kybernate.io/restore-from\":\"app=img-a, sidecar = img-b\","
                    "\"io.kubernetes.cri.container-type\":\"container\","
                    "\"io.kubernetes.cri.container-name\":\"%s\"}";
  char buf[512];
  snprintf(buf, sizeof(buf), two, "app");
  decide_ok(buf, KYB_RT_RESTORE, "img-a", KYB_RT_FALLBACK_NONE);
  snprintf(buf, sizeof(buf), two, "sidecar");
  decide_ok(buf, KYB_RT_RESTORE, "img-b", KYB_RT_FALLBACK_NONE);
  /* Not named: created normally. */
  snprintf(buf, sizeof(buf), two, "init");
  decide_ok(buf, KYB_RT_CREATE, NULL, KYB_RT_FALLBACK_NONE);
  /* A name that is a prefix of another is not a match. */
  snprintf(buf, sizeof(buf), two, "side");
  decide_ok(buf, KYB_RT_CREATE, NULL, KYB_RT_FALLBACK_NONE);
}

static void test_malformed(void **state) {
  (void)state;
  decide_fails("{\"kybernate.io/restore-from\":\"\"}", "empty checkpoint reference",
               KYB_RT_FALLBACK_NONE);
  decide_fails("{\"kybernate.io/restore-from\":\"a b\"}", "not allowed in a reference",
               KYB_RT_FALLBACK_NONE);
  decide_fails("{\"kybernate.io/restore-from\":42}", "not a string", KYB_RT_FALLBACK_NONE);
  const char *map = "{\"kybernate.io/restore-from\":\"%s\","
                    "\"io.kubernetes.cri.container-name\":\"app\"}";
  char buf[512];
  snprintf(buf, sizeof(buf), map, "app=");
  decide_fails(buf, "empty checkpoint reference", KYB_RT_FALLBACK_NONE);
  snprintf(buf, sizeof(buf), map, "app=a,,other=b");
  decide_fails(buf, "is not <container-name>=<reference>", KYB_RT_FALLBACK_NONE);
  snprintf(buf, sizeof(buf), map, "=a");
  decide_fails(buf, "container name", KYB_RT_FALLBACK_NONE);
  snprintf(buf, sizeof(buf), map, "app=a,app=b");
  decide_fails(buf, "named twice", KYB_RT_FALLBACK_NONE);
  snprintf(buf, sizeof(buf), map, "a/b=x");
  decide_fails(buf, "is not a container name", KYB_RT_FALLBACK_NONE);
  snprintf(buf, sizeof(buf), map, "app=a=b");
  decide_fails(buf, "not allowed in a reference", KYB_RT_FALLBACK_NONE);
  /* The whole map is checked, not only this container's entry. */
  snprintf(buf, sizeof(buf), map, "app=ok,other=");
  decide_fails(buf, "empty checkpoint reference", KYB_RT_FALLBACK_NONE);
  /* The map form needs a CRI container name. */
  decide_fails("{\"kybernate.io/restore-from\":\"app=a\"}", "no io.kubernetes.cri.container-name",
               KYB_RT_FALLBACK_NONE);
  /* Oversized values. */
  char big[KYB_ANN_VALUE_MAX + 64];
  memset(big, 'a', sizeof(big));
  memcpy(big, "{\"kybernate.io/restore-from\":\"", 30);
  memcpy(big + sizeof(big) - 3, "\"}", 3);
  decide_fails(big, "bytes long", KYB_RT_FALLBACK_NONE);
}

static void test_fallback(void **state) {
  (void)state;
  decide_ok("{\"kybernate.io/restore-from\":\"x\",\"kybernate.io/restore-fallback\":\"cold\"}",
            KYB_RT_RESTORE, "x", KYB_RT_FALLBACK_COLD);
  decide_ok("{\"kybernate.io/restore-from\":\"x\",\"kybernate.io/restore-fallback\":\"none\"}",
            KYB_RT_RESTORE, "x", KYB_RT_FALLBACK_NONE);
  /* A bad reference still reports the fallback asked for. */
  decide_fails("{\"kybernate.io/restore-from\":\"a b\","
               "\"kybernate.io/restore-fallback\":\"cold\"}",
               "not allowed", KYB_RT_FALLBACK_COLD);
  /* A bad fallback is an error, not a guess. */
  decide_fails("{\"kybernate.io/restore-from\":\"x\","
               "\"kybernate.io/restore-fallback\":\"warm\"}",
               "expected \"cold\" or \"none\"", KYB_RT_FALLBACK_NONE);
}

static json_t *manifest_with_pod(const char *ns) {
  if (ns == NULL)
    return ann("{\"source\":{\"containerId\":\"c\"}}");
  char buf[256];
  snprintf(buf, sizeof(buf),
           "{\"source\":{\"containerId\":\"c\",\"pod\":{\"name\":\"web\",\"namespace\":\"%s\"}}}",
           ns);
  return ann(buf);
}

static void ns_check(const char *img_ns, const char *pod_ns, bool ok, const char *needle) {
  cleanup_json json_t *m = manifest_with_pod(img_ns);
  char buf[256];
  if (pod_ns != NULL)
    snprintf(buf, sizeof(buf), "{\"io.kubernetes.cri.sandbox-namespace\":\"%s\"}", pod_ns);
  else
    snprintf(buf, sizeof(buf), "{}");
  cleanup_json json_t *a = ann(buf);
  cleanup_error kyb_error *err = NULL;
  int r = kyb_rt_check_namespace(m, a, &err);
  if (ok) {
    assert_int_equal(r, 0);
    return;
  }
  assert_int_equal(r, -1);
  assert_int_equal(kyb_error_code(err), EPERM);
  if (needle != NULL && strstr(kyb_error_message(err), needle) == NULL)
    fail_msg("\"%s\" lacks \"%s\"", kyb_error_message(err), needle);
}

static void test_namespace_rule(void **state) {
  (void)state;
  ns_check("shop", "shop", true, NULL);
  ns_check("shop", "other", false, "wrong namespace");
  ns_check("shop", NULL, false, "not a Kubernetes pod's");
  ns_check(NULL, NULL, true, NULL);
  ns_check(NULL, "shop", false, "taken outside Kubernetes");
}

static json_t *pod_annotations(void) {
  json_t *a = json_pack("{s:s, s:s, s:s, s:s, s:s}", "io.kubernetes.cri.sandbox-namespace", "shop",
                        "io.kubernetes.cri.sandbox-name", "web-1", "io.kubernetes.cri.sandbox-uid",
                        "0b7e1c58", "io.kubernetes.cri.container-name", "main",
                        "io.kubernetes.cri.container-type", "container");
  assert_non_null(a);
  return a;
}

static const char *str(const json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

static void test_report_body(void **state) {
  (void)state;
  cleanup_json json_t *a = pod_annotations();
  cleanup_json json_t *cold = kyb_rt_report_body(a, true, "restore failed:\nline 2\t", "web-1-x");
  assert_non_null(cold);
  assert_string_equal(str(cold, "podNamespace"), "shop");
  assert_string_equal(str(cold, "podName"), "web-1");
  assert_string_equal(str(cold, "podUID"), "0b7e1c58");
  assert_string_equal(str(cold, "container"), "main");
  assert_string_equal(str(cold, "outcome"), "cold");
  assert_string_equal(str(cold, "reason"), "restore failed: line 2 "); /* one line for the agent */
  assert_string_equal(str(cold, "imageRef"), "web-1-x");
  cleanup_json json_t *ok = kyb_rt_report_body(a, false, NULL, "web-1-x");
  assert_string_equal(str(ok, "outcome"), "restored");
  assert_null(json_object_get(ok, "reason"));
  /* Cold always has a reason; a reference longer than the agent takes is left out; a reason
   * longer than 4 KiB is cut; bytes that are not UTF-8 become '?'. */
  char big[6000];
  memset(big, 'r', sizeof(big));
  big[sizeof(big) - 1] = '\0';
  cleanup_json json_t *c2 = kyb_rt_report_body(a, true, "", big);
  assert_string_equal(str(c2, "reason"), "(no reason given)");
  assert_null(json_object_get(c2, "imageRef"));
  cleanup_json json_t *c3 = kyb_rt_report_body(a, true, big, NULL);
  assert_int_equal(strlen(str(c3, "reason")), 4096);
  cleanup_json json_t *c4 = kyb_rt_report_body(a, true, "bad \xff byte", NULL);
  assert_string_equal(str(c4, "reason"), "bad ? byte");
  /* Not a pod's container: nothing to report. */
  static const char *const keys[] = {
      "io.kubernetes.cri.sandbox-namespace", "io.kubernetes.cri.sandbox-name",
      "io.kubernetes.cri.sandbox-uid", "io.kubernetes.cri.container-name"};
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    cleanup_json json_t *b = pod_annotations();
    json_object_del(b, keys[i]);
    assert_null(kyb_rt_report_body(b, true, "x", NULL));
  }
  assert_null(kyb_rt_report_body(NULL, false, NULL, NULL));
  /* No socket: nothing sent, nothing fails. */
  kyb_rt_report_outcome(NULL, a, true, "x", NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_annotation),   cmocka_unit_test(test_sandbox_passes),
      cmocka_unit_test(test_plain_reference), cmocka_unit_test(test_map_form),
      cmocka_unit_test(test_malformed),       cmocka_unit_test(test_fallback),
      cmocka_unit_test(test_namespace_rule),  cmocka_unit_test(test_report_body),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
