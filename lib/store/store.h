/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Image stores: where finished checkpoint images live, by URI.
 *
 *     file:///var/lib/kybernate/images   a directory (local disk, hostPath, shared PVC)
 *     oci://registry[:port]/repo           an OCI registry repository (image = tag)
 *     s3://bucket[/prefix]                 an S3 bucket (path-style, SigV4; lib/store/s3.h)
 *
 * A store is opened from its URI and used through one small interface
 * (stage / put / get-path / stat / list / delete), so the checkpoint and
 * restore code does not care which backend sits behind it.
 *
 * Publishing is atomic: an image is built in a staging directory that the
 * store hands out (for file://, `<store>/.staging-<name>-XXXXXX` on the same
 * file system), then put() verifies it and renames it to `<store>/<name>`.
 * A name is never overwritten (EEXIST).  A process that dies mid-checkpoint
 * leaves only a staging directory, which no listing shows and which
 * kyb_store_cleanup() removes once no process holds it.  Images hold process
 * memory, secrets included: the store directory and every image in it are
 * created mode 0700.
 *
 * A store is not thread-safe; use one per thread (they are cheap).  A
 * staging handle must not outlive its store.
 */
#ifndef KYB_STORE_STORE_H
#define KYB_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define KYB_STORE_DEFAULT_URI "file:///var/lib/kybernate/images"

typedef struct kyb_store kyb_store;
typedef struct kyb_staging kyb_staging;

/* What a listing or an inspect shows of one image. */
typedef struct kyb_image_summary {
  char *name;
  char *created;        /* RFC 3339; "" when the manifest could not be read */
  uint64_t size;        /* bytes: the manifest plus every file it lists */
  char *container_id;   /* source container */
  char *container_name; /* Kubernetes container name, "" when not a pod's */
  char *pod_namespace;  /* "" when not a pod's */
  char *pod_name;       /* "" when not a pod's */
  char *error;          /* NULL, or why the image's manifest is not usable */
} kyb_image_summary;

void kyb_image_summary_release(kyb_image_summary *s);
void kyb_image_summaries_free(kyb_image_summary *v, size_t n);

enum {
  KYB_STORE_CREATE = 1, /* create the store's directory (mode 0700) when missing */
  /* A remote store (oci://, s3://) answers get_path from the node cache
   * alone: no request to storage, no credentials needed, ENOENT when the
   * image is not cached; every other operation fails with ENOTSUP.  For
   * processes without storage credentials once the uploader has fetched the
   * image (the restore path verifies it before use).  No effect on file://. */
  KYB_STORE_LOCAL_ONLY = 2,
};

/* Opens the store at uri; NULL means KYB_STORE_DEFAULT_URI.  A scheme this
 * build cannot serve fails with ENOTSUP naming it. */
int kyb_store_open(const char *uri, int flags, kyb_store **out, kyb_error **err);
void kyb_store_close(kyb_store *s);
/* The URI the store was opened with, normalised (e.g. "file:///data/images"). */
const char *kyb_store_uri(const kyb_store *s);

/* Splits an image reference into store URI and image name: a bare name means
 * `default_uri` (NULL: KYB_STORE_DEFAULT_URI); "file:///dir/name" means
 * store "file:///dir", image "name"; "oci://host[:port]/repo:tag" means
 * store "oci://host[:port]/repo", image "tag"; "s3://bucket[/prefix]/name"
 * means store "s3://bucket[/prefix]", image "name".  Other schemes fail with
 * ENOTSUP. */
int kyb_image_ref_parse(const char *ref, const char *default_uri, char **store_uri, char **name,
                        kyb_error **err);

/* The reference of image `name` in the store at store_uri, the inverse of
 * kyb_image_ref_parse: "<uri>/<name>", or "<uri>:<name>" for oci://.
 * NULL when out of memory. */
char *kyb_image_ref_format(const char *store_uri, const char *name);

/* The local directory the paths kyb_store_get_path returns are directly
 * in: a file:// store's directory; for a remote store, its part of the
 * node's image cache. */
const char *kyb_store_local_dir(const kyb_store *s);

/* Starts an image: a fresh, private directory to build it in.  Fails with
 * EEXIST at once when the store already has `name`. */
int kyb_store_stage(kyb_store *s, const char *name, kyb_staging **out, kyb_error **err);
/* The staging directory: write criu/ and build the manifest there. */
const char *kyb_staging_path(const kyb_staging *st);
const char *kyb_staging_name(const kyb_staging *st);
/* Releases the handle; a staging directory not published is removed. */
void kyb_staging_free(kyb_staging *st);

/* Checks the staged image (kyb_image_verify_layout: the builder hashed it
 * already; its manifest's name must be
 * the staged name) and publishes it atomically.  EEXIST when the name was
 * taken meanwhile; the staging directory is then left for kyb_staging_free. */
int kyb_store_put(kyb_store *s, kyb_staging *st, kyb_error **err);

/* A local directory holding the image (file://: the image itself).  It is
 * not verified here: the restore path calls kyb_image_verify on it. */
int kyb_store_get_path(kyb_store *s, const char *name, char **path, kyb_error **err);

int kyb_store_stat(kyb_store *s, const char *name, kyb_image_summary *out, kyb_error **err);

/* Every published image, sorted by name.  An image whose manifest cannot be
 * read is listed with `error` set rather than failing the whole listing. */
int kyb_store_list(kyb_store *s, kyb_image_summary **out, size_t *n, kyb_error **err);

/* Removes an image: hidden first (renamed to a .deleting-* name), then
 * removed, so no reader ever sees half an image.  ENOENT when missing. */
int kyb_store_delete(kyb_store *s, const char *name, kyb_error **err);

/* Progress of the transfers of remote stores: put (upload) and get_path
 * (download), reported from the calling thread after each chunk (about a
 * MiB) of a file.  Bytes are the image's own (manifest.json and the files
 * it lists, uncompressed), so `total` is the image size listings show. */
typedef struct {
  const char *name; /* the image */
  const char *part; /* the file being moved, e.g. "criu/pages-1.img"; NULL between files */
  uint64_t done;
  uint64_t total;
} kyb_store_progress;

/* 0 goes on; anything else stops the transfer, which fails with ECANCELED
 * (and publishes nothing). */
typedef int (*kyb_store_progress_fn)(void *ud, const kyb_store_progress *p);

/* Sets (fn non-NULL) or clears the store's progress callback. */
void kyb_store_set_progress(kyb_store *s, kyb_store_progress_fn fn, void *ud);

/* Asked while a remote store's request waits on the network (about once a
 * second, and before its retries): nonzero stops the transfer (ECANCELED),
 * even one stalled between progress reports.  NULL clears it. */
typedef int (*kyb_store_stop_fn)(void *ud);
void kyb_store_set_stop(kyb_store *s, kyb_store_stop_fn fn, void *ud);

/* Removes staging and half-deleted directories left by processes that died:
 * those no live process holds and older than min_age_s seconds. */
int kyb_store_cleanup(kyb_store *s, uint64_t min_age_s, size_t *removed, kyb_error **err);

#endif
