/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of API error answers turned into kyb_errors: Status objects,
 * plain bodies, the code and reason read back through wraps, errno
 * mapping, and untrusted server text kept out of the message's shape. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "kube/client.h"
#include "kube/internal.h"
#include "util/cleanup.h"

static const char *W = "create kybernate.io/v1alpha1 checkpoints default/x";

static void test_status_object(void **state) {
  (void)state;
  const char body[] = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
                      "\"message\":\"checkpoints.kybernate.io \\\"x\\\" already exists\","
                      "\"reason\":\"AlreadyExists\",\"details\":{\"name\":\"x\"},\"code\":409}";
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_kube_status_error(W, 409, body, strlen(body), &err), -1);
  assert_string_equal(kyb_error_message(err),
                      "kube: create kybernate.io/v1alpha1 checkpoints default/x: 409 "
                      "AlreadyExists: checkpoints.kybernate.io \"x\" already exists (File exists)");
  assert_int_equal(kyb_error_code(err), EEXIST);
  assert_int_equal(kyb_kube_status_of(err), 409);
  char reason[64];
  assert_string_equal(kyb_kube_reason_of(err, reason, sizeof(reason)), "AlreadyExists");

  /* Code and reason survive context added by callers. */
  kyb_error_wrap(&err, "checkpoint web-0");
  kyb_error_wrap(&err, "reconcile");
  assert_int_equal(kyb_kube_status_of(err), 409);
  assert_string_equal(kyb_kube_reason_of(err, reason, sizeof(reason)), "AlreadyExists");
}

static void test_conflict_gone_notfound(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  const char conflict[] = "{\"kind\":\"Status\",\"code\":409,\"reason\":\"Conflict\","
                          "\"message\":\"the object has been modified\"}";
  kyb_kube_status_error("update v1 pods a/b", 409, conflict, strlen(conflict), &err);
  assert_int_equal(kyb_error_code(err), EBUSY);
  assert_int_equal(kyb_kube_status_of(err), 409);

  const char gone[] = "{\"kind\":\"Status\",\"code\":410,\"reason\":\"Expired\","
                      "\"message\":\"too old resource version: 1 (5)\"}";
  kyb_kube_status_error("list v1 pods a", 410, gone, strlen(gone), &err);
  assert_int_equal(kyb_error_code(err), ESTALE);
  char r[32];
  assert_string_equal(kyb_kube_reason_of(err, r, sizeof(r)), "Expired");

  /* A Status without a message. */
  const char nf[] = "{\"kind\":\"Status\",\"code\":404,\"reason\":\"NotFound\"}";
  kyb_kube_status_error("get v1 pods a/b", 404, nf, strlen(nf), &err);
  assert_string_equal(kyb_error_root(err), "kube: get v1 pods a/b: 404 NotFound");
  assert_int_equal(kyb_kube_status_of(err), 404);
  assert_int_equal(kyb_error_code(err), ENOENT);
}

static void test_plain_bodies(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  const char html[] = "<html>bad gateway</html>\n<body>...";
  kyb_kube_status_error("get v1 pods a/b", 502, html, strlen(html), &err);
  assert_string_equal(kyb_error_root(err), "kube: get v1 pods a/b: 502 Unknown: <html>bad "
                                           "gateway</html>");
  assert_int_equal(kyb_error_code(err), EIO);
  kyb_kube_status_error("get v1 pods a/b", 403, NULL, 0, &err);
  assert_string_equal(kyb_error_root(err), "kube: get v1 pods a/b: 403 Forbidden");
  assert_int_equal(kyb_error_code(err), EACCES);
  /* Some other JSON is not a Status. */
  const char other[] = "{\"kind\":\"Pod\",\"reason\":\"Fake\",\"code\":200}";
  kyb_kube_status_error("get v1 pods a/b", 429, other, strlen(other), &err);
  assert_int_equal(kyb_kube_status_of(err), 429);
  char r[32];
  assert_string_equal(kyb_kube_reason_of(err, r, sizeof(r)), "TooManyRequests");
  assert_int_equal(kyb_error_code(err), EAGAIN);
}

static void test_untrusted_text(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  /* A reason that is not a word, a code out of range, control characters
   * and a huge message: the shape of the message holds. */
  char body[8192];
  char big[4000];
  memset(big, 'm', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  snprintf(body, sizeof(body),
           "{\"kind\":\"Status\",\"code\":99999,\"reason\":\"Not: 404 Real\","
           "\"message\":\"line1\\nline2\\u001b[31m%s\"}",
           big);
  kyb_kube_status_error("get v1 pods a/b", 422, body, strlen(body), &err);
  const char *root = kyb_error_root(err);
  assert_non_null(strstr(root, "kube: get v1 pods a/b: 422 Invalid: line1 line2"));
  assert_null(strchr(root, '\n'));
  assert_null(strchr(root, '\x1b'));
  assert_true(strlen(root) < 1200);
  assert_int_equal(kyb_kube_status_of(err), 422);

  /* UTF-8 is not cut inside a character. */
  char out[6];
  kube_sanitize(out, sizeof(out), "abcd\xc3\xa9", 6);
  assert_string_equal(out, "abcd");
  kube_sanitize(out, sizeof(out), "ab\xc3\xa9x", 5);
  assert_string_equal(out, "ab\xc3\xa9x");
}

static void test_status_of_other_errors(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_kube_status_of(NULL), 0);
  kyb_error_set(&err, ECONNREFUSED,
                "kube: get v1 pods a/b: cannot connect to the API server "
                "at https://h:443: Failed to connect: 404 things");
  assert_int_equal(kyb_kube_status_of(err), 0);
  kyb_error_set(&err, EIO, "containerd Tasks.Get: 404 x");
  assert_int_equal(kyb_kube_status_of(err), 0);
  char r[8];
  assert_string_equal(kyb_kube_reason_of(err, r, sizeof(r)), "");
}

static void test_errno_map(void **state) {
  (void)state;
  assert_int_equal(kyb_kube_status_errno(400, NULL), EINVAL);
  assert_int_equal(kyb_kube_status_errno(401, NULL), EACCES);
  assert_int_equal(kyb_kube_status_errno(404, NULL), ENOENT);
  assert_int_equal(kyb_kube_status_errno(405, NULL), ENOTSUP);
  assert_int_equal(kyb_kube_status_errno(409, "AlreadyExists"), EEXIST);
  assert_int_equal(kyb_kube_status_errno(409, "Conflict"), EBUSY);
  assert_int_equal(kyb_kube_status_errno(410, NULL), ESTALE);
  assert_int_equal(kyb_kube_status_errno(413, NULL), EFBIG);
  assert_int_equal(kyb_kube_status_errno(429, NULL), EAGAIN);
  assert_int_equal(kyb_kube_status_errno(500, NULL), EIO);
  assert_int_equal(kyb_kube_status_errno(503, NULL), EAGAIN);
  assert_int_equal(kyb_kube_status_errno(504, NULL), ETIMEDOUT);
}

static void test_parse_object(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  cleanup_json json_t *j = kube_parse_object("get x", "{\"a\":1}", 7, &err);
  assert_non_null(j);
  assert_null(kube_parse_object("get x", "[1]", 3, &err));
  assert_int_equal(kyb_error_code(err), EPROTO);
  assert_null(kube_parse_object("get x", "{\"a\":1,\"a\":2}", 13, &err));
  assert_null(kube_parse_object("get x", "\x01\x02garbage", 9, &err));
  assert_non_null(strstr(kyb_error_message(err), "malformed answer"));
  assert_null(strchr(kyb_error_message(err), '\x01'));
  assert_null(kube_parse_object("get x", NULL, 0, &err));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_status_object),          cmocka_unit_test(test_conflict_gone_notfound),
      cmocka_unit_test(test_plain_bodies),           cmocka_unit_test(test_untrusted_text),
      cmocka_unit_test(test_status_of_other_errors), cmocka_unit_test(test_errno_map),
      cmocka_unit_test(test_parse_object),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
