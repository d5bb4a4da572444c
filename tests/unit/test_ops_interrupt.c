/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of lib/ops/interrupt: while caught, SIGINT/SIGTERM/SIGHUP do
 * not end the process; the first one is recorded, later ones only write the
 * notice; release puts the dispositions back; names. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ops/interrupt.h"
#include "util/cleanup.h"

static void ignore_usr1(int sig) {
  (void)sig;
}

/* Runs `raise(sig)` with stderr sent into a pipe; returns what was written. */
static void raise_capturing(int sig, char *out, size_t size) {
  int p[2];
  assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  int saved = dup(STDERR_FILENO);
  assert_true(saved >= 0);
  assert_int_equal(dup2(p[1], STDERR_FILENO), STDERR_FILENO);
  assert_int_equal(raise(sig), 0);
  assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
  close(saved);
  close(p[1]);
  ssize_t n = read(p[0], out, size - 1);
  out[n > 0 ? n : 0] = '\0';
  close(p[0]);
}

static void test_first_signal_recorded_later_ones_noticed(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  kyb_interrupt g;
  assert_int_equal(kyb_interrupt_catch(&g, "kybernate", &err), 0);
  assert_int_equal(kyb_interrupt_signal(), 0);
  assert_int_equal(*kyb_interrupt_flag(), 0);

  char got[256];
  raise_capturing(SIGTERM, got, sizeof(got)); /* the process lives on */
  assert_int_equal(kyb_interrupt_signal(), SIGTERM);
  assert_int_equal(*kyb_interrupt_flag(), SIGTERM);
  assert_string_equal(got, ""); /* the first one is only recorded */

  raise_capturing(SIGINT, got, sizeof(got));
  assert_int_equal(kyb_interrupt_signal(), SIGTERM); /* still the first */
  assert_string_equal(got, "kybernate: rollback in progress, please wait\n");
  raise_capturing(SIGHUP, got, sizeof(got));
  assert_string_equal(got, "kybernate: rollback in progress, please wait\n");

  kyb_interrupt_release(&g);
  assert_int_equal(kyb_interrupt_signal(), SIGTERM); /* the flag keeps its value */
  kyb_interrupt_release(&g);                         /* twice is harmless */
}

static void test_release_restores_dispositions(void **state) {
  (void)state;
  struct sigaction mine = {.sa_handler = ignore_usr1}, before, after;
  sigemptyset(&mine.sa_mask);
  assert_int_equal(sigaction(SIGHUP, &mine, &before), 0);

  cleanup_error kyb_error *err = NULL;
  kyb_interrupt g;
  assert_int_equal(kyb_interrupt_catch(&g, NULL, &err), 0); /* a new catch starts at 0 */
  assert_int_equal(kyb_interrupt_signal(), 0);
  assert_int_equal(sigaction(SIGHUP, NULL, &after), 0);
  assert_ptr_not_equal(after.sa_handler, ignore_usr1);
  assert_int_equal(after.sa_flags & SA_RESTART, 0); /* blocking calls must wake up */

  char got[256];
  raise_capturing(SIGHUP, got, sizeof(got));
  raise_capturing(SIGINT, got, sizeof(got));
  assert_int_equal(kyb_interrupt_signal(), SIGHUP);
  assert_string_equal(got, ""); /* no program name: no notice */

  kyb_interrupt_release(&g);
  assert_int_equal(sigaction(SIGHUP, NULL, &after), 0);
  assert_ptr_equal(after.sa_handler, ignore_usr1);
  assert_int_equal(sigaction(SIGHUP, &before, NULL), 0);
}

static void test_names(void **state) {
  (void)state;
  assert_string_equal(kyb_interrupt_name(SIGINT), "SIGINT");
  assert_string_equal(kyb_interrupt_name(SIGTERM), "SIGTERM");
  assert_string_equal(kyb_interrupt_name(SIGHUP), "SIGHUP");
  assert_string_equal(kyb_interrupt_name(SIGUSR1), "signal 10");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_first_signal_recorded_later_ones_noticed),
      cmocka_unit_test(test_release_restores_dispositions),
      cmocka_unit_test(test_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
