/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Checkpoint side, pure (contract in rollup.h): pod checks, request names
 * and objects, the failure status, image references.  The roll-up itself is
 * in rollup.c.
 */
#include "operator/rollup.h"

#include <errno.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/fields.h"
#include "util/cleanup.h"

void kyb_op_request_name(const char *base, const char *seed, char *out, size_t size) {
  /* generateName's alphabet: no vowels (no words), no 0/1/3 (look-alikes). */
  static const char alphabet[] = "bcdfghjklmnpqrstvwxz2456789";
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)seed, strlen(seed), md);
  size_t n = strlen(base);
  if (n > 58)
    n = 58;
  while (n > 0 && (base[n - 1] == '-' || base[n - 1] == '.'))
    n--;
  char suffix[6];
  for (int i = 0; i < 5; i++)
    suffix[i] = alphabet[md[i] % (sizeof(alphabet) - 1)];
  suffix[5] = '\0';
  snprintf(out, size, "%.*s-%s", (int)n, base, suffix);
}

void kyb_op_pod_verdict_clear(kyb_op_pod_verdict *v) {
  free(v->message);
  json_decref(v->containers);
  *v = (kyb_op_pod_verdict){0};
}

static json_t *find_named(const json_t *list, const char *name) {
  size_t i;
  json_t *e;
  json_array_foreach(list, i, e) {
    if (strcmp(kyb_op_str0(e, "name", NULL), name) == 0)
      return e;
  }
  return NULL;
}

/* "a, b, c" of the names in a list of objects (heap). */
static char *names_of(const json_t *list) {
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  if (f == NULL)
    return NULL;
  size_t i;
  json_t *e;
  json_array_foreach(list, i, e) {
    fprintf(f, "%s%s", i > 0 ? ", " : "", kyb_op_str0(e, "name", NULL));
  }
  fclose(f);
  return out;
}

static int refuse(kyb_op_pod_verdict *v, const char *reason, kyb_error **err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int refuse(kyb_op_pod_verdict *v, const char *reason, kyb_error **err, const char *fmt,
                  ...) {
  va_list ap;
  va_start(ap, fmt);
  int r = vasprintf(&v->message, fmt, ap);
  va_end(ap);
  if (r < 0) {
    v->message = NULL;
    return kyb_error_set(err, ENOMEM, "pod check");
  }
  v->reason = reason;
  return 0;
}

int kyb_op_check_pod(const json_t *ckpt, const json_t *pod, kyb_op_pod_verdict *v,
                     kyb_error **err) {
  const char *ns = kyb_op_str0(ckpt, "metadata", "namespace", NULL);
  const char *name = kyb_op_str0(ckpt, "spec", "podName", NULL);
  *v = (kyb_op_pod_verdict){0};
  if (pod == NULL)
    return refuse(v, "PodNotFound", err, "pod %s/%s does not exist", ns, name);
  if (kyb_op_str(pod, "metadata", "deletionTimestamp", NULL) != NULL)
    return refuse(v, "PodNotRunning", err, "pod %s/%s is being deleted", ns, name);
  const char *node = kyb_op_str(pod, "spec", "nodeName", NULL);
  if (node == NULL || node[0] == '\0')
    return refuse(v, "PodNotScheduled", err, "pod %s/%s is not scheduled to a node yet", ns, name);
  const char *phase = kyb_op_str0(pod, "status", "phase", NULL);
  if (strcmp(phase, "Running") != 0)
    return refuse(v, "PodNotRunning", err, "pod %s/%s is %s, not Running", ns, name,
                  phase[0] != '\0' ? phase : "without a phase");
  json_t *spec_containers = kyb_op_get(pod, "spec", "containers", NULL);
  json_t *statuses = kyb_op_get(pod, "status", "containerStatuses", NULL);
  json_t *want = kyb_op_get(ckpt, "spec", "containers", NULL);
  cleanup_json json_t *names = json_array();
  if (names == NULL)
    return kyb_error_set(err, ENOMEM, "pod check");
  size_t i;
  json_t *e;
  if (json_array_size(want) > 0) {
    json_array_foreach(want, i, e) {
      const char *c = json_string_value(e);
      if (c == NULL)
        continue;
      if (find_named(spec_containers, c) == NULL) {
        cleanup_free char *have = names_of(spec_containers);
        return refuse(v, "ContainerNotFound", err,
                      "pod %s/%s has no container %s (its containers: %s)", ns, name, c,
                      have != NULL ? have : "?");
      }
      if (json_array_append(names, e) < 0)
        return kyb_error_set(err, ENOMEM, "pod check");
    }
  } else {
    json_array_foreach(spec_containers, i, e) {
      const char *c = kyb_op_str(e, "name", NULL);
      if (c != NULL && json_array_append_new(names, json_string(c)) < 0)
        return kyb_error_set(err, ENOMEM, "pod check");
    }
  }
  if (json_array_size(names) == 0)
    return refuse(v, "ContainerNotFound", err, "pod %s/%s has no containers", ns, name);
  json_array_foreach(names, i, e) {
    const char *c = json_string_value(e);
    json_t *st = find_named(statuses, c);
    if (!json_is_object(kyb_op_get(st, "state", "running", NULL)))
      return refuse(v, "ContainerNotRunning", err, "container %s of pod %s/%s is not running", c,
                    ns, name);
  }
  v->containers = steal_ptr(names);
  return 0;
}

static json_t *owner_ref(const json_t *ckpt) {
  return json_pack("[{s:s, s:s, s:s, s:s, s:b, s:b}]", "apiVersion", KYB_OP_GROUP_VERSION, "kind",
                   "Checkpoint", "name", kyb_op_str0(ckpt, "metadata", "name", NULL), "uid",
                   kyb_op_str0(ckpt, "metadata", "uid", NULL), "controller", 1,
                   "blockOwnerDeletion", 1);
}

static json_t *request_shell(const json_t *ckpt, const char *name, const char *node) {
  return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}, s:o}, s:{s:s, s:{s:s, s:s}}}", "apiVersion",
                   KYB_OP_GROUP_VERSION, "kind", "CheckpointRequest", "metadata", "name", name,
                   "namespace", kyb_op_str0(ckpt, "metadata", "namespace", NULL), "labels",
                   KYB_OP_LABEL_NODE, node, "ownerReferences", owner_ref(ckpt), "spec", "nodeName",
                   node, "checkpointRef", "name", kyb_op_str0(ckpt, "metadata", "name", NULL),
                   "uid", kyb_op_str0(ckpt, "metadata", "uid", NULL));
}

json_t *kyb_op_request_build(const json_t *ckpt, const json_t *pod, const json_t *containers,
                             const char *name) {
  const char *node = kyb_op_str0(pod, "spec", "nodeName", NULL);
  cleanup_json json_t *req = request_shell(ckpt, name, node);
  json_t *spec = kyb_op_get(req, "spec", NULL);
  if (spec == NULL)
    return NULL;
  const char *storage = kyb_op_str(ckpt, "spec", "storage", NULL);
  if (json_object_set_new(spec, "action", json_string("Checkpoint")) < 0 ||
      json_object_set_new(spec, "podNamespace",
                          json_string(kyb_op_str0(pod, "metadata", "namespace", NULL))) < 0 ||
      json_object_set_new(spec, "podName",
                          json_string(kyb_op_str0(pod, "metadata", "name", NULL))) < 0 ||
      json_object_set_new(spec, "podUID", json_string(kyb_op_str0(pod, "metadata", "uid", NULL))) <
          0 ||
      json_object_set_new(spec, "containers", json_deep_copy(containers)) < 0 ||
      json_object_set_new(spec, "leaveRunning",
                          json_boolean(kyb_op_bool(true, ckpt, "spec", "leaveRunning", NULL))) <
          0 ||
      json_object_set_new(
          spec, "gpuLockTimeoutSeconds",
          json_integer(kyb_op_int(10, ckpt, "spec", "gpuLockTimeoutSeconds", NULL))) < 0 ||
      (storage != NULL && json_object_set_new(spec, "storage", json_string(storage)) < 0))
    return NULL;
  return steal_ptr(req);
}

json_t *kyb_op_delete_request_build(const json_t *ckpt, const char *name, const char *node,
                                    const json_t *refs) {
  cleanup_json json_t *req = request_shell(ckpt, name, node);
  json_t *spec = kyb_op_get(req, "spec", NULL);
  if (spec == NULL)
    return NULL;
  const char *storage = kyb_op_str(ckpt, "spec", "storage", NULL);
  if (json_object_set_new(spec, "action", json_string("DeleteImage")) < 0 ||
      json_object_set_new(spec, "imageRefs", json_deep_copy(refs)) < 0 ||
      (storage != NULL && json_object_set_new(spec, "storage", json_string(storage)) < 0))
    return NULL;
  return steal_ptr(req);
}

bool kyb_op_pod_reason(const char *reason) {
  static const char *const rs[] = {"PodNotFound",       "PodNotRunning",       "PodNotScheduled",
                                   "ContainerNotFound", "ContainerNotRunning", NULL};
  for (const char *const *r = rs; *r != NULL; r++)
    if (strcmp(reason, *r) == 0)
      return true;
  return false;
}

int kyb_op_checkpoint_fail(json_t *status, json_int_t generation, const char *reason,
                           const char *message, int64_t now_us, kyb_error **err) {
  return kyb_op_status_fail(status, generation, "PodResolved", kyb_op_pod_reason(reason), reason,
                            message, now_us, "checkpoint status", err);
}

char *kyb_op_restore_from(const json_t *images) {
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  if (f == NULL)
    return NULL;
  size_t i;
  json_t *img;
  int n = 0;
  json_array_foreach(images, i, img) {
    const char *c = kyb_op_str(img, "container", NULL), *ref = kyb_op_str(img, "imageRef", NULL);
    if (c != NULL && ref != NULL)
      fprintf(f, "%s%s=%s", n++ > 0 ? "," : "", c, ref);
  }
  if (fclose(f) != 0) {
    free(out);
    return NULL;
  }
  return out;
}

static int add_ref(json_t *refs, const char *ref) {
  size_t i;
  json_t *e;
  json_array_foreach(refs, i, e) {
    if (strcmp(json_string_value(e), ref) == 0)
      return 0;
  }
  return json_array_append_new(refs, json_string(ref));
}

json_t *kyb_op_image_refs(const json_t *ckpt, const json_t *requests) {
  cleanup_json json_t *refs = json_array();
  if (refs == NULL)
    return NULL;
  size_t i, j;
  json_t *img, *req;
  json_array_foreach(kyb_op_get(ckpt, "status", "images", NULL), i, img) {
    const char *ref = kyb_op_str(img, "imageRef", NULL);
    if (ref != NULL && add_ref(refs, ref) < 0)
      return NULL;
  }
  json_array_foreach(requests, j, req) {
    if (strcmp(kyb_op_str0(req, "spec", "action", NULL), "DeleteImage") == 0)
      continue;
    json_array_foreach(kyb_op_get(req, "status", "images", NULL), i, img) {
      const char *ref = kyb_op_str(img, "imageRef", NULL);
      if (ref != NULL && add_ref(refs, ref) < 0)
        return NULL;
    }
  }
  return steal_ptr(refs);
}
