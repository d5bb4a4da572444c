/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The OCI spec rewrite that gives a container other GPUs.  See gpu_spec.h.
 */
#include "ops/gpu_spec.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/gpumap.h"
#include "util/cleanup.h"

/* The object member `key` of `parent`, created empty when absent. */
static json_t *child(json_t *parent, const char *key, bool array, kyb_error **err) {
  json_t *c = json_object_get(parent, key);
  if (c != NULL && !json_is_null(c)) {
    if (array ? !json_is_array(c) : !json_is_object(c)) {
      kyb_error_set(err, EINVAL, "spec %s is not an %s", key, array ? "array" : "object");
      return NULL;
    }
    return c;
  }
  c = array ? json_array() : json_object();
  if (c == NULL || json_object_set_new(parent, key, c) < 0) {
    kyb_error_set(err, ENOMEM, "spec %s", key);
    return NULL;
  }
  return c;
}

static bool in(const int *set, size_t n, long long v) {
  for (size_t i = 0; i < n; i++)
    if (set[i] == v)
      return true;
  return false;
}

/* Drops the GPU device entries of linux.devices; their minors go to
 * old[] (*nold of them).  Returns 0, or -1 on a malformed entry. */
static int drop_devices(json_t *devs, int *old, size_t *nold, kyb_error **err) {
  *nold = 0;
  for (size_t i = json_array_size(devs); i-- > 0;) {
    int m = -1;
    int r = kyb_nvidia_device_entry(json_array_get(devs, i), i, &m, err);
    if (r < 0)
      return -1;
    if (r == 0)
      continue;
    if (!in(old, *nold, m)) {
      if (*nold == KYB_NVIDIA_MAX_GPUS)
        return kyb_error_set(err, E2BIG, "spec linux.devices names more than %d GPUs",
                             KYB_NVIDIA_MAX_GPUS);
      old[(*nold)++] = m;
    }
    json_array_remove(devs, i);
  }
  return 0;
}

/* An allow rule of linux.resources.devices for an NVIDIA GPU minor in set. */
static bool gpu_allow_rule(const json_t *rule, const int *set, size_t n) {
  const json_t *allow = json_object_get(rule, "allow");
  const char *type = json_string_value(json_object_get(rule, "type"));
  const json_t *major = json_object_get(rule, "major");
  const json_t *minor = json_object_get(rule, "minor");
  return json_is_true(allow) && type != NULL && strcmp(type, "c") == 0 && json_is_integer(major) &&
         json_integer_value(major) == KYB_NVIDIA_MAJOR && json_is_integer(minor) &&
         in(set, n, json_integer_value(minor));
}

static int set_devices(json_t *spec, json_t *devs, const int *old, size_t nold,
                       const kyb_cuda_visible *gpus, kyb_error **err) {
  json_t *linux_ = json_object_get(spec, "linux");
  json_t *res = child(linux_, "resources", false, err);
  json_t *rules = res ? child(res, "devices", true, err) : NULL;
  if (rules == NULL)
    return kyb_error_wrap(err, "spec linux.resources");
  /* Old and new minors: an allow rule for a new one is written once below. */
  int drop[2 * KYB_NVIDIA_MAX_GPUS];
  size_t ndrop = 0;
  for (size_t i = 0; i < nold; i++)
    drop[ndrop++] = old[i];
  for (size_t i = 0; i < gpus->count; i++)
    drop[ndrop++] = gpus->minors[i];
  for (size_t i = json_array_size(rules); i-- > 0;)
    if (gpu_allow_rule(json_array_get(rules, i), drop, ndrop))
      json_array_remove(rules, i);
  for (size_t i = 0; i < gpus->count; i++) {
    int m = gpus->minors[i];
    char path[32];
    snprintf(path, sizeof(path), "/dev/nvidia%d", m);
    json_t *dev =
        json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:i}", "path", path, "type", "c", "major",
                  KYB_NVIDIA_MAJOR, "minor", m, "fileMode", 0666, "uid", 0, "gid", 0);
    json_t *rule = json_pack("{s:b, s:s, s:i, s:i, s:s}", "allow", 1, "type", "c", "major",
                             KYB_NVIDIA_MAJOR, "minor", m, "access", "rwm");
    if (dev == NULL || json_array_append_new(devs, dev) < 0 || rule == NULL ||
        json_array_append_new(rules, rule) < 0)
      return kyb_error_set(err, ENOMEM, "spec devices");
  }
  return 0;
}

/* "GPU-a,GPU-b", or "none" for no GPU. */
static char *uuid_list(const kyb_cuda_visible *gpus) {
  if (gpus->count == 0)
    return strdup("none");
  char *text = calloc(gpus->count, KYB_CUDA_UUID_STRLEN + 1);
  if (text == NULL)
    return NULL;
  for (size_t i = 0; i < gpus->count; i++) {
    if (i > 0)
      strcat(text, ",");
    char u[KYB_CUDA_UUID_STRLEN + 1];
    kyb_cuda_uuid_format(&gpus->uuids[i], u);
    strcat(text, u);
  }
  return text;
}

/* NVIDIA_VISIBLE_DEVICES=<value>: every such entry rewritten, or one
 * appended when there is none and `add`. */
static int set_env(json_t *spec, const char *value, bool add, kyb_error **err) {
  if (!add && json_object_get(json_object_get(spec, "process"), "env") == NULL)
    return 0;
  json_t *proc = child(spec, "process", false, err);
  json_t *env = proc ? child(proc, "env", true, err) : NULL;
  if (env == NULL)
    return kyb_error_wrap(err, "spec process");
  cleanup_free char *entry = NULL;
  if (asprintf(&entry, "%s=%s", KYB_NVIDIA_VISIBLE_ENV, value) < 0) {
    entry = NULL;
    return kyb_error_set(err, ENOMEM, "spec env");
  }
  size_t nlen = strlen(KYB_NVIDIA_VISIBLE_ENV), i;
  json_t *e;
  bool found = false;
  json_array_foreach(env, i, e) {
    const char *s = json_string_value(e);
    if (s == NULL)
      return kyb_error_set(err, EINVAL, "spec process.env[%zu] is not a string", i);
    if (strncmp(s, KYB_NVIDIA_VISIBLE_ENV, nlen) == 0 && s[nlen] == '=') {
      if (json_array_set_new(env, i, json_string(entry)) < 0)
        return kyb_error_set(err, ENOMEM, "spec env");
      found = true;
    }
  }
  if (!found && add && json_array_append_new(env, json_string(entry)) < 0)
    return kyb_error_set(err, ENOMEM, "spec env");
  return 0;
}

int kyb_ops_spec_set_gpus(json_t *spec, kyb_cuda_visible *gpus, const char *nvidia_proc,
                          kyb_error **err) {
  if (gpus->all)
    return kyb_error_set(err, EINVAL, "give the new container a list of GPUs, not all");
  if (!json_is_object(spec))
    return kyb_error_set(err, EINVAL, "the OCI spec is not an object");
  json_t *linux_ = json_object_get(spec, "linux");
  json_t *devs = json_object_get(linux_, "devices");
  if (linux_ != NULL && !json_is_null(linux_) && !json_is_object(linux_))
    return kyb_error_set(err, EINVAL, "spec linux is not an object");
  if (devs != NULL && !json_is_null(devs) && !json_is_array(devs))
    return kyb_error_set(err, EINVAL, "spec linux.devices is not an array");
  int old[KYB_NVIDIA_MAX_GPUS];
  size_t nold = 0;
  if (json_is_array(devs) && drop_devices(devs, old, &nold, err) < 0)
    return -1;
  bool had_devices = nold > 0;
  if (had_devices && (kyb_cuda_visible_minors(gpus, nvidia_proc, err) < 0 ||
                      set_devices(spec, devs, old, nold, gpus, err) < 0))
    return -1;
  cleanup_free char *value = uuid_list(gpus);
  if (value == NULL)
    return kyb_error_set(err, ENOMEM, "spec env");
  return set_env(spec, value, !had_devices, err);
}
