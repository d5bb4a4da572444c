/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writing the rootfs diff: an overlayfs upperdir into rootfs-diff.tar.
 *
 * The walk is fd-relative and never follows a symlink (a symlink is recorded
 * as one).  Names are sorted in each directory so the same upperdir gives
 * the same tar.  Overlay's bookkeeping is translated, not copied: whiteouts
 * (0:0 character devices, or files with trusted.overlay.whiteout on newer
 * kernels) become deleted paths, trusted.overlay.opaque=y becomes an opaque
 * path, and every other trusted.overlay.* xattr stays out of the tar.  Two
 * overlay features would make the upperdir alone an incomplete picture:
 * redirected directories and metacopy files (whose data is still in the
 * lower layer); the writer refuses them rather than record a wrong diff.
 */
#define KYB_LOG_MODULE "image"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "image/rootfs.h"
#include "util/cleanup.h"
#include "util/log.h"

#define WALK_MAX_DEPTH 256 /* one open fd per level */
#define XATTR_LIST_MAX_BYTES 65536
#define XATTR_VALUE_MAX_BYTES 65536
#define COPY_BUF_SIZE (1u << 20)
#define OVL_PREFIX "trusted.overlay."

enum { OVL_OPAQUE = 1, OVL_WHITEOUT = 2 };

struct link {
  dev_t dev;
  ino_t ino;
  char *path;
};

struct writer {
  struct archive *a;
  kyb_rootfs_changes *ch;
  size_t del_cap, opq_cap;
  void *links; /* tsearch tree of struct link: first path of each multiply-linked file */
  char *buf;
  dev_t dev;
};

static void archive_write_freep(struct archive **a) {
  if (*a != NULL)
    archive_write_free(*a);
  *a = NULL;
}

static int push_path(char ***v, size_t *n, size_t *cap, const char *s, kyb_error **err) {
  if (*n >= KYB_ROOTFS_MAX_CHANGES)
    return kyb_error_set(err, EFBIG, "more than %u deleted or opaque paths",
                         KYB_ROOTFS_MAX_CHANGES);
  if (*n + 1 >= *cap) {
    size_t nc = *cap ? *cap * 2 : 32;
    char **nv = realloc(*v, nc * sizeof(char *));
    if (nv == NULL)
      return kyb_error_set(err, ENOMEM, "rootfs diff");
    *v = nv;
    *cap = nc;
  }
  if (((*v)[*n] = strdup(s)) == NULL)
    return kyb_error_set(err, ENOMEM, "rootfs diff");
  (*v)[++*n] = NULL;
  return 0;
}

static int archive_fail(struct writer *w, const char *what, const char *rel, kyb_error **err) {
  int e = archive_errno(w->a);
  const char *msg = archive_error_string(w->a);
  return kyb_error_set(err, e > 0 ? e : EIO, "%s %s: %s", what, rel,
                       msg ? msg : "libarchive error");
}

static int write_header(struct writer *w, struct archive_entry *e, const char *rel,
                        kyb_error **err) {
  int r = archive_write_header(w->a, e);
  if (r == ARCHIVE_WARN)
    log_warn("rootfs diff: %s: %s", rel, archive_error_string(w->a));
  else if (r != ARCHIVE_OK)
    return archive_fail(w, "write tar header of", rel, err);
  w->ch->entries++;
  return 0;
}

/* Copies the xattrs of fd into e, except overlay's own, which are reported
 * through *ovl instead. */
static int read_xattrs(int fd, const char *rel, struct archive_entry *e, unsigned *ovl,
                       kyb_error **err) {
  *ovl = 0;
  char names[XATTR_LIST_MAX_BYTES];
  ssize_t n = flistxattr(fd, names, sizeof(names));
  if (n < 0 && (errno == ENOTSUP || errno == EOPNOTSUPP))
    return 0;
  if (n < 0)
    return kyb_error_errno(err, "list xattrs of %s", rel);
  cleanup_free char *val = malloc(XATTR_VALUE_MAX_BYTES);
  if (val == NULL)
    return kyb_error_set(err, ENOMEM, "xattrs of %s", rel);
  for (char *name = names; name < names + n; name += strlen(name) + 1) {
    ssize_t vn = fgetxattr(fd, name, val, XATTR_VALUE_MAX_BYTES);
    if (vn < 0 && errno == ENODATA)
      continue; /* removed while we looked */
    if (vn < 0)
      return kyb_error_errno(err, "read xattr %s of %s", name, rel);
    if (strncmp(name, OVL_PREFIX, strlen(OVL_PREFIX)) == 0) {
      const char *what = name + strlen(OVL_PREFIX);
      if (strcmp(what, "opaque") == 0 && vn == 1 && val[0] == 'y')
        *ovl |= OVL_OPAQUE;
      else if (strcmp(what, "whiteout") == 0)
        *ovl |= OVL_WHITEOUT;
      else if (strcmp(what, "redirect") == 0 || strcmp(what, "metacopy") == 0)
        return kyb_error_set(err, ENOTSUP,
                             "%s has overlay xattr %s: upperdirs of overlays mounted with "
                             "redirect_dir or metacopy are not supported",
                             rel, name);
      continue;
    }
    archive_entry_xattr_add_entry(e, name, val, (size_t)vn);
  }
  return 0;
}

static struct archive_entry *new_entry(const char *rel, const struct stat *st) {
  struct archive_entry *e = archive_entry_new();
  if (e == NULL)
    return NULL;
  archive_entry_set_pathname(e, rel);
  archive_entry_set_filetype(e, S_ISDIR(st->st_mode)   ? AE_IFDIR
                                : S_ISLNK(st->st_mode) ? AE_IFLNK
                                                       : AE_IFREG);
  archive_entry_set_perm(e, st->st_mode & 07777);
  archive_entry_set_uid(e, st->st_uid);
  archive_entry_set_gid(e, st->st_gid);
  archive_entry_set_mtime(e, st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
  return e;
}

static int link_cmp(const void *a, const void *b) {
  const struct link *x = a, *y = b;
  if (x->dev != y->dev)
    return x->dev < y->dev ? -1 : 1;
  if (x->ino != y->ino)
    return x->ino < y->ino ? -1 : 1;
  return 0;
}

static void link_free(void *p) {
  struct link *l = p;
  free(l->path);
  free(l);
}

/* For a file with several names: the first name written, or NULL after
 * remembering `rel` as that name. */
static int first_link(struct writer *w, const struct stat *st, const char *rel, const char **first,
                      kyb_error **err) {
  *first = NULL;
  struct link key = {.dev = st->st_dev, .ino = st->st_ino}, *l = malloc(sizeof(*l));
  if (l == NULL)
    return kyb_error_set(err, ENOMEM, "rootfs diff");
  *l = key;
  struct link **found = tsearch(l, &w->links, link_cmp);
  if (found == NULL) {
    free(l);
    return kyb_error_set(err, ENOMEM, "rootfs diff");
  }
  if (*found != l) {
    free(l);
    *first = (*found)->path;
    return 0;
  }
  if ((l->path = strdup(rel)) == NULL) {
    tdelete(l, &w->links, link_cmp);
    free(l);
    return kyb_error_set(err, ENOMEM, "rootfs diff");
  }
  return 0;
}

static int copy_data(struct writer *w, int fd, const char *rel, uint64_t size, kyb_error **err) {
  uint64_t left = size;
  while (left > 0) {
    ssize_t n = read(fd, w->buf, left < COPY_BUF_SIZE ? (size_t)left : COPY_BUF_SIZE);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return kyb_error_errno(err, "read %s", rel);
    if (n == 0) { /* shrank while we read: the tar pads the rest with zeros */
      log_warn("rootfs diff: %s shrank while it was read; padded with zeros", rel);
      break;
    }
    if (archive_write_data(w->a, w->buf, (size_t)n) != n)
      return archive_fail(w, "write", rel, err);
    left -= (uint64_t)n;
  }
  w->ch->bytes += size;
  return 0;
}

static int write_file(struct writer *w, int dirfd, const char *name, const char *rel,
                      const struct stat *st, kyb_error **err) {
  cleanup_close int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return kyb_error_errno(err, "open %s", rel);
  struct archive_entry *e = new_entry(rel, st);
  if (e == NULL)
    return kyb_error_set(err, ENOMEM, "rootfs diff");
  unsigned ovl = 0;
  int r = read_xattrs(fd, rel, e, &ovl, err);
  if (r == 0 && (ovl & OVL_WHITEOUT)) {
    archive_entry_free(e);
    return push_path(&w->ch->deleted, &w->ch->ndeleted, &w->del_cap, rel, err);
  }
  const char *first = NULL;
  if (r == 0 && st->st_nlink > 1)
    r = first_link(w, st, rel, &first, err);
  if (r == 0) {
    if (first != NULL)
      archive_entry_set_hardlink(e, first);
    archive_entry_set_size(e, first != NULL ? 0 : st->st_size);
    r = write_header(w, e, rel, err);
  }
  archive_entry_free(e);
  if (r < 0 || first != NULL)
    return r;
  return copy_data(w, fd, rel, (uint64_t)st->st_size, err);
}

static int write_symlink(struct writer *w, int dirfd, const char *name, const char *rel,
                         const struct stat *st, kyb_error **err) {
  char target[PATH_MAX];
  ssize_t n = readlinkat(dirfd, name, target, sizeof(target) - 1);
  if (n < 0)
    return kyb_error_errno(err, "readlink %s", rel);
  target[n] = '\0';
  struct archive_entry *e = new_entry(rel, st);
  if (e == NULL)
    return kyb_error_set(err, ENOMEM, "rootfs diff");
  archive_entry_set_symlink(e, target); /* xattrs of symlinks are not kept (see docs) */
  int r = write_header(w, e, rel, err);
  archive_entry_free(e);
  return r;
}

static int walk(struct writer *w, int dirfd, const char *prefix, int depth, kyb_error **err);

static int write_dir(struct writer *w, int dirfd, const char *name, const char *rel,
                     const struct stat *st, int depth, kyb_error **err) {
  if (st->st_dev != w->dev)
    return kyb_error_set(err, EXDEV, "%s is a mount point inside the upperdir", rel);
  cleanup_close int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return kyb_error_errno(err, "open %s", rel);
  struct archive_entry *e = new_entry(rel, st);
  if (e == NULL)
    return kyb_error_set(err, ENOMEM, "rootfs diff");
  unsigned ovl = 0;
  int r = read_xattrs(fd, rel, e, &ovl, err);
  if (r == 0 && (ovl & OVL_OPAQUE))
    r = push_path(&w->ch->opaque, &w->ch->nopaque, &w->opq_cap, rel, err);
  if (r == 0)
    r = write_header(w, e, rel, err);
  archive_entry_free(e);
  if (r < 0)
    return r;
  return walk(w, fd, rel, depth + 1, err);
}

static int write_one(struct writer *w, int dirfd, const char *name, const char *rel, int depth,
                     kyb_error **err) {
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return kyb_error_errno(err, "stat %s", rel);
  if (S_ISCHR(st.st_mode) && major(st.st_rdev) == 0 && minor(st.st_rdev) == 0)
    return push_path(&w->ch->deleted, &w->ch->ndeleted, &w->del_cap, rel, err);
  if (S_ISDIR(st.st_mode))
    return write_dir(w, dirfd, name, rel, &st, depth, err);
  if (S_ISREG(st.st_mode))
    return write_file(w, dirfd, name, rel, &st, err);
  if (S_ISLNK(st.st_mode))
    return write_symlink(w, dirfd, name, rel, &st, err);
  log_info("rootfs diff: %s is a %s, not kept in the diff", rel,
           S_ISSOCK(st.st_mode)   ? "socket (CRIU recreates bound sockets)"
           : S_ISFIFO(st.st_mode) ? "fifo"
                                  : "device node");
  w->ch->skipped++;
  return 0;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in dirfd, sorted, as a NULL-terminated array. */
static int read_names(int dirfd, const char *prefix, char ***out, kyb_error **err) {
  int dupfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
  if (dupfd < 0)
    return kyb_error_errno(err, "dup");
  cleanup_dir DIR *d = fdopendir(dupfd);
  if (d == NULL) {
    close(dupfd);
    return kyb_error_errno(err, "opendir %s", prefix[0] ? prefix : "upperdir");
  }
  cleanup_strv char **v = calloc(1, sizeof(char *));
  if (v == NULL)
    return kyb_error_set(err, ENOMEM, "rootfs diff");
  size_t n = 0, cap = 1;
  struct dirent *de;
  while ((errno = 0, de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (n + 1 >= cap) {
      char **nv = realloc(v, cap * 2 * sizeof(char *));
      if (nv == NULL)
        return kyb_error_set(err, ENOMEM, "rootfs diff");
      v = nv;
      cap *= 2;
    }
    v[n] = strdup(de->d_name);
    v[n + 1] = NULL;
    if (v[n++] == NULL)
      return kyb_error_set(err, ENOMEM, "rootfs diff");
  }
  if (errno != 0)
    return kyb_error_errno(err, "readdir %s", prefix[0] ? prefix : "upperdir");
  qsort(v, n, sizeof(char *), cmp_name);
  *out = steal_ptr(v);
  return 0;
}

static int walk(struct writer *w, int dirfd, const char *prefix, int depth, kyb_error **err) {
  if (depth >= WALK_MAX_DEPTH)
    return kyb_error_set(err, ELOOP, "%s: directories nested deeper than %d levels", prefix,
                         WALK_MAX_DEPTH);
  cleanup_strv char **names = NULL;
  if (read_names(dirfd, prefix, &names, err) < 0)
    return -1;
  for (char **n = names; n != NULL && *n != NULL; n++) {
    cleanup_free char *rel = NULL;
    if (asprintf(&rel, "%s%s%s", prefix, prefix[0] ? "/" : "", *n) < 0)
      return kyb_error_set(err, ENOMEM, "rootfs diff");
    if (write_one(w, dirfd, *n, rel, depth, err) < 0)
      return -1;
  }
  return 0;
}

static int write_tar(struct writer *w, int rootfd, int tarfd, kyb_error **err) {
  __attribute__((cleanup(archive_write_freep))) struct archive *a = archive_write_new();
  if (a == NULL)
    return kyb_error_set(err, ENOMEM, "rootfs diff");
  w->a = a;
  /* File names are bytes on Linux: BINARY keeps them exact whatever the
   * locale, where the default would try (and warn about) UTF-8. */
  if (archive_write_set_format_pax(a) != ARCHIVE_OK ||
      archive_write_set_options(a, "hdrcharset=BINARY") != ARCHIVE_OK ||
      archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
      archive_write_open_fd(a, tarfd) != ARCHIVE_OK)
    return archive_fail(w, "open", "tar", err);
  if (walk(w, rootfd, "", 0, err) < 0)
    return -1;
  if (archive_write_close(a) != ARCHIVE_OK)
    return archive_fail(w, "finish", "tar", err);
  if (fsync(tarfd) < 0)
    return kyb_error_errno(err, "fsync");
  return 0;
}

int kyb_rootfs_diff_write(const char *upperdir, const char *tar_path, kyb_rootfs_changes *out,
                          kyb_error **err) {
  memset(out, 0, sizeof(*out));
  cleanup_close int rootfd = open(upperdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0)
    return kyb_error_errno(err, "rootfs diff: open upperdir %s", upperdir);
  struct stat st;
  if (fstat(rootfd, &st) < 0)
    return kyb_error_errno(err, "rootfs diff: stat upperdir %s", upperdir);
  cleanup_close int tarfd = open(tar_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (tarfd < 0)
    return kyb_error_errno(err, "rootfs diff: create %s", tar_path);
  cleanup_free char *buf = malloc(COPY_BUF_SIZE);
  struct writer w = {.ch = out, .dev = st.st_dev, .buf = buf};
  int r = buf ? write_tar(&w, rootfd, tarfd, err) : kyb_error_set(err, ENOMEM, "rootfs diff");
  tdestroy(w.links, link_free);
  if (r < 0) {
    unlink(tar_path);
    kyb_rootfs_changes_release(out);
    return kyb_error_wrap(err, "rootfs diff of %s", upperdir);
  }
  /* An empty change list is still a list: the manifest always has both. */
  if ((out->deleted == NULL && (out->deleted = calloc(1, sizeof(char *))) == NULL) ||
      (out->opaque == NULL && (out->opaque = calloc(1, sizeof(char *))) == NULL)) {
    unlink(tar_path);
    kyb_rootfs_changes_release(out);
    return kyb_error_set(err, ENOMEM, "rootfs diff");
  }
  log_debug("rootfs diff of %s: %llu entries, %llu bytes, %zu deleted, %zu opaque", upperdir,
            (unsigned long long)out->entries, (unsigned long long)out->bytes, out->ndeleted,
            out->nopaque);
  return 0;
}
