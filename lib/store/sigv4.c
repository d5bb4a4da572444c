/* SPDX-License-Identifier: Apache-2.0 */
/*
 * AWS Signature Version 4 over OpenSSL.  See sigv4.h for the contract and
 * the canonicalisation rules; tests/unit/test_sigv4.c checks them against
 * AWS's published test suite and the S3 documentation's examples.
 */
#include "store/sigv4.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/cleanup.h"

#define SIGV4_MAX_HEADERS 64u
#define SIGV4_FIELD_MAX 8192u /* any single input string */

/* A growing string; `oom` sticks once an allocation failed. */
typedef struct {
  char *s;
  size_t len, cap;
  bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *p, size_t n) {
  if (b->oom)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->len + n + 1)
      nc *= 2;
    char *ns = realloc(b->s, nc);
    if (ns == NULL) {
      b->oom = true;
      return;
    }
    b->s = ns;
    b->cap = nc;
  }
  memcpy(b->s + b->len, p, n);
  b->len += n;
  b->s[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) {
  sb_add(b, s, strlen(s));
}

static void sb_ch(sbuf *b, char c) {
  sb_add(b, &c, 1);
}

static bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '~';
}

static void sb_encode(sbuf *b, const char *s, size_t len, bool keep_slash) {
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (unreserved(c) || (keep_slash && c == '/')) {
      sb_ch(b, (char)c);
    } else {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      sb_add(b, e, 3);
    }
  }
}

char *kyb_sigv4_uri_encode(const char *s, size_t len, bool keep_slash) {
  sbuf b = {0};
  sb_add(&b, "", 0);
  sb_encode(&b, s, len, keep_slash);
  if (b.oom) {
    free(b.s);
    return NULL;
  }
  return b.s;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Percent-decodes len bytes of s into a new string (*out, *out_len).  A '%'
 * not followed by two hex digits stays as it is (AWS's servers do the same
 * with such a request). */
static int pct_decode(const char *s, size_t len, char **out, size_t *out_len) {
  char *d = malloc(len + 1);
  if (d == NULL)
    return -1;
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    int hi, lo;
    if (s[i] == '%' && i + 2 < len && (hi = hexval(s[i + 1])) >= 0 &&
        (lo = hexval(s[i + 2])) >= 0) {
      d[n++] = (char)(hi << 4 | lo);
      i += 2;
    } else {
      d[n++] = s[i];
    }
  }
  d[n] = '\0';
  *out = d;
  *out_len = n;
  return 0;
}

/* RFC 3986 remove_dot_segments, plus repeated slashes merged: AWS's
 * normalisation for services other than S3.  The result keeps a leading
 * '/' and a trailing one when the input had it. */
static char *normalize_path(const char *p) {
  size_t len = strlen(p);
  char *out = malloc(len + 2);
  if (out == NULL)
    return NULL;
  size_t n = 0;
  const char *s = p;
  bool trailing = len > 0 && p[len - 1] == '/';
  while (*s) {
    while (*s == '/')
      s++;
    const char *e = strchr(s, '/');
    size_t sl = e ? (size_t)(e - s) : strlen(s);
    if (sl == 0)
      break;
    if (sl == 1 && s[0] == '.') {
      /* nothing */
    } else if (sl == 2 && s[0] == '.' && s[1] == '.') {
      while (n > 0 && out[n - 1] != '/')
        n--;
      if (n > 0)
        n--; /* the slash before the removed segment */
    } else {
      out[n++] = '/';
      memcpy(out + n, s, sl);
      n += sl;
    }
    s += sl;
    /* a trailing "." or ".." means the path ends in a directory */
    if (*s == '\0' && ((sl == 1 && s[-1] == '.') || (sl == 2 && s[-1] == '.' && s[-2] == '.')))
      trailing = true;
  }
  if (n == 0 || trailing)
    out[n++] = '/';
  if (n >= 2 && out[n - 1] == '/' && out[n - 2] == '/')
    n--;
  out[n] = '\0';
  return out;
}

static int canonical_uri(const kyb_sigv4_request *r, sbuf *b) {
  const char *path = (r->path && r->path[0]) ? r->path : "/";
  if (r->s3) {
    cleanup_free char *dec = NULL;
    size_t dl = 0;
    if (pct_decode(path, strlen(path), &dec, &dl) < 0)
      return -1;
    sb_encode(b, dec, dl, true);
    return 0;
  }
  cleanup_free char *norm = r->keep_path ? strdup(path) : normalize_path(path);
  if (norm == NULL)
    return -1;
  sb_encode(b, norm, strlen(norm), true); /* encodes '%' too: the second encoding */
  return 0;
}

typedef struct {
  char *name;  /* encoded */
  char *value; /* encoded */
} qparam;

static int cmp_qparam(const void *a, const void *b) {
  const qparam *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  return c ? c : strcmp(x->value, y->value);
}

static char *encode_decoded(const char *s, size_t len) {
  cleanup_free char *dec = NULL;
  size_t dl = 0;
  if (pct_decode(s, len, &dec, &dl) < 0)
    return NULL;
  return kyb_sigv4_uri_encode(dec, dl, false);
}

static int canonical_query(const char *q, sbuf *b) {
  if (q == NULL || *q == '\0')
    return 0;
  size_t cap = 1;
  for (const char *p = q; *p; p++)
    cap += *p == '&';
  qparam *v = calloc(cap, sizeof(*v));
  if (v == NULL)
    return -1;
  size_t n = 0;
  int rc = 0;
  for (const char *p = q; *p && rc == 0;) {
    const char *amp = strchr(p, '&');
    size_t l = amp ? (size_t)(amp - p) : strlen(p);
    if (l > 0) {
      const char *eq = memchr(p, '=', l);
      size_t nl = eq ? (size_t)(eq - p) : l;
      v[n].name = encode_decoded(p, nl);
      v[n].value = eq ? encode_decoded(eq + 1, l - nl - 1) : strdup("");
      if (v[n].name == NULL || v[n].value == NULL)
        rc = -1;
      n++;
    }
    p += l + (amp ? 1 : 0);
  }
  if (rc == 0) {
    qsort(v, n, sizeof(*v), cmp_qparam);
    for (size_t i = 0; i < n; i++) {
      if (i)
        sb_ch(b, '&');
      sb_str(b, v[i].name);
      sb_ch(b, '=');
      sb_str(b, v[i].value);
    }
  }
  for (size_t i = 0; i < n; i++) {
    free(v[i].name);
    free(v[i].value);
  }
  free(v);
  return rc;
}

typedef struct {
  char *name;  /* lower-case */
  char *value; /* trimmed; repeated names joined with ',' */
} hdr;

static int cmp_hdr(const void *a, const void *b) {
  return strcmp(((const hdr *)a)->name, ((const hdr *)b)->name);
}

/* The value trimmed, inner runs of blanks (and folded lines) made one space. */
static char *trim_value(const char *v) {
  size_t len = strlen(v);
  char *o = malloc(len + 1);
  if (o == NULL)
    return NULL;
  size_t n = 0;
  bool blank = false;
  for (size_t i = 0; i < len; i++) {
    char c = v[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      blank = n > 0;
      continue;
    }
    if (blank)
      o[n++] = ' ';
    blank = false;
    o[n++] = c;
  }
  o[n] = '\0';
  return o;
}

/* Control characters; with allow_fold, a line break followed by a blank (an
 * obs-fold continuation, trimmed to one space when signed) is accepted. */
static bool has_ctl(const char *s, bool allow_fold) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (allow_fold && (*p == '\r' || *p == '\n')) {
      const unsigned char *q = p + (*p == '\r' && p[1] == '\n' ? 2 : 1);
      if (*q == ' ' || *q == '\t') {
        p = q;
        continue;
      }
      return true;
    }
    if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
      return true;
  }
  return false;
}

static bool token_ok(const char *s, bool allow_slash) {
  if (s == NULL || *s == '\0' || strlen(s) > 256)
    return false;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p <= 0x20 || *p >= 0x7f || *p == ',' || *p == ';' || *p == '=' ||
        (*p == '/' && !allow_slash))
      return false;
  return true;
}

static bool reserved_name(const char *name) {
  return strcasecmp(name, "x-amz-date") == 0 || strcasecmp(name, "x-amz-content-sha256") == 0 ||
         strcasecmp(name, "x-amz-security-token") == 0 || strcasecmp(name, "authorization") == 0;
}

static void free_hdrs(hdr *h, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(h[i].name);
    free(h[i].value);
  }
  free(h);
}

/* Adds name: value to h (merging a repeated name).  -1: out of memory. */
static int add_hdr(hdr *h, size_t *n, const char *name, const char *value) {
  cleanup_free char *lname = strdup(name);
  cleanup_free char *tv = trim_value(value);
  if (lname == NULL || tv == NULL)
    return -1;
  for (char *p = lname; *p; p++)
    if (*p >= 'A' && *p <= 'Z')
      *p = (char)(*p - 'A' + 'a');
  for (size_t i = 0; i < *n; i++) {
    if (strcmp(h[i].name, lname) == 0) {
      char *j = NULL;
      if (asprintf(&j, "%s,%s", h[i].value, tv) < 0)
        return -1;
      free(h[i].value);
      h[i].value = j;
      return 0;
    }
  }
  h[*n].name = steal_ptr(lname);
  h[*n].value = steal_ptr(tv);
  (*n)++;
  return 0;
}

static void hmac(const void *key, size_t klen, const char *msg, unsigned char out[32]) {
  unsigned int olen = 32;
  HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &olen);
}

static void to_hex(const unsigned char *md, size_t len, char *hex) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < len; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  hex[2 * len] = '\0';
}

void kyb_sigv4_sha256_hex(const void *data, size_t len, char hex[65]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
  to_hex(md, 32, hex);
}

static bool hash_ok(const char *h) {
  if (strcmp(h, KYB_SIGV4_UNSIGNED_PAYLOAD) == 0)
    return true;
  if (strlen(h) != 64)
    return false;
  for (const char *p = h; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
      return false;
  return true;
}

static int check_request(const kyb_sigv4_creds *c, const kyb_sigv4_request *r, kyb_error **err) {
  if (!token_ok(c->access_key_id, false))
    return kyb_error_set(err, EINVAL, "SigV4: the access key id is missing or malformed");
  if (c->secret_access_key == NULL || *c->secret_access_key == '\0' ||
      strlen(c->secret_access_key) > 1024)
    return kyb_error_set(err, EINVAL, "SigV4: the secret access key is missing or too long");
  if (c->session_token &&
      (strlen(c->session_token) > SIGV4_FIELD_MAX || has_ctl(c->session_token, false)))
    return kyb_error_set(err, EINVAL, "SigV4: the session token is malformed");
  if (!token_ok(r->region, false) || !token_ok(r->service, false))
    return kyb_error_set(err, EINVAL, "SigV4: region or service missing or malformed");
  if (!token_ok(r->method, false))
    return kyb_error_set(err, EINVAL, "SigV4: the method is missing or malformed");
  if ((r->path && (strlen(r->path) > SIGV4_FIELD_MAX || has_ctl(r->path, false))) ||
      (r->query && (strlen(r->query) > SIGV4_FIELD_MAX || has_ctl(r->query, false))))
    return kyb_error_set(err, EINVAL, "SigV4: path or query too long or with control characters");
  if (r->payload_hash && !hash_ok(r->payload_hash))
    return kyb_error_set(err, EINVAL, "SigV4: payload hash \"%.80s\" is not a sha256 hex digest",
                         r->payload_hash);
  if (r->nheaders > SIGV4_MAX_HEADERS)
    return kyb_error_set(err, EINVAL, "SigV4: more than %u headers", SIGV4_MAX_HEADERS);
  for (size_t i = 0; i < r->nheaders; i++) {
    const kyb_sigv4_header *h = &r->headers[i];
    if (!token_ok(h->name, false) || h->value == NULL || strlen(h->value) > SIGV4_FIELD_MAX ||
        has_ctl(h->value, true))
      return kyb_error_set(err, EINVAL, "SigV4: header \"%.80s\" is malformed",
                           h->name ? h->name : "(null)");
  }
  return 0;
}

/* Canonical headers (sorted) from the caller's plus the signer's own. */
static int collect_headers(const kyb_sigv4_creds *c, const kyb_sigv4_request *r,
                           const char *amz_date, const char *payload, bool send_payload_hash,
                           hdr **out, size_t *n, kyb_error **err) {
  hdr *h = calloc(r->nheaders + 3, sizeof(*h));
  if (h == NULL)
    return kyb_error_set(err, ENOMEM, "SigV4");
  bool host = false;
  for (size_t i = 0; i < r->nheaders; i++) {
    const char *name = r->headers[i].name;
    if (reserved_name(name)) {
      kyb_error_set(err, EINVAL, "SigV4: header %s is the signer's own: do not pass it", name);
      free_hdrs(h, *n);
      return -1;
    }
    host = host || strcasecmp(name, "host") == 0;
    if (add_hdr(h, n, name, r->headers[i].value) < 0) {
      free_hdrs(h, *n);
      return kyb_error_set(err, ENOMEM, "SigV4");
    }
  }
  if (!host) {
    free_hdrs(h, *n);
    return kyb_error_set(err, EINVAL, "SigV4: the host header must be signed");
  }
  int rc = add_hdr(h, n, "x-amz-date", amz_date);
  if (rc == 0 && send_payload_hash)
    rc = add_hdr(h, n, "x-amz-content-sha256", payload);
  if (rc == 0 && c->session_token && *c->session_token)
    rc = add_hdr(h, n, "x-amz-security-token", c->session_token);
  if (rc < 0) {
    free_hdrs(h, *n);
    return kyb_error_set(err, ENOMEM, "SigV4");
  }
  qsort(h, *n, sizeof(*h), cmp_hdr);
  *out = h;
  return 0;
}

static void sign_with_key(const char *secret, const char *date8, const char *region,
                          const char *service, const char *sts, char sig[65]) {
  cleanup_free char *k0 = NULL;
  unsigned char kd[32], kr[32], ks[32], kk[32], s[32];
  if (asprintf(&k0, "AWS4%s", secret) < 0) {
    sig[0] = '\0';
    return;
  }
  hmac(k0, strlen(k0), date8, kd);
  hmac(kd, 32, region, kr);
  hmac(kr, 32, service, ks);
  hmac(ks, 32, "aws4_request", kk);
  hmac(kk, 32, sts, s);
  to_hex(s, 32, sig);
  /* the derived keys are as good as the secret for this day, region and service */
  OPENSSL_cleanse(k0, strlen(k0));
  OPENSSL_cleanse(kd, sizeof(kd));
  OPENSSL_cleanse(kr, sizeof(kr));
  OPENSSL_cleanse(ks, sizeof(ks));
  OPENSSL_cleanse(kk, sizeof(kk));
}

/* The lines the caller sends: X-Amz-Date, x-amz-content-sha256,
 * X-Amz-Security-Token (each when signed), Authorization. */
static int result_headers(const kyb_sigv4_creds *c, bool send_payload_hash, const char *payload,
                          kyb_sigv4_result *out) {
  char **v = calloc(5, sizeof(*v));
  if (v == NULL)
    return -1;
  size_t n = 0;
  int rc = asprintf(&v[n++], "X-Amz-Date: %s", out->amz_date);
  if (rc >= 0 && send_payload_hash)
    rc = asprintf(&v[n++], "x-amz-content-sha256: %s", payload);
  if (rc >= 0 && c->session_token && *c->session_token)
    rc = asprintf(&v[n++], "X-Amz-Security-Token: %s", c->session_token);
  if (rc >= 0)
    rc = asprintf(&v[n++], "Authorization: %s", out->authorization);
  if (rc < 0) {
    v[n - 1] = NULL;
    kyb_strvp(&v);
    return -1;
  }
  out->headers = v;
  return 0;
}

int kyb_sigv4_sign(const kyb_sigv4_creds *creds, const kyb_sigv4_request *req,
                   kyb_sigv4_result *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  if (check_request(creds, req, err) < 0)
    return -1;
  struct tm tm;
  if (gmtime_r(&req->when, &tm) == NULL ||
      strftime(out->amz_date, sizeof(out->amz_date), "%Y%m%dT%H%M%SZ", &tm) != 16)
    return kyb_error_set(err, EINVAL, "SigV4: signing time out of range");
  char date8[9];
  memcpy(date8, out->amz_date, 8);
  date8[8] = '\0';
  const char *payload = req->payload_hash ? req->payload_hash : KYB_SIGV4_EMPTY_SHA256;
  bool send_payload_hash = req->s3 || req->sign_content_sha256;

  hdr *h = NULL;
  size_t nh = 0;
  if (collect_headers(creds, req, out->amz_date, payload, send_payload_hash, &h, &nh, err) < 0)
    return -1;
  if (h == NULL) /* collect_headers always yields host and x-amz-date; for the analyzer */
    return kyb_error_set(err, EINVAL, "SigV4: no headers to sign");
  sbuf cr = {0}, signed_hdrs = {0};
  sb_str(&cr, req->method);
  sb_ch(&cr, '\n');
  int rc = canonical_uri(req, &cr);
  sb_ch(&cr, '\n');
  if (rc == 0)
    rc = canonical_query(req->query, &cr);
  sb_ch(&cr, '\n');
  for (size_t i = 0; i < nh; i++) {
    sb_str(&cr, h[i].name);
    sb_ch(&cr, ':');
    sb_str(&cr, h[i].value);
    sb_ch(&cr, '\n');
    if (i)
      sb_ch(&signed_hdrs, ';');
    sb_str(&signed_hdrs, h[i].name);
  }
  free_hdrs(h, nh);
  sb_ch(&cr, '\n');
  sb_str(&cr, signed_hdrs.s ? signed_hdrs.s : "");
  sb_ch(&cr, '\n');
  sb_str(&cr, payload);
  if (rc < 0 || cr.oom || signed_hdrs.oom) {
    free(cr.s);
    free(signed_hdrs.s);
    return kyb_error_set(err, ENOMEM, "SigV4");
  }
  out->canonical_request = cr.s;

  char crhash[65];
  kyb_sigv4_sha256_hex(cr.s, cr.len, crhash);
  int r1 = asprintf(&out->string_to_sign, KYB_SIGV4_ALGORITHM "\n%s\n%s/%s/%s/aws4_request\n%s",
                    out->amz_date, date8, req->region, req->service, crhash);
  if (r1 < 0)
    out->string_to_sign = NULL;
  if (out->string_to_sign != NULL)
    sign_with_key(creds->secret_access_key, date8, req->region, req->service, out->string_to_sign,
                  out->signature);
  int r2 = out->string_to_sign == NULL || out->signature[0] == '\0'
               ? -1
               : asprintf(&out->authorization,
                          KYB_SIGV4_ALGORITHM " Credential=%s/%s/%s/%s/aws4_request, "
                                              "SignedHeaders=%s, Signature=%s",
                          creds->access_key_id, date8, req->region, req->service, signed_hdrs.s,
                          out->signature);
  free(signed_hdrs.s);
  if (r2 < 0) {
    out->authorization = NULL;
    kyb_sigv4_result_clear(out);
    return kyb_error_set(err, ENOMEM, "SigV4");
  }
  if (result_headers(creds, send_payload_hash, payload, out) < 0) {
    kyb_sigv4_result_clear(out);
    return kyb_error_set(err, ENOMEM, "SigV4");
  }
  return 0;
}

void kyb_sigv4_result_clear(kyb_sigv4_result *r) {
  if (r == NULL)
    return;
  free(r->authorization);
  kyb_strvp(&r->headers);
  free(r->canonical_request);
  free(r->string_to_sign);
  memset(r, 0, sizeof(*r));
}
