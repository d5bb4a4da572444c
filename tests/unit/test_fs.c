/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the file-system helpers: bounded reads, atomic writes,
 * mkdir -p, and a removal that does not follow symlinks out of its tree. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/cleanup.h"
#include "util/fs.h"

static char tmpdir[] = "/tmp/kyb-test-fs-XXXXXX";

static int setup(void **state) {
  (void)state;
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  kyb_error *err = NULL;
  int r = kyb_remove_tree(tmpdir, &err);
  kyb_error_free(err);
  return r;
}

static void test_write_then_read(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *p = kyb_path_join(tmpdir, "a.json");
  assert_int_equal(kyb_write_file_atomic(p, "{\"a\":1}", 7, 0644, &err), 0);
  cleanup_free char *buf = NULL;
  size_t len = 0;
  assert_int_equal(kyb_read_file(p, 1024, &buf, &len, &err), 0);
  assert_int_equal(len, 7);
  assert_string_equal(buf, "{\"a\":1}");
  struct stat st;
  assert_int_equal(stat(p, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0644);
}

static void test_read_limit(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *p = kyb_path_join(tmpdir, "big");
  assert_int_equal(kyb_write_file_atomic(p, "0123456789", 10, 0600, &err), 0);
  cleanup_free char *buf = NULL;
  assert_int_equal(kyb_read_file(p, 9, &buf, NULL, &err), -1);
  assert_int_equal(kyb_error_code(err), EFBIG);
  assert_null(buf);
}

static void test_read_missing(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *buf = NULL;
  assert_int_equal(kyb_read_file("/nonexistent/kyb", 10, &buf, NULL, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
  assert_string_equal(kyb_error_root(err), "open /nonexistent/kyb");
}

static void test_no_temp_left_behind(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *d = kyb_path_join(tmpdir, "atomic");
  assert_int_equal(kyb_mkdir_p(d, 0755, &err), 0);
  cleanup_free char *p = kyb_path_join(d, "f");
  assert_int_equal(kyb_write_file_atomic(p, "x", 1, 0644, &err), 0);
  assert_int_equal(kyb_write_file_atomic(p, "yy", 2, 0644, &err), 0);
  cleanup_dir DIR *dir = opendir(d);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(dir)) != NULL)
    if (de->d_name[0] != '.')
      n++;
  assert_int_equal(n, 1);
}

static void test_mkdir_p_and_remove(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *deep = kyb_path_join(tmpdir, "x/y/z");
  assert_int_equal(kyb_mkdir_p(deep, 0755, &err), 0);
  assert_int_equal(kyb_mkdir_p(deep, 0755, &err), 0); /* idempotent */
  /* A symlink inside the tree to a file outside must be removed, not followed. */
  cleanup_free char *outside = kyb_path_join(tmpdir, "outside");
  assert_int_equal(kyb_write_file_atomic(outside, "keep", 4, 0644, &err), 0);
  cleanup_free char *link = kyb_path_join(deep, "link");
  assert_int_equal(symlink(outside, link), 0);
  cleanup_free char *top = kyb_path_join(tmpdir, "x");
  assert_int_equal(kyb_remove_tree(top, &err), 0);
  assert_int_equal(access(top, F_OK), -1);
  assert_int_equal(access(outside, F_OK), 0);
  assert_int_equal(kyb_remove_tree(top, &err), 0); /* missing is fine */
}

static void test_mkdir_p_over_file(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *p = kyb_path_join(tmpdir, "file");
  assert_int_equal(kyb_write_file_atomic(p, "x", 1, 0644, &err), 0);
  assert_int_equal(kyb_mkdir_p(p, 0755, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOTDIR);
}

static void test_path_join(void **state) {
  (void)state;
  cleanup_free char *a = kyb_path_join("/var/lib/", "/images");
  assert_string_equal(a, "/var/lib/images");
  cleanup_free char *b = kyb_path_join("/", "x");
  assert_string_equal(b, "/x");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_write_then_read),    cmocka_unit_test(test_read_limit),
      cmocka_unit_test(test_read_missing),       cmocka_unit_test(test_no_temp_left_behind),
      cmocka_unit_test(test_mkdir_p_and_remove), cmocka_unit_test(test_mkdir_p_over_file),
      cmocka_unit_test(test_path_join),
  };
  return cmocka_run_group_tests_name("fs", tests, setup, teardown);
}
