/* SPDX-License-Identifier: Apache-2.0 */
/* sleeper: the test sandbox ("pause") image's process: sleeps until SIGTERM
 * or SIGINT, reaping children like pause does. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) {
  (void)sig;
  _exit(0);
}

static void on_chld(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0)
    ;
}

int main(void) {
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  signal(SIGCHLD, on_chld);
  for (;;)
    pause();
}
