/* SPDX-License-Identifier: Apache-2.0 */
/*
 * core/v1 Events with client-go-like deduplication (events.h says why core
 * v1 and how repeats are folded).
 */
#define KYB_LOG_MODULE "kube"

#include "kube/events.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/internal.h"
#include "util/cleanup.h"
#include "util/log.h"

#define CACHE_SIZE 128

typedef struct {
  char *key;  /* object, type, reason, message */
  char *ns;   /* of the Event */
  char *name; /* of the Event */
  long count;
  int64_t first_us;
  int64_t last_us;
} seen_event;

struct kyb_kube_recorder {
  kyb_kube_recorder_opts opts;
  char *component, *instance;
  seen_event cache[CACHE_SIZE];
};

int kyb_kube_recorder_new(const kyb_kube_recorder_opts *opts, kyb_kube_recorder **out,
                          kyb_error **err) {
  if (opts == NULL || opts->component == NULL || opts->component[0] == '\0')
    return kyb_error_set(err, EINVAL, "event recorder needs a component name");
  kyb_kube_recorder *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return kyb_error_set(err, ENOMEM, "event recorder");
  r->opts = *opts;
  r->component = strdup(opts->component);
  r->instance = opts->instance != NULL ? strdup(opts->instance) : NULL;
  r->opts.component = r->component;
  r->opts.instance = r->instance;
  if (r->component == NULL || (opts->instance != NULL && r->instance == NULL)) {
    kyb_kube_recorder_free(r);
    return kyb_error_set(err, ENOMEM, "event recorder");
  }
  *out = r;
  return 0;
}

static void seen_clear(seen_event *s) {
  free(s->key);
  free(s->ns);
  free(s->name);
  memset(s, 0, sizeof(*s));
}

void kyb_kube_recorder_free(kyb_kube_recorder *r) {
  if (r == NULL)
    return;
  for (size_t k = 0; k < CACHE_SIZE; k++)
    seen_clear(&r->cache[k]);
  free(r->component);
  free(r->instance);
  free(r);
}

/* At most max bytes, not ending inside a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n <= max)
    return n;
  n = max;
  while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
    n--;
  return n;
}

static bool reason_ok(const char *r) {
  size_t n = strlen(r);
  if (n == 0 || n > 128 || !isupper((unsigned char)r[0]))
    return false;
  for (size_t k = 0; k < n; k++)
    if (!isalnum((unsigned char)r[k]))
      return false;
  return true;
}

static const char *meta(const json_t *obj, const char *f) {
  return json_string_value(json_object_get(json_object_get(obj, "metadata"), f));
}

static json_t *involved_ref(const json_t *obj, kyb_error **err) {
  const char *av = json_string_value(json_object_get(obj, "apiVersion"));
  const char *kind = json_string_value(json_object_get(obj, "kind"));
  const char *name = meta(obj, "name");
  if (av == NULL || kind == NULL || name == NULL) {
    kyb_error_set(err, EINVAL,
                  "the object of an event needs apiVersion, kind and metadata.name (list "
                  "items lack apiVersion and kind)");
    return NULL;
  }
  json_t *ref = json_pack("{s:s, s:s, s:s}", "apiVersion", av, "kind", kind, "name", name);
  static const char *const opt[] = {"namespace", "uid", "resourceVersion"};
  for (size_t k = 0; ref != NULL && k < 3; k++)
    if (meta(obj, opt[k]) != NULL &&
        json_object_set_new(ref, opt[k], json_string(meta(obj, opt[k]))) < 0) {
      json_decref(ref);
      ref = NULL;
    }
  if (ref == NULL)
    kyb_error_set(err, ENOMEM, "event");
  return ref;
}

json_t *kyb_kube_event_build(const kyb_kube_recorder_opts *opts, const json_t *involved,
                             const char *type, const char *reason, const char *message,
                             int64_t now_us, kyb_error **err) {
  if (type == NULL || (strcmp(type, "Normal") != 0 && strcmp(type, "Warning") != 0)) {
    kyb_error_set(err, EINVAL, "event type must be Normal or Warning");
    return NULL;
  }
  if (reason == NULL || !reason_ok(reason)) {
    kyb_error_set(err, EINVAL, "event reason '%.40s' is not a CamelCase word",
                  reason ? reason : "");
    return NULL;
  }
  cleanup_json json_t *ref = involved_ref(involved, err);
  if (ref == NULL)
    return NULL;
  const char *obj_ns = json_string_value(json_object_get(ref, "namespace"));
  const char *ns = obj_ns != NULL ? obj_ns : "default"; /* cluster-scoped: as client-go */
  /* client-go names events <object>.<unix nanoseconds in hex>. */
  const char *obj_name = json_string_value(json_object_get(ref, "name"));
  char name[254];
  snprintf(name, sizeof(name), "%.*s.%llx", 235, obj_name, (unsigned long long)now_us * 1000ULL);
  char ts[40];
  kyb_kube_time_format(now_us, false, ts, sizeof(ts));
  size_t mlen = utf8_cut(message, KYB_KUBE_EVENT_MAX_MESSAGE);
  json_t *msg = json_stringn(message, mlen);
  if (msg == NULL) {
    kyb_error_set(err, EINVAL, "event message is not valid UTF-8");
    return NULL;
  }
  const char *inst = opts->instance != NULL ? opts->instance : "";
  json_t *ev = json_pack(
      "{s:s, s:s, s:{s:s, s:s}, s:O, s:s, s:o, s:s, s:{s:s, s:s}, s:I, s:s, s:s, s:s, s:s}",
      "apiVersion", "v1", "kind", "Event", "metadata", "name", name, "namespace", ns,
      "involvedObject", ref, "reason", reason, "message", msg, "type", type, "source", "component",
      opts->component, "host", inst, "count", (json_int_t)1, "firstTimestamp", ts, "lastTimestamp",
      ts, "reportingComponent", opts->component, "reportingInstance", inst);
  if (ev == NULL)
    kyb_error_set(err, ENOMEM, "event");
  return ev;
}

static char *event_key(const json_t *involved, const char *type, const char *reason,
                       const char *msg) {
  char *k = NULL;
  const char *ns = meta(involved, "namespace");
  const char *uid = meta(involved, "uid");
  if (asprintf(&k, "%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s", ns ? ns : "",
               json_string_value(json_object_get(involved, "kind")), meta(involved, "name"),
               uid ? uid : "", type, reason, msg) < 0)
    return NULL;
  return k;
}

static seen_event *cache_find(kyb_kube_recorder *r, const char *key) {
  for (size_t k = 0; k < CACHE_SIZE; k++)
    if (r->cache[k].key != NULL && strcmp(r->cache[k].key, key) == 0)
      return &r->cache[k];
  return NULL;
}

static seen_event *cache_slot(kyb_kube_recorder *r) {
  seen_event *oldest = &r->cache[0];
  for (size_t k = 0; k < CACHE_SIZE; k++) {
    if (r->cache[k].key == NULL)
      return &r->cache[k];
    if (r->cache[k].last_us < oldest->last_us)
      oldest = &r->cache[k];
  }
  seen_clear(oldest);
  return oldest;
}

/* A repeat: bump count and lastTimestamp.  1 when the Event is gone. */
static int bump(kyb_kube_client *c, seen_event *s, int64_t t, kyb_error **err) {
  char ts[40];
  kyb_kube_time_format(t, false, ts, sizeof(ts));
  cleanup_json json_t *patch =
      json_pack("{s:I, s:s}", "count", (json_int_t)s->count + 1, "lastTimestamp", ts);
  if (patch == NULL)
    return kyb_error_set(err, ENOMEM, "event");
  if (kyb_kube_patch(c, &kyb_kube_res_events, s->ns, s->name, patch, NULL, NULL, err) < 0) {
    if (kyb_kube_status_of(*err) != 404)
      return -1;
    kyb_error_clear(err);
    return 1;
  }
  s->count++;
  s->last_us = t;
  return 0;
}

int kyb_kube_event(kyb_kube_client *c, kyb_kube_recorder *r, const json_t *involved,
                   const char *type, const char *reason, kyb_error **err, const char *fmt, ...) {
  cleanup_free char *msg = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&msg, fmt, ap);
  va_end(ap);
  if (n < 0)
    return kyb_error_set(err, ENOMEM, "event");
  msg[utf8_cut(msg, KYB_KUBE_EVENT_MAX_MESSAGE)] = '\0';
  int64_t t = r->opts.now_us != NULL ? r->opts.now_us(r->opts.clock_ud) : kyb_kube_now_us();
  cleanup_json json_t *ev = kyb_kube_event_build(&r->opts, involved, type, reason, msg, t, err);
  if (ev == NULL)
    return kyb_error_wrap(err, "record event %s", reason ? reason : "");
  cleanup_free char *key = event_key(involved, type, reason, msg);
  if (key == NULL)
    return kyb_error_set(err, ENOMEM, "event");
  seen_event *s = cache_find(r, key);
  if (s != NULL && t - s->last_us < KYB_KUBE_EVENT_REPEAT_US) {
    int b = bump(c, s, t, err);
    if (b <= 0)
      return b < 0 ? kyb_error_wrap(err, "record event %s", reason) : 0;
  }
  if (s == NULL)
    s = cache_slot(r);
  else
    seen_clear(s);
  const char *ns = meta(ev, "namespace");
  if (kyb_kube_create(c, &kyb_kube_res_events, ns, ev, NULL, err) < 0)
    return kyb_error_wrap(err, "record event %s", reason);
  s->key = steal_ptr(key);
  s->ns = strdup(ns);
  s->name = strdup(meta(ev, "name"));
  s->count = 1;
  s->first_us = s->last_us = t;
  if (s->ns == NULL || s->name == NULL) {
    seen_clear(s);
    return kyb_error_set(err, ENOMEM, "event");
  }
  log_debug("event %s %s about %s", type, reason, meta(involved, "name"));
  return 0;
}
