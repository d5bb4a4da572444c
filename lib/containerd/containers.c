/* SPDX-License-Identifier: Apache-2.0 */
/*
 * containerd.services.containers.v1.Containers: the container metadata
 * records (spec, runtime, snapshot, labels), and finding a Kubernetes
 * container by its CRI labels.  See client.h for the contract.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "containerd/client_internal.h"
#include "util/cleanup.h"

#define KYB_LOG_MODULE "containerd"
#include "util/log.h"

void kyb_ctd_container_clear(kyb_ctd_container *ct) {
  if (ct == NULL)
    return;
  free(ct->id);
  free(ct->image);
  free(ct->runtime_name);
  kyb_ctd_any_clear(&ct->runtime_options);
  free(ct->spec_json);
  free(ct->snapshotter);
  free(ct->snapshot_key);
  for (size_t i = 0; i < ct->nlabels; i++) {
    free(ct->labels[i].key);
    free(ct->labels[i].value);
  }
  free(ct->labels);
  free(ct->sandbox);
  memset(ct, 0, sizeof(*ct));
}

void kyb_ctd_container_free(kyb_ctd_container *ct) {
  kyb_ctd_container_clear(ct);
  free(ct);
}

void kyb_ctd_container_list_clear(kyb_ctd_container_list *l) {
  if (l == NULL)
    return;
  if (l->items != NULL) {
    for (size_t i = 0; i < l->n; i++)
      kyb_ctd_container_clear(&l->items[i]);
    free(l->items);
  }
  l->items = NULL;
  l->n = 0;
}

const char *kyb_ctd_container_label(const kyb_ctd_container *ct, const char *key) {
  for (size_t i = 0; i < ct->nlabels; i++) {
    if (strcmp(ct->labels[i].key, key) == 0)
      return ct->labels[i].value;
  }
  return NULL;
}

int kyb_ctd_container_runc_options(const kyb_ctd_container *ct, kyb_ctd_runc_options *out,
                                   kyb_error **err) {
  memset(out, 0, sizeof(*out));
  const kyb_ctd_any *a = &ct->runtime_options;
  if (a->type_url == NULL || a->type_url[0] == '\0')
    return kyb_ctd_runc_options_from_bytes(NULL, 0, out, err);
  /* Accept a prefixed URL too: containerd's own lookup tolerates "…/name". */
  const char *slash = strrchr(a->type_url, '/');
  const char *name = slash != NULL ? slash + 1 : a->type_url;
  if (strcmp(name, KYB_CTD_TYPE_RUNC_OPTIONS) != 0)
    return kyb_error_set(err, EINVAL, "container %s: runtime options are %s, not %s", ct->id,
                         a->type_url, KYB_CTD_TYPE_RUNC_OPTIONS);
  if (kyb_ctd_runc_options_from_bytes(a->value, a->len, out, err) < 0)
    return kyb_error_wrap(err, "container %s", ct->id);
  return 0;
}

/* ---- decoding ---- */

static int copy_labels(const Containerd__Services__Containers__V1__Container *pb,
                       kyb_ctd_container *out, kyb_error **err) {
  out->labels = calloc(pb->n_labels + 1, sizeof(*out->labels));
  if (out->labels == NULL)
    return kyb_error_set(err, ENOMEM, "container labels");
  for (size_t i = 0; i < pb->n_labels; i++) {
    out->labels[i].key = kyb_ctd_strdup(pb->labels[i]->key);
    out->labels[i].value = kyb_ctd_strdup(pb->labels[i]->value);
    out->nlabels = i + 1;
    if (out->labels[i].key == NULL || out->labels[i].value == NULL)
      return kyb_error_set(err, ENOMEM, "container labels");
  }
  return 0;
}

int kyb_ctd_decode_container(const Containerd__Services__Containers__V1__Container *pb,
                             kyb_ctd_container *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  if (pb == NULL)
    return kyb_error_set(err, EPROTO, "container missing from the reply");
  out->id = kyb_ctd_strdup(pb->id);
  out->image = kyb_ctd_strdup(pb->image);
  out->runtime_name = kyb_ctd_strdup(pb->runtime != NULL ? pb->runtime->name : NULL);
  out->snapshotter = kyb_ctd_strdup(pb->snapshotter);
  out->snapshot_key = kyb_ctd_strdup(pb->snapshot_key);
  out->sandbox = kyb_ctd_strdup(pb->sandbox);
  size_t spec_len = pb->spec != NULL ? pb->spec->value.len : 0;
  out->spec_json = malloc(spec_len + 1);
  if (out->id == NULL || out->image == NULL || out->runtime_name == NULL ||
      out->snapshotter == NULL || out->snapshot_key == NULL || out->sandbox == NULL ||
      out->spec_json == NULL) {
    kyb_ctd_container_clear(out);
    return kyb_error_set(err, ENOMEM, "container record");
  }
  if (spec_len > 0)
    memcpy(out->spec_json, pb->spec->value.data, spec_len);
  out->spec_json[spec_len] = '\0';
  out->spec_len = spec_len;
  out->created_at_ns = kyb_ctd_timestamp_ns(pb->created_at);
  out->updated_at_ns = kyb_ctd_timestamp_ns(pb->updated_at);
  if ((pb->runtime != NULL &&
       kyb_ctd_any_copy(pb->runtime->options, &out->runtime_options, err) < 0) ||
      copy_labels(pb, out, err) < 0) {
    kyb_ctd_container_clear(out);
    return -1;
  }
  return 0;
}

int kyb_ctd_decode_container_get_response(const uint8_t *buf, size_t len, kyb_ctd_container *out,
                                          kyb_error **err) {
  ProtobufCMessage *m = NULL;
  memset(out, 0, sizeof(*out));
  if (kyb_ctd_unpack(&containerd__services__containers__v1__get_container_response__descriptor, buf,
                     len, "containerd Containers.Get", &m, err) < 0)
    return -1;
  Containerd__Services__Containers__V1__GetContainerResponse *r = (void *)m;
  int rc = kyb_ctd_decode_container(r->container, out, err);
  protobuf_c_message_free_unpacked(m, NULL);
  return rc;
}

/* ---- calls ---- */

int kyb_ctd_container_get(kyb_ctd_client *c, const char *id, kyb_ctd_container **out,
                          kyb_error **err) {
  *out = NULL;
  Containerd__Services__Containers__V1__GetContainerRequest req =
      CONTAINERD__SERVICES__CONTAINERS__V1__GET_CONTAINER_REQUEST__INIT;
  req.id = (char *)id;
  cleanup_free uint8_t *buf = NULL;
  size_t len = 0;
  if (kyb_ctd_pack(&req.base, &buf, &len, err) < 0)
    return -1;
  ProtobufCMessage *m = NULL;
  if (kyb_ctd_call_raw(c, NULL, KYB_CTD_CONTAINERS "Get", buf, len,
                       &containerd__services__containers__v1__get_container_response__descriptor, 0,
                       &m, err) < 0)
    return kyb_error_wrap(err, "container %s", id);
  Containerd__Services__Containers__V1__GetContainerResponse *r = (void *)m;
  kyb_ctd_container *ct = calloc(1, sizeof(*ct));
  int rc = ct == NULL ? kyb_ctd_oom(err, "container record")
                      : kyb_ctd_decode_container(r->container, ct, err);
  protobuf_c_message_free_unpacked(m, NULL);
  if (rc < 0) {
    free(ct);
    return -1;
  }
  *out = ct;
  return 0;
}

static int list_in(kyb_ctd_client *c, const char *ns, const char *const *filters, size_t nfilters,
                   kyb_ctd_container_list *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  Containerd__Services__Containers__V1__ListContainersRequest req =
      CONTAINERD__SERVICES__CONTAINERS__V1__LIST_CONTAINERS_REQUEST__INIT;
  req.n_filters = nfilters;
  req.filters = (char **)filters;
  for (size_t i = 0; i < nfilters; i++) {
    if (filters[i] == NULL)
      return kyb_error_set(err, EINVAL, "container list: filter %zu is NULL", i);
  }
  ProtobufCMessage *m = NULL;
  if (kyb_ctd_call(c, ns, KYB_CTD_CONTAINERS "List", &req.base,
                   &containerd__services__containers__v1__list_containers_response__descriptor, 0,
                   &m, err) < 0)
    return -1;
  Containerd__Services__Containers__V1__ListContainersResponse *r = (void *)m;
  out->items = calloc(r->n_containers + 1, sizeof(*out->items));
  int rc = out->items == NULL ? kyb_ctd_oom(err, "container list") : 0;
  for (size_t i = 0; rc == 0 && i < r->n_containers; i++) {
    rc = kyb_ctd_decode_container(r->containers[i], &out->items[i], err);
    if (rc == 0)
      out->n = i + 1;
  }
  protobuf_c_message_free_unpacked(m, NULL);
  if (rc < 0)
    kyb_ctd_container_list_clear(out);
  return rc;
}

int kyb_ctd_container_list_get(kyb_ctd_client *c, const char *const *filters, size_t nfilters,
                               kyb_ctd_container_list *out, kyb_error **err) {
  return list_in(c, NULL, filters, nfilters, out, err);
}

char *kyb_ctd_filter_quote(const char *value) {
  size_t n = strlen(value);
  char *q = malloc(2 * n + 3);
  if (q == NULL)
    return NULL;
  size_t o = 0;
  q[o++] = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)value[i];
    if (ch < 0x20 || ch == 0x7f) {
      /* Never part of a label value Kubernetes accepts: refuse, do not guess. */
      free(q);
      return NULL;
    }
    if (ch == '"' || ch == '\\')
      q[o++] = '\\';
    q[o++] = (char)ch;
  }
  q[o++] = '"';
  q[o] = '\0';
  return q;
}

/* Picks the current instance among containers that share pod + container
 * name: kubelet keeps the previous (exited) one around after a restart. */
static size_t pick_current(kyb_ctd_client *c, const kyb_ctd_container_list *l) {
  size_t best = 0;
  bool best_live = false;
  for (size_t i = 0; i < l->n; i++) {
    kyb_ctd_process p = {0};
    cleanup_error kyb_error *e = NULL;
    bool live = false;
    if (kyb_ctd_task_get_in(c, KYB_CTD_K8S_NAMESPACE, l->items[i].id, &p, &e) == 0)
      live = p.status == KYB_CTD_TASK_RUNNING || p.status == KYB_CTD_TASK_PAUSED ||
             p.status == KYB_CTD_TASK_PAUSING;
    kyb_ctd_process_clear(&p);
    if ((live && !best_live) ||
        (live == best_live && l->items[i].created_at_ns > l->items[best].created_at_ns)) {
      best = i;
      best_live = live;
    }
  }
  return best;
}

int kyb_ctd_k8s_container_filter(const char *pod_ns, const char *pod_name,
                                 const char *container_name, char **out, kyb_error **err) {
  *out = NULL;
  cleanup_free char *qns = kyb_ctd_filter_quote(pod_ns);
  cleanup_free char *qpod = kyb_ctd_filter_quote(pod_name);
  cleanup_free char *qctr = kyb_ctd_filter_quote(container_name);
  if (qns == NULL || qpod == NULL || qctr == NULL)
    return kyb_error_set(err, EINVAL, "container %s/%s/%s: name cannot be used in a filter", pod_ns,
                         pod_name, container_name);
  /* Label keys hold dots, so they are quoted path components. */
  if (asprintf(out,
               "labels.\"" KYB_CTD_LABEL_POD_NAMESPACE "\"==%s,labels.\"" KYB_CTD_LABEL_POD_NAME
               "\"==%s,labels.\"" KYB_CTD_LABEL_CONTAINER_NAME
               "\"==%s,labels.\"" KYB_CTD_LABEL_CRI_KIND "\"==container",
               qns, qpod, qctr) < 0) {
    *out = NULL;
    return kyb_error_set(err, ENOMEM, "container filter");
  }
  return 0;
}

int kyb_ctd_container_find_k8s(kyb_ctd_client *c, const char *pod_ns, const char *pod_name,
                               const char *container_name, kyb_ctd_container **out,
                               kyb_error **err) {
  *out = NULL;
  cleanup_free char *filter = NULL;
  if (kyb_ctd_k8s_container_filter(pod_ns, pod_name, container_name, &filter, err) < 0)
    return -1;
  const char *filters[] = {filter};
  kyb_ctd_container_list l = {0};
  if (list_in(c, KYB_CTD_K8S_NAMESPACE, filters, 1, &l, err) < 0)
    return kyb_error_wrap(err, "find container %s/%s/%s", pod_ns, pod_name, container_name);
  if (l.n == 0) {
    kyb_ctd_container_list_clear(&l);
    return kyb_error_set(
        err, ENOENT,
        "no container %s in pod %s/%s in containerd namespace " KYB_CTD_K8S_NAMESPACE
        " (grpc status NOT_FOUND)",
        container_name, pod_ns, pod_name);
  }
  size_t pick = l.n == 1 ? 0 : pick_current(c, &l);
  if (l.n > 1)
    log_debug("pod %s/%s container %s: %zu instances, using %s", pod_ns, pod_name, container_name,
              l.n, l.items[pick].id);
  kyb_ctd_container *ct = malloc(sizeof(*ct));
  if (ct == NULL) {
    kyb_ctd_container_list_clear(&l);
    return kyb_error_set(err, ENOMEM, "find container");
  }
  *ct = l.items[pick];
  memset(&l.items[pick], 0, sizeof(l.items[pick])); /* moved out: the clear skips it */
  kyb_ctd_container_list_clear(&l);
  *out = ct;
  return 0;
}

/* ---- create and delete ---- */

int kyb_ctd_encode_container_create_request(const kyb_ctd_container *spec, uint8_t **out,
                                            size_t *len, kyb_error **err) {
  if (spec->id == NULL || spec->id[0] == '\0')
    return kyb_error_set(err, EINVAL, "container create needs an id");
  Containerd__Services__Containers__V1__Container ct =
      CONTAINERD__SERVICES__CONTAINERS__V1__CONTAINER__INIT;
  Containerd__Services__Containers__V1__Container__Runtime rt =
      CONTAINERD__SERVICES__CONTAINERS__V1__CONTAINER__RUNTIME__INIT;
  Google__Protobuf__Any rt_opts = GOOGLE__PROTOBUF__ANY__INIT;
  Google__Protobuf__Any spec_any = GOOGLE__PROTOBUF__ANY__INIT;
  ct.id = spec->id;
  ct.image = spec->image;
  ct.snapshotter = spec->snapshotter;
  ct.snapshot_key = spec->snapshot_key;
  rt.name = spec->runtime_name;
  ct.runtime = &rt;
  if (spec->runtime_options.type_url != NULL && spec->runtime_options.type_url[0] != '\0') {
    rt_opts.type_url = spec->runtime_options.type_url;
    rt_opts.value.data = spec->runtime_options.value;
    rt_opts.value.len = spec->runtime_options.len;
    rt.options = &rt_opts;
  }
  if (spec->spec_json != NULL) {
    spec_any.type_url = KYB_CTD_TYPE_OCI_SPEC;
    spec_any.value.data = (uint8_t *)spec->spec_json;
    spec_any.value.len = spec->spec_len > 0 ? spec->spec_len : strlen(spec->spec_json);
    ct.spec = &spec_any;
  }
  cleanup_free Containerd__Services__Containers__V1__Container__LabelsEntry *entries =
      calloc(spec->nlabels + 1, sizeof(*entries));
  cleanup_free Containerd__Services__Containers__V1__Container__LabelsEntry **ptrs =
      calloc(spec->nlabels + 1, sizeof(void *)); /* an array of pointers */
  if (entries == NULL || ptrs == NULL)
    return kyb_error_set(err, ENOMEM, "container labels");
  for (size_t i = 0; i < spec->nlabels; i++) {
    containerd__services__containers__v1__container__labels_entry__init(&entries[i]);
    entries[i].key = spec->labels[i].key;
    entries[i].value = spec->labels[i].value;
    ptrs[i] = &entries[i];
  }
  ct.n_labels = spec->nlabels;
  ct.labels = ptrs;
  Containerd__Services__Containers__V1__CreateContainerRequest req =
      CONTAINERD__SERVICES__CONTAINERS__V1__CREATE_CONTAINER_REQUEST__INIT;
  req.container = &ct;
  return kyb_ctd_pack(&req.base, out, len, err);
}

int kyb_ctd_container_create(kyb_ctd_client *c, const kyb_ctd_container *spec,
                             kyb_ctd_container **out, kyb_error **err) {
  if (out != NULL)
    *out = NULL;
  cleanup_free uint8_t *buf = NULL;
  size_t len = 0;
  if (kyb_ctd_encode_container_create_request(spec, &buf, &len, err) < 0)
    return kyb_error_wrap(err, "create container %s", spec->id ? spec->id : "(no id)");
  ProtobufCMessage *m = NULL;
  if (kyb_ctd_call_raw(c, NULL, KYB_CTD_CONTAINERS "Create", buf, len,
                       &containerd__services__containers__v1__create_container_response__descriptor,
                       0, &m, err) < 0)
    return kyb_error_wrap(err, "create container %s", spec->id);
  int rc = 0;
  if (out != NULL) {
    Containerd__Services__Containers__V1__CreateContainerResponse *r = (void *)m;
    kyb_ctd_container *ct = calloc(1, sizeof(*ct));
    rc = ct == NULL ? kyb_ctd_oom(err, "container record")
                    : kyb_ctd_decode_container(r->container, ct, err);
    if (rc == 0)
      *out = ct;
    else
      free(ct);
  }
  protobuf_c_message_free_unpacked(m, NULL);
  return rc;
}

int kyb_ctd_container_delete(kyb_ctd_client *c, const char *id, kyb_error **err) {
  Containerd__Services__Containers__V1__DeleteContainerRequest req =
      CONTAINERD__SERVICES__CONTAINERS__V1__DELETE_CONTAINER_REQUEST__INIT;
  req.id = (char *)id;
  if (kyb_ctd_call(c, NULL, KYB_CTD_CONTAINERS "Delete", &req.base, NULL, 0, NULL, err) < 0)
    return kyb_error_wrap(err, "delete container %s", id);
  return 0;
}
