/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the rootfs diff: a fake overlay upperdir (files, nested
 * directories, a symlink, a hard link, a whiteout, an opaque directory, a
 * fifo and a socket) is written to a tar and applied onto a fake lower
 * rootfs; hostile tars and change lists (../, absolute names, paths through
 * symlinks, devices, hard-link tricks, limits) are refused and write nothing
 * outside the target.  Needs root (mknod, chown, trusted.* xattrs). */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cmocka.h>

#include "image/rootfs.h"
#include "util/cleanup.h"
#include "util/fs.h"

static char tmpdir[] = "/tmp/kyb-test-rootfs-XXXXXX";
static char outside[64];      /* what hostile symlink members aim at */
static char outside_file[80]; /* and an absolute member name */
static int counter;

static int setup(void **state) {
  (void)state;
  if (mkdtemp(tmpdir) == NULL)
    return -1;
  snprintf(outside, sizeof(outside), "%s/outside", tmpdir);
  snprintf(outside_file, sizeof(outside_file), "%s/file", outside);
  return mkdir(outside, 0755);
}

static int teardown(void **state) {
  (void)state;
  kyb_error *err = NULL;
  int r = kyb_remove_tree(tmpdir, &err);
  kyb_error_free(err);
  return r;
}

/* A fresh directory under tmpdir. */
static char *fresh_dir(const char *what) {
  char sub[64];
  snprintf(sub, sizeof(sub), "%s%d", what, counter++);
  char *d = kyb_path_join(tmpdir, sub);
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_mkdir_p(d, 0755, &err), 0);
  return d;
}

static void put_file(const char *dir, const char *rel, const char *content, mode_t mode) {
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *p = kyb_path_join(dir, rel);
  cleanup_free char *parent = strdup(p);
  *strrchr(parent, '/') = '\0';
  assert_int_equal(kyb_mkdir_p(parent, 0755, &err), 0);
  assert_int_equal(kyb_write_file_atomic(p, content, strlen(content), mode, &err), 0);
}

static char *slurp(const char *dir, const char *rel) {
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *p = kyb_path_join(dir, rel);
  char *buf = NULL;
  if (kyb_read_file(p, 1 << 20, &buf, NULL, &err) < 0)
    return NULL;
  return buf;
}

static bool exists(const char *dir, const char *rel) {
  cleanup_free char *p = kyb_path_join(dir, rel);
  struct stat st;
  return lstat(p, &st) == 0;
}

static void make_upper(const char *up) {
  put_file(up, "etc/app.conf", "new config\n", 0640);
  cleanup_free char *conf = kyb_path_join(up, "etc/app.conf");
  assert_int_equal(chown(conf, 1000, 1001), 0);
  assert_int_equal(setxattr(conf, "user.k", "v", 1, 0), 0);
  assert_int_equal(setxattr(conf, "trusted.overlay.origin", "o", 1, 0), 0);
  struct timespec ts[2] = {{1700000000, 123456789}, {1700000000, 123456789}};
  assert_int_equal(utimensat(AT_FDCWD, conf, ts, 0), 0);
  cleanup_free char *hl = kyb_path_join(up, "etc/app.conf.link");
  assert_int_equal(link(conf, hl), 0);
  put_file(up, "usr/bin/tool", "#!/bin/sh\n", 0755);
  put_file(up, "deep/a/b/c/file", "deep", 0600);
  put_file(up, "caf\xc3\xa9/\xc3\xbc.txt", "utf-8 names", 0644);
  put_file(up, "bytes-\xff\xfe", "not utf-8 at all", 0644);
  put_file(up, "data/new.txt", "new data", 0644);
  cleanup_free char *data = kyb_path_join(up, "data");
  assert_int_equal(setxattr(data, "trusted.overlay.opaque", "y", 1, 0), 0);
  cleanup_free char *ln = kyb_path_join(up, "link");
  assert_int_equal(symlink("/etc/app.conf", ln), 0);
  cleanup_free char *wh = kyb_path_join(up, "etc/removed");
  assert_int_equal(mknod(wh, S_IFCHR | 0000, makedev(0, 0)), 0);
  cleanup_free char *fifo = kyb_path_join(up, "fifo");
  assert_int_equal(mkfifo(fifo, 0600), 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/sock", up);
  cleanup_close int s = socket(AF_UNIX, SOCK_STREAM, 0);
  assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static void make_lower(const char *low) {
  put_file(low, "etc/app.conf", "old config\n", 0644);
  put_file(low, "etc/removed", "to be deleted", 0644);
  put_file(low, "data/old.txt", "hidden by opaque", 0644);
  put_file(low, "data/sub/x", "hidden too", 0644);
  put_file(low, "keep.txt", "untouched", 0644);
  put_file(low, "link", "a file the symlink replaces", 0644);
}

static void test_write_and_apply(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *up = fresh_dir("upper");
  cleanup_free char *low = fresh_dir("lower");
  cleanup_free char *out = fresh_dir("out");
  cleanup_free char *tar = kyb_path_join(out, "rootfs-diff.tar");
  make_upper(up);
  make_lower(low);
  kyb_rootfs_changes ch = {0};
  assert_int_equal(kyb_rootfs_diff_write(up, tar, &ch, &err), 0);
  assert_int_equal(ch.ndeleted, 1);
  assert_string_equal(ch.deleted[0], "etc/removed");
  assert_int_equal(ch.nopaque, 1);
  assert_string_equal(ch.opaque[0], "data");
  assert_int_equal(ch.skipped, 2); /* fifo, socket */
  /* bytes-\xff\xfe café café/ü.txt data data/new.txt deep deep/a deep/a/b
   * deep/a/b/c deep/a/b/c/file etc etc/app.conf etc/app.conf.link link usr
   * usr/bin usr/bin/tool */
  assert_int_equal(ch.entries, 17);

  /* Round trip through the manifest form. */
  cleanup_json json_t *j = kyb_rootfs_changes_to_json(&ch);
  kyb_rootfs_changes_release(&ch);
  assert_int_equal(kyb_rootfs_changes_from_json(j, &ch, &err), 0);

  assert_int_equal(kyb_rootfs_diff_apply(tar, &ch, low, NULL, &err), 0);
  kyb_rootfs_changes_release(&ch);
  assert_false(exists(low, "etc/removed"));
  assert_false(exists(low, "data/old.txt"));
  assert_false(exists(low, "data/sub"));
  assert_false(exists(low, "fifo"));
  assert_false(exists(low, "sock"));
  cleanup_free char *conf = slurp(low, "etc/app.conf");
  assert_string_equal(conf, "new config\n");
  cleanup_free char *nd = slurp(low, "data/new.txt");
  assert_string_equal(nd, "new data");
  cleanup_free char *keep = slurp(low, "keep.txt");
  assert_string_equal(keep, "untouched");
  cleanup_free char *deep = slurp(low, "deep/a/b/c/file");
  assert_string_equal(deep, "deep");
  cleanup_free char *utf = slurp(low, "caf\xc3\xa9/\xc3\xbc.txt");
  assert_string_equal(utf, "utf-8 names");
  cleanup_free char *raw = slurp(low, "bytes-\xff\xfe");
  assert_string_equal(raw, "not utf-8 at all");

  cleanup_free char *cp = kyb_path_join(low, "etc/app.conf");
  cleanup_free char *hp = kyb_path_join(low, "etc/app.conf.link");
  struct stat st, st2;
  assert_int_equal(lstat(cp, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0640);
  assert_int_equal(st.st_uid, 1000);
  assert_int_equal(st.st_gid, 1001);
  assert_int_equal(st.st_mtim.tv_sec, 1700000000);
  assert_int_equal(st.st_mtim.tv_nsec, 123456789);
  assert_int_equal(lstat(hp, &st2), 0);
  assert_int_equal(st.st_ino, st2.st_ino); /* the hard link survived as one */
  char v[8];
  assert_int_equal(getxattr(cp, "user.k", v, sizeof(v)), 1);
  assert_int_equal(v[0], 'v');
  assert_int_equal(getxattr(cp, "trusted.overlay.origin", v, sizeof(v)), -1);
  cleanup_free char *tp = kyb_path_join(low, "usr/bin/tool");
  assert_int_equal(lstat(tp, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0755);
  cleanup_free char *lp = kyb_path_join(low, "link");
  char target[64] = {0};
  assert_int_equal(lstat(lp, &st), 0);
  assert_true(S_ISLNK(st.st_mode));
  assert_int_equal(readlink(lp, target, sizeof(target) - 1), 13);
  assert_string_equal(target, "/etc/app.conf");
}

static void test_write_refuses_metacopy(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *up = fresh_dir("upper");
  cleanup_free char *out = fresh_dir("out");
  cleanup_free char *tar = kyb_path_join(out, "d.tar");
  put_file(up, "f", "only metadata", 0644);
  cleanup_free char *f = kyb_path_join(up, "f");
  assert_int_equal(setxattr(f, "trusted.overlay.metacopy", "", 0, 0), 0);
  kyb_rootfs_changes ch = {0};
  assert_int_equal(kyb_rootfs_diff_write(up, tar, &ch, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOTSUP);
  assert_non_null(strstr(kyb_error_message(err), "metacopy"));
  assert_false(exists(out, "d.tar")); /* no half tar left behind */
  kyb_error_clear(&err);
  /* An existing tar is never overwritten. */
  cleanup_free char *up2 = fresh_dir("upper");
  put_file(out, "d.tar", "x", 0600);
  assert_int_equal(kyb_rootfs_diff_write(up2, tar, &ch, &err), -1);
  assert_int_equal(kyb_error_code(err), EEXIST);
}

/* ---- hostile input ------------------------------------------------------ */

typedef struct {
  const char *name;
  mode_t type;      /* AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFCHR; 0 for a hard link */
  const char *data; /* file content, symlink or hard-link target */
} member;

static void make_tar(const char *path, const member *m, size_t n) {
  struct archive *a = archive_write_new();
  assert_int_equal(archive_write_set_format_pax(a), ARCHIVE_OK);
  assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
  for (size_t i = 0; i < n; i++) {
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, m[i].name);
    archive_entry_set_perm(e, 0644);
    if (m[i].type == 0) {
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_hardlink(e, m[i].data);
    } else {
      archive_entry_set_filetype(e, m[i].type);
    }
    if (m[i].type == AE_IFLNK)
      archive_entry_set_symlink(e, m[i].data);
    if (m[i].type == AE_IFCHR)
      archive_entry_set_rdev(e, makedev(1, 3));
    size_t len = m[i].type == AE_IFREG && m[i].data ? strlen(m[i].data) : 0;
    archive_entry_set_size(e, (la_int64_t)len);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    if (len > 0)
      assert_int_equal(archive_write_data(a, m[i].data, len), (la_ssize_t)len);
    archive_entry_free(e);
  }
  assert_int_equal(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
}

/* Applies a tar of `n` members onto a fresh target next to a fresh
 * "outside" directory; expects failure with `code` and `text`, and checks
 * that nothing appeared outside the target. */
static void expect_refused(const member *m, size_t n, const kyb_rootfs_limits *lim, int code,
                           const char *text, bool target_untouched) {
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *base = fresh_dir("hostile");
  cleanup_free char *target = kyb_path_join(base, "a/b/target");
  assert_int_equal(kyb_mkdir_p(target, 0755, &err), 0);
  cleanup_free char *tar = kyb_path_join(base, "evil.tar");
  make_tar(tar, m, n);
  kyb_rootfs_changes none = {0};
  assert_int_equal(kyb_rootfs_diff_apply(tar, &none, target, lim, &err), -1);
  if (kyb_error_code(err) != code || strstr(kyb_error_message(err), text) == NULL)
    fail_msg("got \"%s\" (errno %d), wanted \"%s\" (errno %d)", kyb_error_message(err),
             kyb_error_code(err), text, code);
  assert_false(exists(outside, "file"));
  assert_false(exists(base, "a/b/escape"));
  assert_false(exists(base, "escape"));
  assert_false(exists(base, "a/escape"));
  if (target_untouched) {
    cleanup_dir DIR *d = opendir(target);
    struct dirent *de;
    int entries = 0;
    while ((de = readdir(d)) != NULL)
      entries += de->d_name[0] != '.';
    assert_int_equal(entries, 0);
  }
}

static void test_hostile_tars(void **state) {
  (void)state;
  const member dotdot[] = {{"ok.txt", AE_IFREG, "fine"}, {"../escape", AE_IFREG, "x"}};
  expect_refused(dotdot, 2, NULL, EINVAL, "has a \"..\" component", true);
  const member inner[] = {{"x/../../../escape", AE_IFREG, "x"}};
  expect_refused(inner, 1, NULL, EINVAL, "has a \"..\" component", true);
  const member abs[] = {{"ok.txt", AE_IFREG, "fine"}, {outside_file, AE_IFREG, "x"}};
  expect_refused(abs, 2, NULL, EINVAL, "is absolute", true);
  const member via_link[] = {{"link", AE_IFLNK, outside}, {"link/file", AE_IFREG, "x"}};
  expect_refused(via_link, 2, NULL, ELOOP, "\"link\" on the path of \"link/file\" is a symlink",
                 false);
  const member via_rel[] = {{"up", AE_IFLNK, "../../.."}, {"up/escape", AE_IFREG, "x"}};
  expect_refused(via_rel, 2, NULL, ELOOP, "is a symlink; refusing to follow it", false);
  const member hl[] = {{"h", 0, "../../escape"}};
  expect_refused(hl, 1, NULL, EINVAL, "hard link target", true);
  const member dev[] = {{"null", AE_IFCHR, NULL}};
  expect_refused(dev, 1, NULL, EINVAL, "null is a character device", true);
  const member three[] = {{"a", AE_IFREG, "1"}, {"b", AE_IFREG, "2"}, {"c", AE_IFREG, "3"}};
  kyb_rootfs_limits few = {.max_entries = 2};
  expect_refused(three, 3, &few, EFBIG, "more than 2 members", true);
  kyb_rootfs_limits small = {.max_bytes = 2};
  expect_refused(three, 3, &small, EFBIG, "content beyond 2 bytes", true);
}

/* Symlinks already in the target are not followed either. */
static void test_target_symlinks(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *base = fresh_dir("tsym");
  cleanup_free char *target = kyb_path_join(base, "target");
  cleanup_free char *elsewhere = kyb_path_join(base, "outside");
  assert_int_equal(kyb_mkdir_p(target, 0755, &err), 0);
  put_file(elsewhere, "precious", "keep me", 0644);
  cleanup_free char *etc = kyb_path_join(target, "etc");
  assert_int_equal(symlink(elsewhere, etc), 0);
  cleanup_free char *tar = kyb_path_join(base, "t.tar");
  const member m[] = {{"etc/precious", AE_IFREG, "overwritten"}};
  make_tar(tar, m, 1);
  kyb_rootfs_changes none = {0};
  assert_int_equal(kyb_rootfs_diff_apply(tar, &none, target, NULL, &err), -1);
  assert_int_equal(kyb_error_code(err), ELOOP);
  kyb_error_clear(&err);
  cleanup_free char *p1 = slurp(elsewhere, "precious");
  assert_string_equal(p1, "keep me");

  /* Deleted and opaque paths through that symlink: refused, outside intact. */
  char *del[] = {"etc/precious", NULL};
  kyb_rootfs_changes ch = {.deleted = del, .ndeleted = 1};
  const member empty[] = {{"ok", AE_IFREG, "x"}};
  cleanup_free char *tar2 = kyb_path_join(base, "t2.tar");
  make_tar(tar2, empty, 1);
  assert_int_equal(kyb_rootfs_diff_apply(tar2, &ch, target, NULL, &err), -1);
  assert_int_equal(kyb_error_code(err), ELOOP);
  kyb_error_clear(&err);
  char *opq[] = {"etc", NULL};
  kyb_rootfs_changes ch2 = {.opaque = opq, .nopaque = 1};
  /* The opaque path is the symlink itself: it is replaced, not followed. */
  assert_int_equal(kyb_rootfs_diff_apply(tar2, &ch2, target, NULL, &err), 0);
  cleanup_free char *p2 = slurp(elsewhere, "precious");
  assert_string_equal(p2, "keep me");
  assert_false(exists(target, "etc"));
  char *bad[] = {"../outside/precious", NULL};
  kyb_rootfs_changes ch3 = {.deleted = bad, .ndeleted = 1};
  assert_int_equal(kyb_rootfs_diff_apply(tar2, &ch3, target, NULL, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
  cleanup_free char *p3 = slurp(elsewhere, "precious");
  assert_string_equal(p3, "keep me");
}

/* A hard link planted by one member must not carry a later member's data
 * into the file it links to. */
static void test_hardlink_then_file(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *base = fresh_dir("hl");
  cleanup_free char *target = kyb_path_join(base, "target");
  put_file(target, "etc/shadow", "root:secret", 0600);
  cleanup_free char *tar = kyb_path_join(base, "t.tar");
  const member m[] = {
      {"tmp", AE_IFDIR, NULL}, {"tmp/x", 0, "etc/shadow"}, {"tmp/x", AE_IFREG, "attacker data"}};
  make_tar(tar, m, 3);
  kyb_rootfs_changes none = {0};
  assert_int_equal(kyb_rootfs_diff_apply(tar, &none, target, NULL, &err), 0);
  cleanup_free char *shadow = slurp(target, "etc/shadow");
  assert_string_equal(shadow, "root:secret");
  cleanup_free char *x = slurp(target, "tmp/x");
  assert_string_equal(x, "attacker data");
}

static void test_changes_json(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  kyb_rootfs_changes ch = {0};
  cleanup_json json_t *bad = json_pack("{s:[s],s:[]}", "deleted", "../x", "opaque");
  assert_int_equal(kyb_rootfs_changes_from_json(bad, &ch, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "deleted[0]"));
  kyb_error_clear(&err);
  cleanup_json json_t *bad2 = json_pack("{s:[],s:[i]}", "deleted", "opaque", 3);
  assert_int_equal(kyb_rootfs_changes_from_json(bad2, &ch, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "opaque[0] must be a string"));
  kyb_error_clear(&err);
  cleanup_json json_t *ok = json_pack("{s:[s],s:[],s:i}", "deleted", "a/b", "opaque", "entries", 4);
  assert_int_equal(kyb_rootfs_changes_from_json(ok, &ch, &err), 0);
  assert_int_equal(ch.ndeleted, 1);
  assert_int_equal(ch.entries, 4);
  kyb_rootfs_changes_release(&ch);
}

/* ---- against the kernel's own overlayfs ----------------------------------- */

static char **tree_lines;
static size_t tree_n;
static size_t tree_skip; /* length of the root prefix to strip */

/* One line per entry: path, type, mode, owner, and for files size, mtime,
 * content and user xattr, for symlinks the target.  Directory times are left
 * out: applying changes a directory's mtime wherever the diff has no entry
 * for it (the root, for one), and the kernel's merged view does the same. */
static int describe_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)flag;
  if (ftw->level == 0)
    return 0;
  char extra[256] = "";
  if (S_ISREG(st->st_mode)) {
    char buf[64] = {0}, xv[16] = {0};
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (fd >= 0)
      close(fd);
    if (getxattr(path, "user.t", xv, sizeof(xv) - 1) < 0)
      xv[0] = '\0';
    snprintf(extra, sizeof(extra), "size=%lld mtime=%lld.%09ld data=%.*s xattr=%s",
             (long long)st->st_size, (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
             (int)(n > 0 ? n : 0), buf, xv);
  } else if (S_ISLNK(st->st_mode)) {
    char t[128] = {0};
    ssize_t n = readlink(path, t, sizeof(t) - 1);
    snprintf(extra, sizeof(extra), "-> %.*s", (int)(n > 0 ? n : 0), t);
  }
  char *line = NULL;
  assert_true(asprintf(&line, "%s type=%o mode=%o owner=%u:%u %s", path + tree_skip,
                       st->st_mode & S_IFMT, st->st_mode & 07777, st->st_uid, st->st_gid,
                       extra) > 0);
  tree_lines = realloc(tree_lines, (tree_n + 1) * sizeof(char *));
  tree_lines[tree_n++] = line;
  return 0;
}

static int cmp_line(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The whole tree under root as one sorted text. */
static char *describe_tree(const char *root) {
  tree_lines = NULL;
  tree_n = 0;
  tree_skip = strlen(root);
  assert_int_equal(nftw(root, describe_entry, 16, FTW_PHYS), 0);
  qsort(tree_lines, tree_n, sizeof(char *), cmp_line);
  size_t len = 1;
  for (size_t i = 0; i < tree_n; i++)
    len += strlen(tree_lines[i]) + 1;
  char *out = calloc(1, len);
  for (size_t i = 0; i < tree_n; i++) {
    strcat(out, tree_lines[i]);
    strcat(out, "\n");
    free(tree_lines[i]);
  }
  free(tree_lines);
  return out;
}

static void make_base(const char *root) {
  put_file(root, "etc/conf", "old\n", 0644);
  put_file(root, "etc/gone", "deleted later\n", 0644);
  put_file(root, "etc/mode", "chmod later\n", 0644);
  put_file(root, "etc/old-name", "renamed later\n", 0644);
  put_file(root, "data/sub/x", "hidden by opaque\n", 0644);
  put_file(root, "data/y", "hidden by opaque\n", 0644);
  put_file(root, "usr/lib/libgone.so", "whole dir deleted\n", 0755);
  put_file(root, "keep", "untouched\n", 0644);
  const char *files[] = {"etc/conf",   "etc/gone", "etc/mode",           "etc/old-name",
                         "data/sub/x", "data/y",   "usr/lib/libgone.so", "keep"};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    cleanup_free char *p = kyb_path_join(root, files[i]);
    struct timespec ts[2] = {{1600000000, 0}, {1600000000, 0}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
  }
}

/* What a container does to its rootfs, done through a real overlay mount. */
static void change_merged(const char *m) {
  cleanup_error kyb_error *err = NULL;
  put_file(m, "etc/conf", "new\n", 0644);
  cleanup_free char *gone = kyb_path_join(m, "etc/gone");
  assert_int_equal(unlink(gone), 0);
  cleanup_free char *mode = kyb_path_join(m, "etc/mode");
  assert_int_equal(chmod(mode, 0600), 0);
  cleanup_free char *from = kyb_path_join(m, "etc/old-name");
  cleanup_free char *to = kyb_path_join(m, "etc/new-name");
  assert_int_equal(rename(from, to), 0);
  cleanup_free char *data = kyb_path_join(m, "data");
  assert_int_equal(kyb_remove_tree(data, &err), 0);
  put_file(m, "data/n", "fresh\n", 0644);
  cleanup_free char *lib = kyb_path_join(m, "usr/lib");
  assert_int_equal(kyb_remove_tree(lib, &err), 0);
  cleanup_free char *lnk = kyb_path_join(m, "lnk");
  assert_int_equal(symlink("/etc/conf", lnk), 0);
  put_file(m, "a/b/f", "deep\n", 0640);
  cleanup_free char *f = kyb_path_join(m, "a/b/f");
  cleanup_free char *f2 = kyb_path_join(m, "a/b/f2");
  assert_int_equal(link(f, f2), 0);
  assert_int_equal(setxattr(f, "user.t", "tag", 3, 0), 0);
  assert_int_equal(chown(f, 123, 456), 0);
}

static void test_real_overlay(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *base = fresh_dir("ovl");
  cleanup_free char *lower = kyb_path_join(base, "lower");
  cleanup_free char *upper = kyb_path_join(base, "upper");
  cleanup_free char *work = kyb_path_join(base, "work");
  cleanup_free char *merged = kyb_path_join(base, "merged");
  cleanup_free char *target = kyb_path_join(base, "target");
  const char *dirs[] = {lower, upper, work, merged, target};
  for (size_t i = 0; i < 5; i++)
    assert_int_equal(kyb_mkdir_p(dirs[i], 0755, &err), 0);
  make_base(lower);
  make_base(target);
  cleanup_free char *opts = NULL;
  assert_true(asprintf(&opts, "lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work) > 0);
  if (mount("overlay", merged, "overlay", 0, opts) < 0)
    skip(); /* no overlayfs here */
  change_merged(merged);
  cleanup_free char *want = describe_tree(merged);
  assert_int_equal(umount2(merged, 0), 0);

  cleanup_free char *tar = kyb_path_join(base, "rootfs-diff.tar");
  kyb_rootfs_changes ch = {0};
  assert_int_equal(kyb_rootfs_diff_write(upper, tar, &ch, &err), 0);
  assert_int_equal(ch.nopaque, 1);
  assert_string_equal(ch.opaque[0], "data");
  assert_int_equal(ch.ndeleted, 3); /* etc/gone, etc/old-name, usr/lib */
  assert_int_equal(kyb_rootfs_diff_apply(tar, &ch, target, NULL, &err), 0);
  kyb_rootfs_changes_release(&ch);
  cleanup_free char *got = describe_tree(target);
  if (strcmp(want, got) != 0)
    fail_msg("applied tree differs from the overlay's merged view:\n--- merged\n%s--- applied\n%s",
             want, got);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_write_and_apply),    cmocka_unit_test(test_write_refuses_metacopy),
      cmocka_unit_test(test_hostile_tars),       cmocka_unit_test(test_target_symlinks),
      cmocka_unit_test(test_hardlink_then_file), cmocka_unit_test(test_changes_json),
      cmocka_unit_test(test_real_overlay),
  };
  return cmocka_run_group_tests_name("rootfs", tests, setup, teardown);
}
