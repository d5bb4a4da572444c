/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one cleanup header: scope-bound release of resources through
 * __attribute__((cleanup)).
 *
 *     cleanup_free char *path = NULL;
 *     cleanup_close int fd = -1;
 *     ...
 *     return steal_ptr(path);   // ownership handed to the caller: not freed here
 *
 * Every helper tolerates the "empty" value (NULL, -1, 0), so a variable is
 * always initialised to it and may be handed on with steal_ptr()/steal_fd().
 * Keep this the only place such helpers are defined.
 */
#ifndef KYB_UTIL_CLEANUP_H
#define KYB_UTIL_CLEANUP_H

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/error.h"

static inline void kyb_freep(void *p) {
  void **pp = (void **)p;
  free(*pp);
  *pp = NULL;
}

static inline void kyb_closep(int *fd) {
  if (*fd >= 0) {
    int saved = errno; /* close() in cleanup must not clobber the errno a caller reports */
    close(*fd);
    errno = saved;
  }
  *fd = -1;
}

static inline void kyb_fclosep(FILE **f) {
  if (*f != NULL) {
    int saved = errno;
    fclose(*f);
    errno = saved;
  }
  *f = NULL;
}

static inline void kyb_closedirp(DIR **d) {
  if (*d != NULL) {
    int saved = errno;
    closedir(*d);
    errno = saved;
  }
  *d = NULL;
}

static inline void kyb_json_decrefp(json_t **j) {
  json_decref(*j);
  *j = NULL;
}

static inline void kyb_errorp(kyb_error **e) {
  kyb_error_clear(e);
}

/* A child process that must not outlive the scope: SIGKILL and reap it.
 * Hand it on with steal_pid() once it has been waited for or adopted. */
static inline void kyb_killpidp(pid_t *pid) {
  if (*pid > 0) {
    int saved = errno;
    kill(*pid, SIGKILL);
    while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR)
      ;
    errno = saved;
  }
  *pid = 0;
}

/* A NULL-terminated array of heap strings, itself on the heap. */
static inline void kyb_strvp(char ***v) {
  if (*v != NULL) {
    for (char **s = *v; *s != NULL; s++)
      free(*s);
    free(*v);
  }
  *v = NULL;
}

#define cleanup_free __attribute__((cleanup(kyb_freep)))
#define cleanup_close __attribute__((cleanup(kyb_closep)))
#define cleanup_file __attribute__((cleanup(kyb_fclosep)))
#define cleanup_dir __attribute__((cleanup(kyb_closedirp)))
#define cleanup_json __attribute__((cleanup(kyb_json_decrefp)))
#define cleanup_error __attribute__((cleanup(kyb_errorp)))
#define cleanup_pid __attribute__((cleanup(kyb_killpidp)))
#define cleanup_strv __attribute__((cleanup(kyb_strvp)))

/* Ownership hand-off: returns the value and leaves the empty value behind,
 * so the cleanup attribute on the variable does nothing. */
static inline void *kyb_steal_ptr(void *pp) {
  void **p = (void **)pp;
  void *v = *p;
  *p = NULL;
  return v;
}
#define steal_ptr(p) kyb_steal_ptr(&(p))

static inline int steal_fd(int *fd) {
  int v = *fd;
  *fd = -1;
  return v;
}

static inline pid_t steal_pid(pid_t *pid) {
  pid_t v = *pid;
  *pid = 0;
  return v;
}

#endif
