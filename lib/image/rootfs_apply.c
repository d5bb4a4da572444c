/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Applying a rootfs diff onto a target root: the restore side of
 * rootfs_write.c.
 *
 * The tar is untrusted.  It is read twice: the first pass only checks every
 * member (clean relative name, allowed type, owner in range, limits on
 * members and bytes) and writes nothing, so a bad tar is refused before the
 * target changes; the second pass checks each member again (the file could
 * have changed in between) and writes it.  Extraction does not use
 * archive_write_disk: it is done here with *at() calls on fds reached by
 * kyb_open_parent_beneath(), which refuses any symlink on the way, so a
 * member can reach neither outside the target nor through a symlink that an
 * earlier member (or the target itself) put there.  An existing file is
 * always unlinked and created afresh with O_EXCL, never opened for writing,
 * so a hard link planted by one member cannot redirect another member's
 * data.  Only user.*, security.capability and POSIX ACL xattrs are restored:
 * trusted.* could steer an overlay the target lives on, and security labels
 * belong to the restoring runtime.
 */
#define KYB_LOG_MODULE "image"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "image/rootfs.h"
#include "image/safepath.h"
#include "util/cleanup.h"
#include "util/log.h"

#define MEMBER_XATTRS_MAX 128

struct dirfix {
  char *path;
  struct timespec times[2];
};

struct applier {
  int rootfd;
  uint64_t max_entries, max_bytes;
  uint64_t entries, bytes; /* counted per pass */
  struct dirfix *dirs;     /* directory times, set last: creating children changes them */
  size_t ndirs, dirs_cap;
  bool warned_xattr;
};

static void archive_read_freep(struct archive **a) {
  if (*a != NULL)
    archive_read_free(*a);
  *a = NULL;
}

static int archive_fail(struct archive *a, const char *what, kyb_error **err) {
  int e = archive_errno(a);
  const char *msg = archive_error_string(a);
  return kyb_error_set(err, e > 0 ? e : EIO, "%s: %s", what, msg ? msg : "libarchive error");
}

static int open_tar(const char *path, struct archive **out, kyb_error **err) {
  struct archive *a = archive_read_new();
  if (a == NULL)
    return kyb_error_set(err, ENOMEM, "read %s", path);
  /* tar (ustar, pax, gnu) and nothing else: less parser facing the input. */
  if (archive_read_support_format_tar(a) != ARCHIVE_OK ||
      archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
    archive_fail(a, "open", err);
    archive_read_free(a);
    return kyb_error_wrap(err, "%s", path);
  }
  *out = a;
  return 0;
}

/* The member's name as a clean relative path in buf (a directory's one
 * trailing '/' dropped). */
static int clean_name(const char *name, char buf[PATH_MAX], const char *what, kyb_error **err) {
  if (name == NULL)
    return kyb_error_set(err, EINVAL, "%s missing or not readable", what);
  size_t len = strlen(name);
  if (len >= PATH_MAX)
    return kyb_error_set(err, EINVAL, "%s is longer than %d bytes", what, PATH_MAX - 1);
  memcpy(buf, name, len + 1);
  if (len > 1 && buf[len - 1] == '/')
    buf[len - 1] = '\0';
  if (kyb_relpath_check(buf, err) < 0)
    return kyb_error_wrap(err, "%s", what);
  return 0;
}

static const char *type_name(mode_t t) {
  switch (t) {
  case AE_IFCHR:
    return "character device";
  case AE_IFBLK:
    return "block device";
  case AE_IFIFO:
    return "fifo";
  case AE_IFSOCK:
    return "socket";
  default:
    return "member of unknown type";
  }
}

/* Every rule a member must meet, checked in both passes. */
static int check_member(struct applier *ap, struct archive_entry *e, char path[PATH_MAX],
                        kyb_error **err) {
  if (++ap->entries > ap->max_entries)
    return kyb_error_set(err, EFBIG, "more than %llu members (the limit)",
                         (unsigned long long)ap->max_entries);
  if (clean_name(archive_entry_pathname(e), path, "name", err) < 0)
    return -1;
  mode_t type = archive_entry_filetype(e);
  const char *hardlink = archive_entry_hardlink(e);
  la_int64_t size = archive_entry_size(e);
  if (hardlink != NULL) {
    char target[PATH_MAX];
    if (clean_name(hardlink, target, "hard link target", err) < 0)
      return kyb_error_wrap(err, "%s", path);
    if (size > 0)
      return kyb_error_set(err, EINVAL, "%s: a hard link with data is not allowed", path);
  } else if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK) {
    return kyb_error_set(err, EINVAL,
                         "%s is a %s; only regular files, directories, symlinks and hard links "
                         "are allowed",
                         path, type_name(type));
  }
  if (type == AE_IFLNK && hardlink == NULL) {
    const char *t = archive_entry_symlink(e);
    if (t == NULL || t[0] == '\0' || strlen(t) >= PATH_MAX)
      return kyb_error_set(err, EINVAL, "%s: symlink target empty or too long", path);
  }
  if (size < 0)
    return kyb_error_set(err, EINVAL, "%s: negative size", path);
  if (type == AE_IFREG && hardlink == NULL) {
    ap->bytes += (uint64_t)size;
    if (ap->bytes > ap->max_bytes)
      return kyb_error_set(err, EFBIG, "%s: content beyond %llu bytes (the limit)", path,
                           (unsigned long long)ap->max_bytes);
  }
  la_int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
  if (uid < 0 || uid >= (la_int64_t)UINT32_MAX || gid < 0 || gid >= (la_int64_t)UINT32_MAX)
    return kyb_error_set(err, EINVAL, "%s: owner %lld:%lld out of range", path, (long long)uid,
                         (long long)gid);
  if (archive_entry_xattr_count(e) > MEMBER_XATTRS_MAX)
    return kyb_error_set(err, EINVAL, "%s: more than %d xattrs", path, MEMBER_XATTRS_MAX);
  return 0;
}

/* The next member, or 1 at the end of the tar. */
static int next_member(struct archive *a, struct archive_entry **e, kyb_error **err) {
  int r = archive_read_next_header(a, e);
  if (r == ARCHIVE_EOF)
    return 1;
  if (r == ARCHIVE_WARN)
    log_warn("rootfs diff: %s", archive_error_string(a));
  else if (r != ARCHIVE_OK)
    return archive_fail(a, "read member", err);
  return 0;
}

static int check_all(struct applier *ap, const char *tar, kyb_error **err) {
  __attribute__((cleanup(archive_read_freep))) struct archive *a = NULL;
  if (open_tar(tar, &a, err) < 0)
    return -1;
  struct archive_entry *e;
  int r;
  while ((r = next_member(a, &e, err)) == 0) {
    char path[PATH_MAX];
    if (check_member(ap, e, path, err) < 0)
      return kyb_error_wrap(err, "member %llu", (unsigned long long)ap->entries);
    if (archive_read_data_skip(a) != ARCHIVE_OK)
      return archive_fail(a, "skip member data", err);
  }
  return r < 0 ? -1 : 0;
}

static bool xattr_restored(const char *name) {
  return strncmp(name, "user.", 5) == 0 || strcmp(name, "security.capability") == 0 ||
         strcmp(name, "system.posix_acl_access") == 0 ||
         strcmp(name, "system.posix_acl_default") == 0;
}

/* Owner first (chown clears set-id bits), then mode, xattrs, times. */
static int set_meta(struct applier *ap, int fd, struct archive_entry *e, const char *path,
                    bool times, kyb_error **err) {
  if (fchown(fd, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e)) < 0)
    return kyb_error_errno(err, "chown %s", path);
  if (fchmod(fd, archive_entry_perm(e) & 07777) < 0)
    return kyb_error_errno(err, "chmod %s", path);
  const char *name;
  const void *value;
  size_t size;
  archive_entry_xattr_reset(e);
  while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    if (!xattr_restored(name)) {
      log_debug("rootfs diff: %s: xattr %s not restored", path, name);
      continue;
    }
    if (fsetxattr(fd, name, value, size, 0) == 0)
      continue;
    if (errno != ENOTSUP && errno != EOPNOTSUPP)
      return kyb_error_errno(err, "set xattr %s on %s", name, path);
    if (!ap->warned_xattr)
      log_warn("rootfs diff: the target does not support xattr %s (first seen on %s)", name, path);
    ap->warned_xattr = true;
  }
  if (!times)
    return 0;
  struct timespec ts[2] = {{archive_entry_mtime(e), archive_entry_mtime_nsec(e)},
                           {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};
  if (futimens(fd, ts) < 0)
    return kyb_error_errno(err, "set times of %s", path);
  return 0;
}

static int make_dir(struct applier *ap, int parent, const char *leaf, struct archive_entry *e,
                    const char *path, kyb_error **err) {
  struct stat st;
  if (fstatat(parent, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) &&
      kyb_remove_at(parent, leaf, err) < 0)
    return -1;
  if (mkdirat(parent, leaf, 0700) < 0 && errno != EEXIST)
    return kyb_error_errno(err, "mkdir %s", path);
  cleanup_close int fd = openat(parent, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return kyb_error_errno(err, "open %s", path);
  if (set_meta(ap, fd, e, path, false, err) < 0)
    return -1;
  if (ap->ndirs == ap->dirs_cap) {
    size_t cap = ap->dirs_cap ? ap->dirs_cap * 2 : 64;
    struct dirfix *nd = realloc(ap->dirs, cap * sizeof(*nd));
    if (nd == NULL)
      return kyb_error_set(err, ENOMEM, "rootfs diff");
    ap->dirs = nd;
    ap->dirs_cap = cap;
  }
  struct dirfix *d = &ap->dirs[ap->ndirs];
  if ((d->path = strdup(path)) == NULL)
    return kyb_error_set(err, ENOMEM, "rootfs diff");
  d->times[0] = d->times[1] =
      (struct timespec){archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
  ap->ndirs++;
  return 0;
}

static int write_all(int fd, const char *buf, size_t len, off_t off) {
  while (len > 0) {
    ssize_t n = pwrite(fd, buf, len, off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    buf += n;
    len -= (size_t)n;
    off += n;
  }
  return 0;
}

static int make_file(struct applier *ap, struct archive *a, int parent, const char *leaf,
                     struct archive_entry *e, const char *path, kyb_error **err) {
  if (kyb_remove_at(parent, leaf, err) < 0)
    return -1;
  cleanup_close int fd =
      openat(parent, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return kyb_error_errno(err, "create %s", path);
  la_int64_t size = archive_entry_size(e);
  for (;;) {
    const void *buf;
    size_t len;
    la_int64_t off;
    int r = archive_read_data_block(a, &buf, &len, &off);
    if (r == ARCHIVE_EOF)
      break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
      return archive_fail(a, path, err);
    if (off < 0 || (uint64_t)off + len > (uint64_t)size)
      return kyb_error_set(err, EINVAL, "%s: data beyond the member's size", path);
    if (write_all(fd, buf, len, (off_t)off) < 0)
      return kyb_error_errno(err, "write %s", path);
  }
  if (ftruncate(fd, (off_t)size) < 0) /* a sparse member may end in a hole */
    return kyb_error_errno(err, "truncate %s", path);
  return set_meta(ap, fd, e, path, true, err);
}

static int make_symlink(int parent, const char *leaf, struct archive_entry *e, const char *path,
                        kyb_error **err) {
  if (kyb_remove_at(parent, leaf, err) < 0)
    return -1;
  if (symlinkat(archive_entry_symlink(e), parent, leaf) < 0)
    return kyb_error_errno(err, "symlink %s", path);
  if (fchownat(parent, leaf, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e),
               AT_SYMLINK_NOFOLLOW) < 0)
    return kyb_error_errno(err, "chown %s", path);
  struct timespec ts[2] = {{archive_entry_mtime(e), archive_entry_mtime_nsec(e)},
                           {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};
  if (utimensat(parent, leaf, ts, AT_SYMLINK_NOFOLLOW) < 0)
    return kyb_error_errno(err, "set times of %s", path);
  return 0;
}

static int make_hardlink(struct applier *ap, int parent, const char *leaf, struct archive_entry *e,
                         const char *path, kyb_error **err) {
  char target[PATH_MAX];
  if (clean_name(archive_entry_hardlink(e), target, "hard link target", err) < 0)
    return -1;
  if (strcmp(target, path) == 0)
    return kyb_error_set(err, EINVAL, "%s: hard link to itself", path);
  const char *tleaf = NULL;
  cleanup_close int tparent = kyb_open_parent_beneath(ap->rootfd, target, false, &tleaf, err);
  if (tparent < 0)
    return kyb_error_wrap(err, "hard link %s to %s", path, target);
  if (kyb_remove_at(parent, leaf, err) < 0)
    return -1;
  if (linkat(tparent, tleaf, parent, leaf, 0) < 0)
    return kyb_error_errno(err, "hard link %s to %s", path, target);
  return 0;
}

static int extract_member(struct applier *ap, struct archive *a, struct archive_entry *e,
                          const char *path, kyb_error **err) {
  const char *leaf = NULL;
  cleanup_close int parent = kyb_open_parent_beneath(ap->rootfd, path, true, &leaf, err);
  if (parent < 0)
    return -1;
  if (archive_entry_hardlink(e) != NULL)
    return make_hardlink(ap, parent, leaf, e, path, err);
  switch (archive_entry_filetype(e)) {
  case AE_IFDIR:
    return make_dir(ap, parent, leaf, e, path, err);
  case AE_IFLNK:
    return make_symlink(parent, leaf, e, path, err);
  default:
    return make_file(ap, a, parent, leaf, e, path, err);
  }
}

static int extract_all(struct applier *ap, const char *tar, kyb_error **err) {
  __attribute__((cleanup(archive_read_freep))) struct archive *a = NULL;
  if (open_tar(tar, &a, err) < 0)
    return -1;
  struct archive_entry *e;
  int r;
  while ((r = next_member(a, &e, err)) == 0) {
    char path[PATH_MAX];
    if (check_member(ap, e, path, err) < 0 || extract_member(ap, a, e, path, err) < 0)
      return kyb_error_wrap(err, "member %llu", (unsigned long long)ap->entries);
  }
  if (r < 0)
    return -1;
  for (size_t i = ap->ndirs; i-- > 0;) { /* deepest last written, so set first */
    cleanup_error kyb_error *ignored = NULL;
    cleanup_close int fd =
        kyb_open_beneath(ap->rootfd, ap->dirs[i].path, O_RDONLY | O_DIRECTORY, &ignored);
    if (fd < 0 || futimens(fd, ap->dirs[i].times) < 0)
      log_debug("rootfs diff: times of %s not set", ap->dirs[i].path);
  }
  return 0;
}

/* Deleted paths go; opaque directories lose their (lower) content.  A path
 * whose parent is missing or not a directory has nothing to remove; a
 * symlink on the way is still an error (ELOOP). */
static int remove_changes(struct applier *ap, const kyb_rootfs_changes *c, kyb_error **err) {
  for (size_t i = 0; i < c->ndeleted + c->nopaque; i++) {
    bool opaque = i >= c->ndeleted;
    const char *p = opaque ? c->opaque[i - c->ndeleted] : c->deleted[i];
    const char *leaf = NULL;
    cleanup_close int parent = kyb_open_parent_beneath(ap->rootfd, p, false, &leaf, err);
    if (parent < 0 && (kyb_error_code(*err) == ENOENT || kyb_error_code(*err) == ENOTDIR)) {
      kyb_error_clear(err);
      continue;
    }
    if (parent < 0)
      return kyb_error_wrap(err, "%s path %s", opaque ? "opaque" : "deleted", p);
    struct stat st;
    if (opaque && fstatat(parent, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
      cleanup_close int fd = openat(parent, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0 || kyb_empty_dir(fd, err) < 0)
        return fd < 0 ? kyb_error_errno(err, "open opaque directory %s", p)
                      : kyb_error_wrap(err, "empty opaque directory %s", p);
      continue;
    }
    if (kyb_remove_at(parent, leaf, err) < 0)
      return kyb_error_wrap(err, "remove %s path %s", opaque ? "opaque" : "deleted", p);
  }
  return 0;
}

static int check_changes(const kyb_rootfs_changes *c, kyb_error **err) {
  if (c->ndeleted > KYB_ROOTFS_MAX_CHANGES || c->nopaque > KYB_ROOTFS_MAX_CHANGES)
    return kyb_error_set(err, EFBIG, "more than %u deleted or opaque paths",
                         KYB_ROOTFS_MAX_CHANGES);
  for (size_t i = 0; i < c->ndeleted; i++)
    if (kyb_relpath_check(c->deleted[i], err) < 0)
      return kyb_error_wrap(err, "deleted path %zu", i);
  for (size_t i = 0; i < c->nopaque; i++)
    if (kyb_relpath_check(c->opaque[i], err) < 0)
      return kyb_error_wrap(err, "opaque path %zu", i);
  return 0;
}

int kyb_rootfs_diff_apply(const char *tar_path, const kyb_rootfs_changes *changes,
                          const char *target, const kyb_rootfs_limits *limits, kyb_error **err) {
  struct applier ap = {.rootfd = -1};
  ap.max_entries =
      limits && limits->max_entries ? limits->max_entries : KYB_ROOTFS_DEFAULT_MAX_ENTRIES;
  ap.max_bytes = limits && limits->max_bytes ? limits->max_bytes : KYB_ROOTFS_DEFAULT_MAX_BYTES;
  cleanup_close int rootfd = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0)
    return kyb_error_errno(err, "apply rootfs diff: open target %s", target);
  ap.rootfd = rootfd;
  int r = check_changes(changes, err);
  if (r == 0)
    r = check_all(&ap, tar_path, err);
  ap.entries = ap.bytes = 0;
  if (r == 0)
    r = remove_changes(&ap, changes, err);
  if (r == 0)
    r = extract_all(&ap, tar_path, err);
  for (size_t i = 0; i < ap.ndirs; i++)
    free(ap.dirs[i].path);
  free(ap.dirs);
  if (r < 0)
    return kyb_error_wrap(err, "apply rootfs diff %s onto %s", tar_path, target);
  log_debug("rootfs diff %s applied onto %s (%llu members)", tar_path, target,
            (unsigned long long)ap.entries);
  return 0;
}
