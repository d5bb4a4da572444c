/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared conversions between client.h's C structs and the protobuf-c
 * messages: packing, Any, runc options, mounts, descriptors, timestamps, and
 * the release functions of the shared value types.  See codec.h.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "containerd/codec.h"
#include "util/cleanup.h"

int kyb_ctd_pack(const ProtobufCMessage *m, uint8_t **out, size_t *len, kyb_error **err) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(n > 0 ? n : 1);
  if (buf == NULL)
    return kyb_error_set(err, ENOMEM, "encode %s (%zu bytes)", m->descriptor->name, n);
  size_t w = protobuf_c_message_pack(m, buf);
  if (w != n) {
    free(buf);
    return kyb_error_set(err, EIO, "encode %s: %zu of %zu bytes written", m->descriptor->name, w,
                         n);
  }
  *out = buf;
  *len = n;
  return 0;
}

int kyb_ctd_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                   const char *what, ProtobufCMessage **out, kyb_error **err) {
  static const uint8_t empty[1];
  ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, len > 0 ? buf : empty);
  if (m == NULL) {
    kyb_error_set(err, EPROTO, "%s: reply of %zu bytes does not decode as %s", what, len,
                  desc->name);
    return -1;
  }
  *out = m;
  return 0;
}

char *kyb_ctd_strdup(const char *s) {
  return strdup(s != NULL ? s : "");
}

int64_t kyb_ctd_timestamp_ns(const Google__Protobuf__Timestamp *ts) {
  /* containerd sends Go's zero time (year 1, seconds -62135596800) for
   * "never", e.g. exited_at of a running task: anything before 1970 or past
   * what int64 nanoseconds hold (year 2262) reads as unset. */
  if (ts == NULL || ts->seconds < 0 || ts->seconds >= INT64_MAX / 1000000000LL || ts->nanos < 0 ||
      ts->nanos > 999999999)
    return 0;
  return ts->seconds * 1000000000LL + ts->nanos;
}

/* ---- Any ---- */

void kyb_ctd_any_clear(kyb_ctd_any *a) {
  if (a == NULL)
    return;
  free(a->type_url);
  free(a->value);
  memset(a, 0, sizeof(*a));
}

int kyb_ctd_any_copy(const Google__Protobuf__Any *pb, kyb_ctd_any *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  if (pb == NULL)
    return 0;
  out->type_url = kyb_ctd_strdup(pb->type_url);
  out->value = malloc(pb->value.len > 0 ? pb->value.len : 1);
  if (out->type_url == NULL || out->value == NULL) {
    kyb_ctd_any_clear(out);
    return kyb_error_set(err, ENOMEM, "copy Any of %zu bytes", pb->value.len);
  }
  if (pb->value.len > 0)
    memcpy(out->value, pb->value.data, pb->value.len);
  out->len = pb->value.len;
  return 0;
}

/* Packs `inner` as the value of an Any with `type_url`. */
static int any_pack(const char *type_url, const ProtobufCMessage *inner, kyb_ctd_any *out,
                    kyb_error **err) {
  memset(out, 0, sizeof(*out));
  if (kyb_ctd_pack(inner, &out->value, &out->len, err) < 0)
    return -1;
  out->type_url = strdup(type_url);
  if (out->type_url == NULL) {
    kyb_ctd_any_clear(out);
    return kyb_error_set(err, ENOMEM, "Any %s", type_url);
  }
  return 0;
}

/* ---- runc options ---- */

void kyb_ctd_runc_options_clear(kyb_ctd_runc_options *o) {
  if (o == NULL)
    return;
  free(o->shim_cgroup);
  free(o->binary_name);
  free(o->root);
  free(o->criu_image_path);
  free(o->criu_work_path);
  memset(o, 0, sizeof(*o));
}

int kyb_ctd_runc_options_to_any(const kyb_ctd_runc_options *o, kyb_ctd_any *out, kyb_error **err) {
  Containerd__Runc__V1__Options pb = CONTAINERD__RUNC__V1__OPTIONS__INIT;
  /* protobuf-c omits NULL and "" strings: unset stays off the wire. */
  pb.no_pivot_root = o->no_pivot_root;
  pb.no_new_keyring = o->no_new_keyring;
  pb.shim_cgroup = o->shim_cgroup;
  pb.io_uid = o->io_uid;
  pb.io_gid = o->io_gid;
  pb.binary_name = o->binary_name;
  pb.root = o->root;
  pb.systemd_cgroup = o->systemd_cgroup;
  pb.criu_image_path = o->criu_image_path;
  pb.criu_work_path = o->criu_work_path;
  return any_pack(KYB_CTD_TYPE_RUNC_OPTIONS, &pb.base, out, err);
}

int kyb_ctd_any_from_runc_options(const kyb_ctd_runc_options *o, kyb_ctd_any *out,
                                  kyb_error **err) {
  return kyb_ctd_runc_options_to_any(o, out, err);
}

int kyb_ctd_runc_options_from_bytes(const uint8_t *buf, size_t len, kyb_ctd_runc_options *out,
                                    kyb_error **err) {
  memset(out, 0, sizeof(*out));
  ProtobufCMessage *m = NULL;
  if (kyb_ctd_unpack(&containerd__runc__v1__options__descriptor, buf, len, "runc options", &m,
                     err) < 0)
    return -1;
  Containerd__Runc__V1__Options *pb = (Containerd__Runc__V1__Options *)m;
  out->no_pivot_root = pb->no_pivot_root;
  out->no_new_keyring = pb->no_new_keyring;
  out->io_uid = pb->io_uid;
  out->io_gid = pb->io_gid;
  out->systemd_cgroup = pb->systemd_cgroup;
  out->shim_cgroup = kyb_ctd_strdup(pb->shim_cgroup);
  out->binary_name = kyb_ctd_strdup(pb->binary_name);
  out->root = kyb_ctd_strdup(pb->root);
  out->criu_image_path = kyb_ctd_strdup(pb->criu_image_path);
  out->criu_work_path = kyb_ctd_strdup(pb->criu_work_path);
  protobuf_c_message_free_unpacked(m, NULL);
  if (out->shim_cgroup == NULL || out->binary_name == NULL || out->root == NULL ||
      out->criu_image_path == NULL || out->criu_work_path == NULL) {
    kyb_ctd_runc_options_clear(out);
    return kyb_error_set(err, ENOMEM, "runc options");
  }
  return 0;
}

int kyb_ctd_checkpoint_opts_to_any(const kyb_ctd_checkpoint_opts *o, kyb_ctd_any *out,
                                   kyb_error **err) {
  Containerd__Runc__V1__CheckpointOptions pb = CONTAINERD__RUNC__V1__CHECKPOINT_OPTIONS__INIT;
  pb.exit = o->exit;
  pb.open_tcp = o->open_tcp;
  pb.external_unix_sockets = o->external_unix_sockets;
  pb.terminal = o->terminal;
  pb.file_locks = o->file_locks;
  /* protobuf-c wants char **; it only reads them. */
  pb.n_empty_namespaces = o->nempty_namespaces;
  pb.empty_namespaces = (char **)o->empty_namespaces;
  pb.cgroups_mode = (char *)o->cgroups_mode;
  pb.image_path = (char *)o->image_path;
  pb.work_path = (char *)o->work_path;
  for (size_t i = 0; i < pb.n_empty_namespaces; i++) {
    if (pb.empty_namespaces[i] == NULL)
      return kyb_error_set(err, EINVAL, "checkpoint options: empty_namespaces[%zu] is NULL", i);
  }
  return any_pack(KYB_CTD_TYPE_RUNC_CHECKPOINT_OPTIONS, &pb.base, out, err);
}

/* ---- mounts ---- */

static void mount_clear(kyb_ctd_mount *m) {
  free(m->type);
  free(m->source);
  free(m->target);
  if (m->options != NULL) {
    for (size_t j = 0; j < m->noptions; j++)
      free(m->options[j]);
  }
  free(m->options);
  memset(m, 0, sizeof(*m));
}

void kyb_ctd_mounts_free(kyb_ctd_mount *mounts, size_t n) {
  if (mounts == NULL)
    return;
  for (size_t i = 0; i < n; i++)
    mount_clear(&mounts[i]);
  free(mounts);
}

const char *kyb_ctd_mount_option(const kyb_ctd_mount *m, const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; i < m->noptions; i++) {
    if (strncmp(m->options[i], name, n) == 0 && m->options[i][n] == '=')
      return m->options[i] + n + 1;
  }
  return NULL;
}

int kyb_ctd_mount_copy(const Containerd__Types__Mount *pb, kyb_ctd_mount *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  out->type = kyb_ctd_strdup(pb->type);
  out->source = kyb_ctd_strdup(pb->source);
  out->target = kyb_ctd_strdup(pb->target);
  out->options = calloc(pb->n_options + 1, sizeof(char *));
  bool oom =
      out->type == NULL || out->source == NULL || out->target == NULL || out->options == NULL;
  for (size_t i = 0; !oom && i < pb->n_options; i++) {
    out->options[i] = kyb_ctd_strdup(pb->options[i]);
    oom = out->options[i] == NULL;
    out->noptions = i + 1;
  }
  if (oom) {
    mount_clear(out);
    return kyb_error_set(err, ENOMEM, "copy mount");
  }
  return 0;
}

int kyb_ctd_mounts_view(const kyb_ctd_mount *m, size_t n, Containerd__Types__Mount ***out,
                        kyb_error **err) {
  *out = NULL;
  if (n == 0)
    return 0;
  Containerd__Types__Mount **v = calloc(n, sizeof(void *)); /* an array of pointers */
  if (v == NULL)
    return kyb_error_set(err, ENOMEM, "rootfs mounts");
  for (size_t i = 0; i < n; i++) {
    v[i] = malloc(sizeof(**v));
    if (v[i] == NULL) {
      kyb_ctd_mounts_view_free(v, i);
      return kyb_error_set(err, ENOMEM, "rootfs mounts");
    }
    containerd__types__mount__init(v[i]);
    v[i]->type = m[i].type;
    v[i]->source = m[i].source;
    v[i]->target = m[i].target;
    v[i]->n_options = m[i].noptions;
    v[i]->options = m[i].options;
    for (size_t j = 0; j < m[i].noptions; j++) {
      if (m[i].options[j] == NULL) {
        kyb_ctd_mounts_view_free(v, i + 1);
        return kyb_error_set(err, EINVAL, "rootfs mount %zu: option %zu is NULL", i, j);
      }
    }
  }
  *out = v;
  return 0;
}

void kyb_ctd_mounts_view_free(Containerd__Types__Mount **pb, size_t n) {
  if (pb == NULL)
    return;
  for (size_t i = 0; i < n; i++)
    free(pb[i]);
  free(pb);
}

/* ---- descriptors ---- */

void kyb_ctd_descriptor_clear(kyb_ctd_descriptor *d) {
  if (d == NULL)
    return;
  free(d->media_type);
  free(d->digest);
  memset(d, 0, sizeof(*d));
}

void kyb_ctd_descriptors_free(kyb_ctd_descriptor *d, size_t n) {
  if (d == NULL)
    return;
  for (size_t i = 0; i < n; i++)
    kyb_ctd_descriptor_clear(&d[i]);
  free(d);
}

int kyb_ctd_descriptor_copy(const Containerd__Types__Descriptor *pb, kyb_ctd_descriptor *out,
                            kyb_error **err) {
  memset(out, 0, sizeof(*out));
  if (pb == NULL)
    return kyb_error_set(err, EPROTO, "descriptor missing from the reply");
  out->media_type = kyb_ctd_strdup(pb->media_type);
  out->digest = kyb_ctd_strdup(pb->digest);
  out->size = pb->size;
  if (out->media_type == NULL || out->digest == NULL) {
    kyb_ctd_descriptor_clear(out);
    return kyb_error_set(err, ENOMEM, "copy descriptor");
  }
  return 0;
}
