/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The delegate runtime (delegate.h): posix_spawnp, so a failed exec comes
 * back as an error here instead of as a child that must _exit.
 */
#include "runtime/delegate.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

extern char **environ;

const char *kyb_rt_delegate(const kyb_nodeconf *conf) {
  const char *d = getenv(KYB_RT_DELEGATE_ENV);
  if (d != NULL && *d != '\0')
    return d;
  if (conf != NULL && conf->delegate != NULL && *conf->delegate != '\0')
    return conf->delegate;
  return "runc";
}

int kyb_rt_spawn_wait(const char *const *argv, bool quiet, int *status, kyb_error **err) {
  *status = 0;
  posix_spawn_file_actions_t fa;
  int rc = posix_spawn_file_actions_init(&fa);
  if (rc != 0)
    return kyb_error_set(err, rc, "run %s", argv[0]);
  if (quiet) {
    rc = posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (rc == 0)
      rc = posix_spawn_file_actions_adddup2(&fa, 1, 2);
  }
  pid_t pid = 0;
  if (rc == 0)
    rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0)
    return kyb_error_set(err, rc, "run %s", argv[0]);
  while (waitpid(pid, status, 0) < 0) {
    if (errno != EINTR)
      return kyb_error_errno(err, "wait for %s (pid %d)", argv[0], (int)pid);
  }
  return 0;
}

void kyb_rt_describe_status(int status, char *buf, size_t size) {
  if (WIFEXITED(status))
    snprintf(buf, size, "exit status %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(buf, size, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
  else
    snprintf(buf, size, "wait status 0x%x", (unsigned)status);
}
