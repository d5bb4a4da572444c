/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pod template → restore pod (contract in podspec.h).  Pure: no I/O.
 */
#include "operator/podspec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "operator/fields.h"
#include "util/cleanup.h"

json_t *kyb_op_pod_template(const json_t *pod) {
  json_t *meta = json_object();
  json_t *tmpl = json_pack("{s:o}", "metadata", meta);
  if (tmpl == NULL)
    return NULL;
  json_t *labels = kyb_op_get(pod, "metadata", "labels", NULL);
  json_t *ann = kyb_op_get(pod, "metadata", "annotations", NULL);
  json_t *spec = kyb_op_get(pod, "spec", NULL);
  if ((json_is_object(labels) && json_object_set_new(meta, "labels", json_deep_copy(labels)) < 0) ||
      (json_is_object(ann) && json_object_set_new(meta, "annotations", json_deep_copy(ann)) < 0) ||
      (json_is_object(spec) && json_object_set_new(tmpl, "spec", json_deep_copy(spec)) < 0)) {
    json_decref(tmpl);
    return NULL;
  }
  return tmpl;
}

bool kyb_op_controller_owned_key(const char *key) {
  static const char *const exact[] = {"pod-template-hash",
                                      "controller-revision-hash",
                                      "statefulset.kubernetes.io/pod-name",
                                      "apps.kubernetes.io/pod-index",
                                      "job-name",
                                      "controller-uid",
                                      NULL};
  for (const char *const *k = exact; *k != NULL; k++)
    if (strcmp(key, *k) == 0)
      return true;
  return strncmp(key, "batch.kubernetes.io/", strlen("batch.kubernetes.io/")) == 0;
}

/* Recorded labels/annotations without the controller's keys and ours, then
 * the Restore's over them. */
static json_t *merged_map(const json_t *recorded, const json_t *over, const char *const *ours) {
  json_t *out = json_object();
  if (out == NULL)
    return NULL;
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)recorded, k, v) {
    bool skip = kyb_op_controller_owned_key(k) || !json_is_string(v);
    for (const char *const *o = ours; !skip && *o != NULL; o++)
      skip = strcmp(k, *o) == 0;
    if (!skip && json_object_set(out, k, v) < 0)
      goto oom;
  }
  json_object_foreach((json_t *)over, k, v) {
    if (json_is_string(v) && json_object_set(out, k, v) < 0)
      goto oom;
  }
  return out;
oom:
  json_decref(out);
  return NULL;
}

static bool is_token_volume(const json_t *vol) {
  const char *name = kyb_op_str0(vol, "name", NULL);
  return strncmp(name, "kube-api-access-", strlen("kube-api-access-")) == 0 &&
         json_is_object(kyb_op_get(vol, "projected", NULL));
}

/* Drops the mounts of the removed volumes from every container of a list. */
static void drop_mounts(json_t *containers, const json_t *removed) {
  size_t i;
  json_t *c;
  json_array_foreach(containers, i, c) {
    json_t *mounts = json_object_get(c, "volumeMounts");
    if (!json_is_array(mounts))
      continue;
    for (size_t m = json_array_size(mounts); m-- > 0;) {
      const char *name = kyb_op_str0(json_array_get(mounts, m), "name", NULL);
      if (json_object_get(removed, name) != NULL)
        json_array_remove(mounts, m);
    }
  }
}

/* The recorded spec as a restore pod's spec (steps 2 and 4 of podspec.h). */
static int restore_spec(json_t *spec, const kyb_op_restore_pod_in *in, const char **reason,
                        char **message) {
  const char *rc = kyb_op_str(spec, "runtimeClassName", NULL);
  if (rc != NULL && strcmp(rc, KYB_OP_RUNTIME_CLASS) != 0) {
    *reason = "RuntimeClassConflict";
    if (asprintf(message,
                 "the checkpointed pod runs with runtimeClassName %s; a restore pod needs "
                 "runtimeClassName kybernate",
                 rc) < 0)
      *message = NULL;
    return 1;
  }
  json_object_del(spec, "nodeName");
  json_object_del(spec, "ephemeralContainers");
  json_object_del(spec, "priority");
  json_object_del(spec, "preemptionPolicy");
  json_t *vols = json_object_get(spec, "volumes");
  cleanup_json json_t *removed = json_object();
  if (removed == NULL)
    return -1;
  if (json_is_array(vols)) {
    for (size_t i = json_array_size(vols); i-- > 0;) {
      json_t *v = json_array_get(vols, i);
      if (is_token_volume(v)) {
        if (json_object_set_new(removed, kyb_op_str0(v, "name", NULL), json_true()) < 0)
          return -1;
        json_array_remove(vols, i);
      }
    }
    if (json_array_size(vols) == 0)
      json_object_del(spec, "volumes");
  }
  drop_mounts(json_object_get(spec, "containers"), removed);
  drop_mounts(json_object_get(spec, "initContainers"), removed);
  if (json_object_set_new(spec, "runtimeClassName", json_string(KYB_OP_RUNTIME_CLASS)) < 0)
    return -1;
  if (in->node_name != NULL &&
      json_object_set_new(spec, "nodeName", json_string(in->node_name)) < 0)
    return -1;
  json_t *sel = kyb_op_get(in->restore, "spec", "nodeSelector", NULL);
  if (json_is_object(sel) && json_object_size(sel) > 0) {
    json_t *ns = kyb_op_child(spec, "nodeSelector");
    if (ns == NULL || json_object_update(ns, sel) < 0)
      return -1;
  }
  return 0;
}

int kyb_op_restore_pod(const kyb_op_restore_pod_in *in, json_t **pod, const char **reason,
                       char **message, kyb_error **err) {
  static const char *const our_labels[] = {KYB_OP_LABEL_RESTORE, NULL};
  static const char *const our_annotations[] = {KYB_OP_ANN_RESTORE_FROM, KYB_OP_ANN_FALLBACK, NULL};
  const json_t *r = in->restore;
  const char *rname = kyb_op_str0(r, "metadata", "name", NULL);
  const char *pname = kyb_op_str(r, "spec", "podTemplate", "name", NULL);
  json_t *rspec = kyb_op_get(in->tmpl, "spec", NULL);
  *pod = NULL;
  if (!json_is_object(rspec) || !json_is_array(json_object_get(rspec, "containers")) ||
      json_array_size(json_object_get(rspec, "containers")) == 0) {
    *reason = "CreateFailed";
    *message = strdup("the recorded pod template has no containers");
    return 1;
  }
  cleanup_json json_t *spec = json_deep_copy(rspec);
  cleanup_json json_t *labels =
      merged_map(kyb_op_get(in->tmpl, "metadata", "labels", NULL),
                 kyb_op_get(r, "spec", "podTemplate", "labels", NULL), our_labels);
  cleanup_json json_t *ann =
      merged_map(kyb_op_get(in->tmpl, "metadata", "annotations", NULL),
                 kyb_op_get(r, "spec", "podTemplate", "annotations", NULL), our_annotations);
  if (spec == NULL || labels == NULL || ann == NULL)
    return kyb_error_set(err, ENOMEM, "restore pod");
  int rc = restore_spec(spec, in, reason, message);
  if (rc != 0)
    return rc < 0 ? kyb_error_set(err, ENOMEM, "restore pod") : 1;
  const char *fallback =
      strcmp(kyb_op_str0(r, "spec", "fallback", NULL), "Cold") == 0 ? "cold" : "none";
  if (json_object_set_new(labels, KYB_OP_LABEL_RESTORE, json_string(rname)) < 0 ||
      json_object_set_new(ann, KYB_OP_ANN_RESTORE_FROM, json_string(in->restore_from)) < 0 ||
      json_object_set_new(ann, KYB_OP_ANN_FALLBACK, json_string(fallback)) < 0)
    return kyb_error_set(err, ENOMEM, "restore pod");
  *pod = json_pack("{s:s, s:s, s:{s:s, s:s, s:O, s:O}, s:O}", "apiVersion", "v1", "kind", "Pod",
                   "metadata", "name", pname != NULL ? pname : rname, "namespace",
                   kyb_op_str0(r, "metadata", "namespace", NULL), "labels", labels, "annotations",
                   ann, "spec", spec);
  if (*pod == NULL)
    return kyb_error_set(err, ENOMEM, "restore pod");
  return 0;
}

json_t *kyb_op_image_template(const json_t *restore) {
  json_t *spec = kyb_op_get(restore, "spec", "podTemplate", "spec", NULL);
  return json_pack("{s:{}, s:O}", "metadata", "spec", json_is_object(spec) ? spec : json_null());
}

int kyb_op_image_restore_from(const json_t *restore, char **out, char **message, kyb_error **err) {
  json_t *containers = kyb_op_get(restore, "spec", "podTemplate", "spec", "containers", NULL);
  const char *first = kyb_op_str(json_array_get(containers, 0), "name", NULL);
  *out = NULL;
  if (first == NULL || first[0] == '\0') {
    *message = strdup("podTemplate.spec names no container to restore into");
    return 1;
  }
  if (asprintf(out, "%s=%s", first, kyb_op_str0(restore, "spec", "imageRef", NULL)) < 0) {
    *out = NULL;
    return kyb_error_set(err, ENOMEM, "restore-from");
  }
  return 0;
}

bool kyb_op_gpu_model_matches(const char *model, const char *label) {
  char norm[257];
  size_t n = strlen(model);
  if (n == 0 || n >= sizeof(norm))
    return false;
  for (size_t i = 0; i <= n; i++)
    norm[i] = model[i] == ' ' ? '-' : model[i];
  if (strcasecmp(label, norm) == 0)
    return true;
  if (strncasecmp(label, norm, n) != 0)
    return false;
  const char *rest = label + n;
  return strcasecmp(rest, "-SHARED") == 0 || strncasecmp(rest, "-MIG-", 5) == 0;
}

int kyb_op_gpu_check(const json_t *checkpoint, const json_t *node, char **message,
                     kyb_error **err) {
  const char *label = kyb_op_str(node, "metadata", "labels", KYB_OP_GPU_PRODUCT_LABEL, NULL);
  json_t *gpus = kyb_op_get(checkpoint, "status", "gpus", NULL);
  *message = NULL;
  if (label == NULL)
    return 0;
  size_t i;
  json_t *g;
  json_array_foreach(gpus, i, g) {
    const char *model = kyb_op_str(g, "model", NULL);
    if (model == NULL || model[0] == '\0' || kyb_op_gpu_model_matches(model, label))
      continue;
    if (asprintf(message,
                 "the checkpoint ran on %s (GPU %s) but node %s has %s=%s; restore onto a node "
                 "with that GPU model",
                 model, kyb_op_str0(g, "uuid", NULL), kyb_op_str0(node, "metadata", "name", NULL),
                 KYB_OP_GPU_PRODUCT_LABEL, label) < 0) {
      *message = NULL;
      return kyb_error_set(err, ENOMEM, "gpu check");
    }
    return 1;
  }
  return 0;
}
