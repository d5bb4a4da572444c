/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The containerd client object and the common call path (pack -> unary call
 * -> unpack), plus the small services: Version, Snapshots.Mounts and
 * Images.Get.  Containers and Tasks live in containers.c and tasks.c.
 * See client.h for the contract.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "containerd/client_internal.h"
#include "util/cleanup.h"

struct kyb_ctd_client {
  kyb_grpc_conn *conn;
};

int kyb_ctd_client_new(const kyb_ctd_client_opts *opts, kyb_ctd_client **out, kyb_error **err) {
  const char *socket =
      opts != NULL && opts->socket_path != NULL ? opts->socket_path : KYB_CTD_DEFAULT_SOCKET;
  const char *ns = opts != NULL && opts->ns != NULL ? opts->ns : KYB_CTD_K8S_NAMESPACE;
  int64_t deadline = opts != NULL ? opts->deadline_ms : 0;
  kyb_ctd_client *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return kyb_error_set(err, ENOMEM, "containerd client");
  if (kyb_grpc_conn_new(socket, ns, deadline, &c->conn, err) < 0) {
    free(c);
    return kyb_error_wrap(err, "containerd client");
  }
  *out = c;
  return 0;
}

void kyb_ctd_client_free(kyb_ctd_client *c) {
  if (c == NULL)
    return;
  kyb_grpc_conn_free(c->conn);
  free(c);
}

int kyb_ctd_client_set_namespace(kyb_ctd_client *c, const char *ns, kyb_error **err) {
  return kyb_grpc_conn_set_namespace(c->conn, ns, err);
}

const char *kyb_ctd_client_namespace(const kyb_ctd_client *c) {
  return kyb_grpc_conn_namespace(c->conn);
}

kyb_grpc_conn *kyb_ctd_client_conn(kyb_ctd_client *c) {
  return c->conn;
}

int kyb_ctd_call_raw(kyb_ctd_client *c, const char *ns, const char *path, const uint8_t *req,
                     size_t req_len, const ProtobufCMessageDescriptor *resp_desc,
                     int64_t deadline_ms, ProtobufCMessage **resp, kyb_error **err) {
  kyb_grpc_call_opts opts = {.ns = ns, .deadline_ms = deadline_ms};
  cleanup_free uint8_t *buf = NULL;
  size_t len = 0;
  if (kyb_grpc_unary(c->conn, path, req, req_len, &opts, &buf, &len, err) < 0)
    return -1;
  if (resp_desc == NULL)
    return 0; /* google.protobuf.Empty: nothing to read */
  char method[128];
  kyb_grpc_method_name(path, method, sizeof(method));
  char what[160];
  snprintf(what, sizeof(what), "containerd %s", method);
  return kyb_ctd_unpack(resp_desc, buf, len, what, resp, err);
}

int kyb_ctd_call(kyb_ctd_client *c, const char *ns, const char *path, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *resp_desc, int64_t deadline_ms,
                 ProtobufCMessage **resp, kyb_error **err) {
  cleanup_free uint8_t *buf = NULL;
  size_t len = 0;
  if (kyb_ctd_pack(req, &buf, &len, err) < 0)
    return -1;
  return kyb_ctd_call_raw(c, ns, path, buf, len, resp_desc, deadline_ms, resp, err);
}

/* ---- Version ---- */

void kyb_ctd_version_clear(kyb_ctd_version *v) {
  if (v == NULL)
    return;
  free(v->version);
  free(v->revision);
  memset(v, 0, sizeof(*v));
}

int kyb_ctd_version_get(kyb_ctd_client *c, kyb_ctd_version *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  Google__Protobuf__Empty req = GOOGLE__PROTOBUF__EMPTY__INIT;
  ProtobufCMessage *m = NULL;
  if (kyb_ctd_call(c, NULL, "/containerd.services.version.v1.Version/Version", &req.base,
                   &containerd__services__version__v1__version_response__descriptor, 0, &m,
                   err) < 0)
    return -1;
  Containerd__Services__Version__V1__VersionResponse *r = (void *)m;
  out->version = kyb_ctd_strdup(r->version);
  out->revision = kyb_ctd_strdup(r->revision);
  protobuf_c_message_free_unpacked(m, NULL);
  if (out->version == NULL || out->revision == NULL) {
    kyb_ctd_version_clear(out);
    return kyb_error_set(err, ENOMEM, "containerd version");
  }
  return 0;
}

/* ---- Snapshots ---- */

int kyb_ctd_snapshot_mounts(kyb_ctd_client *c, const char *snapshotter, const char *key,
                            kyb_ctd_mount **out, size_t *nout, kyb_error **err) {
  *out = NULL;
  *nout = 0;
  if (snapshotter == NULL || snapshotter[0] == '\0' || key == NULL || key[0] == '\0')
    return kyb_error_set(err, EINVAL, "snapshot mounts need a snapshotter and a key");
  Containerd__Services__Snapshots__V1__MountsRequest req =
      CONTAINERD__SERVICES__SNAPSHOTS__V1__MOUNTS_REQUEST__INIT;
  req.snapshotter = (char *)snapshotter;
  req.key = (char *)key;
  ProtobufCMessage *m = NULL;
  if (kyb_ctd_call(c, NULL, "/containerd.services.snapshots.v1.Snapshots/Mounts", &req.base,
                   &containerd__services__snapshots__v1__mounts_response__descriptor, 0, &m,
                   err) < 0)
    return kyb_error_wrap(err, "mounts of snapshot %s/%s", snapshotter, key);
  Containerd__Services__Snapshots__V1__MountsResponse *r = (void *)m;
  kyb_ctd_mount *mounts = calloc(r->n_mounts + 1, sizeof(*mounts));
  if (mounts == NULL) {
    protobuf_c_message_free_unpacked(m, NULL);
    return kyb_error_set(err, ENOMEM, "snapshot mounts");
  }
  size_t n = 0;
  int rc = 0;
  for (; n < r->n_mounts; n++) {
    if (kyb_ctd_mount_copy(r->mounts[n], &mounts[n], err) < 0) {
      rc = -1;
      break;
    }
  }
  protobuf_c_message_free_unpacked(m, NULL);
  if (rc < 0) {
    kyb_ctd_mounts_free(mounts, n);
    return -1;
  }
  *out = mounts;
  *nout = n;
  return 0;
}

/* ---- Images ---- */

int kyb_ctd_image_get(kyb_ctd_client *c, const char *name, kyb_ctd_descriptor *target,
                      kyb_error **err) {
  memset(target, 0, sizeof(*target));
  Containerd__Services__Images__V1__GetImageRequest req =
      CONTAINERD__SERVICES__IMAGES__V1__GET_IMAGE_REQUEST__INIT;
  req.name = (char *)name;
  ProtobufCMessage *m = NULL;
  if (kyb_ctd_call(c, NULL, "/containerd.services.images.v1.Images/Get", &req.base,
                   &containerd__services__images__v1__get_image_response__descriptor, 0, &m,
                   err) < 0)
    return kyb_error_wrap(err, "image %s", name);
  Containerd__Services__Images__V1__GetImageResponse *r = (void *)m;
  int rc = kyb_ctd_descriptor_copy(r->image != NULL ? r->image->target : NULL, target, err);
  protobuf_c_message_free_unpacked(m, NULL);
  return rc < 0 ? kyb_error_wrap(err, "image %s", name) : 0;
}
