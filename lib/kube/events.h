/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kubernetes Events about our objects, the way `kubectl describe` shows
 * them.  We write core/v1 Events (not events.k8s.io/v1): every cluster and
 * every kubectl reads them, and they carry everything we need (involvedObject,
 * reason, message, type, count, firstTimestamp/lastTimestamp, source).
 *
 * Like client-go's recorder, a repeat of the same event (same object, type,
 * reason and message) within 10 minutes is not a new Event: the earlier
 * one's count and lastTimestamp are bumped with a merge patch.  The recorder
 * remembers the last 128 distinct events for that; if the earlier Event is
 * gone (404), a new one is created.
 *
 * Events are best effort: a caller normally logs a failure and goes on.
 */
#ifndef KYB_KUBE_EVENTS_H
#define KYB_KUBE_EVENTS_H

#include <jansson.h>
#include <stdint.h>

#include "kube/client.h"
#include "util/error.h"

#define KYB_KUBE_EVENT_MAX_MESSAGE 1024
#define KYB_KUBE_EVENT_REPEAT_US (600LL * 1000000)

typedef struct {
  const char *component;       /* source.component / reportingComponent: "kybernate-operator" */
  const char *instance;        /* source.host / reportingInstance: node or pod name; may be NULL */
  int64_t (*now_us)(void *ud); /* NULL: kyb_kube_now_us */
  void *clock_ud;
} kyb_kube_recorder_opts;

typedef struct kyb_kube_recorder kyb_kube_recorder;

int kyb_kube_recorder_new(const kyb_kube_recorder_opts *opts, kyb_kube_recorder **out,
                          kyb_error **err);
void kyb_kube_recorder_free(kyb_kube_recorder *r);

/* Records an event about `involved` (needs apiVersion, kind and
 * metadata.name; namespace, uid and resourceVersion are used when present;
 * list items lack apiVersion and kind: set them first).  type "Normal" or
 * "Warning"; reason a CamelCase word.  The message is cut at
 * KYB_KUBE_EVENT_MAX_MESSAGE bytes. */
int kyb_kube_event(kyb_kube_client *c, kyb_kube_recorder *r, const json_t *involved,
                   const char *type, const char *reason, kyb_error **err, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* The Event object kyb_kube_event creates (pure; for tests). */
json_t *kyb_kube_event_build(const kyb_kube_recorder_opts *opts, const json_t *involved,
                             const char *type, const char *reason, const char *message,
                             int64_t now_us, kyb_error **err);

#endif
