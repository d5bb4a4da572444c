/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Store front end: URI and reference parsing, the scheme table, and the
 * public calls, which validate names before any backend sees them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "image/image.h"
#include "store/backend.h"
#include "store/oci.h"
#include "store/s3.h"
#include "util/cleanup.h"
#include "util/fs.h"

#define URI_MAX 4096u

typedef int (*backend_open)(kyb_store *s, const char *rest, int flags, kyb_error **err);

static int open_file(kyb_store *s, const char *rest, int flags, kyb_error **err);
static int open_oci(kyb_store *s, const char *rest, int flags, kyb_error **err);
static int open_s3(kyb_store *s, const char *rest, int flags, kyb_error **err);

static const struct {
  const char *scheme;
  backend_open open;
} backends[] = {
    {"file", open_file},
    {"oci", open_oci},
    {"s3", open_s3},
};

void kyb_image_summary_release(kyb_image_summary *s) {
  if (s == NULL)
    return;
  free(s->name);
  free(s->created);
  free(s->container_id);
  free(s->container_name);
  free(s->pod_namespace);
  free(s->pod_name);
  free(s->error);
  memset(s, 0, sizeof(*s));
}

void kyb_image_summaries_free(kyb_image_summary *v, size_t n) {
  for (size_t i = 0; v != NULL && i < n; i++)
    kyb_image_summary_release(&v[i]);
  free(v);
}

static char *dup_or_empty(const json_t *v) {
  const char *s = json_string_value(v);
  return strdup(s ? s : "");
}

int kyb_image_summary_from_manifest(const char *name, const json_t *manifest,
                                    uint64_t manifest_size, kyb_image_summary *out) {
  memset(out, 0, sizeof(*out));
  const json_t *src = json_object_get(manifest, "source");
  const json_t *pod = json_object_get(src, "pod");
  uint64_t size = manifest_size;
  size_t i;
  const json_t *f;
  json_array_foreach(json_object_get(manifest, "files"), i, f) {
    size += (uint64_t)json_integer_value(json_object_get(f, "size"));
  }
  out->size = size;
  out->name = strdup(name);
  out->created = dup_or_empty(json_object_get(manifest, "created"));
  out->container_id = dup_or_empty(json_object_get(src, "containerId"));
  out->container_name = dup_or_empty(json_object_get(pod, "container"));
  out->pod_namespace = dup_or_empty(json_object_get(pod, "namespace"));
  out->pod_name = dup_or_empty(json_object_get(pod, "name"));
  if (!out->name || !out->created || !out->container_id || !out->container_name ||
      !out->pod_namespace || !out->pod_name) {
    kyb_image_summary_release(out);
    return -1;
  }
  return 0;
}

/* "scheme" of "scheme://rest" into buf; *rest after the "://".  false when
 * uri has no scheme. */
static bool split_scheme(const char *uri, char buf[32], const char **rest) {
  const char *sep = strstr(uri, "://");
  if (sep == NULL || sep == uri || (size_t)(sep - uri) >= 32)
    return false;
  for (const char *p = uri; p < sep; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (p > uri && ((*p >= '0' && *p <= '9') || *p == '+' || *p == '.' || *p == '-'))))
      return false;
  memcpy(buf, uri, (size_t)(sep - uri));
  buf[sep - uri] = '\0';
  *rest = sep + 3;
  return true;
}

/* The directory of a file:// URI's rest ("/path" or "localhost/path"), or
 * NULL with err set. */
static const char *file_uri_path(const char *rest, kyb_error **err) {
  if (strncmp(rest, "localhost/", 10) == 0)
    rest += 9;
  if (rest[0] != '/') {
    kyb_error_set(err, EINVAL,
                  "file URI \"file://%s\": only local absolute paths are supported (file:///path)",
                  rest);
    return NULL;
  }
  return rest;
}

static int open_file(kyb_store *s, const char *rest, int flags, kyb_error **err) {
  const char *path = file_uri_path(rest, err);
  if (path == NULL)
    return -1;
  cleanup_free char *dir = strdup(path);
  if (dir == NULL)
    return kyb_error_set(err, ENOMEM, "open store");
  for (size_t l = strlen(dir); l > 1 && dir[l - 1] == '/'; l--)
    dir[l - 1] = '\0';
  if (asprintf(&s->uri, "file://%s", dir) < 0) {
    s->uri = NULL;
    return kyb_error_set(err, ENOMEM, "open store");
  }
  if ((s->local_dir = strdup(dir)) == NULL)
    return kyb_error_set(err, ENOMEM, "open store");
  return kyb_store_file_open(s, dir, flags, err);
}

/* oci://host[:port]/repo: nothing to create (flags unused). */
static int open_oci(kyb_store *s, const char *rest, int flags, kyb_error **err) {
  return kyb_store_oci_open(s, rest, flags, err);
}

/* "oci://host[:port]/repo:tag" -> store URI "oci://host[:port]/repo" and
 * the tag as the image name (inside ref). */
static int oci_ref(const char *ref, const char *rest, char **uri, const char **nm,
                   kyb_error **err) {
  cleanup_free char *store = NULL, *tag = NULL, *host = NULL, *repo = NULL;
  if (kyb_oci_ref_split(rest, &store, &tag, err) < 0 ||
      kyb_oci_uri_parse(store, &host, &repo, err) < 0 || kyb_image_name_check(tag, err) < 0)
    return kyb_error_wrap(err, "image reference \"%s\"", ref);
  if (asprintf(uri, "oci://%s/%s", host, repo) < 0)
    *uri = NULL;
  *nm = ref + strlen(ref) - strlen(tag);
  return 0;
}

int kyb_store_cache_root(const char **root, kyb_error **err) {
  const char *env = getenv(KYB_STORE_CACHE_ENV);
  if (env == NULL || *env == '\0') {
    *root = KYB_STORE_CACHE_DEFAULT;
    return 0;
  }
  if (env[0] != '/')
    return kyb_error_set(err, EINVAL, "$" KYB_STORE_CACHE_ENV " \"%s\" is not an absolute path",
                         env);
  *root = env;
  return 0;
}

char *kyb_image_ref_format(const char *store_uri, const char *name) {
  char *ref = NULL;
  bool oci = strncmp(store_uri, "oci://", 6) == 0;
  if (asprintf(&ref, "%s%c%s", store_uri, oci ? ':' : '/', name) < 0)
    return NULL;
  return ref;
}

const char *kyb_store_local_dir(const kyb_store *s) {
  return s->local_dir;
}

/* s3://bucket[/prefix]: no local directory to create (flags unused). */
static int open_s3(kyb_store *s, const char *rest, int flags, kyb_error **err) {
  (void)flags;
  return kyb_store_s3_open(s, rest, err);
}

/* "s3://bucket[/prefix]/name" -> store URI and name (inside ref). */
static int s3_ref(const char *ref, const char *rest, char **uri, const char **nm, kyb_error **err) {
  const char *slash = strrchr(rest, '/');
  if (slash == NULL)
    return kyb_error_set(err, EINVAL, "image reference \"%s\": expected s3://bucket[/prefix]/name",
                         ref);
  if (kyb_image_name_check(slash + 1, err) < 0)
    return kyb_error_wrap(err, "image reference \"%s\"", ref);
  cleanup_free char *store = strndup(rest, (size_t)(slash - rest));
  cleanup_free char *bucket = NULL, *prefix = NULL;
  if (store == NULL)
    return kyb_error_set(err, ENOMEM, "image reference");
  if (kyb_s3_uri_parse(store, &bucket, &prefix, err) < 0)
    return kyb_error_wrap(err, "image reference \"%s\"", ref);
  if (asprintf(uri, "s3://%s%s%s", bucket, *prefix ? "/" : "", prefix) < 0)
    *uri = NULL;
  *nm = slash + 1;
  return 0;
}

int kyb_store_open(const char *uri, int flags, kyb_store **out, kyb_error **err) {
  if (uri == NULL)
    uri = KYB_STORE_DEFAULT_URI;
  if (strlen(uri) > URI_MAX)
    return kyb_error_set(err, EINVAL, "store URI longer than %u bytes", URI_MAX);
  char scheme[32];
  const char *rest = NULL;
  backend_open open = NULL;
  if (uri[0] == '/') { /* a plain absolute path is a local directory */
    strcpy(scheme, "file");
    rest = uri;
  } else if (!split_scheme(uri, scheme, &rest)) {
    return kyb_error_set(err, EINVAL, "\"%s\" is not a store URI (expected e.g. %s)", uri,
                         KYB_STORE_DEFAULT_URI);
  }
  for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
    if (strcmp(backends[i].scheme, scheme) == 0)
      open = backends[i].open;
  if (open == NULL)
    return kyb_error_set(err, ENOTSUP, "store scheme \"%s\" is not supported yet (only file://)",
                         scheme);
  kyb_store *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return kyb_error_set(err, ENOMEM, "open store %s", uri);
  s->flags = flags;
  if (open(s, rest, flags, err) < 0) {
    free(s->uri);
    free(s->local_dir);
    free(s);
    return -1;
  }
  *out = s;
  return 0;
}

void kyb_store_close(kyb_store *s) {
  if (s == NULL)
    return;
  if (s->ops != NULL)
    s->ops->close(s);
  free(s->uri);
  free(s->local_dir);
  free(s);
}

const char *kyb_store_uri(const kyb_store *s) {
  return s->uri;
}

int kyb_image_ref_parse(const char *ref, const char *default_uri, char **store_uri, char **name,
                        kyb_error **err) {
  char scheme[32];
  const char *rest = NULL;
  cleanup_free char *uri = NULL;
  const char *nm = ref; /* the name part, inside ref */
  if (ref == NULL || strlen(ref) > URI_MAX)
    return kyb_error_set(err, EINVAL, "image reference missing or too long");
  if (!split_scheme(ref, scheme, &rest)) {
    if (kyb_image_name_check(ref, err) < 0)
      return kyb_error_wrap(err, "image reference \"%s\"", ref);
    uri = strdup(default_uri ? default_uri : KYB_STORE_DEFAULT_URI);
  } else if (strcmp(scheme, "file") == 0) {
    const char *path = file_uri_path(rest, err);
    if (path == NULL)
      return kyb_error_wrap(err, "image reference");
    const char *slash = strrchr(path, '/'); /* path starts with '/' */
    if (kyb_image_name_check(slash + 1, err) < 0)
      return kyb_error_wrap(err, "image reference \"%s\"", ref);
    int dirlen = slash == path ? 1 : (int)(slash - path);
    if (asprintf(&uri, "file://%.*s", dirlen, path) < 0)
      uri = NULL;
    nm = slash + 1;
  } else if (strcmp(scheme, "oci") == 0) {
    if (oci_ref(ref, rest, &uri, &nm, err) < 0)
      return -1;
  } else if (strcmp(scheme, "s3") == 0) {
    if (s3_ref(ref, rest, &uri, &nm, err) < 0)
      return -1;
  } else {
    return kyb_error_set(err, ENOTSUP, "image reference \"%s\": scheme \"%s\" is not supported yet",
                         ref, scheme);
  }
  char *n = strdup(nm);
  if (uri == NULL || n == NULL) {
    free(n);
    return kyb_error_set(err, ENOMEM, "image reference");
  }
  *store_uri = steal_ptr(uri);
  *name = n;
  return 0;
}

/* A remote store opened with KYB_STORE_LOCAL_ONLY serves get_path alone. */
static int local_only(const kyb_store *s, const char *what, kyb_error **err) {
  if (!(s->flags & KYB_STORE_LOCAL_ONLY) || strncmp(s->uri, "file://", 7) == 0)
    return 0;
  return kyb_error_set(err, ENOTSUP, "%s of store %s: opened for its node cache only", what,
                       s->uri);
}

/* get_path of a LOCAL_ONLY remote store: <local_dir>/<name> when it is a
 * directory there. */
static int cached_path(kyb_store *s, const char *name, char **path, kyb_error **err) {
  cleanup_free char *p = kyb_path_join(s->local_dir, name);
  struct stat sb;
  if (p == NULL)
    return kyb_error_set(err, ENOMEM, "path");
  int r = lstat(p, &sb);
  if (r < 0 && errno != ENOENT)
    return kyb_error_errno(err, "cached image %s", p);
  if (r < 0 || !S_ISDIR(sb.st_mode))
    return kyb_error_set(err, ENOENT,
                         "image %s of %s is not in the node cache (%s): fetch it first (through "
                         "kybernate-uploader)",
                         name, s->uri, s->local_dir);
  *path = steal_ptr(p);
  return 0;
}

void kyb_store_set_progress(kyb_store *s, kyb_store_progress_fn fn, void *ud) {
  s->progress = fn;
  s->progress_ud = fn ? ud : NULL;
}

void kyb_store_set_stop(kyb_store *s, kyb_store_stop_fn fn, void *ud) {
  s->stop = fn;
  s->stop_ud = fn ? ud : NULL;
}

int kyb_store_stop_requested(void *store) {
  const kyb_store *s = store;
  return s->stop != NULL && s->stop(s->stop_ud) != 0;
}

void kyb_store_progress_begin(kyb_store *s, const char *name, uint64_t total) {
  s->prog = (kyb_store_progress){.name = name, .total = total};
  s->prog_base = 0;
  if (s->progress != NULL)
    (void)s->progress(s->progress_ud, &s->prog);
}

static int progress_report(kyb_store *s, kyb_error **err) {
  if (s->progress != NULL && s->progress(s->progress_ud, &s->prog) != 0)
    return kyb_error_set(err, ECANCELED, "transfer of %s stopped",
                         s->prog.name ? s->prog.name : "an image");
  return 0;
}

int kyb_store_progress_part(kyb_store *s, const char *part, uint64_t part_done, kyb_error **err) {
  s->prog.part = part;
  s->prog.done = s->prog_base + part_done;
  return progress_report(s, err);
}

int kyb_store_progress_part_end(kyb_store *s, const char *part, uint64_t size, kyb_error **err) {
  s->prog_base += size;
  s->prog.part = part;
  s->prog.done = s->prog_base;
  return progress_report(s, err);
}

int kyb_store_stage(kyb_store *s, const char *name, kyb_staging **out, kyb_error **err) {
  if (kyb_image_name_check(name, err) < 0 || local_only(s, "stage", err) < 0)
    return -1;
  kyb_staging *st = calloc(1, sizeof(*st));
  if (st == NULL || (st->name = strdup(name)) == NULL) {
    free(st);
    return kyb_error_set(err, ENOMEM, "stage image %s", name);
  }
  st->store = s;
  st->lock_fd = -1;
  if (s->ops->stage(s, st, err) < 0) {
    free(st->name);
    free(st);
    return kyb_error_wrap(err, "stage image %s", name);
  }
  *out = st;
  return 0;
}

const char *kyb_staging_path(const kyb_staging *st) {
  return st->path;
}

const char *kyb_staging_name(const kyb_staging *st) {
  return st->name;
}

void kyb_staging_free(kyb_staging *st) {
  if (st == NULL)
    return;
  st->store->ops->discard(st->store, st);
  kyb_closep(&st->lock_fd);
  free(st->name);
  free(st->path);
  free(st);
}

int kyb_store_put(kyb_store *s, kyb_staging *st, kyb_error **err) {
  if (st->published)
    return kyb_error_set(err, EINVAL, "image %s is already published", st->name);
  if (local_only(s, "put", err) < 0)
    return -1;
  if (s->ops->put(s, st, err) < 0)
    return kyb_error_wrap(err, "publish image %s in %s", st->name, s->uri);
  return 0;
}

int kyb_store_get_path(kyb_store *s, const char *name, char **path, kyb_error **err) {
  if (kyb_image_name_check(name, err) < 0)
    return -1;
  if (local_only(s, "get", NULL) < 0)
    return cached_path(s, name, path, err);
  return s->ops->get_path(s, name, path, err);
}

int kyb_store_stat(kyb_store *s, const char *name, kyb_image_summary *out, kyb_error **err) {
  if (kyb_image_name_check(name, err) < 0 || local_only(s, "stat", err) < 0)
    return -1;
  return s->ops->stat(s, name, out, err);
}

int kyb_store_list(kyb_store *s, kyb_image_summary **out, size_t *n, kyb_error **err) {
  if (local_only(s, "list", err) < 0)
    return -1;
  return s->ops->list(s, out, n, err);
}

int kyb_store_delete(kyb_store *s, const char *name, kyb_error **err) {
  if (kyb_image_name_check(name, err) < 0 || local_only(s, "delete", err) < 0)
    return -1;
  if (s->ops->remove(s, name, err) < 0)
    return kyb_error_wrap(err, "delete image %s from %s", name, s->uri);
  return 0;
}

int kyb_store_cleanup(kyb_store *s, uint64_t min_age_s, size_t *removed, kyb_error **err) {
  size_t dummy = 0;
  if (local_only(s, "cleanup", err) < 0)
    return -1;
  return s->ops->cleanup(s, min_age_s, removed ? removed : &dummy, err);
}

int kyb_image_summary_broken(const char *name, kyb_error *why, kyb_image_summary *out) {
  memset(out, 0, sizeof(*out));
  out->name = strdup(name);
  out->created = strdup("");
  out->container_id = strdup("");
  out->container_name = strdup("");
  out->pod_namespace = strdup("");
  out->pod_name = strdup("");
  out->error = strdup(kyb_error_message(why));
  if (!out->name || !out->created || !out->container_id || !out->container_name ||
      !out->pod_namespace || !out->pod_name || !out->error) {
    kyb_image_summary_release(out);
    return -1;
  }
  return 0;
}

int kyb_staging_check(const kyb_staging *st, json_t **manifest, kyb_error **err) {
  cleanup_json json_t *m = NULL;
  if (kyb_image_verify_layout(st->path, &m, err) < 0)
    return -1;
  const char *mname = json_string_value(json_object_get(m, "name"));
  if (mname == NULL || strcmp(mname, st->name) != 0)
    return kyb_error_set(err, EINVAL, "the manifest names the image \"%s\", not \"%s\"",
                         mname ? mname : "", st->name);
  *manifest = steal_ptr(m);
  return 0;
}

int kyb_image_summary_cmp(const void *a, const void *b) {
  return strcmp(((const kyb_image_summary *)a)->name, ((const kyb_image_summary *)b)->name);
}
