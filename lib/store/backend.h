/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The interface a store backend implements (internal to lib/store).
 *
 * store.c owns URI parsing, name validation and the public entry points;
 * a backend only does the storage work.  Names reaching a backend are
 * already valid image names.  To add a scheme (oci://, s3://), write a
 * kyb_store_ops and an open function and list them in store.c's table.
 */
#ifndef KYB_STORE_BACKEND_H
#define KYB_STORE_BACKEND_H

#include <jansson.h>
#include <stdbool.h>

#include "store/store.h"

typedef struct kyb_store_ops {
  int (*stage)(kyb_store *s, kyb_staging *st, kyb_error **err);
  int (*put)(kyb_store *s, kyb_staging *st, kyb_error **err);
  void (*discard)(kyb_store *s, kyb_staging *st);
  int (*get_path)(kyb_store *s, const char *name, char **path, kyb_error **err);
  int (*stat)(kyb_store *s, const char *name, kyb_image_summary *out, kyb_error **err);
  int (*list)(kyb_store *s, kyb_image_summary **out, size_t *n, kyb_error **err);
  int (*remove)(kyb_store *s, const char *name, kyb_error **err);
  int (*cleanup)(kyb_store *s, uint64_t min_age_s, size_t *removed, kyb_error **err);
  void (*close)(kyb_store *s);
} kyb_store_ops;

struct kyb_store {
  const kyb_store_ops *ops;
  char *uri;
  char *local_dir; /* where get_path's images live (kyb_store_local_dir); set by open */
  void *priv;
  int flags; /* kyb_store_open's, set before the backend's open */
  kyb_store_progress_fn progress;
  void *progress_ud;
  kyb_store_progress prog;
  uint64_t prog_base; /* bytes of the parts already complete */
  kyb_store_stop_fn stop;
  void *stop_ud;
};

struct kyb_staging {
  kyb_store *store;
  char *name;
  char *path;  /* set by the backend's stage */
  int lock_fd; /* held while the staging directory is in use; -1 when none */
  bool published;
};

/* Opens a file:// store at an absolute directory path. */
int kyb_store_file_open(kyb_store *s, const char *path, int flags, kyb_error **err);

/* Opens an oci:// store; rest is what follows "oci://" (store_oci.c). */
int kyb_store_oci_open(kyb_store *s, const char *rest, int flags, kyb_error **err);

/* The node's image cache, where remote stores stage and download images
 * (each under <root>/<scheme>/...): $KYBERNATE_IMAGE_CACHE when set (must be
 * absolute), else KYB_STORE_CACHE_DEFAULT. */
#define KYB_STORE_CACHE_ENV "KYBERNATE_IMAGE_CACHE"
#define KYB_STORE_CACHE_DEFAULT "/var/lib/kybernate/cache"
int kyb_store_cache_root(const char **root, kyb_error **err);

/* Progress reports of a backend's transfer (kyb_store_set_progress): a
 * transfer of image `name` with `total` bytes begins; `part` has moved
 * part_done of its bytes (after a restarted attempt, from 0 again); `part`
 * is complete with `size` bytes.  The last two fail with ECANCELED when the
 * callback says stop: return that error and the transfer ends. */
void kyb_store_progress_begin(kyb_store *s, const char *name, uint64_t total);
int kyb_store_progress_part(kyb_store *s, const char *part, uint64_t part_done, kyb_error **err);
int kyb_store_progress_part_end(kyb_store *s, const char *part, uint64_t size, kyb_error **err);

/* Whether the store's stop callback (kyb_store_set_stop) says stop: a
 * kyb_http_abort_fn for the backends' HTTP clients, with the store as ud. */
int kyb_store_stop_requested(void *store);

/* Fills a summary from a validated manifest. */
int kyb_image_summary_from_manifest(const char *name, const json_t *manifest,
                                    uint64_t manifest_size, kyb_image_summary *out);

/* A summary of an image whose manifest is unusable: listed, with the reason
 * (`why`'s message) in `error`.  -1 when out of memory. */
int kyb_image_summary_broken(const char *name, kyb_error *why, kyb_image_summary *out);

/* A put's first step in every backend: the staged image's layout (a valid
 * manifest, exactly the listed files, each of its size; not the digests:
 * the builder hashed every file moments before) and the manifest naming
 * the image it is staged as.  *manifest receives the manifest. */
int kyb_staging_check(const kyb_staging *st, json_t **manifest, kyb_error **err);

/* qsort order of summaries: by name. */
int kyb_image_summary_cmp(const void *a, const void *b);

#endif
