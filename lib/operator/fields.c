/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Field access, times and conditions for the reconcilers (contract in
 * fields.h).  Pure: no I/O.
 */
#include "operator/fields.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"

const kyb_kube_resource kyb_op_res_checkpoints = {"kybernate.io", "v1alpha1", "checkpoints", true};
const kyb_kube_resource kyb_op_res_restores = {"kybernate.io", "v1alpha1", "restores", true};
const kyb_kube_resource kyb_op_res_requests = {"kybernate.io", "v1alpha1", "checkpointrequests",
                                               true};

json_t *kyb_op_getk(const json_t *obj, const char *const *keys) {
  const json_t *cur = obj;
  for (; *keys != NULL; keys++) {
    if (!json_is_object(cur))
      return NULL;
    cur = json_object_get(cur, *keys);
  }
  return (json_t *)cur;
}

const char *kyb_op_strk(const json_t *obj, const char *const *keys) {
  json_t *v = kyb_op_getk(obj, keys);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

const char *kyb_op_str0k(const json_t *obj, const char *const *keys) {
  const char *s = kyb_op_strk(obj, keys);
  return s != NULL ? s : "";
}

json_int_t kyb_op_intk(json_int_t dflt, const json_t *obj, const char *const *keys) {
  json_t *v = kyb_op_getk(obj, keys);
  return json_is_integer(v) ? json_integer_value(v) : dflt;
}

bool kyb_op_boolk(bool dflt, const json_t *obj, const char *const *keys) {
  json_t *v = kyb_op_getk(obj, keys);
  return json_is_boolean(v) ? json_is_true(v) : dflt;
}

json_t *kyb_op_child(json_t *obj, const char *key) {
  json_t *v = json_object_get(obj, key);
  if (json_is_object(v))
    return v;
  v = json_object();
  if (v == NULL || json_object_set_new(obj, key, v) < 0)
    return NULL;
  return v;
}

int64_t kyb_op_timek(const json_t *obj, const char *const *keys) {
  json_t *v = kyb_op_getk(obj, keys);
  if (!json_is_string(v))
    return 0;
  int64_t us = 0;
  cleanup_error kyb_error *err = NULL;
  if (kyb_kube_time_parse(json_string_value(v), &us, &err) < 0)
    return 0;
  return us;
}

void kyb_op_time_str(int64_t us, char *buf, size_t size) {
  kyb_kube_time_format(us, false, buf, size);
}

/* ---- conditions ---- */

json_t *kyb_op_cond(const json_t *status, const char *type) {
  json_t *conds = kyb_op_get(status, "conditions", NULL);
  size_t i;
  json_t *c;
  json_array_foreach(conds, i, c) {
    const char *t = kyb_op_str(c, "type", NULL);
    if (t != NULL && strcmp(t, type) == 0)
      return c;
  }
  return NULL;
}

bool kyb_op_cond_is(const json_t *status, const char *type, const char *cstatus) {
  json_t *c = kyb_op_cond(status, type);
  return c != NULL && strcmp(kyb_op_str0(c, "status", NULL), cstatus) == 0;
}

char *kyb_op_truncate_utf8(const char *msg, size_t max) {
  size_t n = strlen(msg);
  if (n > max) {
    n = max;
    /* Back off over continuation bytes (10xxxxxx) to the start of the
     * sequence the cut would split, and drop that start too. */
    size_t k = n;
    while (k > 0 && ((unsigned char)msg[k] & 0xC0) == 0x80)
      k--;
    n = k;
  }
  return strndup(msg, n);
}

/* Sets key to a string when it differs; 1 when it changed, -1 on ENOMEM. */
static int set_str(json_t *obj, const char *key, const char *val) {
  const char *cur = kyb_op_str(obj, key, NULL);
  if (cur != NULL && strcmp(cur, val) == 0)
    return 0;
  return json_object_set_new(obj, key, json_string(val)) < 0 ? -1 : 1;
}

int kyb_op_cond_set(json_t *status, const char *type, const char *cstatus, const char *reason,
                    const char *message, json_int_t generation, const char *now, kyb_error **err) {
  cleanup_free char *msg = kyb_op_truncate_utf8(message != NULL ? message : "", KYB_OP_MAX_MESSAGE);
  if (msg == NULL)
    return kyb_error_set(err, ENOMEM, "condition %s", type);
  json_t *conds = json_object_get(status, "conditions");
  if (!json_is_array(conds)) {
    conds = json_array();
    if (conds == NULL || json_object_set_new(status, "conditions", conds) < 0)
      return kyb_error_set(err, ENOMEM, "condition %s", type);
  }
  json_t *c = kyb_op_cond(status, type);
  if (c == NULL) {
    c = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s}", "type", type, "status", cstatus,
                  "observedGeneration", generation, "lastTransitionTime", now, "reason", reason,
                  "message", msg);
    if (c == NULL || json_array_append_new(conds, c) < 0)
      return kyb_error_set(err, ENOMEM, "condition %s", type);
    return 1;
  }
  int changed = 0, r;
  if ((r = set_str(c, "status", cstatus)) < 0)
    return kyb_error_set(err, ENOMEM, "condition %s", type);
  /* The transition time moves with the status only; a condition someone
   * wrote without one gets one (the schema requires it). */
  if (r > 0 || kyb_op_str(c, "lastTransitionTime", NULL) == NULL) {
    if (json_object_set_new(c, "lastTransitionTime", json_string(now)) < 0)
      return kyb_error_set(err, ENOMEM, "condition %s", type);
    changed = 1;
  }
  if ((r = set_str(c, "reason", reason)) < 0)
    return kyb_error_set(err, ENOMEM, "condition %s", type);
  changed |= r;
  if ((r = set_str(c, "message", msg)) < 0)
    return kyb_error_set(err, ENOMEM, "condition %s", type);
  changed |= r;
  if (kyb_op_int(-1, c, "observedGeneration", NULL) != generation) {
    if (json_object_set_new(c, "observedGeneration", json_integer(generation)) < 0)
      return kyb_error_set(err, ENOMEM, "condition %s", type);
    changed = 1;
  }
  return changed;
}

void kyb_op_format_bytes(int64_t bytes, char *buf, size_t size) {
  static const char *const units[] = {"kB", "MB", "GB", "TB", "PB", "EB"};
  if (bytes < 1000) {
    snprintf(buf, size, "%lld B", (long long)bytes);
    return;
  }
  double v = (double)bytes / 1000.0;
  size_t u = 0;
  while (v >= 999.95 && u + 1 < sizeof(units) / sizeof(units[0])) {
    v /= 1000.0;
    u++;
  }
  snprintf(buf, size, "%.1f %s", v, units[u]);
}

int kyb_op_status_fail(json_t *status, json_int_t generation, const char *first, bool first_applies,
                       const char *reason, const char *message, int64_t now_us, const char *what,
                       kyb_error **err) {
  char now[40];
  kyb_op_time_str(now_us, now, sizeof(now));
  if (json_object_set_new(status, "phase", json_string("Failed")) < 0 ||
      (kyb_op_str(status, "completedAt", NULL) == NULL &&
       json_object_set_new(status, "completedAt", json_string(now)) < 0) ||
      json_object_set_new(status, "observedGeneration", json_integer(generation)) < 0)
    return kyb_error_set(err, ENOMEM, "%s", what);
  if (first_applies &&
      kyb_op_cond_set(status, first, "False", reason, message, generation, now, err) < 0)
    return -1;
  return kyb_op_cond_set(status, "Ready", "False", reason, message, generation, now, err) < 0 ? -1
                                                                                              : 0;
}
