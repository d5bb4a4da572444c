/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Job requests of the uploader's API (docs/uploader.md): the body of
 * POST /v1/jobs, parsed and validated before any job exists.
 *
 *     {"op": "upload", "image": "file:///var/lib/kybernate/images/web-1" | "web-1",
 *      "to": "oci://registry.example/team/ckpt" | "s3://bucket/prefix" | "file:///dir"}
 *     {"op": "fetch", "ref": "oci://registry.example/team/ckpt:web-1" | "s3://bucket/p/web-1"}
 *
 * A request body is untrusted input: at most KYB_JOB_REQUEST_MAX bytes of
 * JSON, an object with exactly the fields of its op, references parsed by
 * kyb_image_ref_parse.  Local directories are the one thing a request can
 * name on this node, so they are limited by a policy: an upload reads only
 * from the node's file:// stores (nodeconf.h: its default store and
 * "stores"), and a file:// destination or fetch source must be one of them
 * too.  Remote stores (oci://, s3://) are any the caller names; the
 * credentials files decide which of them get credentials.
 *
 * Errors: EINVAL (malformed, with what is wrong), ENOTSUP (a scheme the
 * operation cannot use), EPERM (a local store outside the policy),
 * EMSGSIZE (body too large).
 */
#ifndef KYB_UPLOADER_REQUEST_H
#define KYB_UPLOADER_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

#define KYB_JOB_REQUEST_MAX (64u << 10)

typedef enum {
  KYB_JOB_UPLOAD = 1, /* a local image into a store */
  KYB_JOB_FETCH = 2,  /* an image of a store into the node's image cache */
} kyb_job_op;

typedef struct {
  kyb_job_op op;
  char *name;         /* the image name */
  char *source_store; /* upload: the local file:// store; fetch: the store fetched from */
  char *source;       /* the source image's reference, normalised */
  char *dest_store;   /* upload: the store written to; fetch: the source store */
  char *destination;  /* the image's reference where the job puts it (the key for joining) */
} kyb_job_request;

/* What a request may name on this node. */
typedef struct {
  const char *default_store; /* store of a bare image name (a file:// URI) */
  const char *const *locals; /* the file:// stores uploads read from and file:// jobs use */
  size_t nlocals;
} kyb_job_policy;

int kyb_job_request_parse(const char *body, size_t len, const kyb_job_policy *pol,
                          kyb_job_request *out, kyb_error **err);
void kyb_job_request_clear(kyb_job_request *r);

/* A store URI named in a request (`field` for messages): normalised as
 * kyb_image_ref_parse names stores; a file:// one must be the policy's. */
int kyb_job_store_parse(const kyb_job_policy *pol, const char *field, const char *uri, char **store,
                        kyb_error **err);

/* "upload" / "fetch"; NULL for anything else. */
const char *kyb_job_op_name(kyb_job_op op);

/* Two requests that do the same: same op, source and destination. */
bool kyb_job_request_same(const kyb_job_request *a, const kyb_job_request *b);

#endif
