/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The S3 side of the s3:// store (internal to lib/store): configuration and
 * credentials, a small S3 REST client (path-style requests signed with
 * SigV4, over lib/store/http.c), the few XML answers it reads, and the
 * image index (index.json) the store writes beside the blobs.
 *
 * Configuration (read when a store is opened, so rotated secrets apply to
 * the next operation):
 *   KYBERNATE_S3_ENDPOINT     e.g. http://127.0.0.1:9000; default
 *                             https://s3.<region>.amazonaws.com
 *   KYBERNATE_S3_REGION       default us-east-1
 *   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
 *                             used when both key variables are set; else
 *   KYBERNATE_S3_CREDENTIALS  a credentials file in AWS's shared format
 *                             ([default] aws_access_key_id = ...), e.g. a
 *                             Kubernetes secret mounted as a file; profile
 *                             $AWS_PROFILE or "default"
 *   KYBERNATE_S3_PART_SIZE    multipart part size in bytes (5 MiB .. 1 GiB;
 *                             default 16 MiB)
 *   KYBERNATE_S3_COPY_MAX     largest blob copied with one CopyObject (5 MiB ..
 *                             5 GiB, default 5 GiB); above it UploadPartCopy in
 *                             ranges of that size (tests lower it)
 *
 * Every answer is outside input: bodies are size-capped, XML is scanned,
 * not trusted, and keys and digests taken from it are validated by callers.
 */
#ifndef KYB_STORE_S3_H
#define KYB_STORE_S3_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "store/http.h"
#include "store/pack.h"
#include "store/store.h"
#include "util/error.h"

#define KYB_S3_PART_MIN (5u << 20)
#define KYB_S3_PART_MAX (1u << 30)
#define KYB_S3_PART_DEFAULT (16u << 20)
#define KYB_S3_MAX_PARTS 10000
#define KYB_S3_COPY_MAX (5ull << 30) /* one CopyObject; above it, UploadPartCopy */

/* Opens an s3:// store; rest is what follows "s3://" (store.c's table). */
int kyb_store_s3_open(kyb_store *s, const char *rest, kyb_error **err);

/* ---- configuration ---------------------------------------------------------- */

typedef struct {
  char *endpoint; /* scheme://host[:port], no trailing slash */
  char *region;
  char *access_key_id;
  char *secret_access_key;
  char *session_token; /* NULL when none */
  char *creds_source;  /* "environment" or "file <path> [profile]", for messages */
  size_t part_size;
  uint64_t copy_max; /* 0: KYB_S3_COPY_MAX; tests lower it (KYBERNATE_S3_COPY_MAX) */
} kyb_s3_config;

/* From the environment (and the credentials file it names). */
int kyb_s3_config_load(kyb_s3_config *out, kyb_error **err);
void kyb_s3_config_clear(kyb_s3_config *c);
/* Parses a shared-credentials file's text for `profile`; the key id and
 * secret are required. */
int kyb_s3_credentials_parse(const char *text, const char *profile, kyb_s3_config *out,
                             kyb_error **err);

/* s3:// URIs: "bucket[/prefix]" (the part after "s3://").  Bucket: 3-63 of
 * [a-z0-9.-], starting and ending with a letter or digit.  Prefix: '/'
 * separated components of [A-Za-z0-9._-] (no "." or ".."), at most 512
 * bytes, trailing slashes dropped.  *prefix is "" when none. */
int kyb_s3_uri_parse(const char *rest, char **bucket, char **prefix, kyb_error **err);

/* ---- client ------------------------------------------------------------------- */

typedef struct kyb_s3 kyb_s3;

int kyb_s3_new(const kyb_s3_config *cfg, const char *bucket, kyb_s3 **out, kyb_error **err);
void kyb_s3_free(kyb_s3 *s);
const char *kyb_s3_bucket(const kyb_s3 *s);
/* kyb_http_set_abort on the client's connection. */
void kyb_s3_set_abort(kyb_s3 *s, kyb_http_abort_fn fn, void *ud);

typedef struct {
  char *key;
  uint64_t size;
  time_t mtime;
} kyb_s3_object;

typedef struct {
  char *key;
  char *upload_id;
  time_t initiated;
} kyb_s3_upload;

void kyb_s3_objects_free(kyb_s3_object *v, size_t n);
void kyb_s3_uploads_free(kyb_s3_upload *v, size_t n);

/* PUT of a buffer (signed payload).  if_none_match: only when the key does
 * not exist yet (If-None-Match: *); EEXIST when it does. */
int kyb_s3_put(kyb_s3 *s, const char *key, const void *data, size_t len, bool if_none_match,
               kyb_error **err);
/* GET into sink; ENOENT when missing. */
int kyb_s3_get(kyb_s3 *s, const char *key, kyb_http_write_fn sink, void *ud, kyb_error **err);
/* GET of a small object into memory (at most max bytes; EFBIG past it). */
int kyb_s3_get_small(kyb_s3 *s, const char *key, size_t max, char **out, size_t *len,
                     kyb_error **err);
/* HEAD: *exists, and *size when it does (size may be NULL). */
int kyb_s3_head(kyb_s3 *s, const char *key, bool *exists, uint64_t *size, kyb_error **err);
/* DELETE; a missing key is not an error (S3 answers 204 either way). */
int kyb_s3_delete(kyb_s3 *s, const char *key, kyb_error **err);
/* ListObjectsV2, every page.  With a delimiter, *prefixes gets the common
 * prefixes (may be NULL when not wanted). */
int kyb_s3_list(kyb_s3 *s, const char *prefix, const char *delimiter, kyb_s3_object **objs,
                size_t *nobjs, char ***prefixes, size_t *nprefixes, kyb_error **err);
/* Server-side copy, CopyObject up to KYB_S3_COPY_MAX, UploadPartCopy above. */
int kyb_s3_copy(kyb_s3 *s, const char *src_key, uint64_t size, const char *dst_key,
                kyb_error **err);

/* Multipart upload. */
int kyb_s3_mpu_create(kyb_s3 *s, const char *key, char **upload_id, kyb_error **err);
int kyb_s3_mpu_part(kyb_s3 *s, const char *key, const char *upload_id, int part, const void *data,
                    size_t len, char **etag, kyb_error **err);
int kyb_s3_mpu_complete(kyb_s3 *s, const char *key, const char *upload_id, char *const *etags,
                        int nparts, kyb_error **err);
int kyb_s3_mpu_abort(kyb_s3 *s, const char *key, const char *upload_id, kyb_error **err);
int kyb_s3_list_uploads(kyb_s3 *s, const char *prefix, kyb_s3_upload **out, size_t *n,
                        kyb_error **err);

/* ---- XML (S3's answers) ------------------------------------------------------- */

/* The content of the first <tag>...</tag> (or <tag/>) in [p, end), as
 * pointers into the text; false when absent. */
bool kyb_s3_xml_find(const char *p, const char *end, const char *tag, const char **cs,
                     const char **ce);
/* The text between cs and ce with XML's entities decoded; NULL when out of
 * memory or when it holds an unknown entity or a NUL. */
char *kyb_s3_xml_text(const char *cs, const char *ce);
/* "2026-12-01T13:52:30.000Z" -> time_t; -1 when malformed. */
time_t kyb_s3_parse_time(const char *s);

/* The list answers, one page at a time (kyb_s3_list and kyb_s3_list_uploads
 * call these per page; the fuzz targets call them directly).  Entries are
 * appended to what earlier pages collected. */
typedef struct {
  kyb_s3_object *objs;
  size_t nobjs, capo;
  char **prefixes;
  size_t npre, capp;
} kyb_s3_list_acc;

/* A ListObjectsV2 page's <Contents> (Key and Size required) and
 * <CommonPrefixes> (Prefix required); EPROTO when one lacks them. */
int kyb_s3_list_page(const char *body, size_t len, kyb_s3_list_acc *a, kyb_error **err);
void kyb_s3_list_acc_clear(kyb_s3_list_acc *a);
/* A ListMultipartUploads page's <Upload> entries (without Key or UploadId:
 * skipped); *v grows with *cap. */
int kyb_s3_uploads_page(const char *body, size_t len, kyb_s3_upload **v, size_t *n, size_t *cap,
                        kyb_error **err);

/* ---- index.json ------------------------------------------------------------- */

#define KYB_S3_INDEX "index.json"
#define KYB_S3_INDEX_VERSION 1
#define KYB_S3_INDEX_MAX_BYTES (64u << 20)

/* A new index for image `name`: manifest facts copied from the (validated)
 * manifest; parts are added as they are uploaded. */
json_t *kyb_s3_index_new(const char *name, const json_t *manifest);
/* Records one uploaded part.  path NULL: manifest.json itself. */
int kyb_s3_index_add(json_t *index, const char *path, const kyb_pack_result *r, kyb_error **err);
/* Parses and validates index.json as it came from storage (name: the name it
 * was found under). */
int kyb_s3_index_parse(const char *data, size_t len, const char *name, json_t **out,
                       kyb_error **err);
/* Checks that the index and the manifest (verified against the index's
 * manifest digest) list the same files with the same sizes and digests. */
int kyb_s3_index_match_manifest(const json_t *index, const json_t *manifest, kyb_error **err);

#endif
