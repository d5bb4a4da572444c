/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of retention's choice (docs/api.md, "Retention"): per pod, by
 * completedAt, this one included; Failed and deleting ones neither counted
 * nor deleted; the newest Completed one's keepLast governs (absent: the
 * default; 0 keeps all); only the newest applies it (idempotent); a stale
 * copy of the one that completed is replaced by the fresh one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "operator/retention.h"
#include "util/cleanup.h"

static json_t *ck(const char *name, const char *pod, const char *phase, const char *completed,
                  int keep, bool deleting) {
  char keep_s[64] = "", del_s[80] = "", buf[1024];
  if (keep >= 0)
    snprintf(keep_s, sizeof(keep_s), ", \"retention\": {\"keepLast\": %d}", keep);
  if (deleting)
    snprintf(del_s, sizeof(del_s), ", \"deletionTimestamp\": \"2026-12-01T15:00:00Z\"");
  snprintf(buf, sizeof(buf),
           "{\"metadata\": {\"name\": \"%s\", \"uid\": \"uid-%s\", \"creationTimestamp\":"
           " \"2026-12-01T10:00:00Z\"%s}, \"spec\": {\"podName\": \"%s\"%s}, \"status\":"
           " {\"phase\": \"%s\", \"completedAt\": \"%s\"}}",
           name, name, del_s, pod, keep_s, phase, completed);
  json_error_t e;
  json_t *j = json_loads(buf, 0, &e);
  assert_non_null(j);
  return j;
}

static char *names(json_t *victims) {
  static char out[512];
  out[0] = '\0';
  size_t i;
  json_t *v;
  json_array_foreach(victims, i, v) {
    if (i > 0)
      strcat(out, ",");
    strcat(out, json_string_value(json_object_get(v, "name")));
  }
  return out;
}

static json_t *items(void) {
  json_t *a = json_array();
  json_array_append_new(a, ck("c1", "web", "Completed", "2026-12-01T11:00:00Z", -1, false));
  json_array_append_new(a, ck("c2", "web", "Completed", "2026-12-01T12:00:00Z", -1, false));
  json_array_append_new(a, ck("f1", "web", "Failed", "2026-12-01T12:30:00Z", -1, false));
  json_array_append_new(a, ck("c3", "web", "Completed", "2026-12-01T13:00:00Z", -1, false));
  json_array_append_new(a, ck("d1", "web", "Completed", "2026-12-01T09:00:00Z", -1, true));
  json_array_append_new(a, ck("o1", "other", "Completed", "2026-12-01T08:00:00Z", -1, false));
  json_array_append_new(a, ck("r1", "web", "Running", "", -1, false));
  return a;
}

static void test_keep_last(void **state) {
  (void)state;
  cleanup_json json_t *all = items();
  cleanup_json json_t *just = ck("c4", "web", "Completed", "2026-12-01T14:00:00Z", 2, false);
  cleanup_json json_t *v = kyb_op_retention_victims(all, just, 5);
  /* Newest two (c4, c3) stay; c2, c1 go (newest first); f1, d1, o1, r1 untouched. */
  assert_string_equal(names(v), "c2,c1");
  assert_string_equal(json_string_value(json_object_get(json_array_get(v, 0), "uid")), "uid-c2");
}

static void test_default_and_zero(void **state) {
  (void)state;
  cleanup_json json_t *all = items();
  cleanup_json json_t *just = ck("c4", "web", "Completed", "2026-12-01T14:00:00Z", -1, false);
  cleanup_json json_t *v1 = kyb_op_retention_victims(all, just, 3);
  assert_string_equal(names(v1), "c1");
  cleanup_json json_t *v2 = kyb_op_retention_victims(all, just, 5);
  assert_int_equal(json_array_size(v2), 0);
  cleanup_json json_t *keep_all = ck("c4", "web", "Completed", "2026-12-01T14:00:00Z", 0, false);
  cleanup_json json_t *v3 = kyb_op_retention_victims(all, keep_all, 1);
  assert_int_equal(json_array_size(v3), 0);
}

static void test_only_the_newest_governs(void **state) {
  (void)state;
  cleanup_json json_t *all = items();
  /* c2 (keepLast 1) is reconciled again, but c3 is newer: nothing. */
  cleanup_json json_t *older = ck("c2", "web", "Completed", "2026-12-01T12:00:00Z", 1, false);
  cleanup_json json_t *v = kyb_op_retention_victims(all, older, 5);
  assert_int_equal(json_array_size(v), 0);
  /* Not Completed (yet): nothing. */
  cleanup_json json_t *failed = ck("f2", "web", "Failed", "2026-12-01T16:00:00Z", 1, false);
  cleanup_json json_t *v2 = kyb_op_retention_victims(all, failed, 5);
  assert_int_equal(json_array_size(v2), 0);
}

static void test_stale_copy_replaced(void **state) {
  (void)state;
  cleanup_json json_t *all = items();
  /* The cache still has c4 as Running; the fresh object is Completed. */
  json_array_append_new(all, ck("c4", "web", "Running", "", 1, false));
  cleanup_json json_t *just = ck("c4", "web", "Completed", "2026-12-01T14:00:00Z", 1, false);
  cleanup_json json_t *v = kyb_op_retention_victims(all, just, 5);
  assert_string_equal(names(v), "c3,c2,c1");
}

static void test_ties(void **state) {
  (void)state;
  cleanup_json json_t *all = json_array();
  json_array_append_new(all, ck("a", "p", "Completed", "2026-12-01T11:00:00Z", -1, false));
  json_array_append_new(all, ck("b", "p", "Completed", "2026-12-01T11:00:00Z", -1, false));
  cleanup_json json_t *just = ck("c", "p", "Completed", "2026-12-01T11:00:00Z", 1, false);
  cleanup_json json_t *v = kyb_op_retention_victims(all, just, 5);
  /* Same time and creation: the greater name counts as newer. */
  assert_string_equal(names(v), "b,a");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keep_last),
      cmocka_unit_test(test_default_and_zero),
      cmocka_unit_test(test_only_the_newest_governs),
      cmocka_unit_test(test_stale_copy_replaced),
      cmocka_unit_test(test_ties),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
