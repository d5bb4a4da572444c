/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The file:// store: images as directories under one directory.
 *
 *     <dir>/<name>/                   a published image
 *     <dir>/.staging-<name>-XXXXXX/   an image being built (flock held by its builder)
 *     <dir>/.deleting-<name>-XXXXXX/  an image being removed (flock held by its remover)
 *
 * Visibility changes only by rename(2) within <dir>, which is atomic, so a
 * reader sees an image whole or not at all.  Publishing uses
 * renameat2(RENAME_NOREPLACE): plain rename would silently replace an empty
 * directory of the same name.  On file systems without it (EINVAL, e.g.
 * NFS), the name is claimed with mkdir first, which fails on an existing
 * name, and the staging directory is then renamed onto that empty claim.
 * Every "cannot write" failure names the store directory and says whether it
 * is read-only, full or not permitted.
 */
#define KYB_LOG_MODULE "store"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "image/image.h"
#include "store/backend.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"

#define STAGING_PREFIX ".staging-"
#define DELETING_PREFIX ".deleting-"

struct file_store {
  char *dir;
  int dirfd;
};

static struct file_store *fs_of(kyb_store *s) {
  return s->priv;
}

/* An error from writing into the store, phrased for the person who must fix it. */
static int store_error(kyb_error **err, int e, const char *dir, const char *what) {
  switch (e) {
  case EACCES:
  case EPERM:
    return kyb_error_set(err, e, "%s: store %s is not writable", what, dir);
  case EROFS:
    return kyb_error_set(err, e, "%s: store %s is on a read-only file system", what, dir);
  case ENOSPC:
  case EDQUOT:
    return kyb_error_set(err, e, "%s: store %s is full", what, dir);
  default:
    return kyb_error_set(err, e, "%s in store %s", what, dir);
  }
}

static int file_stage(kyb_store *s, kyb_staging *st, kyb_error **err) {
  struct file_store *f = fs_of(s);
  struct stat sb;
  if (fstatat(f->dirfd, st->name, &sb, AT_SYMLINK_NOFOLLOW) == 0)
    return kyb_error_set(err, EEXIST, "image %s already exists in store %s", st->name, f->dir);
  cleanup_free char *path = NULL;
  if (asprintf(&path, "%s/" STAGING_PREFIX "%s-XXXXXX", f->dir, st->name) < 0)
    return kyb_error_set(err, ENOMEM, "stage");
  if (mkdtemp(path) == NULL) /* mode 0700: images hold process memory */
    return store_error(err, errno, f->dir, "create staging directory");
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
    kyb_error_errno(err, "lock staging directory %s", path);
    if (fd >= 0)
      close(fd);
    rmdir(path);
    return -1;
  }
  st->lock_fd = fd;
  st->path = steal_ptr(path);
  return 0;
}

static const char *base_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

/* rename(from, to) within the store that never replaces an existing `to`. */
static int rename_noreplace(struct file_store *f, const char *from, const char *to,
                            kyb_error **err) {
  if (renameat2(f->dirfd, from, f->dirfd, to, RENAME_NOREPLACE) == 0)
    return 0;
  if (errno == EEXIST || errno == ENOTEMPTY)
    return kyb_error_set(err, EEXIST, "image %s already exists in store %s", to, f->dir);
  if (errno != EINVAL && errno != ENOSYS)
    return store_error(err, errno, f->dir, "rename staging directory");
  log_debug("store %s: no RENAME_NOREPLACE; claiming %s with mkdir", f->dir, to);
  if (mkdirat(f->dirfd, to, 0700) < 0)
    return errno == EEXIST
               ? kyb_error_set(err, EEXIST, "image %s already exists in store %s", to, f->dir)
               : store_error(err, errno, f->dir, "claim image name");
  if (renameat(f->dirfd, from, f->dirfd, to) < 0) {
    int e = errno;
    unlinkat(f->dirfd, to, AT_REMOVEDIR);
    return store_error(err, e, f->dir, "rename staging directory");
  }
  return 0;
}

static int file_put(kyb_store *s, kyb_staging *st, kyb_error **err) {
  struct file_store *f = fs_of(s);
  cleanup_json json_t *m = NULL;
  /* The builder hashed (and fsynced) every file as it wrote the manifest,
   * moments ago: check the layout, not every byte again. */
  if (kyb_staging_check(st, &m, err) < 0)
    return -1;
  if (fsync(st->lock_fd) < 0)
    return kyb_error_errno(err, "fsync %s", st->path);
  if (rename_noreplace(f, base_name(st->path), st->name, err) < 0)
    return -1;
  st->published = true;
  if (fsync(f->dirfd) < 0) /* published already; a failed sync only weakens durability */
    log_warn("store %s: fsync after publishing %s: %m", f->dir, st->name);
  cleanup_free char *final = kyb_path_join(f->dir, st->name);
  if (final != NULL) {
    free(st->path);
    st->path = steal_ptr(final);
  }
  log_info("image %s published in %s", st->name, f->dir);
  return 0;
}

static void file_discard(kyb_store *s, kyb_staging *st) {
  (void)s;
  if (st->published || st->path == NULL)
    return;
  cleanup_error kyb_error *err = NULL;
  if (kyb_remove_tree(st->path, &err) < 0)
    log_warn_chain(err, "discard staging directory %s", st->path);
}

/* Opens the published image `name` (a directory, not a symlink). */
static int open_image(struct file_store *f, const char *name, kyb_error **err) {
  int fd = openat(f->dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT)
    return kyb_error_set(err, ENOENT, "no image %s in store %s", name, f->dir);
  if (fd < 0)
    return kyb_error_errno(err, "open image %s in store %s", name, f->dir);
  return fd;
}

static int file_get_path(kyb_store *s, const char *name, char **path, kyb_error **err) {
  struct file_store *f = fs_of(s);
  cleanup_close int fd = open_image(f, name, err);
  if (fd < 0)
    return -1;
  if ((*path = kyb_path_join(f->dir, name)) == NULL)
    return kyb_error_set(err, ENOMEM, "image path");
  return 0;
}

static int file_stat(kyb_store *s, const char *name, kyb_image_summary *out, kyb_error **err) {
  struct file_store *f = fs_of(s);
  cleanup_close int fd = open_image(f, name, err);
  if (fd < 0)
    return -1;
  cleanup_json json_t *m = NULL;
  struct stat sb;
  if (kyb_image_load_manifest_at(fd, &m, err) < 0)
    return kyb_error_wrap(err, "image %s in store %s", name, f->dir);
  if (fstatat(fd, KYB_IMAGE_MANIFEST, &sb, AT_SYMLINK_NOFOLLOW) < 0)
    return kyb_error_errno(err, "stat manifest of %s", name);
  if (kyb_image_summary_from_manifest(name, m, (uint64_t)sb.st_size, out) < 0)
    return kyb_error_set(err, ENOMEM, "image %s", name);
  return 0;
}

static int file_list(kyb_store *s, kyb_image_summary **out, size_t *n, kyb_error **err) {
  struct file_store *f = fs_of(s);
  int dupfd = fcntl(f->dirfd, F_DUPFD_CLOEXEC, 3);
  cleanup_dir DIR *d = dupfd >= 0 ? fdopendir(dupfd) : NULL;
  if (d == NULL) {
    kyb_error_errno(err, "list store %s", f->dir);
    if (dupfd >= 0)
      close(dupfd);
    return -1;
  }
  rewinddir(d);
  kyb_image_summary *v = NULL;
  size_t cnt = 0, cap = 0;
  struct dirent *de;
  while ((errno = 0, de = readdir(d)) != NULL) {
    /* Dot names are the store's own (staging, deleting) or not ours. */
    if (de->d_name[0] == '.' || !kyb_image_name_valid(de->d_name))
      continue;
    struct stat sb;
    if (fstatat(f->dirfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(sb.st_mode))
      continue;
    if (cnt == cap) {
      size_t nc = cap ? cap * 2 : 16;
      kyb_image_summary *nv = realloc(v, nc * sizeof(*nv));
      if (nv == NULL) {
        kyb_image_summaries_free(v, cnt);
        return kyb_error_set(err, ENOMEM, "list store %s", f->dir);
      }
      v = nv;
      cap = nc;
    }
    cleanup_error kyb_error *why = NULL;
    int r = file_stat(s, de->d_name, &v[cnt], &why);
    if (r < 0)
      r = kyb_image_summary_broken(de->d_name, why, &v[cnt]);
    if (r < 0) {
      kyb_image_summaries_free(v, cnt);
      return kyb_error_set(err, ENOMEM, "list store %s", f->dir);
    }
    cnt++;
  }
  if (errno != 0) {
    kyb_image_summaries_free(v, cnt);
    return kyb_error_errno(err, "list store %s", f->dir);
  }
  if (cnt > 0)
    qsort(v, cnt, sizeof(*v), kyb_image_summary_cmp);
  *out = v;
  *n = cnt;
  return 0;
}

static int file_remove(kyb_store *s, const char *name, kyb_error **err) {
  struct file_store *f = fs_of(s);
  struct stat sb;
  if (fstatat(f->dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(sb.st_mode))
    return kyb_error_set(err, ENOENT, "no image %s in store %s", name, f->dir);
  /* mkdtemp makes a unique empty directory; rename(2) may replace an empty
   * directory, so the image takes its place in one atomic step. */
  cleanup_free char *tmp = NULL;
  if (asprintf(&tmp, "%s/" DELETING_PREFIX "%s-XXXXXX", f->dir, name) < 0)
    return kyb_error_set(err, ENOMEM, "delete");
  if (mkdtemp(tmp) == NULL)
    return store_error(err, errno, f->dir, "create deletion directory");
  if (renameat(f->dirfd, name, f->dirfd, base_name(tmp)) < 0) {
    int e = errno;
    rmdir(tmp);
    if (e == ENOENT)
      return kyb_error_set(err, ENOENT, "no image %s in store %s", name, f->dir);
    return store_error(err, e, f->dir, "hide image");
  }
  if (fsync(f->dirfd) < 0)
    log_warn("store %s: fsync after hiding %s: %m", f->dir, name);
  cleanup_close int lock = open(tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (lock >= 0)
    flock(lock, LOCK_EX | LOCK_NB); /* keeps kyb_store_cleanup off a removal in progress */
  if (kyb_remove_tree(tmp, err) < 0)
    return kyb_error_wrap(err, "image %s is hidden but not fully removed; cleanup removes the rest",
                          name);
  log_info("image %s deleted from %s", name, f->dir);
  return 0;
}

static bool is_leftover(const char *name) {
  return strncmp(name, STAGING_PREFIX, strlen(STAGING_PREFIX)) == 0 ||
         strncmp(name, DELETING_PREFIX, strlen(DELETING_PREFIX)) == 0;
}

static int file_cleanup(kyb_store *s, uint64_t min_age_s, size_t *removed, kyb_error **err) {
  struct file_store *f = fs_of(s);
  int dupfd = fcntl(f->dirfd, F_DUPFD_CLOEXEC, 3);
  cleanup_dir DIR *d = dupfd >= 0 ? fdopendir(dupfd) : NULL;
  if (d == NULL) {
    kyb_error_errno(err, "clean up store %s", f->dir);
    if (dupfd >= 0)
      close(dupfd);
    return -1;
  }
  rewinddir(d);
  *removed = 0;
  time_t now = time(NULL);
  struct dirent *de;
  while ((errno = 0, de = readdir(d)) != NULL) {
    struct stat sb;
    if (!is_leftover(de->d_name) || fstatat(f->dirfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
        !S_ISDIR(sb.st_mode))
      continue;
    if (now - sb.st_mtime < (time_t)min_age_s)
      continue;
    cleanup_close int fd =
        openat(f->dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0)
      continue; /* gone, or a live process is using it */
    cleanup_free char *path = kyb_path_join(f->dir, de->d_name);
    if (path == NULL)
      return kyb_error_set(err, ENOMEM, "clean up store %s", f->dir);
    if (kyb_remove_tree(path, err) < 0)
      return kyb_error_wrap(err, "clean up store %s", f->dir);
    log_info("store %s: removed leftover %s", f->dir, de->d_name);
    (*removed)++;
  }
  if (errno != 0)
    return kyb_error_errno(err, "clean up store %s", f->dir);
  return 0;
}

static void file_close(kyb_store *s) {
  struct file_store *f = fs_of(s);
  if (f == NULL)
    return;
  kyb_closep(&f->dirfd);
  free(f->dir);
  free(f);
  s->priv = NULL;
}

static const kyb_store_ops file_ops = {
    .stage = file_stage,
    .put = file_put,
    .discard = file_discard,
    .get_path = file_get_path,
    .stat = file_stat,
    .list = file_list,
    .remove = file_remove,
    .cleanup = file_cleanup,
    .close = file_close,
};

int kyb_store_file_open(kyb_store *s, const char *path, int flags, kyb_error **err) {
  if ((flags & KYB_STORE_CREATE) && kyb_mkdir_p(path, 0700, err) < 0) {
    int e = kyb_error_code(*err);
    kyb_error_clear(err);
    return store_error(err, e, path, "create store directory");
  }
  struct file_store *f = calloc(1, sizeof(*f));
  if (f == NULL || (f->dir = strdup(path)) == NULL) {
    free(f);
    return kyb_error_set(err, ENOMEM, "open store %s", path);
  }
  f->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (f->dirfd < 0) {
    kyb_error_errno(err, "open store %s", path);
    free(f->dir);
    free(f);
    return -1;
  }
  s->ops = &file_ops;
  s->priv = f;
  return 0;
}
