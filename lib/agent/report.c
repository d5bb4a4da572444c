/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Restore outcomes reported by kybernate-runc (report.h): the body's
 * checks, the pod annotation's value, and recording both on the pod.
 */
#define KYB_LOG_MODULE "api"

#include "agent/report.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/internal.h"
#include "agent/request.h"
#include "kube/client.h"
#include "kube/events.h"
#include "util/cleanup.h"
#include "util/log.h"

#define RECORD_ATTEMPTS 3

void kyb_agent_restore_report_clear(kyb_agent_restore_report *r) {
  if (r == NULL)
    return;
  free(r->pod_ns);
  free(r->pod_name);
  free(r->pod_uid);
  free(r->container);
  free(r->reason);
  free(r->image_ref);
  memset(r, 0, sizeof(*r));
}

/* Printable text: no control characters (a message ends up in an Event and
 * a log line); UTF-8 was checked by the JSON parser. */
static bool text_ok(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p < 0x20 || *p == 0x7f)
      return false;
  return true;
}

/* A pod uid: a UUID as the API server makes them, or any [A-Za-z0-9-]. */
static bool uid_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > KYB_AGENT_REPORT_MAX_UID)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
      return false;
  }
  return true;
}

/* The string field key, checked by ok; *out NULL when absent and optional. */
static int field(const json_t *b, const char *key, bool required, bool (*ok)(const char *),
                 const char *what, char **out, kyb_error **err) {
  const json_t *v = json_object_get(b, key);
  *out = NULL;
  if (v == NULL || json_is_null(v)) {
    if (required)
      return kyb_error_set(err, EINVAL, "\"%s\" is required (%s)", key, what);
    return 0;
  }
  if (!json_is_string(v))
    return kyb_error_set(err, EINVAL, "\"%s\" must be a string (%s)", key, what);
  const char *s = json_string_value(v);
  if (strlen(s) != json_string_length(v) || !ok(s))
    return kyb_error_set(err, EINVAL, "\"%s\" is not %s", key, what);
  if ((*out = strdup(s)) == NULL)
    return kyb_error_set(err, ENOMEM, "restore outcome");
  return 0;
}

static bool reason_ok(const char *s) {
  return *s != '\0' && strlen(s) <= KYB_AGENT_REPORT_MAX_REASON && text_ok(s);
}

static bool ref_ok(const char *s) {
  return *s != '\0' && strlen(s) <= KYB_AGENT_REPORT_MAX_REF && text_ok(s);
}

int kyb_agent_restore_report_parse(const json_t *b, kyb_agent_restore_report *out,
                                   kyb_error **err) {
  static const char *const known[] = {"podNamespace", "podName", "podUID",  "container",
                                      "outcome",      "reason",  "imageRef"};
  if (!json_is_object(b))
    return kyb_error_set(err, EINVAL, "the body must be a JSON object");
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)b, key, v) {
    bool ok = false;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
      ok |= strcmp(known[i], key) == 0;
    if (!ok)
      return kyb_error_set(err, EINVAL, "unknown field \"%.64s\"", key);
  }
  const char *outcome = json_string_value(json_object_get(b, "outcome"));
  if (outcome == NULL || (strcmp(outcome, "restored") != 0 && strcmp(outcome, "cold") != 0))
    return kyb_error_set(err, EINVAL, "\"outcome\" must be \"restored\" or \"cold\"");
  kyb_agent_restore_report r = {.cold = strcmp(outcome, "cold") == 0};
  if (field(b, "podNamespace", true, kyb_agent_dns_label_valid, "a namespace name", &r.pod_ns,
            err) < 0 ||
      field(b, "podName", true, kyb_agent_dns_subdomain_valid, "a pod name", &r.pod_name, err) <
          0 ||
      field(b, "podUID", true, uid_ok, "a pod uid", &r.pod_uid, err) < 0 ||
      field(b, "container", true, kyb_agent_dns_label_valid, "a container name", &r.container,
            err) < 0 ||
      field(b, "reason", r.cold, reason_ok, "non-empty text without control characters", &r.reason,
            err) < 0 ||
      field(b, "imageRef", false, ref_ok, "an image reference without control characters",
            &r.image_ref, err) < 0) {
    kyb_agent_restore_report_clear(&r);
    return -1;
  }
  *out = r;
  return 0;
}

/* s cut to max bytes on a UTF-8 boundary, "..." marking the cut (heap). */
static char *cut_utf8(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n <= max)
    return strdup(s);
  n = max - 3;
  while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
    n--;
  char *out = malloc(n + 4);
  if (out != NULL)
    snprintf(out, n + 4, "%.*s...", (int)n, s);
  return out;
}

char *kyb_agent_outcome_annotation(const char *existing, const kyb_agent_restore_report *r,
                                   int64_t now_us) {
  json_error_t je;
  json_t *all = existing != NULL && strlen(existing) <= KYB_AGENT_OUTCOME_MAX_BYTES
                    ? json_loads(existing, JSON_REJECT_DUPLICATES, &je)
                    : NULL;
  if (!json_is_object(all)) {
    json_decref(all);
    all = json_object();
  }
  char at[40];
  kyb_kube_time_format(now_us, false, at, sizeof(at));
  cleanup_free char *reason = r->reason ? cut_utf8(r->reason, KYB_AGENT_REPORT_KEPT_REASON) : NULL;
  json_t *entry = json_pack("{s:s, s:s}", "outcome", r->cold ? "cold" : "restored", "at", at);
  char *out = NULL;
  if (all != NULL && entry != NULL && (r->reason == NULL || reason != NULL) &&
      (reason == NULL || json_object_set_new(entry, "reason", json_string(reason)) == 0) &&
      (r->image_ref == NULL ||
       json_object_set_new(entry, "imageRef", json_string(r->image_ref)) == 0) &&
      json_object_set_new(all, r->container, entry) == 0) {
    entry = NULL;
    out = json_dumps(all, JSON_COMPACT | JSON_SORT_KEYS);
  }
  json_decref(entry);
  json_decref(all);
  return out;
}

/* ---- recording it on the pod ------------------------------------------------------------- */

/* One read-patch round; 1: the patch met a newer pod (409), read again. */
static int record_once(kyb_agent *a, const kyb_agent_restore_report *r, json_t **pod, int *status,
                       kyb_error **err) {
  json_t *p = NULL;
  if (kyb_kube_get(a->report_kc, &kyb_kube_res_pods, r->pod_ns, r->pod_name, &p, err) < 0) {
    *status = kyb_kube_status_of(*err) == 404 ? 404 : 502;
    return -1;
  }
  json_decref(*pod);
  *pod = p;
  json_t *meta = json_object_get(p, "metadata");
  const char *uid = json_string_value(json_object_get(meta, "uid"));
  const char *rv = json_string_value(json_object_get(meta, "resourceVersion"));
  const char *node = json_string_value(json_object_get(json_object_get(p, "spec"), "nodeName"));
  if (uid == NULL || strcmp(uid, r->pod_uid) != 0) {
    *status = 409;
    return kyb_error_set(err, ESTALE,
                         "pod %s/%s is uid %s now, not %s: the outcome of a replaced pod is not "
                         "recorded on its successor",
                         r->pod_ns, r->pod_name, uid ? uid : "(none)", r->pod_uid);
  }
  if (node == NULL || strcmp(node, a->cfg->node) != 0) {
    *status = 403;
    return kyb_error_set(err, EPERM, "pod %s/%s runs on node %s, not on this agent's node %s",
                         r->pod_ns, r->pod_name, node ? node : "(none)", a->cfg->node);
  }
  const char *old = json_string_value(
      json_object_get(json_object_get(meta, "annotations"), KYB_AGENT_OUTCOME_ANNOTATION));
  cleanup_free char *value = kyb_agent_outcome_annotation(old, r, kyb_kube_now_us());
  cleanup_json json_t *patch = value ? json_pack("{s:{s:s, s:{s:s}}}", "metadata", "uid", uid,
                                                 "annotations", KYB_AGENT_OUTCOME_ANNOTATION, value)
                                     : NULL;
  /* Conditional on the pod as read: an entry written meanwhile is kept. */
  if (patch != NULL && rv != NULL &&
      json_object_set_new(json_object_get(patch, "metadata"), "resourceVersion", json_string(rv)) <
          0)
    json_decref(steal_ptr(patch));
  if (patch == NULL) {
    *status = 500;
    return kyb_error_set(err, ENOMEM, "restore outcome");
  }
  if (kyb_kube_patch(a->report_kc, &kyb_kube_res_pods, r->pod_ns, r->pod_name, patch, NULL, NULL,
                     err) == 0)
    return 0;
  if (kyb_kube_status_of(*err) == 409)
    return 1;
  *status = kyb_kube_status_of(*err) == 404 ? 404 : 502;
  return -1;
}

static void record_event(kyb_agent *a, const kyb_agent_restore_report *r, json_t *pod) {
  cleanup_error kyb_error *err = NULL;
  json_object_set_new(pod, "apiVersion", json_string("v1"));
  json_object_set_new(pod, "kind", json_string("Pod"));
  int rc = r->cold
               ? kyb_kube_event(a->report_kc, a->report_rec, pod, "Warning", "ColdStarted", &err,
                                "container %s started afresh, not from checkpoint %s "
                                "(kybernate.io/restore-fallback: cold): %s",
                                r->container, r->image_ref ? r->image_ref : "(unknown)", r->reason)
               : kyb_kube_event(a->report_kc, a->report_rec, pod, "Normal", "Restored", &err,
                                "container %s restored from checkpoint %s", r->container,
                                r->image_ref ? r->image_ref : "(unknown)");
  if (rc < 0)
    log_warn_chain(err, "event on pod %s/%s", r->pod_ns, r->pod_name);
}

int kyb_agent_record_outcome(kyb_agent *a, const kyb_agent_restore_report *r, int *status,
                             kyb_error **err) {
  if (a->report_kc == NULL) {
    *status = 503;
    return kyb_error_set(err, EAGAIN,
                         "a standalone agent has no Kubernetes API to record restore outcomes in");
  }
  pthread_mutex_lock(&a->report_mu); /* one client and recorder for every connection */
  cleanup_json json_t *pod = NULL;
  int rc = 1;
  for (int i = 0; rc == 1 && i < RECORD_ATTEMPTS; i++) {
    kyb_error_clear(err);
    rc = record_once(a, r, &pod, status, err);
  }
  if (rc == 1) {
    *status = 409;
    kyb_error_wrap(err, "pod %s/%s changed %d times while the outcome was written", r->pod_ns,
                   r->pod_name, RECORD_ATTEMPTS);
    rc = -1;
  }
  if (rc == 0) {
    *status = 200;
    record_event(a, r, pod);
  }
  pthread_mutex_unlock(&a->report_mu);
  if (rc < 0)
    return kyb_error_wrap(err, "restore outcome of %s/%s container %s", r->pod_ns, r->pod_name,
                          r->container);
  log_info("pod %s/%s container %s: %s%s", r->pod_ns, r->pod_name, r->container,
           r->cold ? "started cold: " : "restored", r->cold ? r->reason : "");
  return 0;
}
