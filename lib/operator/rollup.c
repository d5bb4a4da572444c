/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The roll-up of a CheckpointRequest's status into its Checkpoint's
 * (contract in rollup.h).  Pure: the clock comes in as now_us.
 *
 * Only fields of known shape are copied from the request: the agent is the
 * request's status writer, but the Checkpoint's status must still pass its
 * own CRD schema, and a field that would not fail the whole write.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/fields.h"
#include "operator/rollup.h"
#include "util/cleanup.h"

/* "2m0s", "45s" (Go's time.Duration for whole seconds). */
static void fmt_duration(int64_t us, char *buf, size_t size) {
  long long s = (long long)(us / 1000000);
  if (s >= 60)
    snprintf(buf, size, "%lldm%llds", s / 60, s % 60);
  else
    snprintf(buf, size, "%llds", s);
}

static int copy_if(json_t *dst, const char *key, const json_t *src, bool (*ok)(const json_t *)) {
  json_t *v = json_object_get(src, key);
  if (v == NULL || !ok(v))
    return 0;
  return json_object_set_new(dst, key, json_deep_copy(v));
}

static bool is_str(const json_t *v) {
  return json_is_string(v);
}

static bool is_size(const json_t *v) {
  return json_is_integer(v) && json_integer_value(v) >= 0;
}

/* timings: names → non-negative integers; total always on a finished one. */
static json_t *timings_of(const json_t *rs, bool finished, int64_t started, int64_t completed) {
  json_t *out = json_object();
  if (out == NULL)
    return NULL;
  const char *k;
  json_t *v;
  json_object_foreach(kyb_op_get(rs, "timings", NULL), k, v) {
    if (is_size(v) && json_object_size(out) < 63 && json_object_set(out, k, v) < 0)
      goto oom;
  }
  if (finished && json_object_get(out, "total") == NULL) {
    int64_t total = started > 0 && completed >= started ? (completed - started) / 1000 : 0;
    if (json_object_set_new(out, "total", json_integer(total)) < 0)
      goto oom;
  }
  return out;
oom:
  json_decref(out);
  return NULL;
}

static json_t *images_of(const json_t *rs, const json_t *req) {
  json_t *out = json_array();
  if (out == NULL)
    return NULL;
  size_t i;
  json_t *img;
  json_array_foreach(kyb_op_get(rs, "images", NULL), i, img) {
    if (kyb_op_str(img, "container", NULL) == NULL || kyb_op_str(img, "imageRef", NULL) == NULL)
      continue;
    json_t *o = json_object();
    if (o == NULL || json_array_append_new(out, o) < 0 ||
        copy_if(o, "container", img, is_str) < 0 || copy_if(o, "imageRef", img, is_str) < 0 ||
        copy_if(o, "imageDigest", img, is_str) < 0 || copy_if(o, "sizeBytes", img, is_size) < 0)
      goto oom;
  }
  /* An agent that wrote only the single-image fields. */
  json_t *containers = kyb_op_get(req, "spec", "containers", NULL);
  if (json_array_size(out) == 0 && kyb_op_str(rs, "imageRef", NULL) != NULL &&
      json_array_size(containers) == 1) {
    json_t *o = json_pack("{s:O}", "container", json_array_get(containers, 0));
    if (o == NULL || json_array_append_new(out, o) < 0 || copy_if(o, "imageRef", rs, is_str) < 0 ||
        copy_if(o, "imageDigest", rs, is_str) < 0 || copy_if(o, "sizeBytes", rs, is_size) < 0)
      goto oom;
  }
  return out;
oom:
  json_decref(out);
  return NULL;
}

static json_t *gpus_of(const json_t *rs) {
  json_t *out = json_array();
  if (out == NULL)
    return NULL;
  size_t i;
  json_t *g;
  json_array_foreach(kyb_op_get(rs, "gpus", NULL), i, g) {
    if (kyb_op_str(g, "uuid", NULL) == NULL)
      continue;
    json_t *o = json_object();
    if (o == NULL || json_array_append_new(out, o) < 0 || copy_if(o, "uuid", g, is_str) < 0 ||
        copy_if(o, "model", g, is_str) < 0 || copy_if(o, "memoryBytes", g, is_size) < 0) {
      json_decref(out);
      return NULL;
    }
  }
  return out;
}

static int completed(json_t *status, const json_t *req, const json_t *rs, json_int_t gen,
                     int64_t now_us, const char *now, kyb_error **err) {
  cleanup_json json_t *images = images_of(rs, req);
  cleanup_json json_t *gpus = gpus_of(rs);
  if (images == NULL || gpus == NULL)
    return kyb_error_set(err, ENOMEM, "roll-up");
  if (json_array_size(images) == 0)
    return kyb_op_checkpoint_fail(status, gen, "AgentFailed",
                                  "the checkpoint request completed without an image", now_us, err);
  int64_t size = 0;
  size_t i;
  json_t *img;
  json_array_foreach(images, i, img) {
    size += kyb_op_int(0, img, "sizeBytes", NULL);
  }
  if (is_size(json_object_get(rs, "sizeBytes")))
    size = kyb_op_int(0, rs, "sizeBytes", NULL);
  int64_t started = kyb_op_time(status, "startedAt", NULL);
  int64_t done = kyb_op_time(rs, "completedAt", NULL);
  if (done == 0)
    done = now_us;
  char done_s[40];
  kyb_op_time_str(done, done_s, sizeof(done_s));
  cleanup_free char *from = kyb_op_restore_from(images);
  cleanup_json json_t *timings = timings_of(rs, true, started, done);
  if (from == NULL || timings == NULL)
    return kyb_error_set(err, ENOMEM, "roll-up");
  json_object_del(status, "imageRef");
  json_object_del(status, "imageDigest");
  if (json_array_size(images) == 1) {
    json_t *one = json_array_get(images, 0);
    if (copy_if(status, "imageRef", one, is_str) < 0 ||
        copy_if(status, "imageDigest", one, is_str) < 0)
      return kyb_error_set(err, ENOMEM, "roll-up");
  }
  size_t nimg = json_array_size(images), ngpu = json_array_size(gpus);
  json_int_t total = kyb_op_int(0, timings, "total", NULL);
  if (json_object_set_new(status, "phase", json_string("Completed")) < 0 ||
      json_object_set_new(status, "completedAt", json_string(done_s)) < 0 ||
      json_object_set(status, "images", images) < 0 ||
      json_object_set_new(status, "sizeBytes", json_integer(size)) < 0 ||
      json_object_set_new(status, "restoreFrom", json_string(from)) < 0 ||
      json_object_set_new(status, "gpuCount", json_integer((json_int_t)ngpu)) < 0 ||
      (ngpu > 0 && json_object_set(status, "gpus", gpus) < 0) ||
      json_object_set(status, "timings", timings) < 0)
    return kyb_error_set(err, ENOMEM, "roll-up");
  char bytes[32], msg[160];
  kyb_op_format_bytes(size, bytes, sizeof(bytes));
  snprintf(msg, sizeof(msg), "%zu image%s published (%s) in %lld.%02lld s", nimg,
           nimg == 1 ? "" : "s", bytes, (long long)(total / 1000), (long long)(total % 1000) / 10);
  return kyb_op_cond_set(status, "Ready", "True", "Completed", msg, gen, now, err) < 0 ? -1 : 0;
}

static int failed(json_t *status, const json_t *rs, json_int_t gen, int64_t now_us,
                  kyb_error **err) {
  json_t *cond = kyb_op_cond(rs, "Succeeded");
  const char *reason = kyb_op_str(cond, "reason", NULL);
  const char *message = kyb_op_str0(cond, "message", NULL);
  if (reason == NULL || reason[0] == '\0')
    reason = "Unknown";
  const char *mapped = "AgentFailed";
  if (strcmp(reason, "DeadlineExceeded") == 0 || strcmp(reason, "PodNotFound") == 0 ||
      strcmp(reason, "ContainerNotFound") == 0)
    mapped = reason;
  else if (strcmp(reason, "StoreNotConfigured") == 0)
    mapped = "InvalidStorage";
  cleanup_free char *msg = NULL;
  if (strcmp(mapped, "AgentFailed") == 0) {
    if (asprintf(&msg, "%s: %s", reason, message[0] != '\0' ? message : "(no message)") < 0)
      return kyb_error_set(err, ENOMEM, "roll-up");
  } else if ((msg = strdup(message)) == NULL) {
    return kyb_error_set(err, ENOMEM, "roll-up");
  }
  int64_t done = kyb_op_time(rs, "completedAt", NULL);
  char done_s[40];
  kyb_op_time_str(done != 0 ? done : now_us, done_s, sizeof(done_s));
  if (json_object_set_new(status, "completedAt", json_string(done_s)) < 0)
    return kyb_error_set(err, ENOMEM, "roll-up");
  return kyb_op_checkpoint_fail(status, gen, mapped, msg, now_us, err);
}

int kyb_op_rollup(json_t *status, const json_t *ckpt, const json_t *req, int64_t now_us,
                  int64_t node_lost_us, kyb_op_rollup_result *res, kyb_error **err) {
  json_int_t gen = kyb_op_int(0, ckpt, "metadata", "generation", NULL);
  const json_t *rs = kyb_op_get(req, "status", NULL);
  const char *phase = kyb_op_str0(rs, "phase", NULL);
  const char *node = kyb_op_str0(req, "spec", "nodeName", NULL);
  const char *rname = kyb_op_str0(req, "metadata", "name", NULL);
  char now[40], lost[32];
  kyb_op_time_str(now_us, now, sizeof(now));
  fmt_duration(node_lost_us, lost, sizeof(lost));
  *res = (kyb_op_rollup_result){.outcome = KYB_OP_ROLLUP_WAIT};
  if (copy_if(status, "startedAt", rs, is_str) < 0 ||
      json_object_set_new(status, "observedGeneration", json_integer(gen)) < 0)
    return kyb_error_set(err, ENOMEM, "roll-up");

  if (strcmp(phase, "Completed") == 0 || strcmp(phase, "Failed") == 0) {
    res->outcome = KYB_OP_ROLLUP_DONE;
    return phase[0] == 'C' ? completed(status, req, rs, gen, now_us, now, err)
                           : failed(status, rs, gen, now_us, err);
  }
  char msg[1024];
  if (strcmp(phase, "Running") == 0) {
    cleanup_json json_t *timings = timings_of(rs, false, 0, 0);
    if (timings == NULL ||
        (json_object_size(timings) > 0 && json_object_set(status, "timings", timings) < 0))
      return kyb_error_set(err, ENOMEM, "roll-up");
    const char *agent = kyb_op_str0(rs, "agent", "podName", NULL);
    int64_t renew = kyb_op_time(rs, "agent", "renewTime", NULL);
    if (renew == 0)
      renew = kyb_op_time(rs, "agent", "claimedAt", NULL);
    if (renew == 0)
      renew = kyb_op_time(rs, "startedAt", NULL);
    if (renew == 0)
      renew = now_us; /* nothing to measure from: this check starts the clock next time */
    if (now_us - renew >= node_lost_us) {
      char at[40];
      kyb_op_time_str(renew, at, sizeof(at));
      snprintf(msg, sizeof(msg),
               "the agent on node %s (pod %s) stopped renewing checkpoint request %s: last "
               "renewal at %s, more than %s ago; the request is left for the node's agent to "
               "clean up",
               node, agent[0] != '\0' ? agent : "?", rname, at, lost);
      res->outcome = KYB_OP_ROLLUP_DONE;
      return kyb_op_checkpoint_fail(status, gen, "NodeLost", msg, now_us, err);
    }
    res->recheck_us = node_lost_us - (now_us - renew);
    const char *step = kyb_op_str0(rs, "step", NULL);
    snprintf(msg, sizeof(msg), "agent %s on node %s: step %s", agent[0] != '\0' ? agent : "?", node,
             step[0] != '\0' ? step : "claimed");
  } else {
    int64_t created = kyb_op_time(req, "metadata", "creationTimestamp", NULL);
    int64_t age = created > 0 && now_us > created ? now_us - created : 0;
    if (age >= node_lost_us) {
      res->outcome = KYB_OP_ROLLUP_UNCLAIMED;
      if (asprintf(&res->message, "no agent on node %s claimed checkpoint request %s within %s",
                   node, rname, lost) < 0) {
        res->message = NULL;
        return kyb_error_set(err, ENOMEM, "roll-up");
      }
      return 0;
    }
    res->recheck_us = node_lost_us - age;
    snprintf(msg, sizeof(msg), "checkpoint request %s waits for the agent on node %s", rname, node);
  }
  if (json_object_set_new(status, "phase", json_string("Running")) < 0)
    return kyb_error_set(err, ENOMEM, "roll-up");
  return kyb_op_cond_set(status, "Ready", "Unknown", "InProgress", msg, gen, now, err) < 0 ? -1 : 0;
}
