/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the cleanup header: scope exit releases, steal_* hands
 * ownership on, and a guarded child is killed and reaped. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/cleanup.h"

static int fd_is_open(int fd) {
  return fcntl(fd, F_GETFD) != -1;
}

static int scoped_fd(void) {
  cleanup_close int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  assert_true(fd >= 0);
  return fd; /* returned by value, but closed at scope exit */
}

static int handed_fd(void) {
  cleanup_close int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  return steal_fd(&fd); /* ownership goes to the caller */
}

static void test_close_at_scope_exit(void **state) {
  (void)state;
  int fd = scoped_fd();
  assert_false(fd_is_open(fd));
}

static void test_steal_fd_keeps_open(void **state) {
  (void)state;
  int fd = handed_fd();
  assert_true(fd_is_open(fd));
  close(fd);
}

static void test_close_preserves_errno(void **state) {
  (void)state;
  {
    cleanup_close int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    errno = ENOSPC;
  }
  assert_int_equal(errno, ENOSPC);
}

static char *handed_string(void) {
  cleanup_free char *s = strdup("owned by caller");
  return steal_ptr(s);
}

static void test_steal_ptr(void **state) {
  (void)state;
  char *s = handed_string(); /* would be a use-after-free under ASan without steal_ptr */
  assert_string_equal(s, "owned by caller");
  free(s);
}

static pid_t child_pid;

static void guarded_child(void) {
  cleanup_pid pid_t pid = fork();
  if (pid == 0) {
    pause();
    _exit(0);
  }
  child_pid = pid;
}

static void test_pid_killed_and_reaped(void **state) {
  (void)state;
  guarded_child();
  /* Reaped: the pid is gone, waitpid has nothing left to collect. */
  assert_int_equal(kill(child_pid, 0), -1);
  assert_int_equal(errno, ESRCH);
  assert_int_equal(waitpid(child_pid, NULL, WNOHANG), -1);
  assert_int_equal(errno, ECHILD);
}

static void test_strv_and_json(void **state) {
  (void)state;
  cleanup_strv char **v = calloc(3, sizeof(char *));
  v[0] = strdup("a");
  v[1] = strdup("b");
  cleanup_json json_t *j = json_pack("{s:s}", "k", "v");
  cleanup_dir DIR *d = opendir("/");
  cleanup_file FILE *f = fopen("/dev/null", "r");
  cleanup_error kyb_error *err = NULL;
  kyb_error_set(&err, 0, "released at scope exit");
  assert_non_null(j);
  assert_non_null(d);
  assert_non_null(f);
  /* Everything above is released at scope exit; ASan/LSan in the sanitizer
   * build fail this test if any of it leaks. */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_close_at_scope_exit),   cmocka_unit_test(test_steal_fd_keeps_open),
      cmocka_unit_test(test_close_preserves_errno), cmocka_unit_test(test_steal_ptr),
      cmocka_unit_test(test_pid_killed_and_reaped), cmocka_unit_test(test_strv_and_json),
  };
  return cmocka_run_group_tests_name("cleanup", tests, NULL, NULL);
}
