/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The oci:// backend's shared state (internal to lib/store): store_oci.c
 * opens the store and speaks to the registry (auth included);
 * oci_transfer.c pushes and pulls images with it.
 */
#ifndef KYB_STORE_OCI_STORE_H
#define KYB_STORE_OCI_STORE_H

#include "store/backend.h"
#include "store/http.h"
#include "store/oci.h"

struct oci_store {
  char *host;       /* "registry.example:5000" */
  char *repo;       /* "team/checkpoints" */
  char *base;       /* "https://registry.example:5000" */
  char *cache_dir;  /* node cache: <cache>/oci/<host>/<repo>, a file:// store */
  char *memo_dir;   /* <cache>/oci/blobs: file digest -> a blob known to hold it */
  kyb_store *cache; /* opened on first use */
  char *spool_dir;  /* <cache>/spool: where checkpoints are staged before a push */
  kyb_store *spool; /* opened on first use */
  kyb_http *http;
  char *authz; /* "Authorization: ..." sent with every request; NULL: none yet */
  char *user;  /* credentials, loaded on the first 401 */
  char *password;
  const char *cred_source; /* where they came from, for messages */
  bool creds_loaded;
  const char *actions; /* token scope actions the current operation needs */
  kyb_store *self;     /* the store this backs (progress reports) */
};

static inline struct oci_store *oci_of(kyb_store *s) {
  return s->priv;
}

/* "<base>/v2/<repo><suffix>", malloc'd. */
char *kyb_oci_url(const struct oci_store *o, const char *suffix);

/* kyb_http_do with the store's credentials: a 401 answered with a Basic or
 * Bearer challenge is handled (credentials, token) and the request sent
 * again.  0 with any final status, as kyb_http_do. */
int kyb_oci_do(struct oci_store *o, kyb_http_req *rq, kyb_http_resp *rs, kyb_error **err);

/* Sets err for an unexpected response, with a hint on credentials for 401
 * and 403. */
int kyb_oci_status_error(const struct oci_store *o, const kyb_http_req *rq, const kyb_http_resp *rs,
                         kyb_error **err);

/* The registry manifest of `tag`: 0 with it parsed into *m (and its raw
 * digest into digest when not NULL); ENOENT when the tag does not exist. */
int kyb_oci_get_manifest(struct oci_store *o, const char *tag, kyb_oci_manifest *m,
                         char digest[KYB_DIGEST_LEN + 1], kyb_error **err);

/* The config blob (manifest.json) of a registry manifest, checked against
 * its digest and size, parsed and validated into *out; its bytes into *raw
 * when raw is not NULL. */
int kyb_oci_get_config(struct oci_store *o, const kyb_oci_manifest *m, json_t **out, char **raw,
                       size_t *rawlen, kyb_error **err);

/* 1 when `tag` exists in the repository, 0 when not. */
int kyb_oci_tag_exists(struct oci_store *o, const char *tag, kyb_error **err);

/* The node cache store of this registry repository (created on demand;
 * owned by o).  NULL with err set on failure. */
kyb_store *kyb_oci_cache(struct oci_store *o, kyb_error **err);

/* "sha256:<hex>" of a buffer. */
void kyb_oci_sha256(const void *buf, size_t len, char out[KYB_DIGEST_LEN + 1]);

/* oci_transfer.c */
int kyb_oci_put(kyb_store *s, kyb_staging *st, kyb_error **err);
int kyb_oci_get_path(kyb_store *s, const char *name, char **path, kyb_error **err);

#endif
