/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Catching SIGINT, SIGTERM and SIGHUP around one foreground checkpoint.
 * See interrupt.h for the contract.
 */
#include "ops/interrupt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const int caught_signals[3] = {SIGINT, SIGTERM, SIGHUP};

/* Written by the handler only; signals are process-wide, so is this. */
static volatile sig_atomic_t first_signal;
/* Prepared before the handler goes in; the handler only reads it. */
static char notice[128];
static size_t notice_len;

static void on_signal(int sig) {
  int saved = errno;
  if (first_signal == 0)
    first_signal = sig;
  else if (notice_len > 0)
    (void)!write(STDERR_FILENO, notice, notice_len);
  errno = saved;
}

int kyb_interrupt_catch(kyb_interrupt *g, const char *program, kyb_error **err) {
  g->active = false;
  first_signal = 0;
  notice_len = 0;
  if (program != NULL) {
    int n = snprintf(notice, sizeof(notice), "%s: rollback in progress, please wait\n", program);
    notice_len = n > 0 && (size_t)n < sizeof(notice) ? (size_t)n : 0;
  }
  /* No SA_RESTART: blocking calls wake up (interrupt.h).  The other two
   * are blocked while one runs, so the first signal is the one recorded. */
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < 3; i++)
    sigaddset(&sa.sa_mask, caught_signals[i]);
  for (size_t i = 0; i < 3; i++) {
    if (sigaction(caught_signals[i], &sa, &g->old[i]) < 0) {
      int e = errno, sig = caught_signals[i];
      while (i-- > 0)
        sigaction(caught_signals[i], &g->old[i], NULL);
      return kyb_error_set(err, e, "catch %s", kyb_interrupt_name(sig));
    }
  }
  g->active = true;
  return 0;
}

const volatile sig_atomic_t *kyb_interrupt_flag(void) {
  return &first_signal;
}

int kyb_interrupt_signal(void) {
  return (int)first_signal;
}

void kyb_interrupt_release(kyb_interrupt *g) {
  if (g == NULL || !g->active)
    return;
  for (size_t i = 0; i < 3; i++)
    sigaction(caught_signals[i], &g->old[i], NULL);
  g->active = false;
}

const char *kyb_interrupt_name(int sig) {
  switch (sig) {
  case SIGINT:
    return "SIGINT";
  case SIGTERM:
    return "SIGTERM";
  case SIGHUP:
    return "SIGHUP";
  default: {
    static char buf[32];
    snprintf(buf, sizeof(buf), "signal %d", sig);
    return buf;
  }
  }
}
