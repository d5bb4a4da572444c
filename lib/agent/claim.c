/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The claim protocol, pure (claim.h).
 */
#include "agent/claim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/client.h"
#include "util/cleanup.h"

kyb_agent_decision kyb_agent_decide(const kyb_agent_request *r, const char *node, bool running_here,
                                    const char **why) {
  const char *w = NULL;
  kyb_agent_decision d = KYB_AGENT_SKIP;
  if (r->node == NULL || strcmp(r->node, node) != 0)
    w = "for another node";
  else if (kyb_agent_request_final(r))
    w = "finished";
  else if (running_here)
    w = "running here";
  else if (r->phase == KYB_AGENT_PHASE_PENDING) {
    d = KYB_AGENT_CLAIM;
    w = "pending";
  } else {
    d = KYB_AGENT_TAKE_OVER;
    w = "left running by a previous agent";
  }
  if (why != NULL)
    *why = w;
  return d;
}

int64_t kyb_agent_deadline_left(const kyb_agent_request *r, int64_t now_us) {
  int64_t budget = (int64_t)r->deadline_s * 1000000;
  if (r->started_us <= 0)
    return budget;
  return r->started_us + budget - now_us;
}

bool kyb_agent_deadline_passed(const kyb_agent_request *r, int64_t now_us) {
  return kyb_agent_deadline_left(r, now_us) <= 0;
}

bool kyb_agent_renew_due(int64_t last_us, int64_t now_us) {
  return last_us <= 0 || now_us - last_us >= KYB_AGENT_RENEW_INTERVAL_US;
}

/* ---- JSON helpers ---------------------------------------------------------------------- */

static int set_new(json_t *o, const char *key, json_t *v, kyb_error **err) {
  if (v == NULL || json_object_set_new(o, key, v) < 0)
    return kyb_error_set(err, ENOMEM, "status.%s", key);
  return 0;
}

static int set_time(json_t *o, const char *key, int64_t us, kyb_error **err) {
  char buf[40];
  kyb_kube_time_format(us, false, buf, sizeof(buf));
  return set_new(o, key, json_string(buf), err);
}

/* status, created when missing or not an object. */
static json_t *status_of(json_t *obj, kyb_error **err) {
  json_t *st = json_object_get(obj, "status");
  if (json_is_object(st))
    return st;
  st = json_object();
  if (st == NULL || json_object_set_new(obj, "status", st) < 0) {
    kyb_error_set(err, ENOMEM, "status");
    return NULL;
  }
  return st;
}

static int64_t generation_of(const json_t *obj) {
  const json_t *g = json_object_get(json_object_get(obj, "metadata"), "generation");
  return json_is_integer(g) && json_integer_value(g) > 0 ? json_integer_value(g) : 0;
}

/* A message cut at KYB_AGENT_MAX_MESSAGE bytes on a UTF-8 boundary, never
 * in the middle of a character (the API server would refuse invalid UTF-8). */
static json_t *message_string(const char *msg) {
  size_t n = strlen(msg);
  if (n <= KYB_AGENT_MAX_MESSAGE)
    return json_string(msg);
  n = KYB_AGENT_MAX_MESSAGE - 3;
  while (n > 0 && ((unsigned char)msg[n] & 0xC0) == 0x80)
    n--;
  char *cut = malloc(n + 4);
  if (cut == NULL)
    return NULL;
  snprintf(cut, n + 4, "%.*s...", (int)n, msg);
  json_t *s = json_string(cut);
  free(cut);
  return s;
}

int kyb_agent_set_condition(json_t *obj, const char *type, const char *status, const char *reason,
                            const char *message, int64_t now_us, kyb_error **err) {
  json_t *st = status_of(obj, err);
  if (st == NULL)
    return -1;
  json_t *conds = json_object_get(st, "conditions");
  if (!json_is_array(conds)) {
    conds = json_array();
    if (set_new(st, "conditions", conds, err) < 0)
      return -1;
  }
  json_t *c = NULL;
  for (size_t i = 0; i < json_array_size(conds); i++) {
    json_t *e = json_array_get(conds, i);
    const char *t = json_string_value(json_object_get(e, "type"));
    if (json_is_object(e) && t != NULL && strcmp(t, type) == 0) {
      c = e;
      break;
    }
  }
  if (c == NULL) {
    c = json_object();
    if (c == NULL || json_array_append_new(conds, c) < 0)
      return kyb_error_set(err, ENOMEM, "condition %s", type);
    if (set_new(c, "type", json_string(type), err) < 0)
      return -1;
  }
  const char *old = json_string_value(json_object_get(c, "status"));
  bool transition =
      old == NULL || strcmp(old, status) != 0 || json_object_get(c, "lastTransitionTime") == NULL;
  if (set_new(c, "status", json_string(status), err) < 0 ||
      set_new(c, "reason", json_string(reason), err) < 0 ||
      set_new(c, "message", message_string(message ? message : ""), err) < 0 ||
      set_new(c, "observedGeneration", json_integer(generation_of(obj)), err) < 0)
    return -1;
  if (transition && set_time(c, "lastTransitionTime", now_us, err) < 0)
    return -1;
  return 0;
}

/* ---- claim, renew, finish -------------------------------------------------------------- */

int kyb_agent_status_claim(json_t *obj, const kyb_agent_identity *me, bool takeover, int64_t now_us,
                           kyb_error **err) {
  json_t *st = status_of(obj, err);
  if (st == NULL)
    return -1;
  const json_t *a = json_object_get(st, "attempts");
  json_int_t attempts = json_is_integer(a) && json_integer_value(a) > 0 ? json_integer_value(a) : 0;
  if (attempts >= 100)
    return kyb_error_set(err, ELOOP, "the request was claimed 100 times already");
  json_t *agent = json_object();
  if (set_new(st, "agent", agent, err) < 0 ||
      set_new(agent, "podName", json_string(me->pod_name), err) < 0 ||
      set_new(agent, "podUID", json_string(me->pod_uid), err) < 0 ||
      set_time(agent, "claimedAt", now_us, err) < 0 ||
      set_time(agent, "renewTime", now_us, err) < 0 ||
      set_new(st, "phase", json_string("Running"), err) < 0 ||
      set_new(st, "attempts", json_integer(attempts + 1), err) < 0 ||
      set_new(st, "observedGeneration", json_integer(generation_of(obj)), err) < 0)
    return -1;
  if (!takeover || !json_is_string(json_object_get(st, "step")))
    if (set_new(st, "step", json_string("claimed"), err) < 0)
      return -1;
  if (!json_is_string(json_object_get(st, "startedAt")) &&
      set_time(st, "startedAt", now_us, err) < 0)
    return -1;
  return kyb_agent_set_condition(
      obj, KYB_AGENT_CONDITION_SUCCEEDED, "Unknown", takeover ? "Recovering" : "InProgress",
      takeover ? "a previous agent of this node stopped while running the request: finishing it "
                 "from the node's state"
               : "claimed by the node's agent",
      now_us, err);
}

json_t *kyb_agent_renew_patch(const char *step, const json_t *timings, int64_t now_us) {
  char buf[40];
  kyb_kube_time_format(now_us, false, buf, sizeof(buf));
  json_t *st = json_pack("{s:{s:s}}", "agent", "renewTime", buf);
  if (st == NULL)
    return NULL;
  if (step != NULL && json_object_set_new(st, "step", json_string(step)) < 0)
    goto fail;
  if (timings != NULL && json_object_set_new(st, "timings", json_deep_copy(timings)) < 0)
    goto fail;
  return json_pack("{s:o}", "status", st);
fail:
  json_decref(st);
  return NULL;
}

/* status.images and the single-image shortcuts; sizeBytes is the sum. */
static int set_images(json_t *st, const json_t *images, kyb_error **err) {
  json_int_t total = 0;
  size_t n = json_array_size(images);
  for (size_t i = 0; i < n; i++)
    total += json_integer_value(json_object_get(json_array_get(images, i), "sizeBytes"));
  if (n == 0)
    return 0;
  if (set_new(st, "images", json_deep_copy(images), err) < 0 ||
      set_new(st, "sizeBytes", json_integer(total), err) < 0)
    return -1;
  if (n == 1) {
    const json_t *one = json_array_get(images, 0);
    const json_t *ref = json_object_get(one, "imageRef");
    const json_t *dig = json_object_get(one, "imageDigest");
    if (ref != NULL && set_new(st, "imageRef", json_deep_copy(ref), err) < 0)
      return -1;
    if (dig != NULL && set_new(st, "imageDigest", json_deep_copy(dig), err) < 0)
      return -1;
  }
  return 0;
}

int kyb_agent_status_finish(json_t *obj, const kyb_agent_outcome *o, int64_t now_us,
                            kyb_error **err) {
  json_t *st = status_of(obj, err);
  if (st == NULL)
    return -1;
  if (set_new(st, "phase", json_string(o->succeeded ? "Completed" : "Failed"), err) < 0 ||
      set_new(st, "step", json_string("done"), err) < 0 ||
      set_time(st, "completedAt", now_us, err) < 0 ||
      set_new(st, "observedGeneration", json_integer(generation_of(obj)), err) < 0)
    return -1;
  json_t *agent = json_object_get(st, "agent");
  if (json_is_object(agent) && set_time(agent, "renewTime", now_us, err) < 0)
    return -1;
  if (o->images != NULL && set_images(st, o->images, err) < 0)
    return -1;
  if (json_array_size(o->gpus) > 0 && set_new(st, "gpus", json_deep_copy(o->gpus), err) < 0)
    return -1;
  json_t *timings = o->timings ? json_deep_copy(o->timings) : json_object();
  if (set_new(st, "timings", timings, err) < 0)
    return -1;
  if (json_object_get(timings, "total") == NULL) {
    int64_t started = 0;
    const char *s = json_string_value(json_object_get(st, "startedAt"));
    cleanup_error kyb_error *terr = NULL;
    if (s == NULL || kyb_kube_time_parse(s, &started, &terr) < 0 || started > now_us)
      started = now_us;
    if (set_new(timings, "total", json_integer((now_us - started) / 1000), err) < 0)
      return -1;
  }
  return kyb_agent_set_condition(obj, KYB_AGENT_CONDITION_SUCCEEDED,
                                 o->succeeded ? "True" : "False", o->reason, o->message, now_us,
                                 err);
}

/* ---- mapping the worker's words onto the API's ----------------------------------------- */

const char *kyb_agent_failure_reason(const char *phase, int errnum, const char *message) {
  if (phase == NULL || *phase == '\0')
    /* Before the first phase: finding the container and its task. */
    return errnum == ENOENT || errnum == ESRCH ? "ContainerNotFound" : "DumpFailed";
  if (strcmp(phase, "gpu_checkpoint") == 0 || strcmp(phase, "gpu_lock") == 0)
    return message != NULL && strstr(message, "GPU lock timeout") != NULL ? "GPULockTimeout"
                                                                          : "GPUCheckpointFailed";
  if (strcmp(phase, "pause") == 0 || strcmp(phase, "criu_dump") == 0)
    return "DumpFailed";
  if (strcmp(phase, "rootfs_diff") == 0 || strcmp(phase, "package") == 0)
    return "PublishFailed";
  if (strcmp(phase, "upload") == 0)
    return "UploadFailed";
  return "DumpFailed";
}

const char *kyb_agent_step_of_phase(const char *phase) {
  static const char *const map[][2] = {
      {"gpu_checkpoint", "gpu_checkpoint"}, {"pause", "dump"},      {"criu_dump", "dump"},
      {"rootfs_diff", "rootfs_diff"},       {"package", "publish"}, {"resume", "gpu_restore"},
      {"gpu_restore", "gpu_restore"},       {"stop", "stop"},       {"upload", "upload"},
  };
  for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
    if (strcmp(map[i][0], phase) == 0)
      return map[i][1];
  return NULL;
}
