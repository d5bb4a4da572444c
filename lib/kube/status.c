/* SPDX-License-Identifier: Apache-2.0 */
/*
 * API server answers that are errors, turned into kyb_errors: the Status
 * object (code, reason, message) when the body is one, the HTTP status
 * otherwise.  The code and reason are written into the root message in one
 * fixed form, "kube: <what>: <code> <Reason>: <message>", and read back from
 * there (kyb_kube_status_of), so they survive any number of wraps.  The
 * server's words are untrusted: sanitised and cut before they reach a
 * message.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/internal.h"
#include "util/cleanup.h"

#define MAX_MESSAGE 1024
#define MAX_REASON 64

void kube_sanitize(char *dst, size_t size, const char *src, size_t len) {
  if (size == 0)
    return;
  size_t n = 0;
  for (size_t k = 0; k < len && src[k] != '\0' && n + 1 < size; k++) {
    unsigned char ch = (unsigned char)src[k];
    dst[n++] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
  }
  /* Do not end inside a UTF-8 sequence: drop a cut lead byte and its tail. */
  if (n > 0 && n + 1 >= size) {
    size_t k = n;
    while (k > 0 && ((unsigned char)dst[k - 1] & 0xc0) == 0x80)
      k--;
    if (k > 0 && ((unsigned char)dst[k - 1] & 0xc0) == 0xc0) {
      unsigned char lead = (unsigned char)dst[k - 1];
      size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
      if (n - (k - 1) < need)
        n = k - 1;
    }
  }
  dst[n] = '\0';
}

static const char *standard_reason(long code) {
  switch (code) {
  case 400:
    return "BadRequest";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "NotFound";
  case 405:
    return "MethodNotAllowed";
  case 406:
    return "NotAcceptable";
  case 409:
    return "Conflict";
  case 410:
    return "Gone";
  case 413:
    return "RequestEntityTooLarge";
  case 415:
    return "UnsupportedMediaType";
  case 422:
    return "Invalid";
  case 429:
    return "TooManyRequests";
  case 500:
    return "InternalError";
  case 503:
    return "ServiceUnavailable";
  case 504:
    return "Timeout";
  default:
    return "Unknown";
  }
}

int kyb_kube_status_errno(long code, const char *reason) {
  switch (code) {
  case 400:
  case 415:
  case 422:
    return EINVAL;
  case 401:
  case 403:
    return EACCES;
  case 404:
    return ENOENT;
  case 405:
    return ENOTSUP;
  case 409:
    return reason != NULL && strcmp(reason, "AlreadyExists") == 0 ? EEXIST : EBUSY;
  case 410:
    return ESTALE;
  case 413:
    return EFBIG;
  case 429:
  case 503:
    return EAGAIN;
  case 504:
    return ETIMEDOUT;
  default:
    return EIO;
  }
}

/* A reason is a CamelCase word; anything else from the server is dropped. */
static bool plain_reason(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > MAX_REASON)
    return false;
  for (size_t k = 0; k < n; k++)
    if (!isalpha((unsigned char)s[k]))
      return false;
  return true;
}

static int status_error_from(const char *what, long code, const char *reason, const char *message,
                             size_t mlen, kyb_error **err) {
  if (code < 100 || code > 599)
    code = 500;
  if (reason == NULL || !plain_reason(reason))
    reason = standard_reason(code);
  char msg[MAX_MESSAGE + 1];
  kube_sanitize(msg, sizeof(msg), message != NULL ? message : "", message != NULL ? mlen : 0);
  int e = kyb_kube_status_errno(code, reason);
  if (msg[0] == '\0')
    return kyb_error_set(err, e, "kube: %s: %ld %s", what, code, reason);
  return kyb_error_set(err, e, "kube: %s: %ld %s: %s", what, code, reason, msg);
}

int kube_status_error_obj(const char *what, long http_code, const json_t *status, kyb_error **err) {
  json_t *c = json_object_get(status, "code");
  long code = json_is_integer(c) ? (long)json_integer_value(c) : http_code;
  if (code < 100 || code > 599)
    code = http_code;
  json_t *m = json_object_get(status, "message");
  return status_error_from(what, code, json_string_value(json_object_get(status, "reason")),
                           json_string_value(m), json_is_string(m) ? json_string_length(m) : 0,
                           err);
}

int kyb_kube_status_error(const char *what, long code, const char *body, size_t len,
                          kyb_error **err) {
  json_t *j = body != NULL && len > 0 ? json_loadb(body, len, 0, NULL) : NULL;
  json_t *kind = json_object_get(j, "kind");
  if (json_is_string(kind) && strcmp(json_string_value(kind), "Status") == 0) {
    int r = kube_status_error_obj(what, code, j, err);
    json_decref(j);
    return r;
  }
  json_decref(j);
  /* Not a Status: the first line of the body says what there is to say. */
  size_t n = 0;
  while (body != NULL && n < len && body[n] != '\n')
    n++;
  return status_error_from(what, code, NULL, body, n, err);
}

/* The code is right after the first ": " past the "kube: " prefix (what
 * never contains ": "; a transport error has words there, not a code). */
static const char *find_code(const kyb_error *err, long *code) {
  if (err == NULL)
    return NULL;
  const char *root = kyb_error_root(err);
  if (root == NULL || strncmp(root, "kube: ", 6) != 0)
    return NULL;
  const char *p = strstr(root + 6, ": ");
  if (p == NULL)
    return NULL;
  const char *d = p + 2;
  if (!isdigit((unsigned char)d[0]) || !isdigit((unsigned char)d[1]) ||
      !isdigit((unsigned char)d[2]) || (d[3] != ' ' && d[3] != '\0'))
    return NULL;
  *code = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
  return d[3] == ' ' ? d + 4 : d + 3;
}

int kyb_kube_status_of(const kyb_error *err) {
  long code = 0;
  return find_code(err, &code) != NULL ? (int)code : 0;
}

const char *kyb_kube_reason_of(const kyb_error *err, char *buf, size_t size) {
  long code = 0;
  const char *r = find_code(err, &code);
  if (size == 0)
    return buf;
  size_t n = 0;
  while (r != NULL && isalpha((unsigned char)r[n]) && n + 1 < size)
    n++;
  if (n > 0)
    memcpy(buf, r, n);
  buf[n] = '\0';
  return buf;
}
