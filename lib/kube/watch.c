/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One watch: the streaming GET, the line splitter (events arrive in any
 * chunking, one JSON object per line), event parsing, and resourceVersion
 * tracking.  The informer loop on top is in informer.c.  Contract in
 * watch.h.
 */
#define KYB_LOG_MODULE "kube"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/internal.h"
#include "kube/watch.h"
#include "util/cleanup.h"
#include "util/log.h"

#define DEFAULT_WATCH_TIMEOUT_S 300
/* curl's own limit past the server's timeoutSeconds: a safety net for a
 * half-open connection, not the normal end of a watch. */
#define WATCH_CURL_MARGIN_S 60

const char *kyb_kube_event_type_name(kyb_kube_event_type t) {
  switch (t) {
  case KYB_KUBE_ADDED:
    return "ADDED";
  case KYB_KUBE_MODIFIED:
    return "MODIFIED";
  case KYB_KUBE_DELETED:
    return "DELETED";
  case KYB_KUBE_BOOKMARK:
    return "BOOKMARK";
  case KYB_KUBE_ERROR:
    return "ERROR";
  }
  return "?";
}

void kyb_kube_lines_init(kyb_kube_lines *l, size_t max_line) {
  memset(l, 0, sizeof(*l));
  l->max_line = max_line > 0 ? max_line : KYB_KUBE_DEFAULT_MAX_LINE;
}

void kyb_kube_lines_clear(kyb_kube_lines *l) {
  free(l->buf);
  l->buf = NULL;
  l->len = l->cap = 0;
}

static int lines_append(kyb_kube_lines *l, const char *p, size_t n, kyb_error **err) {
  if (l->len + n > l->max_line)
    return kyb_error_set(err, EMSGSIZE, "event line longer than %zu bytes", l->max_line);
  if (l->len + n > l->cap) {
    size_t cap = l->cap ? l->cap : 4096;
    while (cap < l->len + n)
      cap *= 2;
    if (cap > l->max_line)
      cap = l->max_line;
    char *nb = realloc(l->buf, cap);
    if (nb == NULL)
      return kyb_error_set(err, ENOMEM, "event line of %zu bytes", l->len + n);
    l->buf = nb;
    l->cap = cap;
  }
  memcpy(l->buf + l->len, p, n);
  l->len += n;
  return 0;
}

int kyb_kube_lines_feed(kyb_kube_lines *l, const char *data, size_t len, kyb_kube_line_fn fn,
                        void *ud, kyb_error **err) {
  while (len > 0) {
    const char *nl = memchr(data, '\n', len);
    size_t n = nl != NULL ? (size_t)(nl - data) : len;
    if (nl == NULL)
      return lines_append(l, data, n, err);
    int r;
    if (l->len == 0) { /* the whole line is in this chunk: no copy */
      if (n > l->max_line)
        return kyb_error_set(err, EMSGSIZE, "event line longer than %zu bytes", l->max_line);
      l->nlines++;
      r = fn(ud, data, n, err);
    } else {
      if (lines_append(l, data, n, err) < 0)
        return -1;
      l->nlines++;
      r = fn(ud, l->buf, l->len, err);
      l->len = 0;
    }
    if (r != 0)
      return r;
    data += n + 1;
    len -= n + 1;
  }
  return 0;
}

static bool blank(const char *s, size_t n) {
  for (size_t k = 0; k < n; k++)
    if (s[k] != ' ' && s[k] != '\t' && s[k] != '\r')
      return false;
  return true;
}

int kyb_kube_lines_finish(kyb_kube_lines *l, kyb_kube_line_fn fn, void *ud, kyb_error **err) {
  if (l->len == 0 || blank(l->buf, l->len))
    return 0;
  l->nlines++;
  int r = fn(ud, l->buf, l->len, err);
  l->len = 0;
  return r;
}

int kyb_kube_event_parse(const char *line, size_t len, kyb_kube_event_type *type, json_t **obj,
                         kyb_error **err) {
  json_error_t jerr;
  cleanup_json json_t *ev = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
  if (ev == NULL) {
    char why[sizeof(jerr.text)];
    kube_sanitize(why, sizeof(why), jerr.text, sizeof(why));
    return kyb_error_set(err, EPROTO, "malformed watch event: %s", why);
  }
  const char *t = json_string_value(json_object_get(ev, "type"));
  json_t *o = json_object_get(ev, "object");
  if (!json_is_object(ev) || t == NULL || !json_is_object(o))
    return kyb_error_set(err, EPROTO, "malformed watch event: no type or object");
  static const struct {
    const char *name;
    kyb_kube_event_type type;
  } types[] = {{"ADDED", KYB_KUBE_ADDED},
               {"MODIFIED", KYB_KUBE_MODIFIED},
               {"DELETED", KYB_KUBE_DELETED},
               {"BOOKMARK", KYB_KUBE_BOOKMARK},
               {"ERROR", KYB_KUBE_ERROR}};
  for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++)
    if (strcmp(t, types[k].name) == 0) {
      *type = types[k].type;
      *obj = json_incref(o);
      return 0;
    }
  char clean[40];
  kube_sanitize(clean, sizeof(clean), t, strlen(t));
  return kyb_error_set(err, EPROTO, "malformed watch event: unknown type '%s'", clean);
}

typedef struct {
  const kyb_kube_watch_opts *o;
  const char *what;
  kyb_kube_lines lines;
  char *rv;
  bool line_failed; /* on_line made or passed on the error: it needs no more context */
} wstate;

static int set_rv(wstate *s, json_t *obj, kyb_error **err) {
  const char *rv =
      json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
  if (rv == NULL || rv[0] == '\0')
    return 0;
  if (strlen(rv) > 256)
    return kyb_error_set(err, EPROTO, "kube: %s: resourceVersion longer than 256 bytes", s->what);
  char *copy = strdup(rv);
  if (copy == NULL)
    return kyb_error_set(err, ENOMEM, "kube: %s", s->what);
  free(s->rv);
  s->rv = copy;
  return 0;
}

static int handle_line(wstate *s, const char *line, size_t len, kyb_error **err) {
  if (blank(line, len))
    return 0;
  kyb_kube_event_type type = KYB_KUBE_ERROR;
  cleanup_json json_t *obj = NULL;
  if (kyb_kube_event_parse(line, len, &type, &obj, err) < 0)
    return kyb_error_wrap(err, "kube: %s", s->what);
  if (type == KYB_KUBE_ERROR)
    return kube_status_error_obj(s->what, 500, obj, err);
  if (set_rv(s, obj, err) < 0)
    return -1;
  if (type == KYB_KUBE_BOOKMARK) {
    log_trace("%s: bookmark at %s", s->what, s->rv ? s->rv : "?");
    return 0;
  }
  if (s->o->on_event == NULL)
    return 0;
  return s->o->on_event(s->o->ud, type, obj, err);
}

static int on_line(void *ud, const char *line, size_t len, kyb_error **err) {
  wstate *s = ud;
  int r = handle_line(s, line, len, err);
  if (r < 0)
    s->line_failed = true;
  return r;
}

static int on_data(void *ud, const char *buf, size_t len, kyb_error **err) {
  wstate *s = ud;
  int r = kyb_kube_lines_feed(&s->lines, buf, len, on_line, s, err);
  if (r < 0 && !s->line_failed) /* the splitter's own: a line too long */
    return kyb_error_wrap(err, "kube: %s: watch stream", s->what);
  return r;
}

static int watch_path(const kyb_kube_resource *res, const char *ns, const kyb_kube_watch_opts *o,
                      long timeout_s, char **path, kyb_error **err) {
  char num[32];
  snprintf(num, sizeof(num), "%ld", timeout_s);
  if (kyb_kube_path(res, ns, NULL, NULL, path, err) < 0 ||
      kube_query_add(path, "watch", "1", err) < 0)
    return -1;
  if (o->resource_version != NULL && o->resource_version[0] != '\0' &&
      kube_query_add(path, "resourceVersion", o->resource_version, err) < 0)
    return -1;
  if (!o->no_bookmarks && kube_query_add(path, "allowWatchBookmarks", "true", err) < 0)
    return -1;
  if (kube_query_add(path, "timeoutSeconds", num, err) < 0)
    return -1;
  if (o->label_selector != NULL && o->label_selector[0] != '\0' &&
      kube_query_add(path, "labelSelector", o->label_selector, err) < 0)
    return -1;
  if (o->field_selector != NULL && o->field_selector[0] != '\0' &&
      kube_query_add(path, "fieldSelector", o->field_selector, err) < 0)
    return -1;
  return 0;
}

int kyb_kube_watch(kyb_kube_client *c, const kyb_kube_resource *res, const char *ns,
                   const kyb_kube_watch_opts *opts, char **last_rv, kyb_error **err) {
  char what[600];
  ns = kube_ns(c, res, ns);
  kube_what(what, sizeof(what), "watch", res, ns, NULL);
  long timeout_s = opts->timeout_seconds > 0 ? opts->timeout_seconds : DEFAULT_WATCH_TIMEOUT_S;
  wstate s = {.o = opts, .what = what};
  kyb_kube_lines_init(&s.lines, c->max_line);
  if (opts->resource_version != NULL && opts->resource_version[0] != '\0')
    s.rv = strdup(opts->resource_version);
  cleanup_free char *path = NULL;
  int r = 0;
  if (watch_path(res, ns, opts, timeout_s, &path, err) < 0) {
    r = kyb_error_wrap(err, "kube: %s", what);
  } else {
    kube_req rq = {.method = "GET",
                   .path = path,
                   .what = what,
                   .on_data = on_data,
                   .ud = &s,
                   .timeout_ms = (timeout_s + WATCH_CURL_MARGIN_S) * 1000};
    r = kube_do(c, &rq, NULL, err);
    if (r == 0)
      r = kyb_kube_lines_finish(&s.lines, on_line, &s, err);
  }
  log_debug("%s from %s ended (%d) after %zu lines, at %s", what,
            opts->resource_version ? opts->resource_version : "now", r, s.lines.nlines,
            s.rv ? s.rv : "?");
  kyb_kube_lines_clear(&s.lines);
  if (last_rv != NULL)
    *last_rv = s.rv;
  else
    free(s.rv);
  return r;
}
