/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The s3:// store's own state, shared by its files (internal to lib/store):
 * store_s3.c (open, stage, get, list, remove, cleanup) and s3_upload.c (put).
 * The layout in the bucket is described at the top of store_s3.c.
 */
#ifndef KYB_STORE_S3_STORE_H
#define KYB_STORE_S3_STORE_H

#include <stddef.h>

#include "store/backend.h"
#include "store/s3.h"
#include "util/error.h"

struct s3_store {
  kyb_s3 *s3;
  char *bucket;
  char *prefix; /* "" or "a/b" */
  char *cache_dir;
  char *spool_dir;
  char *memo_dir;   /* the node's blob memo (blob_memo.h) */
  kyb_store *cache; /* opened on first use */
  kyb_store *spool;
  size_t part_size;
  kyb_store *self; /* for progress reports */
};

struct s3_store *kyb_s3store_of(kyb_store *s);

/* "<prefix>/<name>/<rest>" (no leading '/' when the prefix is empty); NULL
 * on ENOMEM. */
char *kyb_s3store_key(const struct s3_store *b, const char *name, const char *rest);
/* The key of blob "sha256:<hex>" of image `name`. */
char *kyb_s3store_blob_key(const struct s3_store *b, const char *name, const char *digest);

/* The store's put (s3_upload.c): every file of the staged image packed and
 * uploaded, then manifest.json, then index.json with If-None-Match. */
int kyb_s3store_put(kyb_store *s, kyb_staging *st, kyb_error **err);

#endif
