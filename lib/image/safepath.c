/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Confined paths.  See safepath.h for the contract.
 */
#include "image/safepath.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/cleanup.h"

int kyb_relpath_check(const char *path, kyb_error **err) {
  if (path == NULL || path[0] == '\0')
    return kyb_error_set(err, EINVAL, "empty path");
  size_t len = strlen(path);
  if (len > KYB_RELPATH_MAX)
    return kyb_error_set(err, EINVAL, "path \"%.64s...\" is longer than %u bytes", path,
                         KYB_RELPATH_MAX);
  if (path[0] == '/')
    return kyb_error_set(err, EINVAL, "path \"%s\" is absolute", path);
  const char *p = path;
  for (;;) {
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    if (n == 0)
      return kyb_error_set(err, EINVAL, "path \"%s\" has an empty component", path);
    if (n == 1 && p[0] == '.')
      return kyb_error_set(err, EINVAL, "path \"%s\" has a \".\" component", path);
    if (n == 2 && p[0] == '.' && p[1] == '.')
      return kyb_error_set(err, EINVAL, "path \"%s\" has a \"..\" component", path);
    if (n > NAME_MAX)
      return kyb_error_set(err, EINVAL, "path \"%s\" has a component longer than %d bytes", path,
                           NAME_MAX);
    if (slash == NULL)
      return 0;
    p = slash + 1;
  }
}

/* Explains why openat(O_NOFOLLOW) of `comp` failed with the errno in `e`:
 * a symlink on the way is the case that matters for safety, so say so. */
static int walk_error(int dirfd, const char *comp, const char *path, size_t prefix, int e,
                      kyb_error **err) {
  struct stat st;
  if (e == ELOOP || e == ENOTDIR) {
    if (fstatat(dirfd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
      return kyb_error_set(err, ELOOP,
                           "\"%.*s\" on the path of \"%s\" is a symlink; refusing to follow it",
                           (int)prefix, path, path);
    if (e == ENOTDIR)
      return kyb_error_set(err, ENOTDIR, "\"%.*s\" on the path of \"%s\" is not a directory",
                           (int)prefix, path, path);
  }
  return kyb_error_set(err, e, "open \"%.*s\"", (int)prefix, path);
}

int kyb_open_parent_beneath(int rootfd, const char *relpath, bool create, const char **leaf,
                            kyb_error **err) {
  cleanup_close int cur = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
  if (cur < 0)
    return kyb_error_errno(err, "dup root directory");
  const char *p = relpath;
  for (;;) {
    const char *slash = strchr(p, '/');
    if (slash == NULL) {
      *leaf = p;
      return steal_fd(&cur);
    }
    char comp[NAME_MAX + 1];
    size_t n = (size_t)(slash - p);
    if (n == 0 || n > NAME_MAX)
      return kyb_error_set(err, EINVAL, "bad path \"%s\"", relpath);
    memcpy(comp, p, n);
    comp[n] = '\0';
    const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    int next = openat(cur, comp, flags);
    if (next < 0 && errno == ENOENT && create) {
      if (mkdirat(cur, comp, 0755) < 0 && errno != EEXIST)
        return kyb_error_errno(err, "mkdir \"%.*s\"", (int)(slash - relpath), relpath);
      next = openat(cur, comp, flags);
    }
    if (next < 0)
      return walk_error(cur, comp, relpath, (size_t)(slash - relpath), errno, err);
    close(cur);
    cur = next;
    p = slash + 1;
  }
}

int kyb_open_beneath(int rootfd, const char *relpath, int flags, kyb_error **err) {
  const char *leaf = NULL;
  cleanup_close int dfd = kyb_open_parent_beneath(rootfd, relpath, false, &leaf, err);
  if (dfd < 0 || leaf == NULL)
    return -1;
  int fd = openat(dfd, leaf, flags | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return walk_error(dfd, leaf, relpath, strlen(relpath), errno, err);
  return fd;
}

static int remove_entry(int dirfd, const char *name, dev_t dev, kyb_error **err);

static int remove_children(int fd, dev_t dev, kyb_error **err) {
  int dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dupfd < 0)
    return kyb_error_errno(err, "dup directory");
  cleanup_dir DIR *d = fdopendir(dupfd);
  if (d == NULL) {
    close(dupfd);
    return kyb_error_errno(err, "opendir");
  }
  struct dirent *de;
  while ((errno = 0, de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (remove_entry(fd, de->d_name, dev, err) < 0)
      return -1;
  }
  if (errno != 0)
    return kyb_error_errno(err, "readdir");
  return 0;
}

static int remove_entry(int dirfd, const char *name, dev_t dev, kyb_error **err) {
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT)
      return 0;
    return kyb_error_errno(err, "stat %s", name);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
      return kyb_error_errno(err, "unlink %s", name);
    return 0;
  }
  if (st.st_dev != dev)
    return kyb_error_set(err, EXDEV, "%s is a mount point; refusing to remove across it", name);
  cleanup_close int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return kyb_error_errno(err, "open %s", name);
  if (remove_children(fd, dev, err) < 0)
    return kyb_error_wrap(err, "%s", name);
  if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
    return kyb_error_errno(err, "rmdir %s", name);
  return 0;
}

int kyb_remove_at(int dirfd, const char *name, kyb_error **err) {
  struct stat st;
  if (fstat(dirfd, &st) < 0)
    return kyb_error_errno(err, "stat directory of %s", name);
  return remove_entry(dirfd, name, st.st_dev, err);
}

int kyb_empty_dir(int dirfd, kyb_error **err) {
  struct stat st;
  if (fstat(dirfd, &st) < 0)
    return kyb_error_errno(err, "stat directory");
  return remove_children(dirfd, st.st_dev, err);
}
