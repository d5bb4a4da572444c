/* SPDX-License-Identifier: Apache-2.0 */
#include "ops/resolve.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "image/image.h"
#include "store/store.h"
#include "util/cleanup.h"

void kyb_resolved_image_clear(kyb_resolved_image *r) {
  if (r == NULL)
    return;
  free(r->store_uri);
  free(r->name);
  free(r->dir);
  json_decref(r->manifest);
  memset(r, 0, sizeof(*r));
}

static bool store_allowed(const kyb_nodeconf *conf, const char *uri) {
  for (size_t i = 0; i < conf->nstores; i++)
    if (strcmp(conf->stores[i], uri) == 0)
      return true;
  return false;
}

/* The image directory must be a real directory directly inside its store's
 * local directory (a file:// store's directory; a remote store's part of the
 * node cache, where its images are downloaded): no symlink for the image
 * itself, and its resolved path must be <resolved store dir>/<name>. */
static int check_containment(const kyb_resolved_image *r, const char *store_dir, const char *path,
                             kyb_error **err) {
  struct stat st;
  if (lstat(path, &st) < 0)
    return kyb_error_errno(err, "image %s", path);
  if (S_ISLNK(st.st_mode))
    return kyb_error_set(err, EPERM, "image %s is a symbolic link: refused", path);
  if (!S_ISDIR(st.st_mode))
    return kyb_error_set(err, ENOTDIR, "image %s is not a directory", path);
  if (store_dir == NULL)
    return kyb_error_set(err, ENOTSUP, "store %s has no local directory", r->store_uri);
  char real_store[PATH_MAX], real_img[PATH_MAX];
  if (realpath(store_dir, real_store) == NULL)
    return kyb_error_errno(err, "store %s", store_dir);
  if (realpath(path, real_img) == NULL)
    return kyb_error_errno(err, "image %s", path);
  size_t ls = strlen(real_store);
  if (strncmp(real_img, real_store, ls) != 0 || real_img[ls] != '/' ||
      strcmp(real_img + ls + 1, r->name) != 0)
    return kyb_error_set(err, EPERM, "image %s resolves to %s, outside its store %s: refused", path,
                         real_img, real_store);
  return 0;
}

static int resolve(const kyb_nodeconf *conf, const char *ref, kyb_resolved_image *out,
                   kyb_error **err) {
  if (ref == NULL || *ref == '\0')
    return kyb_error_set(err, EINVAL, "empty checkpoint reference");
  if (ref[0] == '/' || ref[0] == '.' || strstr(ref, "..") != NULL)
    return kyb_error_set(err, EINVAL,
                         "checkpoint reference \"%s\" looks like a path: a reference is an image "
                         "name or <store-uri>/<name> of a configured store",
                         ref);
  if (kyb_image_ref_parse(ref, conf->default_store, &out->store_uri, &out->name, err) < 0)
    return -1;
  if (!store_allowed(conf, out->store_uri))
    return kyb_error_set(err, EPERM,
                         "store %s is not configured on this node (allowed: default %s and the "
                         "\"stores\" of %s)",
                         out->store_uri, conf->default_store,
                         conf->path ? conf->path : KYB_NODECONF_DEFAULT_PATH);
  kyb_store *store = NULL;
  if (kyb_store_open(out->store_uri, 0, &store, err) < 0)
    return -1;
  cleanup_free char *path = NULL;
  int r = kyb_store_get_path(store, out->name, &path, err);
  if (r == 0)
    r = check_containment(out, kyb_store_local_dir(store), path, err);
  kyb_store_close(store);
  if (r < 0 || kyb_image_verify(path, &out->manifest, err) < 0)
    return -1;
  out->dir = steal_ptr(path);
  return 0;
}

int kyb_resolve_image(const kyb_nodeconf *conf, const char *ref, kyb_resolved_image *out,
                      kyb_error **err) {
  memset(out, 0, sizeof(*out));
  if (resolve(conf, ref, out, err) < 0) {
    kyb_error_wrap(err, "checkpoint %s", ref ? ref : "");
    kyb_resolved_image_clear(out);
    return -1;
  }
  return 0;
}
