/* SPDX-License-Identifier: Apache-2.0 */
/*
 * AWS Signature Version 4 (header form), for the s3:// store.
 *
 *     kyb_sigv4_request rq = {.method = "PUT", .path = "/bucket/a%20b", .headers = hs,
 *                             .nheaders = 1, .payload_hash = hex, .region = "us-east-1",
 *                             .service = "s3", .s3 = true, .when = time(NULL)};
 *     kyb_sigv4_result rs = {0};
 *     kyb_sigv4_sign(&creds, &rq, &rs, err);   // rs.headers: lines to send with the request
 *
 * The caller gives the request as it goes on the wire: the path and the
 * query string percent-encoded (kyb_sigv4_uri_encode builds them), and every
 * header it wants signed, `host` included.  The signer adds and signs
 * X-Amz-Date, x-amz-content-sha256 (S3: always; the hex sha256 of the body,
 * UNSIGNED-PAYLOAD, or a hash computed beforehand for a streamed body) and
 * X-Amz-Security-Token (with session credentials), and returns those plus
 * Authorization as "Name: value" lines.  A caller header with one of those
 * names is refused (it would be signed twice).
 *
 * Canonical request rules (AWS's SigV4 documentation and test suite):
 *   - path, other services: normalised (dot segments removed, repeated
 *     slashes merged) and URI-encoded as sent, so an escape is encoded a
 *     second time ('%' -> %25);
 *   - path, S3: neither normalised nor encoded twice: decoded once, then
 *     encoded once (a key "a b" is "/a%20b" on the wire and in the signature);
 *   - query: every name and value decoded, encoded strictly (only A-Z a-z
 *     0-9 - _ . ~ stay), sorted by name then value; "a" means "a=";
 *   - headers: names lower-cased, values trimmed with inner runs of blanks
 *     made one space, repeated names joined with ',' in order, sorted.
 *
 * Values that would break the header syntax (CR, LF, NUL; ',' or '/' in the
 * access key, region or service) are refused with EINVAL.
 */
#ifndef KYB_STORE_SIGV4_H
#define KYB_STORE_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "util/error.h"

#define KYB_SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
#define KYB_SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define KYB_SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef struct {
  const char *access_key_id;
  const char *secret_access_key;
  const char *session_token; /* NULL or "": long-term credentials */
} kyb_sigv4_creds;

typedef struct {
  const char *name;
  const char *value;
} kyb_sigv4_header;

typedef struct {
  const char *method; /* "GET", "PUT", ... (as sent) */
  const char *path;   /* as sent, percent-encoded; "" means "/" */
  const char *query;  /* as sent, without '?'; NULL or "": none */
  const kyb_sigv4_header *headers;
  size_t nheaders;
  /* Lowercase hex sha256 of the body, or KYB_SIGV4_UNSIGNED_PAYLOAD; NULL:
   * the empty body's. */
  const char *payload_hash;
  const char *region;  /* e.g. "us-east-1" */
  const char *service; /* e.g. "s3" */
  bool s3;             /* S3's rules (above), x-amz-content-sha256 sent and signed */
  /* Other services only: */
  bool keep_path;           /* do not normalise the path */
  bool sign_content_sha256; /* send and sign x-amz-content-sha256 */
  time_t when;              /* the signing time (X-Amz-Date) */
} kyb_sigv4_request;

typedef struct {
  char amz_date[17];   /* "20150830T123600Z" */
  char signature[65];  /* lowercase hex */
  char *authorization; /* the Authorization header's value */
  char **headers;      /* NULL-terminated "Name: value" lines to send, Authorization last */
  char *canonical_request;
  char *string_to_sign;
} kyb_sigv4_result;

int kyb_sigv4_sign(const kyb_sigv4_creds *creds, const kyb_sigv4_request *req,
                   kyb_sigv4_result *out, kyb_error **err);
void kyb_sigv4_result_clear(kyb_sigv4_result *r);

/* SigV4's URI encoding of len bytes of s: A-Z a-z 0-9 - _ . ~ stay, '/' stays
 * when keep_slash, every other byte becomes %XX (upper-case hex).  NULL when
 * out of memory. */
char *kyb_sigv4_uri_encode(const char *s, size_t len, bool keep_slash);

/* Lowercase hex sha256 of len bytes (65 bytes with the NUL). */
void kyb_sigv4_sha256_hex(const void *data, size_t len, char hex[65]);

#endif
