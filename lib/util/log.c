/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logger implementation.  See log.h for the contract.
 */
#include "util/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "util/cleanup.h"

/* Written by kyb_log_setup* in main() before any thread starts; read-only after. */
static struct {
  char program[64];
  kyb_log_level level;
  kyb_log_format format;
  int fd;
} log_cfg = {.program = "kybernate", .level = KYB_LOG_INFO, .format = KYB_LOG_TEXT, .fd = 2};

static const char *const level_names[] = {"error", "warning", "info", "debug", "trace"};

void kyb_log_setup(const char *program, kyb_log_level level, kyb_log_format format, int fd) {
  if (program != NULL)
    snprintf(log_cfg.program, sizeof(log_cfg.program), "%s", program);
  log_cfg.level = level;
  log_cfg.format = format;
  log_cfg.fd = fd;
}

int kyb_log_level_parse(const char *s, kyb_log_level *out, kyb_error **err) {
  static const struct {
    const char *name;
    kyb_log_level level;
  } names[] = {{"error", KYB_LOG_ERROR}, {"warn", KYB_LOG_WARN},   {"warning", KYB_LOG_WARN},
               {"info", KYB_LOG_INFO},   {"debug", KYB_LOG_DEBUG}, {"trace", KYB_LOG_TRACE}};
  for (size_t i = 0; s != NULL && i < sizeof(names) / sizeof(names[0]); i++) {
    if (strcasecmp(s, names[i].name) == 0) {
      *out = names[i].level;
      return 0;
    }
  }
  return kyb_error_set(
      err, EINVAL, "unknown log level '%s' (use error, warn, info, debug or trace)", s ? s : "");
}

int kyb_log_format_parse(const char *s, kyb_log_format *out, kyb_error **err) {
  if (s != NULL && strcasecmp(s, "text") == 0) {
    *out = KYB_LOG_TEXT;
    return 0;
  }
  if (s != NULL && strcasecmp(s, "json") == 0) {
    *out = KYB_LOG_JSON;
    return 0;
  }
  return kyb_error_set(err, EINVAL, "unknown log format '%s' (use text or json)", s ? s : "");
}

int kyb_log_setup_from_env(kyb_error **err) {
  const char *lvl = getenv("KYBERNATE_LOG_LEVEL");
  const char *fmt = getenv("KYBERNATE_LOG_FORMAT");
  if (lvl != NULL && *lvl != '\0') {
    if (kyb_log_level_parse(lvl, &log_cfg.level, err) < 0)
      return kyb_error_wrap(err, "KYBERNATE_LOG_LEVEL");
  }
  if (fmt != NULL && *fmt != '\0') {
    if (kyb_log_format_parse(fmt, &log_cfg.format, err) < 0)
      return kyb_error_wrap(err, "KYBERNATE_LOG_FORMAT");
  }
  return 0;
}

bool kyb_log_enabled(kyb_log_level level) {
  return level <= log_cfg.level;
}

kyb_log_level kyb_log_get_level(void) {
  return log_cfg.level;
}

static void write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return; /* nowhere left to report a failing log sink */
    buf += n;
    len -= (size_t)n;
  }
}

static void format_time(char *buf, size_t size) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Length of the valid UTF-8 sequence at p (1-4), or 0 when p is not valid UTF-8. */
static size_t utf8_seq_len(const unsigned char *p) {
  size_t n;
  if (p[0] < 0x80)
    return 1;
  if (p[0] >= 0xc2 && p[0] <= 0xdf)
    n = 2;
  else if (p[0] >= 0xe0 && p[0] <= 0xef)
    n = 3;
  else if (p[0] >= 0xf0 && p[0] <= 0xf4)
    n = 4;
  else
    return 0;
  for (size_t i = 1; i < n; i++)
    if ((p[i] & 0xc0) != 0x80)
      return 0;
  return n;
}

/* JSON strings must be UTF-8; messages may quote raw bytes (a CRIU log, a
 * file name).  Replace what is not UTF-8 with '?' in place. */
static void make_utf8(char *s) {
  unsigned char *p = (unsigned char *)s;
  while (*p) {
    size_t n = utf8_seq_len(p);
    if (n == 0) {
      *p++ = '?';
      continue;
    }
    p += n;
  }
}

/* One line out; `chain` (may be NULL) holds extra JSON fields for errors. */
static void emit(kyb_log_level level, const char *module, char *msg, json_t *extra) {
  int saved = errno;
  if (level > KYB_LOG_TRACE)
    level = KYB_LOG_TRACE;
  if (log_cfg.format == KYB_LOG_JSON) {
    make_utf8((char *)msg);
    char ts[40];
    format_time(ts, sizeof(ts));
    cleanup_json json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:s}", "time", ts, "level", level_names[level], "program",
                  log_cfg.program, "module", module ? module : "kybernate", "msg", msg);
    if (o != NULL && extra != NULL)
      json_object_update(o, extra);
    cleanup_free char *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    cleanup_free char *out = NULL;
    int n = line ? asprintf(&out, "%s\n", line) : -1;
    if (n > 0)
      write_all(log_cfg.fd, out, (size_t)n);
  } else {
    cleanup_free char *out = NULL;
    int n = asprintf(&out, "%s: [%s] %s: %s\n", log_cfg.program, module ? module : "kybernate",
                     level_names[level], msg);
    if (n > 0)
      write_all(log_cfg.fd, out, (size_t)n);
  }
  errno = saved;
}

void kyb_log_writev(kyb_log_level level, const char *module, const char *fmt, va_list ap) {
  if (!kyb_log_enabled(level))
    return;
  cleanup_free char *msg = NULL;
  if (vasprintf(&msg, fmt, ap) < 0)
    return;
  emit(level, module, msg, NULL);
}

void kyb_log_write(kyb_log_level level, const char *module, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kyb_log_writev(level, module, fmt, ap);
  va_end(ap);
}

void kyb_log_error_chain(kyb_log_level level, const char *module, kyb_error *err, const char *fmt,
                         ...) {
  if (!kyb_log_enabled(level))
    return;
  cleanup_free char *head = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&head, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  cleanup_free char *msg = NULL;
  if (asprintf(&msg, "%s: %s", head, kyb_error_message(err)) < 0)
    return;
  cleanup_json json_t *extra = NULL;
  if (log_cfg.format == KYB_LOG_JSON && err != NULL) {
    json_t *chain = json_array();
    for (size_t i = 0; chain != NULL && i < err->nframes; i++) {
      cleanup_free char *frame = strdup(err->frames[i]);
      if (frame != NULL) {
        make_utf8(frame);
        json_array_append_new(chain, json_string(frame));
      }
    }
    extra = json_pack("{s:i, s:o*}", "errno", err->errnum, "error_chain", chain);
  }
  emit(level, module, msg, extra);
}
