/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Image verification: the directory holds exactly the files its manifest
 * pins, byte for byte.
 *
 * The cheap checks run first (which files exist, their sizes), the hashing
 * last, so a missing or extra file is reported at once instead of after
 * reading gigabytes of memory pages.  Files are opened beneath the image
 * directory without following symlinks: an image fetched from storage must
 * not be able to point verification at a file elsewhere on the node.
 */
#define KYB_LOG_MODULE "image"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/files.h"
#include "image/image.h"
#include "image/safepath.h"
#include "util/cleanup.h"
#include "util/log.h"

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Compares the sorted list of files present with the manifest's: the first
 * manifest file missing, or else the first file present but not listed. */
static int check_presence(const json_t *files, char **present, size_t npresent, kyb_error **err) {
  size_t n = json_array_size(files);
  cleanup_free const char **listed = calloc(n + 1, sizeof(char *));
  if (listed == NULL)
    return kyb_error_set(err, ENOMEM, "verify");
  for (size_t i = 0; i < n; i++)
    listed[i] = json_string_value(json_object_get(json_array_get(files, i), "path"));
  for (size_t i = 0; i < n; i++) /* in manifest order: "first" as the manifest reads */
    if (bsearch(&listed[i], present, npresent, sizeof(char *), cmp_str) == NULL)
      return kyb_error_set(err, ENOENT, "file %s listed in the manifest is missing", listed[i]);
  qsort(listed, n, sizeof(char *), cmp_str);
  for (size_t i = 0; i < npresent; i++)
    if (bsearch(&present[i], listed, n, sizeof(char *), cmp_str) == NULL)
      return kyb_error_set(err, EBADMSG, "file %s is not listed in the manifest", present[i]);
  return 0;
}

static int check_sizes(int dfd, const json_t *files, kyb_error **err) {
  size_t i;
  json_t *f;
  json_array_foreach(files, i, f) {
    const char *path = json_string_value(json_object_get(f, "path"));
    json_int_t want = json_integer_value(json_object_get(f, "size"));
    const char *leaf = NULL;
    cleanup_close int pfd = kyb_open_parent_beneath(dfd, path, false, &leaf, err);
    if (pfd < 0)
      return kyb_error_wrap(err, "file %s", path);
    struct stat st;
    if (fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
      return kyb_error_errno(err, "stat %s", path);
    if (!S_ISREG(st.st_mode))
      return kyb_error_set(err, EBADMSG, "file %s is not a regular file", path);
    if ((long long)st.st_size != (long long)want)
      return kyb_error_set(err, EBADMSG, "file %s is %lld bytes, the manifest says %lld", path,
                           (long long)st.st_size, (long long)want);
  }
  return 0;
}

static int verify(const char *dir, bool digests, json_t **manifest_out, kyb_error **err) {
  cleanup_close int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return kyb_error_errno(err, "verify image %s", dir);
  cleanup_json json_t *m = NULL;
  if (kyb_image_load_manifest_at(dfd, &m, err) < 0)
    return kyb_error_wrap(err, "verify image %s", dir);
  const json_t *files = json_object_get(m, "files");
  cleanup_strv char **present = NULL;
  size_t npresent = 0;
  if (kyb_image_list_files(dfd, &present, &npresent, err) < 0 ||
      check_presence(files, present, npresent, err) < 0 || check_sizes(dfd, files, err) < 0 ||
      (digests && kyb_image_check_digests(dfd, files, err) < 0))
    return kyb_error_wrap(err, "verify image %s", dir);
  log_debug("image %s verified (%zu files%s)", dir, json_array_size(files),
            digests ? "" : ", sizes only");
  if (manifest_out != NULL)
    *manifest_out = steal_ptr(m);
  return 0;
}

int kyb_image_digest(const char *dir, char **out, kyb_error **err) {
  cleanup_close int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return kyb_error_errno(err, "open image %s", dir);
  cleanup_close int fd = openat(dfd, KYB_IMAGE_MANIFEST, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return kyb_error_errno(err, "open %s/%s", dir, KYB_IMAGE_MANIFEST);
  char hex[KYB_SHA256_HEX_LEN + 1];
  if (kyb_sha256_fd(fd, false, hex, NULL, err) < 0)
    return kyb_error_wrap(err, "hash %s/%s", dir, KYB_IMAGE_MANIFEST);
  if (asprintf(out, "sha256:%s", hex) < 0)
    return kyb_error_set(err, ENOMEM, "image digest");
  return 0;
}

int kyb_image_verify(const char *dir, json_t **manifest_out, kyb_error **err) {
  return verify(dir, true, manifest_out, err);
}

int kyb_image_verify_layout(const char *dir, json_t **manifest_out, kyb_error **err) {
  return verify(dir, false, manifest_out, err);
}
