/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the error convention: chain order, errno text, wrap on a
 * missing error, and clean release. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "util/cleanup.h"
#include "util/error.h"

static int open_config(kyb_error **err) {
  return kyb_error_set(err, ENOENT, "open %s", "/etc/kybernate/config.json");
}

static int load(kyb_error **err) {
  if (open_config(err) < 0)
    return kyb_error_wrap(err, "load configuration");
  return 0;
}

static void test_chain_reads_outermost_first(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(load(&err), -1);
  assert_non_null(err);
  assert_int_equal(kyb_error_wrap(&err, "start agent"), -1);
  assert_string_equal(kyb_error_message(err),
                      "start agent: load configuration: open /etc/kybernate/config.json "
                      "(No such file or directory)");
  assert_string_equal(kyb_error_root(err), "open /etc/kybernate/config.json");
  assert_int_equal(kyb_error_code(err), ENOENT);
  assert_int_equal(err->nframes, 3);
}

static void test_no_errno_no_parentheses(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  kyb_error_set(&err, 0, "manifest version %d is not supported", 9);
  kyb_error_wrap(&err, "inspect %s", "img-1");
  assert_string_equal(kyb_error_message(err), "inspect img-1: manifest version 9 is not supported");
}

static void test_errno_variant_captures_errno(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  errno = EACCES;
  assert_int_equal(kyb_error_errno(&err, "write %s", "/x"), -1);
  assert_int_equal(kyb_error_code(err), EACCES);
  assert_string_equal(kyb_error_message(err), "write /x (Permission denied)");
}

static void test_wrap_without_error_is_reported(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_error_wrap(&err, "checkpoint"), -1);
  assert_non_null(err);
  assert_string_equal(kyb_error_message(err),
                      "checkpoint: unknown error (callee failed without reporting)");
}

static void test_set_replaces_previous(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  kyb_error_set(&err, EIO, "first");
  kyb_error_set(&err, EINVAL, "second");
  assert_string_equal(kyb_error_root(err), "second");
  assert_int_equal(err->nframes, 1);
}

static void test_message_cache_updates_after_wrap(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  kyb_error_set(&err, 0, "root");
  assert_string_equal(kyb_error_message(err), "root");
  kyb_error_wrap(&err, "outer");
  assert_string_equal(kyb_error_message(err), "outer: root");
}

static void test_clear_and_null_safe(void **state) {
  (void)state;
  kyb_error *err = NULL;
  kyb_error_clear(&err); /* nothing to release */
  kyb_error_free(NULL);
  kyb_error_set(&err, 0, "x");
  kyb_error_clear(&err);
  assert_null(err);
  assert_string_equal(kyb_error_message(NULL), "no error");
  /* A NULL out-parameter means "caller does not care": must not crash. */
  assert_int_equal(kyb_error_set(NULL, EIO, "ignored"), -1);
  assert_int_equal(kyb_error_wrap(NULL, "ignored"), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chain_reads_outermost_first),
      cmocka_unit_test(test_no_errno_no_parentheses),
      cmocka_unit_test(test_errno_variant_captures_errno),
      cmocka_unit_test(test_wrap_without_error_is_reported),
      cmocka_unit_test(test_set_replaces_previous),
      cmocka_unit_test(test_message_cache_updates_after_wrap),
      cmocka_unit_test(test_clear_and_null_safe),
  };
  return cmocka_run_group_tests_name("error", tests, NULL, NULL);
}
