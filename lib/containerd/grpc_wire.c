/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pure half of the gRPC transport: message framing, header/trailer
 * parsing, status names and the status -> errno mapping.  No I/O here, so
 * every rule of the wire format is unit-tested without a server
 * (tests/unit/test_grpc_wire.c).  See grpc.h for the contract.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "containerd/grpc.h"
#include "util/cleanup.h"

void kyb_grpc_frame_header(uint8_t out[KYB_GRPC_FRAME_HEADER], uint32_t len) {
  out[0] = 0; /* never compressed: we offer no grpc-encoding */
  out[1] = (uint8_t)(len >> 24);
  out[2] = (uint8_t)(len >> 16);
  out[3] = (uint8_t)(len >> 8);
  out[4] = (uint8_t)len;
}

int kyb_grpc_frame_encode(const uint8_t *msg, size_t len, size_t max_len, uint8_t **out,
                          size_t *out_len, kyb_error **err) {
  if (len > max_len || len > UINT32_MAX)
    return kyb_error_set(err, EMSGSIZE, "gRPC message of %zu bytes exceeds the limit of %zu", len,
                         max_len);
  uint8_t *buf = malloc(len + KYB_GRPC_FRAME_HEADER);
  if (buf == NULL)
    return kyb_error_set(err, ENOMEM, "gRPC frame of %zu bytes", len);
  kyb_grpc_frame_header(buf, (uint32_t)len);
  if (len > 0)
    memcpy(buf + KYB_GRPC_FRAME_HEADER, msg, len);
  *out = buf;
  *out_len = len + KYB_GRPC_FRAME_HEADER;
  return 0;
}

void kyb_grpc_decoder_init(kyb_grpc_decoder *d, size_t max_len) {
  memset(d, 0, sizeof(*d));
  d->max_len = max_len;
}

void kyb_grpc_decoder_clear(kyb_grpc_decoder *d) {
  free(d->buf);
  d->buf = NULL;
  d->hdr_have = 0;
  d->msg_have = 0;
  d->msg_len = 0;
}

/* Hands the finished message to the callback and resets for the next one.
 * A zero-length message is passed as a valid empty buffer, never NULL. */
static int deliver(kyb_grpc_decoder *d, kyb_grpc_message_fn on_message, void *ud, kyb_error **err) {
  static const uint8_t empty[1];
  const uint8_t *msg = d->buf != NULL ? d->buf : empty;
  int r = on_message(ud, msg, d->msg_len, err);
  free(d->buf);
  d->buf = NULL;
  d->hdr_have = 0;
  d->msg_have = 0;
  d->msg_len = 0;
  d->nmessages++;
  return r;
}

/* The prefix is complete: validate it before allocating anything, so a
 * hostile length never makes us reserve memory. */
static int start_message(kyb_grpc_decoder *d, kyb_error **err) {
  if (d->hdr[0] != 0)
    return kyb_error_set(err, EPROTO,
                         "gRPC reply message %zu is compressed (flag %u), which was never offered",
                         d->nmessages + 1, d->hdr[0]);
  uint32_t len = ((uint32_t)d->hdr[1] << 24) | ((uint32_t)d->hdr[2] << 16) |
                 ((uint32_t)d->hdr[3] << 8) | (uint32_t)d->hdr[4];
  if (len > d->max_len)
    return kyb_error_set(err, EMSGSIZE,
                         "gRPC reply message of %" PRIu32 " bytes exceeds the "
                         "limit of %zu",
                         len, d->max_len);
  d->msg_len = len;
  d->msg_have = 0;
  if (len > 0) {
    d->buf = malloc(len);
    if (d->buf == NULL)
      return kyb_error_set(err, ENOMEM, "gRPC reply message of %" PRIu32 " bytes", len);
  }
  return 0;
}

int kyb_grpc_decoder_feed(kyb_grpc_decoder *d, const uint8_t *data, size_t len,
                          kyb_grpc_message_fn on_message, void *ud, kyb_error **err) {
  while (len > 0) {
    if (d->hdr_have < KYB_GRPC_FRAME_HEADER) {
      size_t n = KYB_GRPC_FRAME_HEADER - d->hdr_have;
      if (n > len)
        n = len;
      memcpy(d->hdr + d->hdr_have, data, n);
      d->hdr_have += n;
      data += n;
      len -= n;
      if (d->hdr_have < KYB_GRPC_FRAME_HEADER)
        return 0;
      if (start_message(d, err) < 0)
        return -1;
    } else {
      size_t n = d->msg_len - d->msg_have;
      if (n > len)
        n = len;
      memcpy(d->buf + d->msg_have, data, n);
      d->msg_have += n;
      data += n;
      len -= n;
    }
    if (d->msg_have == d->msg_len && deliver(d, on_message, ud, err) < 0)
      return -1;
  }
  return 0;
}

int kyb_grpc_decoder_finish(const kyb_grpc_decoder *d, kyb_error **err) {
  if (d->hdr_have == 0)
    return 0;
  if (d->hdr_have < KYB_GRPC_FRAME_HEADER)
    return kyb_error_set(err, EPROTO, "gRPC reply ends inside a message prefix (%zu of 5 bytes)",
                         d->hdr_have);
  return kyb_error_set(err, EPROTO, "gRPC reply ends inside a message (%zu of %zu bytes)",
                       d->msg_have, d->msg_len);
}

typedef struct {
  uint8_t *msg;
  size_t len;
  bool have;
} unary_sink;

static int keep_first(void *ud, const uint8_t *msg, size_t len, kyb_error **err) {
  unary_sink *s = ud;
  if (s->have)
    return kyb_error_set(err, EPROTO, "gRPC unary reply carries more than one message");
  s->msg = malloc(len > 0 ? len : 1);
  if (s->msg == NULL)
    return kyb_error_set(err, ENOMEM, "gRPC reply message of %zu bytes", len);
  if (len > 0)
    memcpy(s->msg, msg, len);
  s->len = len;
  s->have = true;
  return 0;
}

int kyb_grpc_decode_unary(const uint8_t *body, size_t len, size_t max_len, uint8_t **out,
                          size_t *out_len, kyb_error **err) {
  kyb_grpc_decoder d;
  unary_sink sink = {0};
  kyb_grpc_decoder_init(&d, max_len);
  int r = kyb_grpc_decoder_feed(&d, body, len, keep_first, &sink, err);
  if (r == 0)
    r = kyb_grpc_decoder_finish(&d, err);
  kyb_grpc_decoder_clear(&d);
  if (r == 0 && !sink.have)
    r = kyb_error_set(err, EPROTO, "gRPC reply carries no message");
  if (r < 0) {
    free(sink.msg);
    return -1;
  }
  *out = sink.msg;
  *out_len = sink.len;
  return 0;
}

/* ---- headers and trailers ---- */

void kyb_grpc_meta_init(kyb_grpc_meta *m) {
  memset(m, 0, sizeof(*m));
  m->grpc_status = KYB_GRPC_NO_STATUS;
}

void kyb_grpc_meta_clear(kyb_grpc_meta *m) {
  free(m->grpc_message);
  kyb_grpc_meta_init(m);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = (char)tolower((unsigned char)c);
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

char *kyb_grpc_percent_decode(const char *in, size_t len) {
  char *out = malloc(len + 1);
  if (out == NULL)
    return NULL;
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    int hi = in[i] == '%' && i + 2 < len ? hexval(in[i + 1]) : -1;
    int lo = hi >= 0 ? hexval(in[i + 2]) : -1;
    if (lo >= 0) {
      out[o++] = (char)(hi << 4 | lo);
      i += 2;
    } else {
      out[o++] = in[i];
    }
  }
  out[o] = '\0';
  return out;
}

int kyb_grpc_parse_status(const char *s, size_t len) {
  if (len == 0 || len > 9)
    return -1;
  int v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

/* Strips the line ending and surrounding blanks curl leaves on header lines. */
static void trim(const char **s, size_t *len) {
  while (*len > 0 && (**s == ' ' || **s == '\t')) {
    (*s)++;
    (*len)--;
  }
  while (*len > 0 && ((*s)[*len - 1] == '\r' || (*s)[*len - 1] == '\n' || (*s)[*len - 1] == ' ' ||
                      (*s)[*len - 1] == '\t'))
    (*len)--;
}

static bool name_is(const char *name, size_t nlen, const char *want) {
  return nlen == strlen(want) && strncasecmp(name, want, nlen) == 0;
}

int kyb_grpc_meta_header(kyb_grpc_meta *m, const char *line, size_t len) {
  trim(&line, &len);
  if (len == 0)
    return 0; /* end of a header block */
  if (len > 5 && strncmp(line, "HTTP/", 5) == 0) {
    const char *sp = memchr(line, ' ', len);
    if (sp != NULL) {
      size_t rest = len - (size_t)(sp + 1 - line);
      long code = 0;
      for (size_t i = 0; i < rest && i < 3 && isdigit((unsigned char)sp[1 + i]); i++)
        code = code * 10 + (sp[1 + i] - '0');
      m->http_status = code;
    }
    return 0;
  }
  const char *colon = memchr(line, ':', len);
  if (colon == NULL)
    return 0;
  size_t nlen = (size_t)(colon - line);
  const char *value = colon + 1;
  size_t vlen = len - nlen - 1;
  trim(&value, &vlen);
  if (name_is(line, nlen, "grpc-status")) {
    int code = kyb_grpc_parse_status(value, vlen);
    /* A malformed status is still a failure the caller must see. */
    m->grpc_status = code < 0 ? KYB_GRPC_UNKNOWN : code;
  } else if (name_is(line, nlen, "grpc-message")) {
    char *msg = kyb_grpc_percent_decode(value, vlen);
    if (msg == NULL)
      return -1;
    free(m->grpc_message);
    m->grpc_message = msg;
  } else if (name_is(line, nlen, "content-type")) {
    m->content_type_grpc = vlen >= 16 && strncasecmp(value, "application/grpc", 16) == 0 &&
                           (vlen == 16 || value[16] == '+' || value[16] == ';');
  }
  return 0;
}

/* ---- status names and mappings ---- */

static const char *const code_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

#define NCODES (sizeof(code_names) / sizeof(code_names[0]))

const char *kyb_grpc_code_name(int code) {
  if (code < 0 || (size_t)code >= NCODES)
    return "UNKNOWN";
  return code_names[code];
}

int kyb_grpc_status_errno(int code) {
  switch (code) {
  case KYB_GRPC_OK:
    return 0;
  case KYB_GRPC_CANCELLED:
    return ECANCELED;
  case KYB_GRPC_INVALID_ARGUMENT:
    return EINVAL;
  case KYB_GRPC_DEADLINE_EXCEEDED:
    return ETIMEDOUT;
  case KYB_GRPC_NOT_FOUND:
    return ENOENT;
  case KYB_GRPC_ALREADY_EXISTS:
    return EEXIST;
  case KYB_GRPC_PERMISSION_DENIED:
  case KYB_GRPC_UNAUTHENTICATED:
    return EACCES;
  case KYB_GRPC_FAILED_PRECONDITION:
    /* containerd's "task is not in the right state" and "no namespace". */
    return EBUSY;
  case KYB_GRPC_UNIMPLEMENTED:
    return ENOSYS;
  case KYB_GRPC_UNAVAILABLE:
    /* The daemon answered but cannot serve now: worth a retry. */
    return EAGAIN;
  default:
    return EIO;
  }
}

int kyb_grpc_http_to_status(long http_status) {
  switch (http_status) {
  case 400:
    return KYB_GRPC_INTERNAL;
  case 401:
    return KYB_GRPC_UNAUTHENTICATED;
  case 403:
    return KYB_GRPC_PERMISSION_DENIED;
  case 404:
    return KYB_GRPC_UNIMPLEMENTED;
  case 429:
  case 502:
  case 503:
  case 504:
    return KYB_GRPC_UNAVAILABLE;
  default:
    return KYB_GRPC_UNKNOWN;
  }
}

kyb_grpc_code kyb_grpc_status_of(const kyb_error *err) {
  if (err == NULL)
    return KYB_GRPC_OK;
  static const char marker[] = " (grpc status ";
  const char *root = kyb_error_root(err);
  const char *found = NULL;
  for (const char *p = strstr(root, marker); p != NULL; p = strstr(p + 1, marker))
    found = p; /* the last one: a grpc-message may itself quote a status */
  if (found == NULL)
    return KYB_GRPC_NO_STATUS;
  const char *name = found + sizeof(marker) - 1;
  const char *end = strchr(name, ')');
  if (end == NULL || end[1] != '\0')
    return KYB_GRPC_NO_STATUS;
  for (size_t i = 0; i < NCODES; i++) {
    if ((size_t)(end - name) == strlen(code_names[i]) &&
        strncmp(name, code_names[i], (size_t)(end - name)) == 0)
      return (kyb_grpc_code)i;
  }
  return KYB_GRPC_NO_STATUS;
}

void kyb_grpc_method_name(const char *path, char *buf, size_t size) {
  if (size == 0)
    return;
  const char *slash = strrchr(path, '/');
  const char *svc_end = slash;
  const char *svc = path;
  if (slash == NULL || slash == path) {
    snprintf(buf, size, "%s", path);
    return;
  }
  for (const char *p = path; p < svc_end; p++) {
    if (*p == '.' || *p == '/')
      svc = p + 1;
  }
  snprintf(buf, size, "%.*s.%s", (int)(svc_end - svc), svc, slash + 1);
}

void kyb_grpc_timeout_value(int64_t ms, char *buf, size_t size) {
  if (ms < 0)
    ms = 0;
  /* The value may have at most 8 digits: step to coarser units, rounding up
   * so we never ask for less time than the caller gave. */
  if (ms <= 99999999)
    snprintf(buf, size, "%" PRId64 "m", ms);
  else if ((ms + 999) / 1000 <= 99999999)
    snprintf(buf, size, "%" PRId64 "S", (ms + 999) / 1000);
  else if ((ms + 59999) / 60000 <= 99999999)
    snprintf(buf, size, "%" PRId64 "M", (ms + 59999) / 60000);
  else
    snprintf(buf, size, "99999999H");
}
