/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of restore markers (lib/runtime/marker.h) and runc-format log
 * lines (lib/runtime/runc_log.h). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "image/image.h"
#include "runtime/marker.h"
#include "runtime/runc_log.h"
#include "util/cleanup.h"
#include "util/fs.h"

static char tmpdir[] = "/tmp/kyb-test-rt-XXXXXX";

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

static bool present(const char *root, const char *id) {
  cleanup_error kyb_error *err = NULL;
  bool p = true;
  assert_int_equal(kyb_rt_marker_check(tmpdir, root, id, &p, &err), 0);
  return p;
}

static void test_marker_set_check_remove(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  const char *root = "/run/containerd/runc/k8s.io";
  assert_false(present(root, "c1"));
  assert_int_equal(kyb_rt_marker_set(tmpdir, root, "c1", "{\"id\":\"c1\"}", &err), 0);
  assert_true(present(root, "c1"));
  /* Keyed by root AND id. */
  assert_false(present(root, "c2"));
  assert_false(present("/run/containerd/runc/default", "c1"));

  cleanup_free char *path = NULL;
  assert_int_equal(kyb_rt_marker_path(tmpdir, root, "c1", &path, &err), 0);
  assert_int_equal(strncmp(path, tmpdir, strlen(tmpdir)), 0);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  cleanup_free char *content = NULL;
  assert_int_equal(kyb_read_file(path, 1024, &content, NULL, &err), 0);
  assert_string_equal(content, "{\"id\":\"c1\"}");

  /* Setting again replaces; removing twice is fine. */
  assert_int_equal(kyb_rt_marker_set(tmpdir, root, "c1", "{}", &err), 0);
  assert_int_equal(kyb_rt_marker_remove(tmpdir, root, "c1", &err), 0);
  assert_false(present(root, "c1"));
  assert_int_equal(kyb_rt_marker_remove(tmpdir, root, "c1", &err), 0);
  /* Removing under a root never seen is fine too. */
  assert_int_equal(kyb_rt_marker_remove(tmpdir, "/never/seen", "c1", &err), 0);
}

static void test_marker_bad_input(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  bool p = false;
  assert_int_equal(kyb_rt_marker_check(tmpdir, "/r", "../escape", &p, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
  kyb_error_clear(&err);
  assert_int_equal(kyb_rt_marker_set(tmpdir, "/r", "a/b", "{}", &err), -1);
  kyb_error_clear(&err);
  assert_int_equal(kyb_rt_marker_set(tmpdir, "relative/root", "a", "{}", &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "not an absolute path"));
  kyb_error_clear(&err);
  /* A marker path that is not a regular file is an error, not "present". */
  cleanup_free char *path = NULL;
  assert_int_equal(kyb_rt_marker_path(tmpdir, "/r", "dir", &path, &err), 0);
  assert_int_equal(kyb_mkdir_p(path, 0700, &err), 0);
  assert_int_equal(kyb_rt_marker_check(tmpdir, "/r", "dir", &p, &err), -1);
}

static void test_state_dir_env(void **state) {
  (void)state;
  unsetenv(KYB_RT_STATE_DIR_ENV);
  assert_string_equal(kyb_rt_state_dir(), KYB_RT_STATE_DIR_DEFAULT);
  setenv(KYB_RT_STATE_DIR_ENV, "relative", 1);
  assert_string_equal(kyb_rt_state_dir(), KYB_RT_STATE_DIR_DEFAULT);
  setenv(KYB_RT_STATE_DIR_ENV, "/x/y", 1);
  assert_string_equal(kyb_rt_state_dir(), "/x/y");
  unsetenv(KYB_RT_STATE_DIR_ENV);
}

/* ---- runc log lines ------------------------------------------------------- */

static void test_log_line_json(void **state) {
  (void)state;
  struct timespec ts = {.tv_sec = 1795873200, .tv_nsec = 123456789}; /* 2026-11-28 */
  cleanup_free char *line = kyb_runc_log_line(true, "error", "restore failed: \"x\"\nnext", &ts);
  assert_non_null(line);
  assert_string_equal(line, "{\"level\":\"error\",\"msg\":\"restore failed: \\\"x\\\"\\nnext\","
                            "\"time\":\"2026-11-28T13:40:00.123456789Z\"}\n");
  /* The time is RFC 3339 as the shim's Go decoder wants it. */
  json_error_t jerr;
  cleanup_json json_t *parsed = json_loads(line, 0, &jerr);
  assert_non_null(parsed);
  assert_true(kyb_image_time_valid(json_string_value(json_object_get(parsed, "time"))));

  /* Bytes that are not UTF-8 still make a valid JSON line. */
  cleanup_free char *bad = kyb_runc_log_line(true, "warning", "bad \xff byte", &ts);
  assert_non_null(bad);
  cleanup_json json_t *o = json_loads(bad, 0, &jerr);
  assert_non_null(o);
  assert_string_equal(json_string_value(json_object_get(o, "level")), "warning");
  assert_string_equal(json_string_value(json_object_get(o, "msg")), "bad ? byte");
}

static void test_log_line_text(void **state) {
  (void)state;
  struct timespec ts = {.tv_sec = 1795873200, .tv_nsec = 5};
  cleanup_free char *line = kyb_runc_log_line(false, "warning", "a \"q\" \\ b\nc\x01", &ts);
  assert_non_null(line);
  assert_string_equal(line, "time=\"2026-11-28T13:40:00.000000005Z\" level=warning "
                            "msg=\"a \\\"q\\\" \\\\ b\\nc\\x01\"\n");
}

/* Appending, and reading back runc's last error the way the shim does:
 * the last object of level "error" wins, from a given offset on. */
static void test_log_append_and_last_error(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *path = kyb_path_join(tmpdir, "log.json");
  assert_int_equal(kyb_runc_log_size(path), 0);
  assert_null(kyb_runc_log_last_error(path, 0));
  assert_int_equal(kyb_runc_log_append(path, true, "error", "old error", &err), 0);
  off_t mark = kyb_runc_log_size(path);
  assert_true(mark > 0);
  assert_null(kyb_runc_log_last_error(path, mark));
  assert_int_equal(kyb_runc_log_append(path, true, "warning", "w", &err), 0);
  assert_int_equal(kyb_runc_log_append(path, true, "error", "criu failed", &err), 0);
  assert_int_equal(kyb_runc_log_append(path, true, "info", "later", &err), 0);
  cleanup_free char *last = kyb_runc_log_last_error(path, mark);
  assert_string_equal(last, "criu failed");
  cleanup_free char *all = kyb_runc_log_last_error(path, 0);
  assert_string_equal(all, "criu failed");

  /* Every line is one JSON object. */
  cleanup_free char *buf = NULL;
  size_t len = 0;
  assert_int_equal(kyb_read_file(path, 1 << 20, &buf, &len, &err), 0);
  size_t lines = 0;
  for (char *p = buf; *p; lines++) {
    char *eol = strchr(p, '\n');
    assert_non_null(eol);
    *eol = '\0';
    json_error_t jerr;
    cleanup_json json_t *o = json_loads(p, 0, &jerr);
    assert_non_null(o);
    p = eol + 1;
  }
  assert_int_equal(lines, 4);

  cleanup_free char *nodir = kyb_path_join(tmpdir, "no/such/log.json");
  assert_int_equal(kyb_runc_log_append(nodir, true, "error", "x", &err), -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_marker_set_check_remove),
      cmocka_unit_test(test_marker_bad_input),
      cmocka_unit_test(test_state_dir_env),
      cmocka_unit_test(test_log_line_json),
      cmocka_unit_test(test_log_line_text),
      cmocka_unit_test(test_log_append_and_last_error),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
