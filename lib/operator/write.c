/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writes the reconcilers share: status through the status subresource,
 * the finalizer, Events (contract in internal.h).
 */
#define KYB_LOG_MODULE "operator"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "operator/fields.h"
#include "operator/internal.h"
#include "util/cleanup.h"
#include "util/log.h"

int64_t kyb_op_now_us(void) {
  return kyb_kube_now_us();
}

int kyb_op_get_opt(kyb_op_ctx *x, const kyb_kube_resource *res, const char *ns, const char *name,
                   json_t **out, kyb_error **err) {
  *out = NULL;
  if (kyb_kube_get(x->c, res, ns, name, out, err) == 0)
    return 0;
  if (kyb_kube_status_of(*err) != 404)
    return -1;
  kyb_error_clear(err);
  return 0;
}

int kyb_op_write_status(kyb_op_ctx *x, const kyb_kube_resource *res, const json_t *obj,
                        const json_t *status, json_t **out, kyb_error **err) {
  if (out != NULL)
    *out = NULL;
  json_t *old = json_object_get(obj, "status");
  if (old != NULL && json_equal(old, status)) {
    if (out != NULL)
      *out = json_incref((json_t *)obj);
    return 0;
  }
  cleanup_json json_t *copy = json_copy((json_t *)obj); /* shallow: only status changes */
  if (copy == NULL || json_object_set(copy, "status", (json_t *)status) < 0)
    return kyb_error_set(err, ENOMEM, "status");
  if (kyb_kube_update(x->c, res, copy, "status", out, err) < 0)
    return kyb_error_wrap(err, "write status of %s %s/%s", res->plural,
                          kyb_op_str0(obj, "metadata", "namespace", NULL),
                          kyb_op_str0(obj, "metadata", "name", NULL));
  return 0;
}

static bool has_finalizer(const json_t *obj, size_t *at) {
  size_t i;
  json_t *f;
  json_array_foreach(kyb_op_get(obj, "metadata", "finalizers", NULL), i, f) {
    if (json_is_string(f) && strcmp(json_string_value(f), KYB_OP_FINALIZER) == 0) {
      *at = i;
      return true;
    }
  }
  return false;
}

int kyb_op_set_finalizer(kyb_op_ctx *x, const json_t *obj, bool add, json_t **out,
                         kyb_error **err) {
  size_t at = 0;
  *out = NULL;
  if (has_finalizer(obj, &at) == add) {
    *out = json_incref((json_t *)obj);
    return 0;
  }
  cleanup_json json_t *copy = json_deep_copy(obj);
  json_t *meta = copy != NULL ? json_object_get(copy, "metadata") : NULL;
  if (meta == NULL)
    return kyb_error_set(err, ENOMEM, "finalizer");
  json_t *fins = json_object_get(meta, "finalizers");
  if (add) {
    if (!json_is_array(fins)) {
      fins = json_array();
      if (fins == NULL || json_object_set_new(meta, "finalizers", fins) < 0)
        return kyb_error_set(err, ENOMEM, "finalizer");
    }
    if (json_array_append_new(fins, json_string(KYB_OP_FINALIZER)) < 0)
      return kyb_error_set(err, ENOMEM, "finalizer");
  } else {
    json_array_remove(fins, at);
  }
  if (kyb_kube_update(x->c, &kyb_op_res_checkpoints, copy, NULL, out, err) < 0)
    return kyb_error_wrap(err, "%s finalizer %s on checkpoint %s/%s", add ? "add" : "remove",
                          KYB_OP_FINALIZER, kyb_op_str0(obj, "metadata", "namespace", NULL),
                          kyb_op_str0(obj, "metadata", "name", NULL));
  return 0;
}

void kyb_op_event(kyb_op_ctx *x, const json_t *obj, const char *type, const char *reason,
                  const char *msg) {
  cleanup_error kyb_error *err = NULL;
  if (kyb_kube_event(x->c, x->rec, obj, type, reason, &err, "%s", msg) < 0)
    log_warn_chain(err, "event %s on %s %s/%s not recorded", reason, kyb_op_str0(obj, "kind", NULL),
                   kyb_op_str0(obj, "metadata", "namespace", NULL),
                   kyb_op_str0(obj, "metadata", "name", NULL));
}
