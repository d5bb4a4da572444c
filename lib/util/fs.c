/* SPDX-License-Identifier: Apache-2.0 */
/*
 * File-system helpers.  See fs.h for the contract.
 */
#include "util/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/cleanup.h"

int kyb_read_file(const char *path, size_t max_size, char **out, size_t *out_len, kyb_error **err) {
  cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return kyb_error_errno(err, "open %s", path);
  struct stat st;
  if (fstat(fd, &st) < 0)
    return kyb_error_errno(err, "stat %s", path);
  if (!S_ISREG(st.st_mode))
    return kyb_error_set(err, EINVAL, "%s is not a regular file", path);
  if ((size_t)st.st_size > max_size)
    return kyb_error_set(err, EFBIG, "%s is %lld bytes, more than the %zu allowed", path,
                         (long long)st.st_size, max_size);
  size_t cap = (size_t)st.st_size + 1, len = 0;
  cleanup_free char *buf = malloc(cap);
  if (buf == NULL)
    return kyb_error_set(err, ENOMEM, "read %s", path);
  for (;;) {
    if (len + 1 >= cap) { /* the file grew while we read it */
      if (cap > max_size)
        return kyb_error_set(err, EFBIG, "%s grew beyond the %zu bytes allowed", path, max_size);
      char *nb = realloc(buf, cap * 2);
      if (nb == NULL)
        return kyb_error_set(err, ENOMEM, "read %s", path);
      buf = nb;
      cap *= 2;
    }
    ssize_t n = read(fd, buf + len, cap - len - 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return kyb_error_errno(err, "read %s", path);
    if (n == 0)
      break;
    len += (size_t)n;
  }
  if (len > max_size)
    return kyb_error_set(err, EFBIG, "%s grew beyond the %zu bytes allowed", path, max_size);
  buf[len] = '\0';
  if (out_len != NULL)
    *out_len = len;
  *out = steal_ptr(buf);
  return 0;
}

static int fsync_dir_of(const char *path, kyb_error **err) {
  cleanup_free char *dir = strdup(path);
  if (dir == NULL)
    return kyb_error_set(err, ENOMEM, "fsync directory of %s", path);
  char *slash = strrchr(dir, '/');
  if (slash == NULL)
    strcpy(dir, ".");
  else if (slash == dir)
    slash[1] = '\0';
  else
    *slash = '\0';
  cleanup_close int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || fsync(dfd) < 0)
    return kyb_error_errno(err, "fsync directory %s", dir);
  return 0;
}

int kyb_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                          kyb_error **err) {
  cleanup_free char *tmp = NULL;
  if (asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0)
    return kyb_error_set(err, ENOMEM, "write %s", path);
  cleanup_close int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0)
    return kyb_error_errno(err, "create temporary file for %s", path);
  const char *p = data;
  size_t left = len;
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      kyb_error_errno(err, "write %s", tmp);
      unlink(tmp);
      return -1;
    }
    p += n;
    left -= (size_t)n;
  }
  if (fchmod(fd, mode) < 0 || fsync(fd) < 0) {
    kyb_error_errno(err, "sync %s", tmp);
    unlink(tmp);
    return -1;
  }
  if (rename(tmp, path) < 0) {
    kyb_error_errno(err, "rename %s to %s", tmp, path);
    unlink(tmp);
    return -1;
  }
  return fsync_dir_of(path, err);
}

int kyb_mkdir_p(const char *path, mode_t mode, kyb_error **err) {
  cleanup_free char *p = strdup(path);
  if (p == NULL)
    return kyb_error_set(err, ENOMEM, "mkdir %s", path);
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s != '\0')
      continue;
    char c = *s;
    *s = '\0';
    if (mkdir(p, mode) < 0 && errno != EEXIST)
      return kyb_error_errno(err, "mkdir %s", p);
    *s = c;
    if (c == '\0')
      break;
  }
  struct stat st;
  if (stat(path, &st) < 0)
    return kyb_error_errno(err, "stat %s", path);
  if (!S_ISDIR(st.st_mode))
    return kyb_error_set(err, ENOTDIR, "%s exists and is not a directory", path);
  return 0;
}

static int remove_at(int dirfd, const char *name, dev_t dev, kyb_error **err);

static int remove_children(int fd, dev_t dev, const char *what, kyb_error **err) {
  int dupfd = dup(fd);
  if (dupfd < 0)
    return kyb_error_errno(err, "dup for %s", what);
  cleanup_dir DIR *d = fdopendir(dupfd);
  if (d == NULL) {
    close(dupfd);
    return kyb_error_errno(err, "opendir %s", what);
  }
  struct dirent *de;
  while ((errno = 0, de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (remove_at(fd, de->d_name, dev, err) < 0)
      return kyb_error_wrap(err, "%s", what);
  }
  if (errno != 0)
    return kyb_error_errno(err, "readdir %s", what);
  return 0;
}

static int remove_at(int dirfd, const char *name, dev_t dev, kyb_error **err) {
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT)
      return 0;
    return kyb_error_errno(err, "stat %s", name);
  }
  if (S_ISDIR(st.st_mode)) {
    if (st.st_dev != dev)
      return kyb_error_set(err, EXDEV, "%s is a mount point; refusing to remove across it", name);
    cleanup_close int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
      return kyb_error_errno(err, "open %s", name);
    if (remove_children(fd, dev, name, err) < 0)
      return -1;
    if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
      return kyb_error_errno(err, "rmdir %s", name);
    return 0;
  }
  if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
    return kyb_error_errno(err, "unlink %s", name);
  return 0;
}

int kyb_remove_tree(const char *path, kyb_error **err) {
  struct stat st;
  if (lstat(path, &st) < 0) {
    if (errno == ENOENT)
      return 0;
    return kyb_error_errno(err, "stat %s", path);
  }
  if (remove_at(AT_FDCWD, path, st.st_dev, err) < 0)
    return kyb_error_wrap(err, "remove %s", path);
  return 0;
}

char *kyb_path_join(const char *a, const char *b) {
  size_t la = strlen(a);
  while (la > 1 && a[la - 1] == '/')
    la--;
  while (*b == '/')
    b++;
  char *out = NULL;
  if (la == 1 && a[0] == '/')
    la = 0; /* "/" + "x" is "/x", not "//x" */
  if (asprintf(&out, "%.*s/%s", (int)la, a, b) < 0)
    return NULL;
  return out;
}
