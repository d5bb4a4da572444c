/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The blob memo (blob_memo.h): one small file per file digest, written
 * atomically, so a reader sees a whole entry or none, and concurrent pushes
 * of one node may write the same entry (same content) without harm.
 */
#define KYB_LOG_MODULE "store"

#include "store/blob_memo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/backend.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"

#define MEMO_MAX 128 /* "sha256:<64 hex> <at most 20 digits>\n" fits */

int kyb_blob_memo_dir(char **dir, kyb_error **err) {
  const char *root = NULL;
  if (kyb_store_cache_root(&root, err) < 0)
    return -1;
  if (asprintf(dir, "%s/oci/blobs", root) < 0) {
    *dir = NULL;
    return kyb_error_set(err, ENOMEM, "blob memo");
  }
  return 0;
}

/* The entry's path; NULL when the digest is not one (nothing to look up). */
static char *memo_path(const char *dir, const char *file_digest) {
  if (dir == NULL || file_digest == NULL || !kyb_digest_valid(file_digest))
    return NULL;
  return kyb_path_join(dir, file_digest + 7);
}

int kyb_blob_memo_get(const char *dir, const char *file_digest, char blob[KYB_DIGEST_LEN + 1],
                      uint64_t *blob_size) {
  cleanup_free char *path = memo_path(dir, file_digest);
  cleanup_free char *buf = NULL;
  size_t len = 0;
  cleanup_error kyb_error *err = NULL;
  if (path == NULL || kyb_read_file(path, MEMO_MAX, &buf, &len, &err) < 0)
    return 0;
  /* "sha256:<64 hex> <decimal>\n" exactly */
  if (len < KYB_DIGEST_LEN + 2 || buf[KYB_DIGEST_LEN] != ' ' || buf[KYB_DIGEST_LEN + 1] < '0' ||
      buf[KYB_DIGEST_LEN + 1] > '9')
    return 0;
  buf[KYB_DIGEST_LEN] = '\0';
  char *end = NULL;
  errno = 0;
  unsigned long long n = strtoull(buf + KYB_DIGEST_LEN + 1, &end, 10);
  if (!kyb_digest_valid(buf) || errno != 0 || *end != '\n' || end[1] != '\0')
    return 0;
  memcpy(blob, buf, KYB_DIGEST_LEN + 1);
  *blob_size = n;
  return 1;
}

void kyb_blob_memo_put(const char *dir, const char *file_digest, const char *blob_digest,
                       uint64_t blob_size) {
  cleanup_free char *path = memo_path(dir, file_digest);
  char line[MEMO_MAX];
  cleanup_error kyb_error *err = NULL;
  if (path == NULL || !kyb_digest_valid(blob_digest))
    return;
  int n = snprintf(line, sizeof(line), "%s %llu\n", blob_digest, (unsigned long long)blob_size);
  if (kyb_mkdir_p(dir, 0700, &err) < 0 ||
      kyb_write_file_atomic(path, line, (size_t)n, 0600, &err) < 0)
    log_debug("blob memo for %s not written: %s", file_digest, kyb_error_message(err));
}
