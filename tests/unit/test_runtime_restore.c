/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the restore helpers (lib/runtime/restore.h): reading the
 * bundle's spec, its rootfs path, the relative links to the image, and the
 * clean-up of a half-restored container when runc made none. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/restore.h"
#include "util/cleanup.h"
#include "util/fs.h"

static char tmpdir[] = "/tmp/kyb-test-rtr-XXXXXX";

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

static void write_spec(const char *text) {
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *p = kyb_path_join(tmpdir, "config.json");
  assert_int_equal(kyb_write_file_atomic(p, text, strlen(text), 0600, &err), 0);
}

static void test_load_spec(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  write_spec("{\"root\":{\"path\":\"rootfs\"},\"annotations\":{\"a\":\"b\"}}");
  cleanup_json json_t *spec = NULL;
  assert_int_equal(kyb_rt_load_spec(tmpdir, &spec, &err), 0);
  assert_string_equal(json_string_value(json_object_get(kyb_rt_spec_annotations(spec), "a")), "b");
  cleanup_free char *rootfs = NULL;
  assert_int_equal(kyb_rt_spec_rootfs(spec, "/bundle", &rootfs, &err), 0);
  assert_string_equal(rootfs, "/bundle/rootfs");

  json_t *spec2 = NULL;
  write_spec("{\"root\":{\"path\":\"/abs/rootfs\"}}");
  assert_int_equal(kyb_rt_load_spec(tmpdir, &spec2, &err), 0);
  assert_null(kyb_rt_spec_annotations(spec2));
  cleanup_free char *abs = NULL;
  assert_int_equal(kyb_rt_spec_rootfs(spec2, "/bundle", &abs, &err), 0);
  assert_string_equal(abs, "/abs/rootfs");
  json_decref(spec2);

  write_spec("{}");
  cleanup_json json_t *noroot = NULL;
  assert_int_equal(kyb_rt_load_spec(tmpdir, &noroot, &err), 0);
  cleanup_free char *none = NULL;
  assert_int_equal(kyb_rt_spec_rootfs(noroot, "/bundle", &none, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "no root.path"));
  kyb_error_clear(&err);

  json_t *bad = NULL;
  write_spec("[1,2]");
  assert_int_equal(kyb_rt_load_spec(tmpdir, &bad, &err), -1);
  assert_null(bad);
  kyb_error_clear(&err);
  write_spec("{\"root\":");
  assert_int_equal(kyb_rt_load_spec(tmpdir, &bad, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "line 1"));
  kyb_error_clear(&err);
  cleanup_free char *missing = kyb_path_join(tmpdir, "nowhere");
  assert_int_equal(kyb_rt_load_spec(missing, &bad, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
}

static void rel(const char *from, const char *to, const char *want) {
  cleanup_free char *got = kyb_rt_relative_path(from, to);
  assert_non_null(got);
  assert_string_equal(got, want);
}

static void test_relative_path(void **state) {
  (void)state;
  rel("/run/containerd/b/kybernate-restore/images", "/var/lib/kybernate/images/x/criu",
      "../../../../../var/lib/kybernate/images/x/criu");
  rel("/a/b/c", "/a/b/d", "../d");
  rel("/a/b", "/a/b/c/d", "c/d");
  rel("/a/b", "/a/b", ".");
  rel("/a/bc/x", "/a/b/y", "../../b/y"); /* "b" is not a prefix of "bc" */
  rel("/", "/var/x", "var/x");
  rel("/a", "/", "..");
}

/* No runc state for the id: nothing to delete, the delegate is not run. */
static void test_delete_leftover_without_state(void **state) {
  (void)state;
  char *argv[] = {"kybernate-runc", "--root", tmpdir, "create"};
  kyb_runc_cmdline g;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_runc_cmdline_parse(4, argv, &g, &err), 0);
  assert_int_equal(kyb_rt_delete_leftover(&g, "/nonexistent/runc", "no-such-id", &err), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_load_spec),
      cmocka_unit_test(test_relative_path),
      cmocka_unit_test(test_delete_leftover_without_state),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
