/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small S3 REST client: path-style requests (<endpoint>/<bucket>/<key>)
 * signed with SigV4 (every body's sha256 signed; nothing is sent as
 * UNSIGNED-PAYLOAD), sent through lib/store/http.c (retries, backoff), and
 * the XML answers it needs scanned with bounds.  S3's error documents
 * become errors that name the operation, the object, S3's code and message,
 * and for 403 where the credentials came from.
 */
#define KYB_LOG_MODULE "s3"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/s3.h"
#include "store/sigv4.h"
#include "util/cleanup.h"
#include "util/log.h"

#define XML_BODY_MAX (8u << 20)
#define LIST_MAX_ENTRIES 4000000u
#define LIST_MAX_PAGES 10000

struct kyb_s3 {
  kyb_http *http;
  char *endpoint;
  char *host; /* the Host header's value */
  char *region;
  char *bucket;
  char *access_key_id;
  char *secret_access_key;
  char *session_token;
  char *creds_source;
  uint64_t copy_max; /* one CopyObject up to this; multipart copy in parts of it above */
};

/* ---- XML -------------------------------------------------------------------- */

bool kyb_s3_xml_find(const char *p, const char *end, const char *tag, const char **cs,
                     const char **ce) {
  size_t tl = strlen(tag);
  while (p < end) {
    const char *lt = memchr(p, '<', (size_t)(end - p));
    if (lt == NULL || (size_t)(end - lt) < tl + 2)
      return false;
    const char *a = lt + 1 + tl;
    if (memcmp(lt + 1, tag, tl) == 0 && (*a == '>' || *a == ' ' || *a == '/')) {
      const char *gt = memchr(a, '>', (size_t)(end - a));
      if (gt == NULL)
        return false;
      if (gt[-1] == '/') { /* <tag/> */
        *cs = *ce = gt + 1;
        return true;
      }
      const char *c = gt + 1;
      for (const char *q = c; q < end;) {
        const char *close = memchr(q, '<', (size_t)(end - q));
        if (close == NULL || (size_t)(end - close) < tl + 3)
          return false;
        if (close[1] == '/' && memcmp(close + 2, tag, tl) == 0 && close[2 + tl] == '>') {
          *cs = c;
          *ce = close;
          return true;
        }
        q = close + 1;
      }
      return false;
    }
    p = lt + 1;
  }
  return false;
}

static int put_utf8(char *o, unsigned long cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xc0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xe0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (char)(0xf0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
  o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

char *kyb_s3_xml_text(const char *cs, const char *ce) {
  size_t n = (size_t)(ce - cs);
  char *o = malloc(n + 1);
  if (o == NULL)
    return NULL;
  size_t k = 0;
  for (const char *p = cs; p < ce; p++) {
    if (*p == '\0')
      goto bad;
    if (*p != '&') {
      o[k++] = *p;
      continue;
    }
    const char *semi = memchr(p, ';', (size_t)(ce - p));
    if (semi == NULL || semi - p > 10)
      goto bad;
    size_t el = (size_t)(semi - p - 1);
    const char *e = p + 1;
    static const struct {
      const char *name;
      char c;
    } ents[] = {{"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}};
    bool done = false;
    for (size_t i = 0; i < sizeof(ents) / sizeof(ents[0]); i++)
      if (strlen(ents[i].name) == el && memcmp(e, ents[i].name, el) == 0) {
        o[k++] = ents[i].c;
        done = true;
      }
    if (!done) {
      if (el < 2 || e[0] != '#')
        goto bad;
      bool hex = e[1] == 'x';
      char num[12] = {0};
      memcpy(num, e + 1 + hex, el - 1 - hex);
      char *end = NULL;
      unsigned long cp = strtoul(num, &end, hex ? 16 : 10);
      /* a numeric reference never expands beyond the 4-byte UTF-8 it
       * stands for, and the reference itself is at least 4 bytes long */
      if (num[0] == '\0' || *end != '\0' || cp == 0 || cp > 0x10ffff)
        goto bad;
      k += (size_t)put_utf8(o + k, cp);
    }
    p = semi;
  }
  o[k] = '\0';
  return o;
bad:
  free(o);
  return NULL;
}

time_t kyb_s3_parse_time(const char *s) {
  struct tm tm = {0};
  char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (end == NULL)
    return -1;
  if (*end == '.')
    for (end++; *end >= '0' && *end <= '9'; end++)
      ;
  if (strcmp(end, "Z") != 0 && strcmp(end, "+00:00") != 0)
    return -1;
  return timegm(&tm);
}

/* The decoded text of the first <tag> in the body, or NULL. */
static char *xml_get(const char *body, size_t len, const char *tag) {
  const char *cs, *ce;
  if (body == NULL || !kyb_s3_xml_find(body, body + len, tag, &cs, &ce))
    return NULL;
  return kyb_s3_xml_text(cs, ce);
}

/* ---- client ----------------------------------------------------------------- */

int kyb_s3_new(const kyb_s3_config *cfg, const char *bucket, kyb_s3 **out, kyb_error **err) {
  kyb_s3 *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return kyb_error_set(err, ENOMEM, "S3 client");
  const char *auth = strstr(cfg->endpoint, "://") + 3;
  bool https = strncmp(cfg->endpoint, "https://", 8) == 0;
  size_t hl = strlen(auth);
  /* curl leaves the default port out of Host; so must the signature */
  if ((!https && hl > 3 && strcmp(auth + hl - 3, ":80") == 0) ||
      (https && hl > 4 && strcmp(auth + hl - 4, ":443") == 0))
    hl = (size_t)(strrchr(auth, ':') - auth);
  s->endpoint = strdup(cfg->endpoint);
  s->host = strndup(auth, hl);
  s->region = strdup(cfg->region);
  s->bucket = strdup(bucket);
  s->access_key_id = strdup(cfg->access_key_id);
  s->secret_access_key = strdup(cfg->secret_access_key);
  s->session_token = cfg->session_token ? strdup(cfg->session_token) : NULL;
  s->creds_source = strdup(cfg->creds_source ? cfg->creds_source : "?");
  if (!s->endpoint || !s->host || !s->region || !s->bucket || !s->access_key_id ||
      !s->secret_access_key || !s->creds_source || (cfg->session_token && !s->session_token)) {
    kyb_s3_free(s);
    return kyb_error_set(err, ENOMEM, "S3 client");
  }
  s->copy_max = cfg->copy_max ? cfg->copy_max : KYB_S3_COPY_MAX;
  if (kyb_http_new(NULL, &s->http, err) < 0) {
    kyb_s3_free(s);
    return -1;
  }
  *out = s;
  return 0;
}

void kyb_s3_free(kyb_s3 *s) {
  if (s == NULL)
    return;
  kyb_http_free(s->http);
  free(s->endpoint);
  free(s->host);
  free(s->region);
  free(s->bucket);
  free(s->access_key_id);
  if (s->secret_access_key) {
    memset(s->secret_access_key, 0, strlen(s->secret_access_key));
    free(s->secret_access_key);
  }
  free(s->session_token);
  free(s->creds_source);
  free(s);
}

const char *kyb_s3_bucket(const kyb_s3 *s) {
  return s->bucket;
}

void kyb_s3_set_abort(kyb_s3 *s, kyb_http_abort_fn fn, void *ud) {
  kyb_http_set_abort(s->http, fn, ud);
}

void kyb_s3_objects_free(kyb_s3_object *v, size_t n) {
  for (size_t i = 0; v != NULL && i < n; i++)
    free(v[i].key);
  free(v);
}

void kyb_s3_uploads_free(kyb_s3_upload *v, size_t n) {
  for (size_t i = 0; v != NULL && i < n; i++) {
    free(v[i].key);
    free(v[i].upload_id);
  }
  free(v);
}

typedef struct {
  const char *method;
  const char *key;   /* NULL: the bucket itself */
  const char *query; /* encoded, or NULL */
  const kyb_sigv4_header *hdrs;
  size_t nhdrs;
  const void *body;
  size_t body_len;
  kyb_http_write_fn write;
  void *write_ud;
  size_t max_body;
  const char *what; /* e.g. "upload part 3" */
} s3_call;

/* An error for a response S3 refused: its <Code> and <Message>. */
static int s3_status_error(kyb_s3 *s, const s3_call *c, const kyb_http_resp *rs, kyb_error **err) {
  cleanup_free char *code = xml_get(rs->body, rs->body_len, "Code");
  cleanup_free char *msg = xml_get(rs->body, rs->body_len, "Message");
  /* printable ASCII only, bounded: the text goes into logs */
  for (char *p = msg; p && *p; p++)
    if (*p < 0x20 || *p >= 0x7f)
      *p = '?';
  for (char *p = code; p && *p; p++)
    if (*p < 0x20 || *p >= 0x7f)
      *p = '?';
  int e = kyb_http_status_errno(rs->status);
  bool auth = rs->status == 401 || rs->status == 403;
  return kyb_error_set(err, e, "S3 %s s3://%s/%s: HTTP %ld%s%.100s%s%.300s%s%s%s", c->what,
                       s->bucket, c->key ? c->key : "", rs->status, code ? " " : "",
                       code ? code : "", msg ? ": " : "", msg ? msg : "",
                       auth ? " (credentials: " : "", auth ? s->creds_source : "", auth ? ")" : "");
}

/* Sends one signed request; *rs holds the answer whatever its status. */
static int s3_send(kyb_s3 *s, const s3_call *c, kyb_http_resp *rs, kyb_error **err) {
  cleanup_free char *ekey = c->key ? kyb_sigv4_uri_encode(c->key, strlen(c->key), true) : NULL;
  cleanup_free char *path = NULL, *url = NULL;
  if ((c->key && ekey == NULL) ||
      asprintf(&path, "/%s%s%s", s->bucket, c->key ? "/" : "", c->key ? ekey : "") < 0 ||
      asprintf(&url, "%s%s%s%s", s->endpoint, path, c->query ? "?" : "", c->query ? c->query : "") <
          0)
    return kyb_error_set(err, ENOMEM, "S3 request");
  char hash[65];
  kyb_sigv4_sha256_hex(c->body ? c->body : "", c->body ? c->body_len : 0, hash);
  kyb_sigv4_header hs[8] = {{"Host", s->host}};
  if (c->nhdrs > 7)
    return kyb_error_set(err, EINVAL, "S3 request: too many headers");
  for (size_t i = 0; i < c->nhdrs; i++)
    hs[1 + i] = c->hdrs[i];
  kyb_sigv4_creds creds = {s->access_key_id, s->secret_access_key, s->session_token};
  kyb_sigv4_request sq = {.method = c->method,
                          .path = path,
                          .query = c->query,
                          .headers = hs,
                          .nheaders = 1 + c->nhdrs,
                          .payload_hash = hash,
                          .region = s->region,
                          .service = "s3",
                          .s3 = true,
                          .when = time(NULL)};
  kyb_sigv4_result sr = {0};
  if (kyb_sigv4_sign(&creds, &sq, &sr, err) < 0)
    return kyb_error_wrap(err, "S3 %s", c->what);
  /* the header lines: ours as signed, then the signer's */
  char *lines[16] = {0};
  size_t nl = 0;
  int rc = 0;
  for (size_t i = 0; i < 1 + c->nhdrs && rc >= 0; i++)
    rc = asprintf(&lines[nl++], "%s: %s", hs[i].name, hs[i].value);
  for (size_t i = 0; rc >= 0 && sr.headers[i] != NULL; i++)
    lines[nl++] = strdup(sr.headers[i]);
  kyb_sigv4_result_clear(&sr);
  for (size_t i = 0; i < nl; i++)
    if (lines[i] == NULL)
      rc = -1;
  if (rc < 0) {
    for (size_t i = 0; i < nl; i++)
      free(lines[i]);
    return kyb_error_set(err, ENOMEM, "S3 request");
  }
  cleanup_free char *what = NULL;
  if (asprintf(&what, "S3 %s", c->what) < 0)
    what = NULL;
  kyb_http_req hr = {.method = c->method,
                     .url = url,
                     .headers = (const char *const *)lines,
                     .body = c->body,
                     .body_len = c->body_len,
                     .write = c->write,
                     .write_ud = c->write_ud,
                     .max_body = c->max_body ? c->max_body : XML_BODY_MAX,
                     .what = what ? what : c->what};
  log_debug("%s %s s3://%s/%s", c->method, c->what, s->bucket, c->key ? c->key : "");
  int r = kyb_http_do(s->http, &hr, rs, err);
  for (size_t i = 0; i < nl; i++)
    free(lines[i]);
  return r;
}

/* s3_send, and any status other than 2xx (or `ok_status`) an error. */
static int s3_call_ok(kyb_s3 *s, const s3_call *c, long ok_status, kyb_http_resp *rs,
                      kyb_error **err) {
  if (s3_send(s, c, rs, err) < 0)
    return -1;
  if ((rs->status >= 200 && rs->status < 300) || rs->status == ok_status)
    return 0;
  return s3_status_error(s, c, rs, err);
}

int kyb_s3_put(kyb_s3 *s, const char *key, const void *data, size_t len, bool if_none_match,
               kyb_error **err) {
  kyb_sigv4_header h[] = {{"If-None-Match", "*"}};
  s3_call c = {.method = "PUT",
               .key = key,
               .hdrs = h,
               .nhdrs = if_none_match ? 1 : 0,
               .body = data ? data : "",
               .body_len = len,
               .what = "put"};
  kyb_http_resp rs = {0};
  int r = s3_send(s, &c, &rs, err);
  if (r == 0 && (rs.status == 412 || (if_none_match && rs.status == 409)))
    r = kyb_error_set(err, EEXIST, "S3 put s3://%s/%s: the object exists already", s->bucket, key);
  else if (r == 0 && (rs.status < 200 || rs.status >= 300))
    r = s3_status_error(s, &c, &rs, err);
  kyb_http_resp_clear(&rs);
  return r;
}

int kyb_s3_get(kyb_s3 *s, const char *key, kyb_http_write_fn sink, void *ud, kyb_error **err) {
  s3_call c = {.method = "GET", .key = key, .write = sink, .write_ud = ud, .what = "get"};
  kyb_http_resp rs = {0};
  int r = s3_call_ok(s, &c, 0, &rs, err);
  kyb_http_resp_clear(&rs);
  return r;
}

int kyb_s3_get_small(kyb_s3 *s, const char *key, size_t max, char **out, size_t *len,
                     kyb_error **err) {
  s3_call c = {.method = "GET", .key = key, .max_body = max, .what = "get"};
  kyb_http_resp rs = {0};
  if (s3_call_ok(s, &c, 0, &rs, err) < 0) {
    kyb_http_resp_clear(&rs);
    return -1;
  }
  *out = rs.body ? rs.body : strdup("");
  *len = rs.body_len;
  rs.body = NULL;
  kyb_http_resp_clear(&rs);
  return *out ? 0 : kyb_error_set(err, ENOMEM, "S3 get");
}

int kyb_s3_head(kyb_s3 *s, const char *key, bool *exists, uint64_t *size, kyb_error **err) {
  s3_call c = {.method = "HEAD", .key = key, .what = "head"};
  kyb_http_resp rs = {0};
  if (s3_send(s, &c, &rs, err) < 0)
    return -1;
  int r = 0;
  *exists = rs.status >= 200 && rs.status < 300;
  if (*exists && size != NULL) {
    const char *cl = kyb_http_resp_header(&rs, "Content-Length");
    char *end = NULL;
    *size = cl ? strtoull(cl, &end, 10) : 0;
  } else if (!*exists && rs.status != 404) {
    r = s3_status_error(s, &c, &rs, err);
  }
  kyb_http_resp_clear(&rs);
  return r;
}

int kyb_s3_delete(kyb_s3 *s, const char *key, kyb_error **err) {
  s3_call c = {.method = "DELETE", .key = key, .what = "delete"};
  kyb_http_resp rs = {0};
  int r = s3_call_ok(s, &c, 404, &rs, err);
  kyb_http_resp_clear(&rs);
  return r;
}

static char *enc(const char *v) {
  return v ? kyb_sigv4_uri_encode(v, strlen(v), false) : NULL;
}

/* Appends to a growing array of elements of `size` bytes. */
static void *grow(void *v, size_t n, size_t *cap, size_t size) {
  if (n < *cap)
    return v;
  size_t nc = *cap ? *cap * 2 : 64;
  void *nv = realloc(v, nc * size);
  if (nv != NULL)
    *cap = nc;
  return nv;
}

void kyb_s3_list_acc_clear(kyb_s3_list_acc *a) {
  kyb_s3_objects_free(a->objs, a->nobjs);
  for (size_t i = 0; i < a->npre; i++)
    free(a->prefixes[i]);
  free(a->prefixes);
  memset(a, 0, sizeof(*a));
}

int kyb_s3_list_page(const char *b, size_t len, kyb_s3_list_acc *a, kyb_error **err) {
  const char *p = b, *end = b + len, *cs, *ce;
  while (kyb_s3_xml_find(p, end, "Contents", &cs, &ce)) {
    p = ce;
    cleanup_free char *key = xml_get(cs, (size_t)(ce - cs), "Key");
    cleanup_free char *size = xml_get(cs, (size_t)(ce - cs), "Size");
    cleanup_free char *mod = xml_get(cs, (size_t)(ce - cs), "LastModified");
    if (key == NULL || size == NULL)
      return kyb_error_set(err, EPROTO, "S3 list: an entry without Key or Size");
    if (a->nobjs >= LIST_MAX_ENTRIES)
      return kyb_error_set(err, EFBIG, "S3 list: more than %u objects", LIST_MAX_ENTRIES);
    kyb_s3_object *nv = grow(a->objs, a->nobjs, &a->capo, sizeof(*nv));
    if (nv == NULL)
      return kyb_error_set(err, ENOMEM, "S3 list");
    a->objs = nv;
    char *e = NULL;
    a->objs[a->nobjs].size = strtoull(size, &e, 10);
    a->objs[a->nobjs].mtime = mod ? kyb_s3_parse_time(mod) : -1;
    a->objs[a->nobjs].key = steal_ptr(key);
    a->nobjs++;
  }
  p = b;
  while (kyb_s3_xml_find(p, end, "CommonPrefixes", &cs, &ce)) {
    p = ce;
    cleanup_free char *pre = xml_get(cs, (size_t)(ce - cs), "Prefix");
    if (pre == NULL)
      return kyb_error_set(err, EPROTO, "S3 list: a common prefix without Prefix");
    if (a->npre >= LIST_MAX_ENTRIES)
      return kyb_error_set(err, EFBIG, "S3 list: more than %u prefixes", LIST_MAX_ENTRIES);
    char **nv = grow(a->prefixes, a->npre, &a->capp, sizeof(*nv));
    if (nv == NULL)
      return kyb_error_set(err, ENOMEM, "S3 list");
    a->prefixes = nv;
    a->prefixes[a->npre++] = steal_ptr(pre);
  }
  return 0;
}

int kyb_s3_list(kyb_s3 *s, const char *prefix, const char *delimiter, kyb_s3_object **objs,
                size_t *nobjs, char ***prefixes, size_t *nprefixes, kyb_error **err) {
  kyb_s3_list_acc a = {0};
  cleanup_free char *token = NULL;
  cleanup_free char *ep = enc(prefix), *ed = delimiter ? enc(delimiter) : NULL;
  int r = (ep == NULL || (delimiter && ed == NULL)) ? kyb_error_set(err, ENOMEM, "S3 list") : 0;
  for (int page = 0; r == 0; page++) {
    if (page >= LIST_MAX_PAGES) {
      r = kyb_error_set(err, EFBIG, "S3 list: more than %d pages", LIST_MAX_PAGES);
      break;
    }
    cleanup_free char *et = token ? enc(token) : NULL;
    cleanup_free char *q = NULL;
    if (asprintf(&q, "list-type=2&prefix=%s%s%s%s%s", ep, ed ? "&delimiter=" : "", ed ? ed : "",
                 et ? "&continuation-token=" : "", et ? et : "") < 0) {
      r = kyb_error_set(err, ENOMEM, "S3 list");
      break;
    }
    s3_call c = {.method = "GET", .query = q, .what = "list"};
    kyb_http_resp rs = {0};
    r = s3_call_ok(s, &c, 0, &rs, err);
    if (r == 0)
      r = kyb_s3_list_page(rs.body, rs.body_len, &a, err);
    cleanup_free char *trunc = r == 0 ? xml_get(rs.body, rs.body_len, "IsTruncated") : NULL;
    free(token);
    token = (trunc && strcmp(trunc, "true") == 0)
                ? xml_get(rs.body, rs.body_len, "NextContinuationToken")
                : NULL;
    kyb_http_resp_clear(&rs);
    if (r == 0 && trunc && strcmp(trunc, "true") == 0 && (token == NULL || *token == '\0'))
      r = kyb_error_set(err, EPROTO, "S3 list: truncated page without a continuation token");
    if (r < 0 || token == NULL)
      break;
  }
  if (r < 0) {
    kyb_s3_list_acc_clear(&a);
    return kyb_error_wrap(err, "list s3://%s/%s", s->bucket, prefix);
  }
  *objs = a.objs;
  *nobjs = a.nobjs;
  if (prefixes != NULL) {
    *prefixes = a.prefixes;
    *nprefixes = a.npre;
  } else {
    for (size_t i = 0; i < a.npre; i++)
      free(a.prefixes[i]);
    free(a.prefixes);
  }
  return 0;
}

/* "/bucket/key" encoded, for x-amz-copy-source. */
static char *copy_source(kyb_s3 *s, const char *key) {
  cleanup_free char *ek = kyb_sigv4_uri_encode(key, strlen(key), true);
  char *v = NULL;
  if (ek == NULL || asprintf(&v, "/%s/%s", s->bucket, ek) < 0)
    return NULL;
  return v;
}

/* A 200 answer may still carry an <Error> document (CopyObject,
 * UploadPartCopy, CompleteMultipartUpload fail that way once the response
 * has started); a 200 without one is success. */
static int check_result(kyb_s3 *s, const s3_call *c, kyb_http_resp *rs, kyb_error **err) {
  const char *cs, *ce;
  if (rs->body == NULL || !kyb_s3_xml_find(rs->body, rs->body + rs->body_len, "Error", &cs, &ce))
    return 0;
  rs->status = 500;
  return s3_status_error(s, c, rs, err);
}

static int mpu_part_copy(kyb_s3 *s, const char *dst, const char *id, int part, const char *src,
                         uint64_t first, uint64_t last, char **etag, kyb_error **err) {
  cleanup_free char *cs = copy_source(s, src);
  cleanup_free char *eid = enc(id);
  cleanup_free char *q = NULL;
  char range[64];
  snprintf(range, sizeof(range), "bytes=%llu-%llu", (unsigned long long)first,
           (unsigned long long)last);
  if (cs == NULL || eid == NULL || asprintf(&q, "partNumber=%d&uploadId=%s", part, eid) < 0)
    return kyb_error_set(err, ENOMEM, "S3 copy");
  kyb_sigv4_header h[] = {{"x-amz-copy-source", cs}, {"x-amz-copy-source-range", range}};
  s3_call c = {.method = "PUT", .key = dst, .query = q, .hdrs = h, .nhdrs = 2, .what = "copy part"};
  kyb_http_resp rs = {0};
  int r = s3_call_ok(s, &c, 0, &rs, err);
  if (r == 0)
    r = check_result(s, &c, &rs, err);
  if (r == 0 && (*etag = xml_get(rs.body, rs.body_len, "ETag")) == NULL)
    r = kyb_error_set(err, EPROTO, "S3 copy part: no ETag in the answer");
  kyb_http_resp_clear(&rs);
  return r;
}

int kyb_s3_copy(kyb_s3 *s, const char *src_key, uint64_t size, const char *dst_key,
                kyb_error **err) {
  if (size <= s->copy_max) {
    cleanup_free char *cs = copy_source(s, src_key);
    if (cs == NULL)
      return kyb_error_set(err, ENOMEM, "S3 copy");
    kyb_sigv4_header h[] = {{"x-amz-copy-source", cs}};
    s3_call c = {.method = "PUT", .key = dst_key, .hdrs = h, .nhdrs = 1, .what = "copy"};
    kyb_http_resp rs = {0};
    int r = s3_call_ok(s, &c, 0, &rs, err);
    if (r == 0)
      r = check_result(s, &c, &rs, err);
    kyb_http_resp_clear(&rs);
    return r;
  }
  /* larger than one CopyObject may be: a multipart copy in ranges */
  const uint64_t chunk = s->copy_max < (4ull << 30) ? s->copy_max : 4ull << 30;
  int nparts = (int)((size + chunk - 1) / chunk);
  cleanup_free char *id = NULL;
  if (kyb_s3_mpu_create(s, dst_key, &id, err) < 0)
    return -1;
  char **etags = calloc((size_t)nparts, sizeof(*etags));
  if (etags == NULL) {
    cleanup_error kyb_error *e2 = NULL;
    if (kyb_s3_mpu_abort(s, dst_key, id, &e2) < 0)
      log_warn_chain(e2, "abort the multipart copy to s3://%s/%s", s->bucket, dst_key);
    return kyb_error_set(err, ENOMEM, "S3 copy");
  }
  int r = 0;
  for (int i = 0; r == 0 && i < nparts; i++) {
    uint64_t first = (uint64_t)i * chunk;
    uint64_t last = first + chunk > size ? size - 1 : first + chunk - 1;
    r = mpu_part_copy(s, dst_key, id, i + 1, src_key, first, last, &etags[i], err);
  }
  if (r == 0)
    r = kyb_s3_mpu_complete(s, dst_key, id, etags, nparts, err);
  if (r < 0) {
    cleanup_error kyb_error *e2 = NULL;
    if (kyb_s3_mpu_abort(s, dst_key, id, &e2) < 0)
      log_warn_chain(e2, "abort the multipart copy to s3://%s/%s", s->bucket, dst_key);
  }
  for (int i = 0; i < nparts; i++)
    free(etags[i]);
  free(etags);
  return r;
}

int kyb_s3_mpu_create(kyb_s3 *s, const char *key, char **upload_id, kyb_error **err) {
  *upload_id = NULL;
  s3_call c = {.method = "POST", .key = key, .query = "uploads", .what = "create multipart upload"};
  kyb_http_resp rs = {0};
  int r = s3_call_ok(s, &c, 0, &rs, err);
  if (r == 0) {
    *upload_id = xml_get(rs.body, rs.body_len, "UploadId");
    if (*upload_id == NULL || **upload_id == '\0' || strlen(*upload_id) > 1024) {
      free(*upload_id);
      *upload_id = NULL;
      r = kyb_error_set(err, EPROTO, "S3 create multipart upload of s3://%s/%s: no UploadId",
                        s->bucket, key);
    }
  }
  kyb_http_resp_clear(&rs);
  return r;
}

int kyb_s3_mpu_part(kyb_s3 *s, const char *key, const char *upload_id, int part, const void *data,
                    size_t len, char **etag, kyb_error **err) {
  cleanup_free char *eid = enc(upload_id);
  cleanup_free char *q = NULL;
  char what[48];
  snprintf(what, sizeof(what), "upload part %d", part);
  if (eid == NULL || asprintf(&q, "partNumber=%d&uploadId=%s", part, eid) < 0)
    return kyb_error_set(err, ENOMEM, "S3 upload part");
  s3_call c = {
      .method = "PUT", .key = key, .query = q, .body = data, .body_len = len, .what = what};
  kyb_http_resp rs = {0};
  int r = s3_call_ok(s, &c, 0, &rs, err);
  if (r == 0) {
    const char *et = kyb_http_resp_header(&rs, "ETag");
    if (et == NULL || *et == '\0' || strlen(et) > 256 || strpbrk(et, "<>&") != NULL)
      r = kyb_error_set(err, EPROTO, "S3 %s of s3://%s/%s: no usable ETag", what, s->bucket, key);
    else if ((*etag = strdup(et)) == NULL)
      r = kyb_error_set(err, ENOMEM, "S3 upload part");
  }
  kyb_http_resp_clear(&rs);
  return r;
}

int kyb_s3_mpu_complete(kyb_s3 *s, const char *key, const char *upload_id, char *const *etags,
                        int nparts, kyb_error **err) {
  cleanup_free char *eid = enc(upload_id);
  cleanup_free char *q = NULL;
  if (eid == NULL || asprintf(&q, "uploadId=%s", eid) < 0)
    return kyb_error_set(err, ENOMEM, "S3 complete");
  size_t cap = 128 + (size_t)nparts * 360;
  cleanup_free char *body = malloc(cap);
  if (body == NULL)
    return kyb_error_set(err, ENOMEM, "S3 complete");
  size_t n = (size_t)snprintf(body, cap, "<CompleteMultipartUpload>");
  for (int i = 0; i < nparts; i++) {
    if (etags[i] == NULL || strpbrk(etags[i], "<>&") != NULL || strlen(etags[i]) > 256)
      return kyb_error_set(err, EPROTO, "S3 complete: malformed ETag of part %d", i + 1);
    n += (size_t)snprintf(body + n, cap - n,
                          "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>", i + 1,
                          etags[i]);
  }
  n += (size_t)snprintf(body + n, cap - n, "</CompleteMultipartUpload>");
  kyb_sigv4_header h[] = {{"Content-Type", "application/xml"}};
  s3_call c = {.method = "POST",
               .key = key,
               .query = q,
               .hdrs = h,
               .nhdrs = 1,
               .body = body,
               .body_len = n,
               .what = "complete multipart upload"};
  kyb_http_resp rs = {0};
  int r = s3_call_ok(s, &c, 0, &rs, err);
  if (r == 0)
    r = check_result(s, &c, &rs, err);
  kyb_http_resp_clear(&rs);
  return r;
}

int kyb_s3_mpu_abort(kyb_s3 *s, const char *key, const char *upload_id, kyb_error **err) {
  cleanup_free char *eid = enc(upload_id);
  cleanup_free char *q = NULL;
  if (eid == NULL || asprintf(&q, "uploadId=%s", eid) < 0)
    return kyb_error_set(err, ENOMEM, "S3 abort");
  s3_call c = {.method = "DELETE", .key = key, .query = q, .what = "abort multipart upload"};
  kyb_http_resp rs = {0};
  int r = s3_call_ok(s, &c, 404, &rs, err);
  kyb_http_resp_clear(&rs);
  return r;
}

int kyb_s3_uploads_page(const char *b, size_t len, kyb_s3_upload **v, size_t *n, size_t *cap,
                        kyb_error **err) {
  const char *p = b, *end = b + len, *cs, *ce;
  while (kyb_s3_xml_find(p, end, "Upload", &cs, &ce)) {
    p = ce;
    cleanup_free char *key = xml_get(cs, (size_t)(ce - cs), "Key");
    cleanup_free char *id = xml_get(cs, (size_t)(ce - cs), "UploadId");
    cleanup_free char *ini = xml_get(cs, (size_t)(ce - cs), "Initiated");
    if (key == NULL || id == NULL)
      continue;
    if (*n >= LIST_MAX_ENTRIES)
      return kyb_error_set(err, EFBIG, "S3 list uploads: too many");
    kyb_s3_upload *nv = grow(*v, *n, cap, sizeof(*nv));
    if (nv == NULL)
      return kyb_error_set(err, ENOMEM, "S3 list uploads");
    *v = nv;
    nv[*n].initiated = ini ? kyb_s3_parse_time(ini) : -1;
    nv[*n].key = steal_ptr(key);
    nv[*n].upload_id = steal_ptr(id);
    (*n)++;
  }
  return 0;
}

int kyb_s3_list_uploads(kyb_s3 *s, const char *prefix, kyb_s3_upload **out, size_t *n,
                        kyb_error **err) {
  kyb_s3_upload *v = NULL;
  size_t cnt = 0, cap = 0;
  cleanup_free char *ep = enc(prefix);
  cleanup_free char *km = NULL, *um = NULL;
  int r = ep ? 0 : kyb_error_set(err, ENOMEM, "S3 list uploads");
  for (int page = 0; r == 0 && page < LIST_MAX_PAGES; page++) {
    cleanup_free char *ek = km ? enc(km) : NULL, *eu = um ? enc(um) : NULL;
    cleanup_free char *q = NULL;
    if (asprintf(&q, "prefix=%s&uploads=%s%s%s%s", ep, ek ? "&key-marker=" : "", ek ? ek : "",
                 eu ? "&upload-id-marker=" : "", eu ? eu : "") < 0) {
      r = kyb_error_set(err, ENOMEM, "S3 list uploads");
      break;
    }
    s3_call c = {.method = "GET", .query = q, .what = "list multipart uploads"};
    kyb_http_resp rs = {0};
    r = s3_call_ok(s, &c, 0, &rs, err);
    if (r == 0)
      r = kyb_s3_uploads_page(rs.body, rs.body_len, &v, &cnt, &cap, err);
    cleanup_free char *trunc = r == 0 ? xml_get(rs.body, rs.body_len, "IsTruncated") : NULL;
    free(km);
    free(um);
    km = um = NULL;
    if (trunc && strcmp(trunc, "true") == 0) {
      km = xml_get(rs.body, rs.body_len, "NextKeyMarker");
      um = xml_get(rs.body, rs.body_len, "NextUploadIdMarker");
    }
    kyb_http_resp_clear(&rs);
    if (km == NULL)
      break;
  }
  if (r < 0) {
    kyb_s3_uploads_free(v, cnt);
    return -1;
  }
  *out = v;
  *n = cnt;
  return 0;
}
