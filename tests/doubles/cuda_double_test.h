/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers for unit tests that run lib/cuda against libcuda-double.so (the
 * TEST DOUBLE of the CUDA driver): find the double next to the test binary,
 * give it a fresh state file and call log, start real processes to stand in
 * for CUDA processes, and read back what the double recorded.
 *
 * The double is found as $KYB_CUDA_DOUBLE_DIR/<name>, else
 * <dir of the test binary>/../doubles/<name> (build/tests/unit ->
 * build/tests/doubles), which needs subdir('doubles') in tests/meson.build.
 */
#ifndef KYB_TESTS_CUDA_DOUBLE_TEST_H
#define KYB_TESTS_CUDA_DOUBLE_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/fs.h"

#define CUDA_DOUBLE_LIB "libcuda-double.so"
#define CUDA_DOUBLE_NOCKPT_LIB "libcuda-double-nockpt.so"

/* Heap path of the double `name`, or NULL (with a message) if it is not built. */
static inline char *cuda_double_path(const char *name) {
  char dir[PATH_MAX];
  const char *env = getenv("KYB_CUDA_DOUBLE_DIR");
  if (env != NULL && env[0] != '\0') {
    snprintf(dir, sizeof(dir), "%s", env);
  } else {
    ssize_t n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
    if (n < 0)
      return NULL;
    dir[n] = '\0';
    char *slash = strrchr(dir, '/');
    if (slash != NULL)
      *slash = '\0';
    strncat(dir, "/../doubles", sizeof(dir) - strlen(dir) - 1);
  }
  char *path = NULL;
  if (asprintf(&path, "%s/%s", dir, name) < 0)
    return NULL;
  if (access(path, R_OK) != 0) {
    fprintf(stderr, "# %s not found: is subdir('doubles') in tests/meson.build?\n", path);
    free(path);
    return NULL;
  }
  return path;
}

/* A scratch world for one test: state file, call log, both under `dir`. */
typedef struct {
  char dir[64];
  char *state;
  char *log;
} cuda_world;

static inline int cuda_world_open(cuda_world *w) {
  snprintf(w->dir, sizeof(w->dir), "/tmp/kyb-test-cuda-XXXXXX");
  if (mkdtemp(w->dir) == NULL)
    return -1;
  w->state = kyb_path_join(w->dir, "state");
  w->log = kyb_path_join(w->dir, "calls.log");
  if (w->state == NULL || w->log == NULL)
    return -1;
  setenv("KYB_CUDA_DOUBLE_STATE", w->state, 1);
  setenv("KYB_CUDA_DOUBLE_LOG", w->log, 1);
  unsetenv("KYB_CUDA_DOUBLE_FAIL");
  unsetenv("KYB_CUDA_DOUBLE_VERSION");
  unsetenv("KYBERNATE_LIBCUDA");
  return 0;
}

static inline void cuda_world_close(cuda_world *w) {
  kyb_error *err = NULL;
  kyb_remove_tree(w->dir, &err);
  kyb_error_free(err);
  free(w->state);
  free(w->log);
  w->state = w->log = NULL;
}

/* Replaces the double's state file with `text` and empties the call log. */
static inline int cuda_world_set(const cuda_world *w, const char *text) {
  kyb_error *err = NULL;
  int rc = kyb_write_file_atomic(w->state, text, strlen(text), 0644, &err);
  kyb_error_free(err);
  if (rc == 0 && truncate(w->log, 0) < 0 && errno != ENOENT)
    rc = -1;
  return rc;
}

/* The call log without the lines of `skip_a`/`skip_b` calls (e.g. "getstate",
 * "init"), lines joined by '\n'.  Heap string; "" when empty. */
static inline char *cuda_world_calls(const cuda_world *w, const char *skip_a, const char *skip_b) {
  cleanup_free char *text = NULL;
  kyb_error *err = NULL;
  if (kyb_read_file(w->log, 1 << 20, &text, NULL, &err) < 0) {
    kyb_error_free(err);
    return strdup("");
  }
  char *out = calloc(1, strlen(text) + 1);
  if (out == NULL)
    return NULL;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    size_t op = strcspn(line, " ");
    if ((skip_a && strlen(skip_a) == op && strncmp(line, skip_a, op) == 0) ||
        (skip_b && strlen(skip_b) == op && strncmp(line, skip_b, op) == 0))
      continue;
    if (out[0] != '\0')
      strcat(out, "\n");
    strcat(out, line);
  }
  return out;
}

/* The state file as the double last wrote it. */
static inline char *cuda_world_state(const cuda_world *w) {
  char *text = NULL;
  kyb_error *err = NULL;
  if (kyb_read_file(w->state, 1 << 20, &text, NULL, &err) < 0) {
    kyb_error_free(err);
    return NULL;
  }
  return text;
}

/* A real process for the double to treat as a (CUDA) process: it sleeps
 * until killed.  Kill and reap it with cleanup_pid or kyb_killpidp. */
static inline pid_t spawn_sleeper(void) {
  pid_t pid = fork();
  if (pid == 0) {
    /* A failed cmocka assertion longjmps past cleanup_pid: die with the test. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (;;)
      pause();
  }
  return pid;
}

/* A sleeper (as above) whose comm is `name` (at most 15 bytes) by the time
 * this returns: what the double's `restored <comm>` rule matches.  -1 on
 * failure. */
static inline pid_t spawn_named_sleeper(const char *name) {
  int fds[2];
  if (pipe(fds) < 0)
    return -1;
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_NAME, name, 0, 0, 0);
    close(fds[0]);
    if (write(fds[1], "x", 1) < 0)
      _exit(1);
    close(fds[1]);
    for (;;)
      pause();
  }
  close(fds[1]);
  char c;
  ssize_t n = pid > 0 ? read(fds[0], &c, 1) : -1;
  close(fds[0]);
  if (pid > 0 && n != 1) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
  }
  return pid;
}

/* A pid no process has right now. */
static inline pid_t unused_pid(void) {
  pid_t pid = 4190000;
  while (kill(pid, 0) == 0 || errno != ESRCH)
    pid--;
  return pid;
}

#endif
