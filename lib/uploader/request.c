/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Parsing and validation of job requests (request.h).
 */
#include "uploader/request.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "util/cleanup.h"

#define URI_FIELD_MAX 4096u

const char *kyb_job_op_name(kyb_job_op op) {
  switch (op) {
  case KYB_JOB_UPLOAD:
    return "upload";
  case KYB_JOB_FETCH:
    return "fetch";
  }
  return NULL;
}

void kyb_job_request_clear(kyb_job_request *r) {
  if (r == NULL)
    return;
  free(r->name);
  free(r->source_store);
  free(r->source);
  free(r->dest_store);
  free(r->destination);
  memset(r, 0, sizeof(*r));
}

bool kyb_job_request_same(const kyb_job_request *a, const kyb_job_request *b) {
  return a->op == b->op && strcmp(a->source, b->source) == 0 &&
         strcmp(a->destination, b->destination) == 0;
}

static bool is_file_uri(const char *uri) {
  return strncmp(uri, "file://", 7) == 0;
}

static bool is_remote_uri(const char *uri) {
  return strncmp(uri, "oci://", 6) == 0 || strncmp(uri, "s3://", 5) == 0;
}

/* A file:// store must be one of the node's. */
static int local_allowed(const kyb_job_policy *pol, const char *store, const char *field,
                         kyb_error **err) {
  for (size_t i = 0; i < pol->nlocals; i++)
    if (strcmp(pol->locals[i], store) == 0)
      return 0;
  return kyb_error_set(err, EPERM,
                       "\"%s\": store %s is not one of this node's stores (the default store and "
                       "the \"stores\" of the node configuration)",
                       field, store);
}

/* A string field: present, a string, not empty, at most URI_FIELD_MAX
 * bytes, no control characters. */
static const char *string_field(const json_t *o, const char *key, kyb_error **err) {
  const json_t *v = json_object_get(o, key);
  if (v == NULL) {
    kyb_error_set(err, EINVAL, "field \"%s\" is missing", key);
    return NULL;
  }
  if (!json_is_string(v) || json_string_length(v) == 0) {
    kyb_error_set(err, EINVAL, "field \"%s\" must be a non-empty string", key);
    return NULL;
  }
  const char *s = json_string_value(v);
  size_t n = json_string_length(v);
  if (n > URI_FIELD_MAX || strlen(s) != n) {
    kyb_error_set(err, EINVAL, "field \"%s\" is longer than %u bytes or holds a NUL", key,
                  URI_FIELD_MAX);
    return NULL;
  }
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
      kyb_error_set(err, EINVAL, "field \"%s\" holds a control character", key);
      return NULL;
    }
  return s;
}

/* Only `allowed` (NULL-terminated) keys, besides "op". */
static int only_fields(const json_t *o, const char *const *allowed, const char *op,
                       kyb_error **err) {
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)o, key, v) {
    bool ok = strcmp(key, "op") == 0;
    for (size_t i = 0; !ok && allowed[i] != NULL; i++)
      ok = strcmp(key, allowed[i]) == 0;
    if (!ok)
      return kyb_error_set(err, EINVAL, "unknown field \"%s\" for op \"%s\"", key, op);
  }
  return 0;
}

int kyb_job_store_parse(const kyb_job_policy *pol, const char *field, const char *uri, char **store,
                        kyb_error **err) {
  if (strstr(uri, "://") == NULL)
    return kyb_error_set(err, EINVAL,
                         "\"%s\": \"%s\" is not a store URI (oci://host/repo, s3://bucket/prefix "
                         "or file:///dir)",
                         field, uri);
  cleanup_free char *trim = strdup(uri);
  if (trim == NULL)
    return kyb_error_set(err, ENOMEM, "request");
  for (size_t l = strlen(trim); l > 0 && trim[l - 1] == '/'; l--)
    trim[l - 1] = '\0';
  /* An image's reference in it, parsed back: the store as
   * kyb_image_ref_parse names it, or what is wrong with it. */
  cleanup_free char *ref = kyb_image_ref_format(trim, "x");
  cleanup_free char *s = NULL, *n = NULL;
  if (ref == NULL)
    return kyb_error_set(err, ENOMEM, "request");
  if (kyb_image_ref_parse(ref, NULL, &s, &n, err) < 0)
    return kyb_error_wrap(err, "\"%s\": \"%s\"", field, uri);
  if (strcmp(n, "x") != 0)
    return kyb_error_set(err, EINVAL, "\"%s\": \"%s\" is not a store URI", field, uri);
  if (is_file_uri(s) && local_allowed(pol, s, field, err) < 0)
    return -1;
  *store = steal_ptr(s);
  return 0;
}

/* `to`: a store URI; the destination is the image's reference in it. */
static int parse_to(const kyb_job_policy *pol, const char *to, const char *name,
                    kyb_job_request *out, kyb_error **err) {
  if (kyb_job_store_parse(pol, "to", to, &out->dest_store, err) < 0)
    return -1;
  out->destination = kyb_image_ref_format(out->dest_store, name);
  return out->destination ? 0 : kyb_error_set(err, ENOMEM, "request");
}

static int parse_upload(const json_t *o, const kyb_job_policy *pol, kyb_job_request *out,
                        kyb_error **err) {
  static const char *const fields[] = {"image", "to", NULL};
  if (only_fields(o, fields, "upload", err) < 0)
    return -1;
  const char *image = string_field(o, "image", err);
  const char *to = image ? string_field(o, "to", err) : NULL;
  if (to == NULL)
    return -1;
  out->op = KYB_JOB_UPLOAD;
  if (kyb_image_ref_parse(image, pol->default_store, &out->source_store, &out->name, err) < 0)
    return kyb_error_wrap(err, "\"image\"");
  if (!is_file_uri(out->source_store))
    return kyb_error_set(err, ENOTSUP,
                         "\"image\": %s is not a local image (file:// or a bare name); fetch it "
                         "first",
                         image);
  if (local_allowed(pol, out->source_store, "image", err) < 0)
    return -1;
  out->source = kyb_image_ref_format(out->source_store, out->name);
  if (out->source == NULL)
    return kyb_error_set(err, ENOMEM, "request");
  if (parse_to(pol, to, out->name, out, err) < 0)
    return -1;
  if (strcmp(out->dest_store, out->source_store) == 0)
    return kyb_error_set(err, EINVAL, "\"to\": image %s is in %s already", out->name,
                         out->dest_store);
  return 0;
}

static int parse_fetch(const json_t *o, const kyb_job_policy *pol, kyb_job_request *out,
                       kyb_error **err) {
  static const char *const fields[] = {"ref", NULL};
  if (only_fields(o, fields, "fetch", err) < 0)
    return -1;
  const char *ref = string_field(o, "ref", err);
  if (ref == NULL)
    return -1;
  out->op = KYB_JOB_FETCH;
  /* No default store: a fetch names where it fetches from. */
  if (strstr(ref, "://") == NULL)
    return kyb_error_set(err, EINVAL,
                         "\"ref\": \"%s\" is not a full reference (oci://host/repo:tag, "
                         "s3://bucket/prefix/name or file:///dir/name)",
                         ref);
  if (kyb_image_ref_parse(ref, NULL, &out->source_store, &out->name, err) < 0)
    return kyb_error_wrap(err, "\"ref\"");
  if (!is_remote_uri(out->source_store) && local_allowed(pol, out->source_store, "ref", err) < 0)
    return -1;
  out->source = kyb_image_ref_format(out->source_store, out->name);
  out->dest_store = strdup(out->source_store);
  out->destination = out->source ? strdup(out->source) : NULL;
  if (out->source == NULL || out->dest_store == NULL || out->destination == NULL)
    return kyb_error_set(err, ENOMEM, "request");
  return 0;
}

static int parse(const char *body, size_t len, const kyb_job_policy *pol, kyb_job_request *out,
                 kyb_error **err) {
  if (len > KYB_JOB_REQUEST_MAX)
    return kyb_error_set(err, EMSGSIZE, "request body of %zu bytes: at most %u", len,
                         KYB_JOB_REQUEST_MAX);
  if (len == 0)
    return kyb_error_set(err, EINVAL, "empty request body: a JSON object is expected");
  json_error_t je;
  cleanup_json json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
  if (o == NULL)
    return kyb_error_set(err, EINVAL, "invalid JSON at line %d column %d: %s", je.line, je.column,
                         je.text);
  if (!json_is_object(o))
    return kyb_error_set(err, EINVAL, "the request must be a JSON object");
  const char *op = string_field(o, "op", err);
  if (op == NULL)
    return -1;
  if (strcmp(op, "upload") == 0)
    return parse_upload(o, pol, out, err);
  if (strcmp(op, "fetch") == 0)
    return parse_fetch(o, pol, out, err);
  return kyb_error_set(err, EINVAL, "unknown op \"%.40s\" (upload or fetch)", op);
}

int kyb_job_request_parse(const char *body, size_t len, const kyb_job_policy *pol,
                          kyb_job_request *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  if (parse(body, len, pol, out, err) < 0) {
    kyb_job_request_clear(out);
    return -1;
  }
  return 0;
}
