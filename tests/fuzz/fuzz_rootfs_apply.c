/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kyb_rootfs_diff_apply: the rootfs diff tar of an image replayed onto a
 * target directory (run as root it also chowns and sets xattrs, as a
 * restore does).  Input: one byte choosing the deleted and opaque paths
 * (bits 0-3 and 4-7 over the lists below, some of them through the
 * target's symlinks), then the tar.  Each run gets a fresh target that
 * holds a symlink to a sibling directory ("outside", with one file in it)
 * and an absolute symlink to the same place; whatever the tar and the
 * changes hold, nothing outside the target may change: no file created,
 * removed, written, linked or re-moded there.
 */
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "image/rootfs.h"
#include "util/fs.h"

#define SECRET "the file outside the target\n"

static char base[] = "/tmp/kyb-fuzz-rootfs-XXXXXX";
static char target[sizeof(base) + 16], outside[sizeof(base) + 16], secret[sizeof(base) + 32],
    tar[sizeof(base) + 16];

static void write_text(const char *path, const char *text) {
  kyb_error *err = NULL;
  FUZZ_ASSERT(kyb_write_file_atomic(path, text, strlen(text), 0644, &err) == 0);
}

/* libFuzzer ends a timed run with exit(): the sandbox goes with it (a crash
 * leaves it for a look). */
static void remove_base(void) {
  kyb_error *err = NULL;
  if (kyb_remove_tree(base, &err) < 0)
    kyb_error_free(err);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_quiet_log();
  umask(022);
  FUZZ_ASSERT(mkdtemp(base) != NULL);
  snprintf(target, sizeof(target), "%s/target", base);
  snprintf(outside, sizeof(outside), "%s/outside", base);
  snprintf(secret, sizeof(secret), "%s/secret", outside);
  snprintf(tar, sizeof(tar), "%s/in.tar", base);
  FUZZ_ASSERT(mkdir(outside, 0755) == 0);
  write_text(secret, SECRET);
  atexit(remove_base);
  return 0;
}

static void make_target(void) {
  char p[sizeof(target) + 32];
  FUZZ_ASSERT(mkdir(target, 0755) == 0);
  FUZZ_ASSERT(symlink("../outside", (snprintf(p, sizeof(p), "%s/link", target), p)) == 0);
  FUZZ_ASSERT(symlink(outside, (snprintf(p, sizeof(p), "%s/abs", target), p)) == 0);
  FUZZ_ASSERT(mkdir((snprintf(p, sizeof(p), "%s/dir", target), p), 0755) == 0);
  write_text((snprintf(p, sizeof(p), "%s/dir/file", target), p), "lower\n");
  FUZZ_ASSERT(mkdir((snprintf(p, sizeof(p), "%s/opq", target), p), 0755) == 0);
  write_text((snprintf(p, sizeof(p), "%s/opq/hidden", target), p), "lower\n");
}

/* outside/ holds exactly the one file, unchanged; base holds nothing new. */
static void check_outside(void) {
  struct stat st;
  FUZZ_ASSERT(lstat(outside, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0755);
  FUZZ_ASSERT(lstat(secret, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
              (st.st_mode & 07777) == 0644 && st.st_uid == getuid());
  char *text = NULL;
  size_t len = 0;
  kyb_error *err = NULL;
  FUZZ_ASSERT(kyb_read_file(secret, 4096, &text, &len, &err) == 0);
  FUZZ_ASSERT(len == strlen(SECRET) && memcmp(text, SECRET, len) == 0);
  free(text);
  const char *dirs[] = {outside, base};
  const size_t want[] = {1, 3}; /* secret; outside, target, in.tar */
  for (size_t k = 0; k < 2; k++) {
    DIR *d = opendir(dirs[k]);
    FUZZ_ASSERT(d != NULL);
    size_t n = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;)
      n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    FUZZ_ASSERT(n == want[k]);
  }
}

static char *const deleted_paths[] = {"link/secret", "abs/secret", "link", "dir/file"};
static char *const opaque_paths[] = {"link", "abs", "opq", "dir"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  unsigned pick = data[0];
  data++;
  size--;
  kyb_error *err = NULL;
  FUZZ_ASSERT(kyb_remove_tree(target, &err) == 0);
  make_target();
  FILE *f = fopen(tar, "we");
  FUZZ_ASSERT(f != NULL);
  FUZZ_ASSERT(fwrite(data, 1, size, f) == size && fclose(f) == 0);

  char *deleted[5] = {NULL}, *opaque[5] = {NULL};
  kyb_rootfs_changes ch = {.deleted = deleted, .opaque = opaque};
  for (unsigned b = 0; b < 4; b++) {
    if (pick & (1u << b))
      deleted[ch.ndeleted++] = deleted_paths[b];
    if (pick & (16u << b))
      opaque[ch.nopaque++] = opaque_paths[b];
  }
  kyb_rootfs_limits lim = {.max_entries = 256, .max_bytes = 1u << 20};
  int rc = kyb_rootfs_diff_apply(tar, &ch, target, &lim, &err);
  fuzz_check_rc(rc, &err);
  check_outside();
  return 0;
}
