/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A Restore's status from its pod (contract in rstatus.h).  Pure.
 */
#include "operator/rstatus.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/fields.h"
#include "util/cleanup.h"

bool kyb_op_pod_created_reason(const char *reason) {
  static const char *const rs[] = {
      "CheckpointNotFound", "CheckpointNotCompleted", "PodExists", "RuntimeClassConflict",
      "GPUModelMismatch",   "CreateFailed",           NULL};
  for (const char *const *r = rs; *r != NULL; r++)
    if (strcmp(reason, *r) == 0)
      return true;
  return false;
}

int kyb_op_restore_fail(json_t *status, json_int_t generation, const char *reason,
                        const char *message, int64_t now_us, kyb_error **err) {
  return kyb_op_status_fail(status, generation, "PodCreated", kyb_op_pod_created_reason(reason),
                            reason, message, now_us, "restore status", err);
}

/* Milliseconds from start to a pod time field (0 when unknown or earlier). */
static int set_timing(json_t *timings, const char *name, int64_t start, int64_t at) {
  if (start == 0 || at == 0)
    return 0;
  return json_object_set_new(timings, name, json_integer(at > start ? (at - start) / 1000 : 0));
}

static int64_t cond_time(const json_t *pod, const char *type) {
  json_t *st = kyb_op_get(pod, "status", NULL);
  json_t *c = kyb_op_cond(st, type);
  if (c == NULL || strcmp(kyb_op_str0(c, "status", NULL), "True") != 0)
    return 0;
  return kyb_op_time(c, "lastTransitionTime", NULL);
}

/* A container whose create/start failed: "container main: <message>" into
 * buf; false when none. */
static bool start_failure(const json_t *pod, char *buf, size_t size) {
  static const char *const waiting[] = {"CreateContainerError", "RunContainerError",
                                        "CreateContainerConfigError", NULL};
  size_t i;
  json_t *cs;
  json_array_foreach(kyb_op_get(pod, "status", "containerStatuses", NULL), i, cs) {
    const char *name = kyb_op_str0(cs, "name", NULL);
    json_t *states[] = {kyb_op_get(cs, "state", "terminated", NULL),
                        kyb_op_get(cs, "lastState", "terminated", NULL)};
    for (size_t k = 0; k < 2; k++) {
      if (strcmp(kyb_op_str0(states[k], "reason", NULL), "StartError") == 0) {
        snprintf(buf, size, "container %s: StartError: %s", name,
                 kyb_op_str0(states[k], "message", NULL));
        return true;
      }
    }
    const char *wr = kyb_op_str0(cs, "state", "waiting", "reason", NULL);
    for (const char *const *w = waiting; *w != NULL; w++) {
      if (strcmp(wr, *w) == 0) {
        snprintf(buf, size, "container %s: %s: %s", name, wr,
                 kyb_op_str0(cs, "state", "waiting", "message", NULL));
        return true;
      }
    }
  }
  return false;
}

/* Every container of the spec runs; *last: the latest start time. */
static bool all_running(const json_t *pod, int64_t *last) {
  json_t *spec = kyb_op_get(pod, "spec", "containers", NULL);
  json_t *sts = kyb_op_get(pod, "status", "containerStatuses", NULL);
  size_t i, j;
  json_t *c, *cs;
  *last = 0;
  if (json_array_size(spec) == 0)
    return false;
  json_array_foreach(spec, i, c) {
    bool up = false;
    json_array_foreach(sts, j, cs) {
      if (strcmp(kyb_op_str0(cs, "name", NULL), kyb_op_str0(c, "name", NULL)) != 0)
        continue;
      json_t *run = kyb_op_get(cs, "state", "running", NULL);
      if (json_is_object(run)) {
        up = true;
        int64_t t = kyb_op_time(run, "startedAt", NULL);
        if (t > *last)
          *last = t;
      }
    }
    if (!up)
      return false;
  }
  return true;
}

/* Containers the node agent recorded as started cold (annotation
 * kybernate.io/restore-outcome, a JSON object by container name):
 * "container main: <reason>; container side: <reason>" into buf, in the
 * spec's order; false when none.  The value is the pod's, so outside input:
 * bounded, and anything malformed counts as no report. */
static bool cold_started(const json_t *pod, char *buf, size_t size) {
  const char *v = kyb_op_str(pod, "metadata", "annotations", KYB_OP_ANN_RESTORE_OUTCOME, NULL);
  if (v == NULL || strlen(v) > (64u << 10))
    return false;
  json_error_t je;
  cleanup_json json_t *all = json_loads(v, 0, &je);
  size_t i, n = 0, used = 0;
  json_t *c;
  buf[0] = '\0';
  json_array_foreach(kyb_op_get(pod, "spec", "containers", NULL), i, c) {
    const char *name = kyb_op_str0(c, "name", NULL);
    json_t *e = json_is_object(all) ? json_object_get(all, name) : NULL;
    if (strcmp(kyb_op_str0(e, "outcome", NULL), "cold") != 0)
      continue;
    const char *reason = kyb_op_str0(e, "reason", NULL);
    int w = snprintf(buf + used, size - used, "%scontainer %s: %s", n > 0 ? "; " : "", name,
                     reason[0] != '\0' ? reason : "(no reason given)");
    n++;
    used += w > 0 ? (size_t)w : 0;
    if (used >= size)
      break;
  }
  return n > 0;
}

/* What the pod waits for, for the InProgress message. */
static void waiting_for(const json_t *pod, char *buf, size_t size) {
  size_t i;
  json_t *cs;
  json_array_foreach(kyb_op_get(pod, "status", "containerStatuses", NULL), i, cs) {
    const char *r = kyb_op_str(cs, "state", "waiting", "reason", NULL);
    if (r != NULL) {
      snprintf(buf, size, "pod %s: container %s is waiting (%s)",
               kyb_op_str0(pod, "metadata", "name", NULL), kyb_op_str0(cs, "name", NULL), r);
      return;
    }
  }
  const char *node = kyb_op_str(pod, "spec", "nodeName", NULL);
  snprintf(buf, size, "pod %s is %s%s%s", kyb_op_str0(pod, "metadata", "name", NULL),
           kyb_op_str(pod, "status", "phase", NULL) != NULL
               ? kyb_op_str0(pod, "status", "phase", NULL)
               : "Pending",
           node != NULL ? " on node " : ", not scheduled yet", node != NULL ? node : "");
}

int kyb_op_restore_observe(json_t *status, const json_t *restore, const json_t *pod, int64_t now_us,
                           bool *done, kyb_error **err) {
  json_int_t gen = kyb_op_int(0, restore, "metadata", "generation", NULL);
  const char *ns = kyb_op_str0(restore, "metadata", "namespace", NULL);
  const char *pname = kyb_op_str0(status, "podName", NULL);
  char now[40], msg[4096];
  kyb_op_time_str(now_us, now, sizeof(now));
  *done = true;
  if (json_object_set_new(status, "observedGeneration", json_integer(gen)) < 0)
    return kyb_error_set(err, ENOMEM, "restore status");
  const char *uid = kyb_op_str0(status, "podUID", NULL);
  if (pod == NULL ||
      (uid[0] != '\0' && strcmp(uid, kyb_op_str0(pod, "metadata", "uid", NULL)) != 0)) {
    snprintf(msg, sizeof(msg), "pod %s/%s was deleted before it ran", ns, pname);
    return kyb_op_restore_fail(status, gen, "PodDeleted", msg, now_us, err);
  }
  const char *node = kyb_op_str(pod, "spec", "nodeName", NULL);
  if (node != NULL && json_object_set_new(status, "nodeName", json_string(node)) < 0)
    return kyb_error_set(err, ENOMEM, "restore status");
  int64_t start = kyb_op_time(status, "startedAt", NULL), last = 0;
  json_t *timings = kyb_op_child(status, "timings");
  if (timings == NULL ||
      set_timing(timings, "scheduled", start, cond_time(pod, "PodScheduled")) < 0 ||
      set_timing(timings, "created", start, cond_time(pod, "PodReadyToStartContainers")) < 0)
    return kyb_error_set(err, ENOMEM, "restore status");

  const char *phase = kyb_op_str0(pod, "status", "phase", NULL);
  if (strcmp(phase, "Running") == 0 && all_running(pod, &last)) {
    if (set_timing(timings, "running", start, last) < 0 ||
        set_timing(timings, "total", start, now_us) < 0 ||
        json_object_set_new(status, "phase", json_string("Completed")) < 0 ||
        json_object_set_new(status, "completedAt", json_string(now)) < 0)
      return kyb_error_set(err, ENOMEM, "restore status");
    char cold[3072];
    if (cold_started(pod, cold, sizeof(cold))) {
      snprintf(msg, sizeof(msg),
               "pod %s runs, started afresh (fallback Cold), not from the checkpoint: %s", pname,
               cold);
      return kyb_op_cond_set(status, "Ready", "True", "ColdStarted", msg, gen, now, err) < 0 ? -1
                                                                                             : 0;
    }
    snprintf(msg, sizeof(msg), "every container of pod %s runs from the checkpoint", pname);
    return kyb_op_cond_set(status, "Ready", "True", "Running", msg, gen, now, err) < 0 ? -1 : 0;
  }
  /* Checked after Running: a retried create that restored after all counts. */
  if (start_failure(pod, msg, sizeof(msg)))
    return kyb_op_restore_fail(status, gen, "RestoreFailed", msg, now_us, err);
  if (strcmp(phase, "Failed") == 0) {
    const char *why = kyb_op_str0(pod, "status", "reason", NULL);
    snprintf(msg, sizeof(msg), "pod %s/%s failed: %s: %s", ns, pname, why[0] ? why : "Failed",
             kyb_op_str0(pod, "status", "message", NULL));
    return kyb_op_restore_fail(status, gen,
                               strcmp(why, "NodeAffinity") == 0 ? "Unschedulable" : "PodFailed",
                               msg, now_us, err);
  }
  if (strcmp(phase, "Succeeded") == 0) {
    snprintf(msg, sizeof(msg), "pod %s/%s ended (Succeeded) before it was seen running", ns, pname);
    return kyb_op_restore_fail(status, gen, "PodFailed", msg, now_us, err);
  }
  if (kyb_op_str(pod, "metadata", "deletionTimestamp", NULL) != NULL) {
    snprintf(msg, sizeof(msg), "pod %s/%s is being deleted before it ran", ns, pname);
    return kyb_op_restore_fail(status, gen, "PodDeleted", msg, now_us, err);
  }
  *done = false;
  json_t *sched = kyb_op_cond(kyb_op_get(pod, "status", NULL), "PodScheduled");
  if (sched != NULL && strcmp(kyb_op_str0(sched, "status", NULL), "False") == 0) {
    snprintf(msg, sizeof(msg), "pod %s/%s cannot be scheduled: %s", ns, pname,
             kyb_op_str0(sched, "message", NULL));
    return kyb_op_cond_set(status, "Ready", "False", "Unschedulable", msg, gen, now, err) < 0 ? -1
                                                                                              : 0;
  }
  waiting_for(pod, msg, sizeof(msg));
  return kyb_op_cond_set(status, "Ready", "Unknown", "InProgress", msg, gen, now, err) < 0 ? -1 : 0;
}
