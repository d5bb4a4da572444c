/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Restore markers (marker.h).
 */
#include "runtime/marker.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/runc_args.h"
#include "util/cleanup.h"
#include "util/fs.h"

const char *kyb_rt_state_dir(void) {
  const char *d = getenv(KYB_RT_STATE_DIR_ENV);
  return (d != NULL && d[0] == '/') ? d : KYB_RT_STATE_DIR_DEFAULT;
}

/* <state dir>/<root key>: the directory of one runc root's markers. */
static int root_dir(const char *state_dir, const char *root, char **out, kyb_error **err) {
  *out = NULL;
  if (root == NULL || root[0] != '/')
    return kyb_error_set(err, EINVAL, "runc root \"%s\" is not an absolute path", root ? root : "");
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (EVP_Digest(root, strlen(root), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 16) {
    kyb_error_set(err, EIO, "sha256 of the runc root");
    return -1;
  }
  char key[33];
  for (int i = 0; i < 16; i++)
    snprintf(key + 2 * i, 3, "%02x", md[i]);
  *out = kyb_path_join(state_dir, key);
  if (*out == NULL) {
    kyb_error_set(err, ENOMEM, "marker path");
    return -1;
  }
  return 0;
}

int kyb_rt_marker_path(const char *state_dir, const char *root, const char *id, char **out,
                       kyb_error **err) {
  *out = NULL;
  if (!kyb_runc_id_valid(id)) {
    kyb_error_set(err, EINVAL, "\"%s\" is not a valid container id", id ? id : "");
    return -1; /* spelled out: the analyzer cannot see that kyb_error_set returns -1 */
  }
  cleanup_free char *dir = NULL;
  if (root_dir(state_dir, root, &dir, err) < 0)
    return -1;
  *out = kyb_path_join(dir, id);
  if (*out == NULL) {
    kyb_error_set(err, ENOMEM, "marker path");
    return -1;
  }
  return 0;
}

int kyb_rt_marker_set(const char *state_dir, const char *root, const char *id, const char *content,
                      kyb_error **err) {
  cleanup_free char *dir = NULL;
  cleanup_free char *path = NULL;
  if (kyb_rt_marker_path(state_dir, root, id, &path, err) < 0 ||
      root_dir(state_dir, root, &dir, err) < 0)
    return -1;
  if (kyb_mkdir_p(dir, 0700, err) < 0)
    return kyb_error_wrap(err, "restore marker of %s", id);
  if (kyb_write_file_atomic(path, content, strlen(content), 0600, err) < 0)
    return kyb_error_wrap(err, "restore marker of %s", id);
  return 0;
}

int kyb_rt_marker_check(const char *state_dir, const char *root, const char *id, bool *present,
                        kyb_error **err) {
  *present = false;
  cleanup_free char *path = NULL;
  if (kyb_rt_marker_path(state_dir, root, id, &path, err) < 0)
    return -1;
  struct stat st;
  if (lstat(path, &st) == 0) {
    if (!S_ISREG(st.st_mode))
      return kyb_error_set(err, EINVAL, "restore marker %s is not a regular file", path);
    *present = true;
    return 0;
  }
  if (errno == ENOENT || errno == ENOTDIR)
    return 0;
  return kyb_error_errno(err, "restore marker %s", path);
}

int kyb_rt_marker_remove(const char *state_dir, const char *root, const char *id, kyb_error **err) {
  cleanup_free char *path = NULL;
  if (kyb_rt_marker_path(state_dir, root, id, &path, err) < 0)
    return -1;
  /* The root's directory stays: removing it could race with another
   * runtime process writing a marker of the same root. */
  if (unlink(path) < 0 && errno != ENOENT && errno != ENOTDIR)
    return kyb_error_errno(err, "remove restore marker %s", path);
  return 0;
}
