/* SPDX-License-Identifier: Apache-2.0 */
#define KYB_LOG_MODULE "resolve"

#include "ops/resolve.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/client.h"
#include "image/image.h"
#include "store/store.h"
#include "util/cleanup.h"
#include "util/log.h"

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

const char *kyb_resolve_agent_socket(const kyb_nodeconf *conf) {
  const char *env = getenv(KYB_AGENT_SOCKET_ENV);
  if (env != NULL && *env != '\0')
    return env;
  return conf != NULL ? conf->agent_socket : NULL;
}

static bool remote_uri(const char *uri) {
  return strncmp(uri, "oci://", 6) == 0 || strncmp(uri, "s3://", 5) == 0;
}

/* The agent has the image fetched into the node cache; *agent_path gets
 * the directory it names (only for a clearer error below). */
static int fetch_through_agent(const char *sock, const kyb_resolved_image *r, char **agent_path,
                               kyb_error **err) {
  cleanup_free char *full = kyb_image_ref_format(r->store_uri, r->name);
  if (full == NULL)
    return kyb_error_set(err, ENOMEM, "reference");
  kyb_agent_client *c = NULL;
  kyb_agent_fetched f = {0};
  int rc = kyb_agent_client_new(sock, &c, err);
  if (rc == 0)
    rc = kyb_agent_client_fetch(c, full, &f, err);
  kyb_agent_client_free(c);
  if (rc < 0)
    return kyb_error_wrap(err, "fetch through the agent");
  log_info("kybernate-agent at %s fetched %s into %s", sock, full, f.path);
  *agent_path = steal_ptr(f.path);
  kyb_agent_fetched_clear(&f);
  return 0;
}

/* Opens the image's store: a remote one KYB_STORE_LOCAL_ONLY once the agent
 * fetched the image, in-process without an agent. */
static int open_store(const kyb_nodeconf *conf, const kyb_resolved_image *r, kyb_store **store,
                      char **agent_path, kyb_error **err) {
  int flags = 0;
  if (remote_uri(r->store_uri)) {
    const char *sock = kyb_resolve_agent_socket(conf);
    if (sock != NULL) {
      if (fetch_through_agent(sock, r, agent_path, err) < 0)
        return -1;
      flags = KYB_STORE_LOCAL_ONLY;
    } else {
      log_warn("no agent socket (agentSocket in %s, $%s): reading %s in-process, which works "
               "only for storage that needs no credentials",
               conf->path ? conf->path : KYB_NODECONF_DEFAULT_PATH, KYB_AGENT_SOCKET_ENV,
               r->store_uri);
    }
  }
  return kyb_store_open(r->store_uri, flags, store, err);
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
  cleanup_free char *agent_path = NULL;
  if (open_store(conf, out, &store, &agent_path, err) < 0)
    return -1;
  cleanup_free char *path = NULL;
  int r = kyb_store_get_path(store, out->name, &path, err);
  if (r < 0 && agent_path != NULL && kyb_error_code(*err) == ENOENT)
    kyb_error_wrap(err,
                   "the agent fetched it into %s, which is not in this process's node cache "
                   "(KYBERNATE_IMAGE_CACHE must be the same for kybernate-uploader and here)",
                   agent_path);
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
