/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The oci:// store: checkpoint images as OCI artifacts in a registry
 * (distribution API v2), one repository per store, one tag per image.
 *
 *     oci://registry.example:5000/team/checkpoints     the store
 *     oci://registry.example:5000/team/checkpoints:web-1-20261201-120000
 *                                                      an image (tag = name)
 *
 * This file opens the store, talks to the registry (auth included) and
 * serves stat, list, delete, stage and cleanup; oci_transfer.c pushes and
 * pulls.  Layout and media types: oci.h and docs/image-format.md.
 *
 * Transport: https, verified by libcurl; plain http for loopback hosts and
 * the hosts listed in $KYBERNATE_OCI_INSECURE.  Auth: anonymous first; on a
 * 401 the challenge decides: Basic sends the configured credentials, Bearer
 * fetches a token from the realm (with the credentials when there are any)
 * for the challenge's scope and this repository's.  Credentials come from a
 * docker config.json "auths" map ($KYBERNATE_REGISTRY_AUTH, else
 * /etc/kybernate/registry-auth.json when present -- a Kubernetes secret
 * mounts there), else $KYBERNATE_REGISTRY_USERNAME/_PASSWORD.
 *
 * Local side, under the node cache root ($KYBERNATE_IMAGE_CACHE, default
 * /var/lib/kybernate/cache): a checkpoint is staged in <root>/spool (shared
 * with s3://, never published into) and pushed from there; a download goes
 * to <root>/oci/<host>/<repo>/, a file:// store where it is published
 * atomically like any local image; <root>/oci/blobs is the blob memo
 * (oci_transfer.c).
 */
#define KYB_LOG_MODULE "oci"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "image/image.h"
#include "store/oci_store.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"

#define CREDS_FILE_MAX (1u << 20)
#define TOKEN_BODY_MAX (64u << 10)
#define TOKEN_MAX 16384u
#define TAGS_BODY_MAX (4u << 20)
#define TAGS_PAGES_MAX 1000
#define MAX_HEADERS 12

void kyb_oci_sha256(const void *buf, size_t len, char out[KYB_DIGEST_LEN + 1]) {
  unsigned char md[32];
  unsigned int mdlen = 0;
  EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL);
  strcpy(out, "sha256:");
  for (unsigned i = 0; i < 32; i++)
    snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
}

char *kyb_oci_url(const struct oci_store *o, const char *suffix) {
  char *u = NULL;
  if (asprintf(&u, "%s/v2/%s%s", o->base, o->repo, suffix) < 0)
    return NULL;
  return u;
}

/* ---- credentials and auth ------------------------------------------------- */

static int load_creds(struct oci_store *o, kyb_error **err) {
  if (o->creds_loaded)
    return 0;
  o->creds_loaded = true;
  const char *env = getenv(KYB_OCI_AUTH_ENV);
  const char *path = env && *env ? env : KYB_OCI_AUTH_DEFAULT;
  struct stat sb;
  if (env == NULL && stat(path, &sb) < 0 && errno == ENOENT)
    path = NULL; /* the default file is optional */
  if (path != NULL) {
    cleanup_free char *buf = NULL;
    size_t len = 0;
    if (kyb_read_file(path, CREDS_FILE_MAX, &buf, &len, err) < 0)
      return kyb_error_wrap(err, "registry credentials");
    int r = kyb_oci_auth_lookup(buf, len, o->host, &o->user, &o->password, err);
    if (r < 0)
      return kyb_error_wrap(err, "%s", path);
    if (r > 0) {
      o->cred_source = env && *env ? "$" KYB_OCI_AUTH_ENV : KYB_OCI_AUTH_DEFAULT;
      return 0;
    }
  }
  const char *u = getenv(KYB_OCI_USER_ENV), *p = getenv(KYB_OCI_PASSWORD_ENV);
  if (u != NULL && *u && p != NULL) {
    o->user = strdup(u);
    o->password = strdup(p);
    if (o->user == NULL || o->password == NULL)
      return kyb_error_set(err, ENOMEM, "registry credentials");
    o->cred_source = "$" KYB_OCI_USER_ENV;
  }
  return 0;
}

static char *basic_header(const struct oci_store *o) {
  cleanup_free char *plain = NULL;
  if (asprintf(&plain, "%s:%s", o->user, o->password) < 0)
    return NULL;
  size_t n = strlen(plain);
  cleanup_free unsigned char *b64 = malloc(4 * ((n + 2) / 3) + 1);
  if (b64 == NULL)
    return NULL;
  EVP_EncodeBlock(b64, (const unsigned char *)plain, (int)n);
  explicit_bzero(plain, n);
  char *h = NULL;
  if (asprintf(&h, "Authorization: Basic %s", (const char *)b64) < 0)
    return NULL;
  return h;
}

static void set_authz(struct oci_store *o, char *h) {
  if (o->authz != NULL)
    explicit_bzero(o->authz, strlen(o->authz));
  free(o->authz);
  o->authz = h;
}

static const char *creds_hint(const struct oci_store *o) {
  return o->cred_source ? o->cred_source
                        : "none configured: $" KYB_OCI_AUTH_ENV ", " KYB_OCI_AUTH_DEFAULT
                          " or $" KYB_OCI_USER_ENV "/_PASSWORD";
}

static int append_param(char **url, const char *key, const char *value) {
  cleanup_free char *esc = kyb_http_escape(value);
  char *n = NULL;
  if (esc == NULL || asprintf(&n, "%s%c%s=%s", *url, strchr(*url, '?') ? '&' : '?', key, esc) < 0)
    return -1;
  free(*url);
  *url = n;
  return 0;
}

/* Bearer: a token for the challenge's scope and ours, from its realm. */
static int fetch_token(struct oci_store *o, const kyb_oci_challenge *ch, kyb_error **err) {
  cleanup_free char *url = strdup(ch->realm);
  cleanup_free char *own = NULL;
  if (url == NULL || asprintf(&own, "repository:%s:%s", o->repo, o->actions) < 0 ||
      (ch->service && append_param(&url, "service", ch->service) < 0) ||
      (ch->scope && strcmp(ch->scope, own) != 0 && append_param(&url, "scope", ch->scope) < 0) ||
      append_param(&url, "scope", own) < 0)
    return kyb_error_set(err, ENOMEM, "token request");
  cleanup_free char *basic = o->user ? basic_header(o) : NULL;
  const char *hdrs[] = {basic, NULL};
  kyb_http_req rq = {.method = "GET",
                     .url = url,
                     .headers = basic ? hdrs : NULL,
                     .max_body = TOKEN_BODY_MAX,
                     .what = "registry token"};
  kyb_http_resp rs = {0};
  int r = kyb_http_do(o->http, &rq, &rs, err);
  if (r == 0 && rs.status != 200) {
    kyb_http_status_error(&rq, &rs, err);
    r = kyb_error_wrap(err, "registry %s: token refused (credentials: %s)", o->host, creds_hint(o));
  }
  json_error_t je;
  cleanup_json json_t *j = r == 0 ? json_loadb(rs.body, rs.body_len, 0, &je) : NULL;
  kyb_http_resp_clear(&rs);
  if (r < 0)
    return -1;
  const char *tok = json_string_value(json_object_get(j, "token"));
  if (tok == NULL || *tok == '\0')
    tok = json_string_value(json_object_get(j, "access_token"));
  size_t n = tok ? strlen(tok) : 0;
  bool ok = n > 0 && n <= TOKEN_MAX;
  for (size_t i = 0; ok && i < n; i++)
    ok = tok[i] > 0x20 && tok[i] < 0x7f;
  if (!ok)
    return kyb_error_set(err, EBADMSG, "registry token from %.*s: no usable token in the answer",
                         (int)strcspn(ch->realm, "?"), ch->realm);
  char *h = NULL;
  if (asprintf(&h, "Authorization: Bearer %s", tok) < 0)
    return kyb_error_set(err, ENOMEM, "token");
  set_authz(o, h);
  log_debug("registry %s: bearer token for %s", o->host, own);
  return 0;
}

/* Answers a 401: 1 when the request should be sent again, 0 when not (the
 * caller reports the 401), -1 on error. */
static int answer_challenge(struct oci_store *o, const kyb_http_resp *rs, kyb_error **err) {
  const char *wa = kyb_http_resp_header(rs, "WWW-Authenticate");
  if (wa == NULL)
    return 0;
  kyb_oci_challenge ch = {0};
  if (kyb_oci_challenge_parse(wa, &ch, err) < 0)
    return kyb_error_wrap(err, "registry %s", o->host);
  int r = load_creds(o, err);
  if (r == 0 && strcmp(ch.scheme, "basic") == 0) {
    bool sent = o->authz != NULL && strncmp(o->authz, "Authorization: Basic", 20) == 0;
    if (o->user == NULL || sent) {
      r = 0;
    } else {
      char *h = basic_header(o);
      r = h ? 1 : kyb_error_set(err, ENOMEM, "auth");
      if (h != NULL)
        set_authz(o, h);
    }
  } else if (r == 0) {
    r = fetch_token(o, &ch, err) < 0 ? -1 : 1;
  }
  kyb_oci_challenge_clear(&ch);
  return r;
}

int kyb_oci_do(struct oci_store *o, kyb_http_req *rq, kyb_http_resp *rs, kyb_error **err) {
  const char *hdrs[MAX_HEADERS + 2];
  size_t n = 0;
  for (; rq->headers != NULL && rq->headers[n] != NULL; n++) {
    if (n == MAX_HEADERS)
      return kyb_error_set(err, EINVAL, "too many request headers");
    hdrs[n] = rq->headers[n];
  }
  kyb_http_req r2 = *rq;
  r2.headers = hdrs;
  for (int round = 0;; round++) {
    hdrs[n] = o->authz;
    hdrs[n + 1] = NULL;
    if (round > 0 && rq->read != NULL) {
      if (rq->rewind == NULL)
        return 0;
      if (rq->rewind(rq->read_ud, err) < 0)
        return -1;
    }
    if (kyb_http_do(o->http, &r2, rs, err) < 0)
      return -1;
    if (rs->status != 401 || round == 2)
      return 0;
    int a = answer_challenge(o, rs, err);
    if (a <= 0)
      return a;
  }
}

int kyb_oci_status_error(const struct oci_store *o, const kyb_http_req *rq, const kyb_http_resp *rs,
                         kyb_error **err) {
  kyb_http_status_error(rq, rs, err);
  if (rs->status == 401 || rs->status == 403)
    return kyb_error_wrap(err, "registry %s refused access (credentials: %s)", o->host,
                          creds_hint(o));
  return -1;
}

/* ---- manifests and blobs -------------------------------------------------- */

static char *manifest_url(const struct oci_store *o, const char *ref) {
  cleanup_free char *suffix = NULL;
  if (asprintf(&suffix, "/manifests/%s", ref) < 0)
    return NULL;
  return kyb_oci_url(o, suffix);
}

static const char *const accept_manifest[] = {"Accept: " KYB_OCI_MEDIA_MANIFEST, NULL};

int kyb_oci_get_manifest(struct oci_store *o, const char *tag, kyb_oci_manifest *m,
                         char digest[KYB_DIGEST_LEN + 1], kyb_error **err) {
  cleanup_free char *url = manifest_url(o, tag);
  if (url == NULL)
    return kyb_error_set(err, ENOMEM, "manifest URL");
  kyb_http_req rq = {.method = "GET",
                     .url = url,
                     .headers = accept_manifest,
                     .max_body = KYB_OCI_MANIFEST_MAX,
                     .what = "get image manifest"};
  kyb_http_resp rs = {0};
  int r = kyb_oci_do(o, &rq, &rs, err);
  if (r == 0 && rs.status == 404)
    r = kyb_error_set(err, ENOENT, "no image %s in store oci://%s/%s", tag, o->host, o->repo);
  else if (r == 0 && rs.status != 200)
    r = kyb_oci_status_error(o, &rq, &rs, err);
  if (r == 0 && kyb_oci_manifest_parse(rs.body, rs.body_len, m, err) < 0)
    r = kyb_error_wrap(err, "image %s in oci://%s/%s", tag, o->host, o->repo);
  if (r == 0 && digest != NULL)
    kyb_oci_sha256(rs.body, rs.body_len, digest);
  kyb_http_resp_clear(&rs);
  return r;
}

int kyb_oci_tag_exists(struct oci_store *o, const char *tag, kyb_error **err) {
  cleanup_free char *url = manifest_url(o, tag);
  if (url == NULL)
    return kyb_error_set(err, ENOMEM, "manifest URL");
  kyb_http_req rq = {
      .method = "HEAD", .url = url, .headers = accept_manifest, .what = "look for image"};
  kyb_http_resp rs = {0};
  int r = kyb_oci_do(o, &rq, &rs, err);
  if (r == 0)
    r = rs.status == 200 ? 1 : rs.status == 404 ? 0 : kyb_oci_status_error(o, &rq, &rs, err);
  kyb_http_resp_clear(&rs);
  return r;
}

int kyb_oci_get_config(struct oci_store *o, const kyb_oci_manifest *m, json_t **out, char **raw,
                       size_t *rawlen, kyb_error **err) {
  cleanup_free char *suffix = NULL;
  if (asprintf(&suffix, "/blobs/%s", m->config_digest) < 0)
    return kyb_error_set(err, ENOMEM, "blob URL");
  cleanup_free char *url = kyb_oci_url(o, suffix);
  if (url == NULL)
    return kyb_error_set(err, ENOMEM, "blob URL");
  kyb_http_req rq = {.method = "GET",
                     .url = url,
                     .max_body = m->config_size ? (size_t)m->config_size : 1,
                     .follow_redirects = true,
                     .what = "get image manifest.json"};
  kyb_http_resp rs = {0};
  int r = kyb_oci_do(o, &rq, &rs, err);
  if (r == 0 && rs.status != 200)
    r = kyb_oci_status_error(o, &rq, &rs, err);
  char got[KYB_DIGEST_LEN + 1];
  if (r == 0) {
    kyb_oci_sha256(rs.body ? rs.body : "", rs.body_len, got);
    if (rs.body_len != m->config_size || strcmp(got, m->config_digest) != 0)
      r = kyb_error_set(err, EBADMSG,
                        "manifest.json from the registry is %zu bytes %s, expected %llu bytes %s",
                        rs.body_len, got, (unsigned long long)m->config_size, m->config_digest);
  }
  if (r == 0 && kyb_image_manifest_parse(rs.body, rs.body_len, out, err) < 0)
    r = kyb_error_wrap(err, "manifest.json from the registry");
  if (r == 0 && raw != NULL) {
    *raw = steal_ptr(rs.body);
    *rawlen = rs.body_len;
  }
  kyb_http_resp_clear(&rs);
  return r;
}

/* ---- the store operations ------------------------------------------------- */

static int oci_stat(kyb_store *s, const char *name, kyb_image_summary *out, kyb_error **err) {
  struct oci_store *o = oci_of(s);
  o->actions = "pull";
  kyb_oci_manifest m = {0};
  if (kyb_oci_get_manifest(o, name, &m, NULL, err) < 0)
    return -1;
  cleanup_json json_t *im = NULL;
  int r = kyb_oci_get_config(o, &m, &im, NULL, NULL, err);
  if (r == 0) {
    const char *mname = json_string_value(json_object_get(im, "name"));
    if (mname == NULL || strcmp(mname, name) != 0)
      r = kyb_error_set(err, EBADMSG, "image %s: its manifest names it \"%s\"", name,
                        mname ? mname : "");
  }
  if (r == 0 && kyb_image_summary_from_manifest(name, im, m.config_size, out) < 0)
    r = kyb_error_set(err, ENOMEM, "image %s", name);
  kyb_oci_manifest_clear(&m);
  return r;
}

/* Appends the tags of one tags/list page to *tags; *next gets the next
 * page's path or NULL. */
static int tags_page(struct oci_store *o, const char *url, json_t *tags, char **next,
                     kyb_error **err) {
  kyb_http_req rq = {.method = "GET", .url = url, .max_body = TAGS_BODY_MAX, .what = "list tags"};
  kyb_http_resp rs = {0};
  *next = NULL;
  int r = kyb_oci_do(o, &rq, &rs, err);
  json_error_t je;
  cleanup_json json_t *j = NULL;
  if (r == 0 && rs.status == 404) { /* no repository yet: no images */
    kyb_http_resp_clear(&rs);
    return 0;
  }
  if (r == 0 && rs.status != 200)
    r = kyb_oci_status_error(o, &rq, &rs, err);
  if (r == 0) {
    j = json_loadb(rs.body, rs.body_len, JSON_REJECT_DUPLICATES, &je);
    const json_t *t = json_object_get(j, "tags");
    if (!json_is_object(j) || (t != NULL && !json_is_array(t) && !json_is_null(t)))
      r = kyb_error_set(err, EBADMSG, "tags of %s/%s: not a tag list", o->host, o->repo);
    size_t i;
    json_t *v;
    json_array_foreach(t, i, v) {
      if (r == 0 && json_is_string(v) && json_array_append(tags, v) < 0)
        r = kyb_error_set(err, ENOMEM, "tags");
    }
    *next = r == 0 ? kyb_oci_link_next(kyb_http_resp_header(&rs, "Link")) : NULL;
  }
  kyb_http_resp_clear(&rs);
  return r;
}

static int oci_list(kyb_store *s, kyb_image_summary **out, size_t *n, kyb_error **err) {
  struct oci_store *o = oci_of(s);
  o->actions = "pull";
  cleanup_json json_t *tags = json_array();
  cleanup_free char *url = kyb_oci_url(o, "/tags/list");
  if (tags == NULL || url == NULL)
    return kyb_error_set(err, ENOMEM, "list");
  for (int page = 0; url != NULL; page++) {
    char *next = NULL;
    if (page == TAGS_PAGES_MAX)
      return kyb_error_set(err, E2BIG, "tags of %s/%s: more than %d pages", o->host, o->repo,
                           TAGS_PAGES_MAX);
    if (tags_page(o, url, tags, &next, err) < 0)
      return kyb_error_wrap(err, "list %s", s->uri);
    free(url);
    url = NULL;
    if (next != NULL && asprintf(&url, "%s%s", o->base, next) < 0)
      url = NULL;
    free(next);
  }
  size_t cnt = 0, cap = json_array_size(tags);
  kyb_image_summary *v = calloc(cap ? cap : 1, sizeof(*v));
  if (v == NULL)
    return kyb_error_set(err, ENOMEM, "list");
  size_t i;
  json_t *t;
  json_array_foreach(tags, i, t) {
    const char *tag = json_string_value(t);
    if (!kyb_image_name_valid(tag))
      continue; /* not a name of ours: not one of our images */
    cleanup_error kyb_error *why = NULL;
    int r = oci_stat(s, tag, &v[cnt], &why);
    if (r < 0 && (kyb_error_code(why) == EACCES || kyb_error_code(why) == ECONNREFUSED)) {
      kyb_image_summaries_free(v, cnt);
      *err = steal_ptr(why);
      return kyb_error_wrap(err, "list %s", s->uri);
    }
    if (r < 0 && kyb_image_summary_broken(tag, why, &v[cnt]) < 0) {
      kyb_image_summaries_free(v, cnt);
      return kyb_error_set(err, ENOMEM, "list");
    }
    cnt++;
  }
  if (cnt > 0) {
    qsort(v, cnt, sizeof(*v), kyb_image_summary_cmp);
  } else {
    free(v); /* as the file store: no images, no array */
    v = NULL;
  }
  *out = v;
  *n = cnt;
  return 0;
}

/* The file:// store at dir, opened (and created) on first use into *slot. */
static kyb_store *open_local(const char *dir, kyb_store **slot, const char *what, kyb_error **err) {
  if (*slot != NULL)
    return *slot;
  cleanup_free char *uri = NULL;
  kyb_store *c = NULL;
  if (asprintf(&uri, "file://%s", dir) < 0) {
    kyb_error_set(err, ENOMEM, "%s", what);
    return NULL;
  }
  if (kyb_store_open(uri, KYB_STORE_CREATE, &c, err) < 0) {
    kyb_error_wrap(err, "%s", what);
    return NULL;
  }
  *slot = c;
  return c;
}

kyb_store *kyb_oci_cache(struct oci_store *o, kyb_error **err) {
  return open_local(o->cache_dir, &o->cache, "node image cache ($" KYB_STORE_CACHE_ENV ")", err);
}

static int oci_remove(kyb_store *s, const char *name, kyb_error **err) {
  struct oci_store *o = oci_of(s);
  o->actions = "pull,delete";
  kyb_oci_manifest m = {0};
  char digest[KYB_DIGEST_LEN + 1];
  if (kyb_oci_get_manifest(o, name, &m, digest, err) < 0)
    return -1;
  kyb_oci_manifest_clear(&m);
  cleanup_free char *url = manifest_url(o, digest);
  if (url == NULL)
    return kyb_error_set(err, ENOMEM, "manifest URL");
  kyb_http_req rq = {.method = "DELETE", .url = url, .what = "delete image"};
  kyb_http_resp rs = {0};
  int r = kyb_oci_do(o, &rq, &rs, err);
  if (r == 0 && rs.status == 404)
    r = kyb_error_set(err, ENOENT, "no image %s in %s", name, s->uri);
  else if (r == 0 && rs.status == 405)
    r = kyb_error_set(err, ENOTSUP,
                      "registry %s does not allow deletes (distribution: storage.delete.enabled)",
                      o->host);
  else if (r == 0 && rs.status != 202 && rs.status != 200)
    r = kyb_oci_status_error(o, &rq, &rs, err);
  kyb_http_resp_clear(&rs);
  if (r < 0)
    return -1;
  log_info("image %s deleted from %s (its blobs stay until the registry's garbage collection)",
           name, s->uri);
  /* The node's cached copy of it goes too: nothing would use it again. */
  struct stat sb;
  cleanup_free char *cached = kyb_path_join(o->cache_dir, name);
  kyb_store *c = NULL;
  cleanup_error kyb_error *cerr = NULL;
  if (cached != NULL && lstat(cached, &sb) == 0 &&
      ((c = kyb_oci_cache(o, &cerr)) == NULL || kyb_store_delete(c, name, &cerr) < 0))
    log_warn_chain(cerr, "cached copy of %s", name);
  return 0;
}

static int oci_stage(kyb_store *s, kyb_staging *st, kyb_error **err) {
  struct oci_store *o = oci_of(s);
  o->actions = "pull,push";
  int ex = kyb_oci_tag_exists(o, st->name, err);
  if (ex < 0)
    return -1;
  if (ex > 0)
    return kyb_error_set(err, EEXIST, "image %s already exists in store %s", st->name, s->uri);
  /* Staged in the spool, not the cache: a cached copy of an image deleted
   * from the registry must not block a new one of its name. */
  kyb_store *c = open_local(o->spool_dir, &o->spool, "node spool ($" KYB_STORE_CACHE_ENV ")", err);
  if (c == NULL)
    return -1;
  return c->ops->stage(c, st, err);
}

/* The staging directory is scratch space either way: once pushed, the
 * image lives in the registry. */
static void oci_discard(kyb_store *s, kyb_staging *st) {
  (void)s;
  cleanup_error kyb_error *err = NULL;
  if (st->path != NULL && kyb_remove_tree(st->path, &err) < 0)
    log_warn_chain(err, "discard staging directory %s", st->path);
}

/* Staging directories of dead processes, in the spool and the cache. */
static int oci_cleanup(kyb_store *s, uint64_t min_age_s, size_t *removed, kyb_error **err) {
  struct oci_store *o = oci_of(s);
  const char *dirs[] = {o->spool_dir, o->cache_dir};
  kyb_store **slots[] = {&o->spool, &o->cache};
  *removed = 0;
  for (size_t i = 0; i < 2; i++) {
    struct stat sb;
    size_t n = 0;
    if (stat(dirs[i], &sb) < 0 && errno == ENOENT)
      continue;
    kyb_store *c = open_local(dirs[i], slots[i], "node cache", err);
    if (c == NULL || c->ops->cleanup(c, min_age_s, &n, err) < 0)
      return -1;
    *removed += n;
  }
  return 0;
}

static void oci_close(kyb_store *s) {
  struct oci_store *o = oci_of(s);
  if (o == NULL)
    return;
  kyb_store_close(o->cache);
  kyb_store_close(o->spool);
  kyb_http_free(o->http);
  set_authz(o, NULL);
  if (o->password != NULL)
    explicit_bzero(o->password, strlen(o->password));
  free(o->password);
  free(o->user);
  free(o->host);
  free(o->repo);
  free(o->base);
  free(o->cache_dir);
  free(o->memo_dir);
  free(o->spool_dir);
  free(o);
  s->priv = NULL;
}

static const kyb_store_ops oci_ops = {
    .stage = oci_stage,
    .put = kyb_oci_put,
    .discard = oci_discard,
    .get_path = kyb_oci_get_path,
    .stat = oci_stat,
    .list = oci_list,
    .remove = oci_remove,
    .cleanup = oci_cleanup,
    .close = oci_close,
};

static int open_oci(kyb_store *s, struct oci_store *o, const char *rest, kyb_error **err) {
  o->actions = "pull";
  if (kyb_oci_uri_parse(rest, &o->host, &o->repo, err) < 0)
    return -1;
  bool plain = kyb_oci_plain_http(o->host, getenv(KYB_OCI_INSECURE_ENV));
  cleanup_free char *host_dir = strdup(o->host);
  if (host_dir == NULL)
    return kyb_error_set(err, ENOMEM, "open store");
  for (char *p = host_dir; *p; p++)
    if (*p == ':' || *p == '[' || *p == ']')
      *p = '_';
  const char *root = NULL;
  if (kyb_store_cache_root(&root, err) < 0)
    return -1;
  if (asprintf(&s->uri, "oci://%s/%s", o->host, o->repo) < 0) {
    s->uri = NULL;
    return kyb_error_set(err, ENOMEM, "open store");
  }
  if (asprintf(&o->base, "%s://%s", plain ? "http" : "https", o->host) < 0) {
    o->base = NULL;
    return kyb_error_set(err, ENOMEM, "open store");
  }
  if (asprintf(&o->cache_dir, "%s/oci/%s/%s", root, host_dir, o->repo) < 0) {
    o->cache_dir = NULL;
    return kyb_error_set(err, ENOMEM, "open store");
  }
  if (asprintf(&o->memo_dir, "%s/oci/blobs", root) < 0) {
    o->memo_dir = NULL;
    return kyb_error_set(err, ENOMEM, "open store");
  }
  if (asprintf(&o->spool_dir, "%s/spool", root) < 0) {
    o->spool_dir = NULL;
    return kyb_error_set(err, ENOMEM, "open store");
  }
  if ((s->local_dir = strdup(o->cache_dir)) == NULL)
    return kyb_error_set(err, ENOMEM, "open store");
  /* A private CA (an in-house registry) instead of the system's store. */
  const char *ca = getenv(KYB_OCI_CA_ENV);
  kyb_http_opts ho = {.ca_file = ca && *ca ? ca : NULL};
  if (kyb_http_new(&ho, &o->http, err) < 0)
    return -1;
  kyb_http_set_abort(o->http, kyb_store_stop_requested, s); /* a cancel reaches a stalled request */
  return 0;
}

int kyb_store_oci_open(kyb_store *s, const char *rest, int flags, kyb_error **err) {
  (void)flags; /* a repository comes into being with its first push */
  struct oci_store *o = calloc(1, sizeof(*o));
  if (o == NULL)
    return kyb_error_set(err, ENOMEM, "open store");
  s->priv = o;
  o->self = s;
  if (open_oci(s, o, rest, err) < 0) {
    oci_close(s);
    return -1;
  }
  s->ops = &oci_ops;
  return 0;
}
