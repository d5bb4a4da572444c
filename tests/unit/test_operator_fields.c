/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the operator's field helpers and of conditions written the
 * way meta.SetStatusCondition writes them: lastTransitionTime moves with the
 * status only, reason/message/observedGeneration update in place, one entry
 * per type, messages cut on a UTF-8 boundary at 32 KiB. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "operator/fields.h"
#include "util/cleanup.h"

static json_t *parse(const char *s) {
  json_error_t e;
  json_t *j = json_loads(s, 0, &e);
  assert_non_null(j);
  return j;
}

static void test_get_helpers(void **state) {
  (void)state;
  cleanup_json json_t *o = parse("{\"metadata\": {\"name\": \"x\", \"labels\": {\"a.b/c\": \"v\"},"
                                 " \"generation\": 3}, \"spec\": {\"flag\": false, \"n\": \"7\"}}");
  assert_string_equal(kyb_op_str(o, "metadata", "name", NULL), "x");
  /* Keys with dots and slashes are single steps. */
  assert_string_equal(kyb_op_str(o, "metadata", "labels", "a.b/c", NULL), "v");
  assert_null(kyb_op_str(o, "metadata", "missing", NULL));
  assert_null(kyb_op_str(o, "metadata", "name", "deeper", NULL)); /* through a string */
  assert_string_equal(kyb_op_str0(o, "nope", NULL), "");
  assert_int_equal(kyb_op_int(0, o, "metadata", "generation", NULL), 3);
  assert_int_equal(kyb_op_int(9, o, "spec", "n", NULL), 9); /* a string is not an integer */
  assert_false(kyb_op_bool(true, o, "spec", "flag", NULL));
  assert_true(kyb_op_bool(true, o, "spec", "absent", NULL));
  assert_null(kyb_op_get(NULL, "a", NULL));
}

static void test_time(void **state) {
  (void)state;
  cleanup_json json_t *o = parse("{\"t\": \"2026-12-01T13:40:21Z\", \"bad\": \"yesterday\"}");
  int64_t t = kyb_op_time(o, "t", NULL);
  assert_true(t > 0);
  char buf[40];
  kyb_op_time_str(t, buf, sizeof(buf));
  assert_string_equal(buf, "2026-12-01T13:40:21Z");
  assert_int_equal(kyb_op_time(o, "bad", NULL), 0);
  assert_int_equal(kyb_op_time(o, "absent", NULL), 0);
}

static json_t *cond(json_t *st, const char *type) {
  json_t *c = kyb_op_cond(st, type);
  assert_non_null(c);
  return c;
}

static void test_condition_rules(void **state) {
  (void)state;
  cleanup_json json_t *st = json_object();
  cleanup_error kyb_error *err = NULL;
  /* New: added with the time given. */
  assert_int_equal(kyb_op_cond_set(st, "Ready", "Unknown", "InProgress", "step dump", 1,
                                   "2026-12-01T10:00:00Z", &err),
                   1);
  json_t *c = cond(st, "Ready");
  assert_string_equal(kyb_op_str(c, "lastTransitionTime", NULL), "2026-12-01T10:00:00Z");
  assert_int_equal(kyb_op_int(0, c, "observedGeneration", NULL), 1);
  /* Exactly the same again: nothing changes, not even the time. */
  assert_int_equal(kyb_op_cond_set(st, "Ready", "Unknown", "InProgress", "step dump", 1,
                                   "2026-12-01T10:00:05Z", &err),
                   0);
  assert_string_equal(kyb_op_str(c, "lastTransitionTime", NULL), "2026-12-01T10:00:00Z");
  /* Same status, new message: changed, but the transition time stays. */
  assert_int_equal(kyb_op_cond_set(st, "Ready", "Unknown", "InProgress", "step publish", 2,
                                   "2026-12-01T10:00:10Z", &err),
                   1);
  c = cond(st, "Ready");
  assert_string_equal(kyb_op_str(c, "message", NULL), "step publish");
  assert_int_equal(kyb_op_int(0, c, "observedGeneration", NULL), 2);
  assert_string_equal(kyb_op_str(c, "lastTransitionTime", NULL), "2026-12-01T10:00:00Z");
  /* Status changes: the time moves. */
  assert_int_equal(
      kyb_op_cond_set(st, "Ready", "True", "Completed", "done", 2, "2026-12-01T10:00:20Z", &err),
      1);
  c = cond(st, "Ready");
  assert_string_equal(kyb_op_str(c, "lastTransitionTime", NULL), "2026-12-01T10:00:20Z");
  assert_string_equal(kyb_op_str(c, "reason", NULL), "Completed");
  /* Another type: a second entry; still one entry per type. */
  assert_int_equal(
      kyb_op_cond_set(st, "PodResolved", "True", "Found", "", 2, "2026-12-01T10:00:21Z", &err), 1);
  assert_int_equal(json_array_size(json_object_get(st, "conditions")), 2);
  assert_true(kyb_op_cond_is(st, "Ready", "True"));
  assert_false(kyb_op_cond_is(st, "Ready", "False"));
  assert_false(kyb_op_cond_is(st, "Absent", "True"));
  /* A condition written without a time (by hand) gets one. */
  json_object_del(cond(st, "PodResolved"), "lastTransitionTime");
  assert_int_equal(
      kyb_op_cond_set(st, "PodResolved", "True", "Found", "", 2, "2026-12-01T10:00:30Z", &err), 1);
  assert_string_equal(kyb_op_str(cond(st, "PodResolved"), "lastTransitionTime", NULL),
                      "2026-12-01T10:00:30Z");
}

static void test_message_cut_on_utf8_boundary(void **state) {
  (void)state;
  /* "é" is 2 bytes: a cut at 3 of "aéé" would split the second one. */
  cleanup_free char *a = kyb_op_truncate_utf8("a\xc3\xa9\xc3\xa9", 4);
  assert_string_equal(a, "a\xc3\xa9");
  cleanup_free char *b = kyb_op_truncate_utf8("a\xc3\xa9\xc3\xa9", 5);
  assert_string_equal(b, "a\xc3\xa9\xc3\xa9");
  cleanup_free char *c = kyb_op_truncate_utf8("abc", 2);
  assert_string_equal(c, "ab");
  /* A condition's message is held to the CRD's 32 KiB. */
  size_t n = KYB_OP_MAX_MESSAGE + 100;
  cleanup_free char *big = malloc(n + 1);
  memset(big, 'x', n);
  big[n] = '\0';
  cleanup_json json_t *st = json_object();
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(
      kyb_op_cond_set(st, "Ready", "False", "AgentFailed", big, 1, "2026-12-01T10:00:00Z", &err),
      1);
  assert_int_equal(strlen(kyb_op_str(kyb_op_cond(st, "Ready"), "message", NULL)),
                   KYB_OP_MAX_MESSAGE);
}

static void test_format_bytes(void **state) {
  (void)state;
  char b[32];
  kyb_op_format_bytes(17481234567LL, b, sizeof(b));
  assert_string_equal(b, "17.5 GB");
  kyb_op_format_bytes(512, b, sizeof(b));
  assert_string_equal(b, "512 B");
  kyb_op_format_bytes(4200, b, sizeof(b));
  assert_string_equal(b, "4.2 kB");
  kyb_op_format_bytes(999999, b, sizeof(b));
  assert_string_equal(b, "1.0 MB");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get_helpers),     cmocka_unit_test(test_time),
      cmocka_unit_test(test_condition_rules), cmocka_unit_test(test_message_cut_on_utf8_boundary),
      cmocka_unit_test(test_format_bytes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
