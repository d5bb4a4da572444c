/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A container's pids from its cgroup tree.  See cgroup.h for the contract.
 */
#include "cuda/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/fs.h"

/* Deeper than any real container nests; stops a runaway walk. */
#define CGROUP_MAX_DEPTH 32
/* cgroup.procs of one cgroup: a pid is at most 8 characters a line. */
#define CGROUP_PROCS_MAX (4u << 20)

typedef struct {
  pid_t *v;
  size_t n, cap;
} pid_list;

static int add_pid(pid_list *l, pid_t pid) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    pid_t *v = realloc(l->v, cap * sizeof(*v));
    if (v == NULL)
      return -1;
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = pid;
  return 0;
}

static int read_procs(const char *dir, bool top, pid_list *l, kyb_error **err) {
  cleanup_free char *path = kyb_path_join(dir, "cgroup.procs");
  cleanup_free char *text = NULL;
  if (path == NULL)
    return kyb_error_set(err, ENOMEM, "list pids of %s", dir);
  if (kyb_read_file(path, CGROUP_PROCS_MAX, &text, NULL, err) < 0) {
    if (!top && kyb_error_code(*err) == ENOENT) {
      kyb_error_clear(err); /* the sub-cgroup went away while we walked */
      return 0;
    }
    return -1;
  }
  for (char *p = text; *p != '\0';) {
    char *end = NULL;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (end == p || errno != 0 || v <= 0 || (*end != '\n' && *end != '\0'))
      return kyb_error_set(err, EINVAL, "%s: unexpected content near '%.16s'", path, p);
    if (add_pid(l, (pid_t)v) < 0)
      return kyb_error_set(err, ENOMEM, "list pids of %s", dir);
    p = *end == '\n' ? end + 1 : end;
  }
  return 0;
}

static int walk(const char *dir, int depth, pid_list *l, kyb_error **err) {
  if (depth > CGROUP_MAX_DEPTH)
    return kyb_error_set(err, ELOOP, "cgroup %s nests deeper than %d levels", dir,
                         CGROUP_MAX_DEPTH);
  if (read_procs(dir, depth == 0, l, err) < 0)
    return -1;
  cleanup_dir DIR *d = opendir(dir);
  if (d == NULL) {
    if (depth > 0 && errno == ENOENT)
      return 0;
    return kyb_error_errno(err, "open cgroup %s", dir);
  }
  struct dirent *e;
  while ((errno = 0, e = readdir(d)) != NULL) {
    /* d_type from cgroupfs is exact; DT_LNK and others are not followed. */
    if (e->d_type != DT_DIR || strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    cleanup_free char *sub = kyb_path_join(dir, e->d_name);
    if (sub == NULL)
      return kyb_error_set(err, ENOMEM, "walk cgroup %s", dir);
    if (walk(sub, depth + 1, l, err) < 0)
      return -1;
  }
  if (errno != 0)
    return kyb_error_errno(err, "read cgroup %s", dir);
  return 0;
}

static int cmp_pid(const void *a, const void *b) {
  pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
  return (x > y) - (x < y);
}

int kyb_cgroup_pids(const char *cgroup_dir, pid_t **pids, size_t *count, kyb_error **err) {
  *pids = NULL;
  *count = 0;
  pid_list l = {0};
  if (walk(cgroup_dir, 0, &l, err) < 0) {
    free(l.v);
    return kyb_error_wrap(err, "list processes of cgroup %s", cgroup_dir);
  }
  if (l.n == 0) {
    free(l.v);
    return 0;
  }
  qsort(l.v, l.n, sizeof(*l.v), cmp_pid);
  size_t n = 1;
  for (size_t i = 1; i < l.n; i++)
    if (l.v[i] != l.v[n - 1])
      l.v[n++] = l.v[i];
  *pids = l.v;
  *count = n;
  return 0;
}
