/* SPDX-License-Identifier: Apache-2.0 */
/*
 * runc-format log lines (runc_log.h).
 */
#include "runtime/runc_log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/cleanup.h"

/* The part of a runc log we read back: runc's own lines of one call. */
#define RUNC_LOG_READ_MAX (4u << 20)

static void rfc3339_nano(const struct timespec *ts, char buf[static 40]) {
  struct tm tm;
  gmtime_r(&ts->tv_sec, &tm);
  size_t n = strftime(buf, 40, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, 40 - n, ".%09ldZ", ts->tv_nsec);
}

/* Go's %q for the text formatter: quotes, backslashes and control
 * characters escaped. */
static char *quote(const char *s) {
  size_t len = strlen(s);
  char *out = malloc(len * 4 + 3);
  if (out == NULL)
    return NULL;
  char *w = out;
  *w++ = '"';
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '"':
      *w++ = '\\';
      *w++ = '"';
      break;
    case '\\':
      *w++ = '\\';
      *w++ = '\\';
      break;
    case '\n':
      *w++ = '\\';
      *w++ = 'n';
      break;
    case '\t':
      *w++ = '\\';
      *w++ = 't';
      break;
    default:
      if (*p < 0x20 || *p == 0x7f)
        w += sprintf(w, "\\x%02x", *p);
      else
        *w++ = (char)*p;
    }
  }
  *w++ = '"';
  *w = '\0';
  return out;
}

char *kyb_runc_log_line(bool json, const char *level, const char *msg, const struct timespec *ts) {
  struct timespec now;
  if (ts == NULL) {
    clock_gettime(CLOCK_REALTIME, &now);
    ts = &now;
  }
  char t[40];
  rfc3339_nano(ts, t);
  char *line = NULL;
  if (json) {
    /* logrus sorts keys: level, msg, time.  A message that is not valid
     * UTF-8 is still written (as JSON, with the bad bytes replaced), since
     * one unparsable line would hide every later one from the shim. */
    json_t *m = json_string(msg);
    if (m == NULL) {
      cleanup_free char *fixed = strdup(msg);
      if (fixed == NULL)
        return NULL;
      for (char *p = fixed; *p; p++)
        if ((unsigned char)*p >= 0x80)
          *p = '?';
      m = json_string(fixed);
    }
    cleanup_json json_t *o = json_pack("{s:s, s:o*, s:s}", "level", level, "msg", m, "time", t);
    cleanup_free char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (s == NULL || asprintf(&line, "%s\n", s) < 0)
      return NULL;
    return line;
  }
  cleanup_free char *q = quote(msg);
  if (q == NULL || asprintf(&line, "time=\"%s\" level=%s msg=%s\n", t, level, q) < 0)
    return NULL;
  return line;
}

int kyb_runc_log_append(const char *path, bool json, const char *level, const char *msg,
                        kyb_error **err) {
  cleanup_free char *line = kyb_runc_log_line(json, level, msg, NULL);
  if (line == NULL)
    return kyb_error_set(err, ENOMEM, "runc log line");
  cleanup_close int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
  if (fd < 0)
    return kyb_error_errno(err, "open log %s", path);
  size_t len = strlen(line);
  ssize_t n;
  do {
    n = write(fd, line, len); /* one write: O_APPEND keeps the line whole */
  } while (n < 0 && errno == EINTR);
  if (n < 0)
    return kyb_error_errno(err, "write log %s", path);
  if ((size_t)n != len)
    return kyb_error_set(err, EIO, "short write to log %s", path);
  return 0;
}

off_t kyb_runc_log_size(const char *path) {
  struct stat st;
  if (path == NULL || stat(path, &st) < 0)
    return 0;
  return st.st_size;
}

char *kyb_runc_log_last_error(const char *path, off_t from) {
  if (path == NULL)
    return NULL;
  cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return NULL;
  struct stat st;
  if (fstat(fd, &st) < 0 || st.st_size <= from)
    return NULL;
  /* Only the tail matters: the last error is the one wanted. */
  off_t start = from;
  if (st.st_size - start > (off_t)RUNC_LOG_READ_MAX)
    start = st.st_size - (off_t)RUNC_LOG_READ_MAX;
  size_t want = (size_t)(st.st_size - start);
  cleanup_free char *buf = malloc(want + 1);
  if (buf == NULL)
    return NULL;
  size_t got = 0;
  while (got < want) {
    ssize_t n = pread(fd, buf + got, want - got, start + (off_t)got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  buf[got] = '\0';
  char *last = NULL;
  for (char *p = buf; p < buf + got;) {
    char *eol = memchr(p, '\n', (size_t)(buf + got - p));
    if (eol != NULL)
      *eol = '\0';
    json_error_t jerr;
    json_t *o = json_loads(p, 0, &jerr);
    const char *lv = o ? json_string_value(json_object_get(o, "level")) : NULL;
    const char *msg = o ? json_string_value(json_object_get(o, "msg")) : NULL;
    if (lv != NULL && msg != NULL && strcmp(lv, "error") == 0) {
      free(last);
      last = strdup(msg);
    }
    json_decref(o);
    if (eol == NULL)
      break;
    p = eol + 1;
  }
  return last;
}
