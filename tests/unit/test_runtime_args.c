/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of runc command-line parsing (lib/runtime/runc_args.h): global
 * flags in every form the Go flag package accepts, create flags as
 * "--flag value" and "--flag=value", unknown flags kept verbatim, and the
 * restore / delete command lines built from them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/runc_args.h"
#include "util/cleanup.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* The shim's create line (containerd-protocol.md §5.4). */
static void test_shim_create_line(void **state) {
  (void)state;
  char *argv[] = {"kybernate-runc",
                  "--root",
                  "/run/containerd/runc/k8s.io",
                  "--log",
                  "/b/log.json",
                  "--log-format",
                  "json",
                  "create",
                  "--bundle",
                  "/b",
                  "--pid-file",
                  "/b/init.pid",
                  "ctr-1"};
  cleanup_error kyb_error *err = NULL;
  kyb_runc_cmdline g;
  assert_int_equal(kyb_runc_cmdline_parse(ARGC(argv), argv, &g, &err), 0);
  assert_string_equal(kyb_runc_command(&g), "create");
  assert_int_equal(g.cmd, 7);
  assert_int_equal(kyb_runc_nglobal(&g), 6);
  assert_string_equal(g.root, "/run/containerd/runc/k8s.io");
  assert_string_equal(kyb_runc_root(&g), "/run/containerd/runc/k8s.io");
  assert_string_equal(g.log, "/b/log.json");
  assert_true(kyb_runc_log_is_json(&g));
  assert_false(g.systemd_cgroup);

  kyb_runc_create_args a;
  assert_int_equal(kyb_runc_create_parse(ARGC(argv) - 8, argv + 8, &a, &err), 0);
  assert_string_equal(a.bundle, "/b");
  assert_string_equal(a.pid_file, "/b/init.pid");
  assert_null(a.console_socket);
  assert_false(a.no_pivot);
  assert_string_equal(a.id, "ctr-1");
  assert_int_equal(a.nunknown, 0);
  kyb_runc_create_args_clear(&a);
}

/* One dash or two, "=value" or a separate value, booleans with "=false". */
static void test_global_flag_forms(void **state) {
  (void)state;
  char *argv[] = {"r",
                  "-root=/r",
                  "--log",
                  "/l",
                  "-log-format",
                  "text",
                  "--debug",
                  "--systemd-cgroup",
                  "--criu",
                  "/usr/local/bin/criu",
                  "--rootless=auto",
                  "state",
                  "x"};
  cleanup_error kyb_error *err = NULL;
  kyb_runc_cmdline g;
  assert_int_equal(kyb_runc_cmdline_parse(ARGC(argv), argv, &g, &err), 0);
  assert_string_equal(kyb_runc_command(&g), "state");
  assert_string_equal(g.root, "/r");
  assert_string_equal(g.log, "/l");
  assert_string_equal(g.log_format, "text");
  assert_false(kyb_runc_log_is_json(&g));
  assert_true(g.debug);
  assert_true(g.systemd_cgroup);
  assert_false(g.help_or_version);

  char *off[] = {"r", "--systemd-cgroup=false", "--debug=1", "kill", "x", "9"};
  assert_int_equal(kyb_runc_cmdline_parse(ARGC(off), off, &g, &err), 0);
  assert_false(g.systemd_cgroup);
  assert_true(g.debug);
  assert_string_equal(kyb_runc_command(&g), "kill");
  assert_string_equal(kyb_runc_root(&g), KYB_RUNC_DEFAULT_ROOT);

  char *bad[] = {"r", "--debug=maybe", "list"};
  assert_int_equal(kyb_runc_cmdline_parse(ARGC(bad), bad, &g, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
  kyb_error_clear(&err);

  char *novalue[] = {"r", "--root"};
  assert_int_equal(kyb_runc_cmdline_parse(ARGC(novalue), novalue, &g, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "--root needs a value"));
}

/* Unknown global flags stay among the global flags, verbatim. */
static void test_global_unknown_and_special(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  kyb_runc_cmdline g;
  char *argv[] = {"r", "--future-flag", "--other=v", "--root", "/r", "delete", "x"};
  assert_int_equal(kyb_runc_cmdline_parse(ARGC(argv), argv, &g, &err), 0);
  assert_string_equal(kyb_runc_command(&g), "delete");
  assert_int_equal(kyb_runc_nglobal(&g), 4);
  assert_string_equal(g.root, "/r");

  char *help[] = {"r", "--help"};
  assert_int_equal(kyb_runc_cmdline_parse(ARGC(help), help, &g, &err), 0);
  assert_true(g.help_or_version);
  assert_null(kyb_runc_command(&g));

  char *none[] = {"r", "--debug"};
  assert_int_equal(kyb_runc_cmdline_parse(ARGC(none), none, &g, &err), 0);
  assert_null(kyb_runc_command(&g));

  char *dashdash[] = {"r", "--root", "/r", "--", "start", "x"};
  assert_int_equal(kyb_runc_cmdline_parse(ARGC(dashdash), dashdash, &g, &err), 0);
  assert_string_equal(kyb_runc_command(&g), "start");
}

/* Every create flag in both forms, flags after the id (urfave/cli reorders),
 * unknown flags kept in order. */
static void test_create_flag_forms(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  kyb_runc_create_args a;
  char *sep[] = {"-b",
                 "/b",
                 "--console-socket",
                 "/s.sock",
                 "--pid-file",
                 "/p",
                 "--no-pivot",
                 "--no-new-keyring",
                 "--preserve-fds",
                 "2",
                 "--extra-bool",
                 "--extra=v",
                 "id-1"};
  assert_int_equal(kyb_runc_create_parse(ARGC(sep), sep, &a, &err), 0);
  assert_string_equal(a.bundle, "/b");
  assert_string_equal(a.console_socket, "/s.sock");
  assert_string_equal(a.pid_file, "/p");
  assert_true(a.no_pivot);
  assert_true(a.no_new_keyring);
  assert_string_equal(a.preserve_fds, "2");
  assert_string_equal(a.id, "id-1");
  assert_int_equal(a.nunknown, 2);
  assert_string_equal(a.unknown[0], "--extra-bool");
  assert_string_equal(a.unknown[1], "--extra=v");
  assert_null(a.unknown[2]);
  kyb_runc_create_args_clear(&a);

  char *eq[] = {"id-2",
                "--bundle=/b2",
                "-pid-file=/p2",
                "--console-socket=/s2",
                "--no-pivot=false",
                "--no-new-keyring=true",
                "--preserve-fds=0"};
  assert_int_equal(kyb_runc_create_parse(ARGC(eq), eq, &a, &err), 0);
  assert_string_equal(a.bundle, "/b2");
  assert_string_equal(a.pid_file, "/p2");
  assert_string_equal(a.console_socket, "/s2");
  assert_false(a.no_pivot);
  assert_true(a.no_new_keyring);
  assert_string_equal(a.preserve_fds, "0");
  assert_string_equal(a.id, "id-2");
  assert_int_equal(a.nunknown, 0);
  kyb_runc_create_args_clear(&a);

  /* No bundle: runc uses the working directory. */
  char *bare[] = {"id-3"};
  assert_int_equal(kyb_runc_create_parse(ARGC(bare), bare, &a, &err), 0);
  assert_null(a.bundle);
  assert_string_equal(a.id, "id-3");
  kyb_runc_create_args_clear(&a);

  /* A value that starts with '-' is still the value of a value flag. */
  char *dash[] = {"--bundle", "-odd", "id-4"};
  assert_int_equal(kyb_runc_create_parse(ARGC(dash), dash, &a, &err), 0);
  assert_string_equal(a.bundle, "-odd");
  assert_string_equal(a.id, "id-4");
  kyb_runc_create_args_clear(&a);
}

static void test_create_errors(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  kyb_runc_create_args a;
  char *noid[] = {"--bundle", "/b"};
  assert_int_equal(kyb_runc_create_parse(ARGC(noid), noid, &a, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "exactly one container id"));
  assert_null(a.unknown);
  kyb_error_clear(&err);

  char *two[] = {"a", "b"};
  assert_int_equal(kyb_runc_create_parse(ARGC(two), two, &a, &err), -1);
  kyb_error_clear(&err);

  char *novalue[] = {"id", "--pid-file"};
  assert_int_equal(kyb_runc_create_parse(ARGC(novalue), novalue, &a, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "--pid-file needs a value"));
  kyb_error_clear(&err);

  char *badbool[] = {"id", "--no-pivot=yes"};
  assert_int_equal(kyb_runc_create_parse(ARGC(badbool), badbool, &a, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
}

static void test_id_parse(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  const char *id = NULL;
  bool force = false;
  char *start[] = {"c1"};
  assert_int_equal(kyb_runc_id_parse(ARGC(start), start, &id, &force, &err), 0);
  assert_string_equal(id, "c1");
  assert_false(force);

  char *del[] = {"--force", "c2"};
  assert_int_equal(kyb_runc_id_parse(ARGC(del), del, &id, &force, &err), 0);
  assert_string_equal(id, "c2");
  assert_true(force);

  char *del2[] = {"c3", "-f=false"};
  assert_int_equal(kyb_runc_id_parse(ARGC(del2), del2, &id, &force, &err), 0);
  assert_string_equal(id, "c3");
  assert_false(force);

  char *none[] = {"--force"};
  assert_int_equal(kyb_runc_id_parse(ARGC(none), none, &id, &force, &err), -1);
  assert_null(id);
}

static void test_id_valid(void **state) {
  (void)state;
  assert_true(kyb_runc_id_valid("0123abcdef"));
  assert_true(kyb_runc_id_valid("my_ctr.v1+x-y"));
  assert_false(kyb_runc_id_valid(NULL));
  assert_false(kyb_runc_id_valid(""));
  assert_false(kyb_runc_id_valid("."));
  assert_false(kyb_runc_id_valid(".."));
  assert_false(kyb_runc_id_valid("a/b"));
  assert_false(kyb_runc_id_valid("a b"));
  char longid[1100];
  memset(longid, 'a', sizeof(longid) - 1);
  longid[sizeof(longid) - 1] = '\0';
  assert_false(kyb_runc_id_valid(longid));
}

static void assert_argv(const char **got, const char *const *want) {
  size_t i = 0;
  for (; want[i] != NULL; i++) {
    assert_non_null(got[i]);
    assert_string_equal(got[i], want[i]);
  }
  assert_null(got[i]);
}

/* create -> restore: global flags kept, create flags mapped, keyring and
 * preserve-fds dropped, unknown flags passed on, id last. */
static void test_restore_argv(void **state) {
  (void)state;
  char *argv[] = {"kybernate-runc", "--root",           "/r",    "--log", "/l", "--log-format",
                  "json",           "--systemd-cgroup", "create"};
  char *cargs[] = {"--bundle",         "b",  "--pid-file", "/b/init.pid",
                   "--console-socket", "/s", "--no-pivot", "--no-new-keyring",
                   "--preserve-fds",   "1",  "--new-flag", "id"};
  cleanup_error kyb_error *err = NULL;
  kyb_runc_cmdline g;
  kyb_runc_create_args a;
  assert_int_equal(kyb_runc_cmdline_parse(ARGC(argv), argv, &g, &err), 0);
  assert_int_equal(kyb_runc_create_parse(ARGC(cargs), cargs, &a, &err), 0);
  kyb_runc_restore_paths p = {
      .delegate = "runc", .bundle = "/abs/b", .image_path = "/img", .work_path = "/work"};
  cleanup_free const char **out = NULL;
  assert_int_equal(kyb_runc_restore_argv(&g, &a, &p, &out, &err), 0);
  const char *const want[] = {"runc",
                              "--root",
                              "/r",
                              "--log",
                              "/l",
                              "--log-format",
                              "json",
                              "--systemd-cgroup",
                              "restore",
                              "--detach",
                              "--bundle",
                              "/abs/b",
                              "--pid-file",
                              "/b/init.pid",
                              "--console-socket",
                              "/s",
                              "--no-pivot",
                              "--no-subreaper",
                              "--image-path",
                              "/img",
                              "--work-path",
                              "/work",
                              "--new-flag",
                              "id",
                              NULL};
  assert_argv(out, want);

  cleanup_free const char **del = NULL;
  assert_int_equal(kyb_runc_delete_argv(&g, "/usr/sbin/runc", "id", &del, &err), 0);
  const char *const want_del[] = {
      "/usr/sbin/runc", "--root",           "/r",     "--log",   "/l", "--log-format",
      "json",           "--systemd-cgroup", "delete", "--force", "id", NULL};
  assert_argv(del, want_del);
  kyb_runc_create_args_clear(&a);
}

/* Minimal create: no pid file, no console, no global flags. */
static void test_restore_argv_minimal(void **state) {
  (void)state;
  char *argv[] = {"kybernate-runc", "create"};
  char *cargs[] = {"id"};
  cleanup_error kyb_error *err = NULL;
  kyb_runc_cmdline g;
  kyb_runc_create_args a;
  assert_int_equal(kyb_runc_cmdline_parse(ARGC(argv), argv, &g, &err), 0);
  assert_int_equal(kyb_runc_create_parse(ARGC(cargs), cargs, &a, &err), 0);
  kyb_runc_restore_paths p = {
      .delegate = "runc", .bundle = "/cwd", .image_path = "/i", .work_path = "/w"};
  cleanup_free const char **out = NULL;
  assert_int_equal(kyb_runc_restore_argv(&g, &a, &p, &out, &err), 0);
  const char *const want[] = {
      "runc",         "restore", "--detach",    "--bundle", "/cwd", "--no-subreaper",
      "--image-path", "/i",      "--work-path", "/w",       "id",   NULL};
  assert_argv(out, want);
  kyb_runc_create_args_clear(&a);
}

/* The dump's CRIU options come back on restore, before the container id. */
static void test_restore_argv_dump_options(void **state) {
  (void)state;
  char *argv[] = {"kybernate-runc", "create"};
  char *cargs[] = {"id"};
  cleanup_error kyb_error *err = NULL;
  kyb_runc_cmdline g;
  kyb_runc_create_args a;
  assert_int_equal(kyb_runc_cmdline_parse(ARGC(argv), argv, &g, &err), 0);
  assert_int_equal(kyb_runc_create_parse(ARGC(cargs), cargs, &a, &err), 0);
  kyb_runc_restore_paths p = {.delegate = "runc",
                              .bundle = "/cwd",
                              .image_path = "/i",
                              .work_path = "/w",
                              .tcp_established = true,
                              .ext_unix_sk = true,
                              .file_locks = true};
  cleanup_free const char **out = NULL;
  assert_int_equal(kyb_runc_restore_argv(&g, &a, &p, &out, &err), 0);
  const char *const want[] = {"runc",
                              "restore",
                              "--detach",
                              "--bundle",
                              "/cwd",
                              "--no-subreaper",
                              "--image-path",
                              "/i",
                              "--work-path",
                              "/w",
                              "--tcp-established",
                              "--ext-unix-sk",
                              "--file-locks",
                              "id",
                              NULL};
  assert_argv(out, want);
  kyb_runc_create_args_clear(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shim_create_line),
      cmocka_unit_test(test_global_flag_forms),
      cmocka_unit_test(test_global_unknown_and_special),
      cmocka_unit_test(test_create_flag_forms),
      cmocka_unit_test(test_create_errors),
      cmocka_unit_test(test_id_parse),
      cmocka_unit_test(test_id_valid),
      cmocka_unit_test(test_restore_argv),
      cmocka_unit_test(test_restore_argv_minimal),
      cmocka_unit_test(test_restore_argv_dump_options),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
