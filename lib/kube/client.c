/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The generic calls: get, list (one page or all), create, update (PUT),
 * merge patch, delete, and read-modify-write with conflict retry.  Each
 * builds a path with kyb_kube_path, a "what" for messages, and goes through
 * kube_do (transport.c).  Contract in client.h.
 */
#define KYB_LOG_MODULE "kube"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/internal.h"
#include "util/cleanup.h"
#include "util/log.h"

#define WHAT_MAX 600
#define DEFAULT_PAGE 500

/* Namespaced get/create/update/patch/delete need one namespace. */
static int need_ns(const kyb_kube_resource *res, const char *ns, const char *what,
                   kyb_error **err) {
  if (res->namespaced && (ns == NULL || ns[0] == '\0'))
    return kyb_error_set(err, EINVAL, "kube: %s: a namespace is needed", what);
  return 0;
}

static const char *meta_str(const json_t *obj, const char *field) {
  return json_string_value(json_object_get(json_object_get(obj, "metadata"), field));
}

int kyb_kube_get(kyb_kube_client *c, const kyb_kube_resource *res, const char *ns, const char *name,
                 json_t **out, kyb_error **err) {
  char what[WHAT_MAX];
  ns = kube_ns(c, res, ns);
  kube_what(what, sizeof(what), "get", res, ns, name);
  cleanup_free char *path = NULL;
  if (need_ns(res, ns, what, err) < 0)
    return -1;
  if (name == NULL)
    return kyb_error_set(err, EINVAL, "kube: %s: no name", what);
  if (kyb_kube_path(res, ns, name, NULL, &path, err) < 0)
    return kyb_error_wrap(err, "kube: %s", what);
  kube_req rq = {.method = "GET", .path = path, .what = what};
  return kube_do_json(c, &rq, out, err);
}

static int list_query(char **path, const kyb_kube_list_opts *o, kyb_error **err) {
  if (o == NULL)
    return 0;
  char num[32];
  if (o->label_selector != NULL && o->label_selector[0] != '\0' &&
      kube_query_add(path, "labelSelector", o->label_selector, err) < 0)
    return -1;
  if (o->field_selector != NULL && o->field_selector[0] != '\0' &&
      kube_query_add(path, "fieldSelector", o->field_selector, err) < 0)
    return -1;
  if (o->limit > 0) {
    snprintf(num, sizeof(num), "%ld", o->limit);
    if (kube_query_add(path, "limit", num, err) < 0)
      return -1;
  }
  if (o->continue_token != NULL && o->continue_token[0] != '\0' &&
      kube_query_add(path, "continue", o->continue_token, err) < 0)
    return -1;
  if (o->resource_version != NULL &&
      kube_query_add(path, "resourceVersion", o->resource_version, err) < 0)
    return -1;
  return 0;
}

/* A List answer: items an array of objects (null becomes []), metadata with
 * a string resourceVersion. */
static int check_list(const char *what, json_t *list, kyb_error **err) {
  json_t *items = json_object_get(list, "items");
  if (items == NULL || json_is_null(items)) {
    if (json_object_set_new(list, "items", json_array()) < 0)
      return kyb_error_set(err, ENOMEM, "kube: %s", what);
    items = json_object_get(list, "items");
  }
  if (!json_is_array(items))
    return kyb_error_set(err, EPROTO, "kube: %s: malformed answer: items is not a list", what);
  size_t i;
  json_t *it;
  json_array_foreach(items, i, it) {
    if (!json_is_object(it))
      return kyb_error_set(err, EPROTO, "kube: %s: malformed answer: items[%zu] is not an object",
                           what, i);
  }
  if (!json_is_string(json_object_get(json_object_get(list, "metadata"), "resourceVersion")))
    return kyb_error_set(err, EPROTO, "kube: %s: malformed answer: no metadata.resourceVersion",
                         what);
  return 0;
}

int kyb_kube_list(kyb_kube_client *c, const kyb_kube_resource *res, const char *ns,
                  const kyb_kube_list_opts *opts, json_t **out, kyb_error **err) {
  char what[WHAT_MAX];
  ns = kube_ns(c, res, ns);
  kube_what(what, sizeof(what), "list", res, ns, NULL);
  cleanup_free char *path = NULL;
  if (kyb_kube_path(res, ns, NULL, NULL, &path, err) < 0 || list_query(&path, opts, err) < 0)
    return kyb_error_wrap(err, "kube: %s", what);
  kube_req rq = {.method = "GET", .path = path, .what = what};
  cleanup_json json_t *list = NULL;
  if (kube_do_json(c, &rq, &list, err) < 0 || check_list(what, list, err) < 0)
    return -1;
  *out = steal_ptr(list);
  return 0;
}

static int list_pages(kyb_kube_client *c, const kyb_kube_resource *res, const char *ns,
                      kyb_kube_list_opts o, json_t *items, char **rv, kyb_error **err) {
  cleanup_free char *cont = NULL;
  for (;;) {
    o.continue_token = cont;
    cleanup_json json_t *page = NULL;
    if (kyb_kube_list(c, res, ns, &o, &page, err) < 0)
      return -1;
    if (json_array_extend(items, json_object_get(page, "items")) < 0)
      return kyb_error_set(err, ENOMEM, "kube: list");
    json_t *meta = json_object_get(page, "metadata");
    free(*rv);
    *rv = strdup(json_string_value(json_object_get(meta, "resourceVersion")));
    const char *next = json_string_value(json_object_get(meta, "continue"));
    free(cont);
    cont = next != NULL && next[0] != '\0' ? strdup(next) : NULL;
    if (*rv == NULL || (next != NULL && next[0] != '\0' && cont == NULL))
      return kyb_error_set(err, ENOMEM, "kube: list");
    if (cont == NULL || o.limit <= 0)
      return 0;
  }
}

int kyb_kube_list_all(kyb_kube_client *c, const kyb_kube_resource *res, const char *ns,
                      const kyb_kube_list_opts *opts, json_t **items, char **rv, kyb_error **err) {
  kyb_kube_list_opts o = opts != NULL ? *opts : (kyb_kube_list_opts){0};
  if (o.limit == 0)
    o.limit = DEFAULT_PAGE;
  o.continue_token = NULL;
  cleanup_json json_t *all = json_array();
  cleanup_free char *v = NULL;
  if (all == NULL)
    return kyb_error_set(err, ENOMEM, "kube: list");
  if (list_pages(c, res, ns, o, all, &v, err) < 0) {
    if (kyb_kube_status_of(*err) != 410 || o.limit < 0)
      return -1;
    /* The continue token expired between pages: one list without paging
     * (client-go's pager falls back the same way). */
    log_info("list: continue token expired, listing again without paging");
    kyb_error_clear(err);
    json_array_clear(all);
    o.limit = -1;
    if (list_pages(c, res, ns, o, all, &v, err) < 0)
      return -1;
  }
  *items = steal_ptr(all);
  *rv = steal_ptr(v);
  return 0;
}

static char *dump(const json_t *obj) {
  return json_dumps(obj, JSON_COMPACT);
}

/* "x", or "x-*" for generateName: for messages only. */
static void obj_name(const json_t *obj, char *buf, size_t size) {
  const char *n = meta_str(obj, "name");
  const char *g = meta_str(obj, "generateName");
  if (n != NULL)
    snprintf(buf, size, "%s", n);
  else if (g != NULL)
    snprintf(buf, size, "%s*", g);
  else
    snprintf(buf, size, "(no name)");
}

int kyb_kube_create(kyb_kube_client *c, const kyb_kube_resource *res, const char *ns,
                    const json_t *obj, json_t **out, kyb_error **err) {
  char what[WHAT_MAX], name[300];
  if (ns == NULL)
    ns = meta_str(obj, "namespace");
  ns = kube_ns(c, res, ns);
  obj_name(obj, name, sizeof(name));
  kube_what(what, sizeof(what), "create", res, ns, name);
  if (!json_is_object(obj))
    return kyb_error_set(err, EINVAL, "kube: %s: not a JSON object", what);
  cleanup_free char *path = NULL;
  if (need_ns(res, ns, what, err) < 0)
    return -1;
  if (kyb_kube_path(res, ns, NULL, NULL, &path, err) < 0)
    return kyb_error_wrap(err, "kube: %s", what);
  cleanup_free char *body = dump(obj);
  if (body == NULL)
    return kyb_error_set(err, ENOMEM, "kube: %s", what);
  kube_req rq = {.method = "POST",
                 .path = path,
                 .what = what,
                 .content_type = "application/json",
                 .body = body,
                 .body_len = strlen(body)};
  return kube_do_json(c, &rq, out, err);
}

/* PUT or PATCH of one named object. */
static int write_named(kyb_kube_client *c, const kyb_kube_resource *res, const char *method,
                       const char *verb, const char *ns, const char *name, const char *sub,
                       const char *content_type, const json_t *doc, json_t **out, kyb_error **err) {
  char what[WHAT_MAX], v[64];
  snprintf(v, sizeof(v), "%s%s%s", verb, sub ? " " : "", sub ? sub : "");
  ns = kube_ns(c, res, ns);
  kube_what(what, sizeof(what), v, res, ns, name);
  if (!json_is_object(doc))
    return kyb_error_set(err, EINVAL, "kube: %s: not a JSON object", what);
  if (name == NULL)
    return kyb_error_set(err, EINVAL, "kube: %s: no metadata.name", what);
  if (need_ns(res, ns, what, err) < 0)
    return -1;
  cleanup_free char *path = NULL;
  if (kyb_kube_path(res, ns, name, sub, &path, err) < 0)
    return kyb_error_wrap(err, "kube: %s", what);
  cleanup_free char *body = dump(doc);
  if (body == NULL)
    return kyb_error_set(err, ENOMEM, "kube: %s", what);
  kube_req rq = {.method = method,
                 .path = path,
                 .what = what,
                 .content_type = content_type,
                 .body = body,
                 .body_len = strlen(body)};
  return kube_do_json(c, &rq, out, err);
}

int kyb_kube_update(kyb_kube_client *c, const kyb_kube_resource *res, const json_t *obj,
                    const char *subresource, json_t **out, kyb_error **err) {
  return write_named(c, res, "PUT", "update", meta_str(obj, "namespace"), meta_str(obj, "name"),
                     subresource, "application/json", obj, out, err);
}

int kyb_kube_patch(kyb_kube_client *c, const kyb_kube_resource *res, const char *ns,
                   const char *name, const json_t *patch, const char *subresource, json_t **out,
                   kyb_error **err) {
  return write_named(c, res, "PATCH", "patch", ns, name, subresource,
                     "application/merge-patch+json", patch, out, err);
}

static json_t *delete_options(const kyb_kube_delete_opts *o) {
  json_t *d = json_pack("{s:s, s:s}", "kind", "DeleteOptions", "apiVersion", "v1");
  if (d == NULL)
    return NULL;
  int bad = 0;
  if (o->propagation_policy != NULL)
    bad |= json_object_set_new(d, "propagationPolicy", json_string(o->propagation_policy));
  if (o->grace_period_seconds >= 0)
    bad |= json_object_set_new(d, "gracePeriodSeconds", json_integer(o->grace_period_seconds));
  if (o->precondition_uid != NULL || o->precondition_rv != NULL) {
    json_t *pre = json_object();
    if (o->precondition_uid != NULL)
      bad |= json_object_set_new(pre, "uid", json_string(o->precondition_uid));
    if (o->precondition_rv != NULL)
      bad |= json_object_set_new(pre, "resourceVersion", json_string(o->precondition_rv));
    bad |= json_object_set_new(d, "preconditions", pre);
  }
  if (bad) {
    json_decref(d);
    return NULL;
  }
  return d;
}

int kyb_kube_delete(kyb_kube_client *c, const kyb_kube_resource *res, const char *ns,
                    const char *name, const kyb_kube_delete_opts *opts, json_t **out,
                    kyb_error **err) {
  char what[WHAT_MAX];
  ns = kube_ns(c, res, ns);
  kube_what(what, sizeof(what), "delete", res, ns, name);
  if (name == NULL)
    return kyb_error_set(err, EINVAL, "kube: %s: no name", what);
  if (need_ns(res, ns, what, err) < 0)
    return -1;
  cleanup_free char *path = NULL;
  if (kyb_kube_path(res, ns, name, NULL, &path, err) < 0)
    return kyb_error_wrap(err, "kube: %s", what);
  cleanup_free char *body = NULL;
  if (opts != NULL) {
    cleanup_json json_t *d = delete_options(opts);
    body = d != NULL ? dump(d) : NULL;
    if (body == NULL)
      return kyb_error_set(err, ENOMEM, "kube: %s", what);
  }
  kube_req rq = {.method = "DELETE",
                 .path = path,
                 .what = what,
                 .content_type = body != NULL ? "application/json" : NULL,
                 .body = body,
                 .body_len = body != NULL ? strlen(body) : 0};
  return kube_do_json(c, &rq, out, err);
}

int kyb_kube_modify(kyb_kube_client *c, const kyb_kube_resource *res, const char *ns,
                    const char *name, const char *subresource, kyb_kube_mutate_fn mutate, void *ud,
                    const kyb_kube_retry *retry, json_t **out, int *attempts_made,
                    kyb_error **err) {
  kyb_kube_retry r = retry != NULL ? *retry : (kyb_kube_retry){0};
  int attempts = r.attempts > 0 ? r.attempts : 5;
  long base = r.backoff_ms > 0 ? r.backoff_ms : 10;
  long cap = r.max_backoff_ms > 0 ? r.max_backoff_ms : 1000;
  int tried = 0;
  int rc = -1;
  for (int a = 0; a < attempts; a++) {
    cleanup_json json_t *obj = NULL;
    if (kyb_kube_get(c, res, ns, name, &obj, err) < 0)
      break;
    int m = mutate(ud, obj, err);
    if (m < 0)
      break;
    if (m > 0) { /* already as wanted */
      if (out != NULL)
        *out = steal_ptr(obj);
      rc = 0;
      break;
    }
    tried++;
    if (kyb_kube_update(c, res, obj, subresource, out, err) == 0) {
      rc = 0;
      break;
    }
    if (kyb_kube_status_of(*err) != 409 || a + 1 == attempts) {
      if (kyb_kube_status_of(*err) == 409)
        kyb_error_wrap(err, "still conflicting after %d attempts", tried);
      break;
    }
    long wait = kube_backoff_ms(c, base, cap, a);
    log_debug("conflict writing %s, try %d of %d in %ld ms", name, a + 2, attempts, wait);
    kyb_error_clear(err);
    if (kyb_kube_sleep(c, wait, err) < 0)
      break;
  }
  if (attempts_made != NULL)
    *attempts_made = tried;
  return rc;
}
