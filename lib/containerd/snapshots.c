/* SPDX-License-Identifier: Apache-2.0 */
#include "containerd/snapshots.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "containerd/client_internal.h"
#include "containerd_snapshots.pb-c.h"

#define SNAPSHOTS "/containerd.services.snapshots.v1.Snapshots/"

int kyb_ctd_snapshot_parent(kyb_ctd_client *c, const char *snapshotter, const char *key,
                            char **parent, kyb_error **err) {
  Containerd__Services__Snapshots__V1__StatSnapshotRequest req =
      CONTAINERD__SERVICES__SNAPSHOTS__V1__STAT_SNAPSHOT_REQUEST__INIT;
  req.snapshotter = (char *)snapshotter;
  req.key = (char *)key;
  ProtobufCMessage *m = NULL;
  if (kyb_ctd_call(c, NULL, SNAPSHOTS "Stat", &req.base,
                   &containerd__services__snapshots__v1__stat_snapshot_response__descriptor, 0, &m,
                   err) < 0)
    return kyb_error_wrap(err, "stat snapshot %s/%s", snapshotter, key);
  Containerd__Services__Snapshots__V1__StatSnapshotResponse *r = (void *)m;
  const char *p = (r->info != NULL && r->info->parent != NULL) ? r->info->parent : "";
  *parent = strdup(p);
  protobuf_c_message_free_unpacked(m, NULL);
  if (*parent == NULL)
    return kyb_error_set(err, ENOMEM, "snapshot parent");
  return 0;
}

int kyb_ctd_snapshot_prepare(kyb_ctd_client *c, const char *snapshotter, const char *key,
                             const char *parent, kyb_ctd_mount **out, size_t *nout,
                             kyb_error **err) {
  *out = NULL;
  *nout = 0;
  Containerd__Services__Snapshots__V1__PrepareSnapshotRequest req =
      CONTAINERD__SERVICES__SNAPSHOTS__V1__PREPARE_SNAPSHOT_REQUEST__INIT;
  req.snapshotter = (char *)snapshotter;
  req.key = (char *)key;
  req.parent = (char *)(parent ? parent : "");
  ProtobufCMessage *m = NULL;
  if (kyb_ctd_call(c, NULL, SNAPSHOTS "Prepare", &req.base,
                   &containerd__services__snapshots__v1__prepare_snapshot_response__descriptor, 0,
                   &m, err) < 0)
    return kyb_error_wrap(err, "prepare snapshot %s/%s on %s", snapshotter, key,
                          parent ? parent : "nothing");
  Containerd__Services__Snapshots__V1__PrepareSnapshotResponse *r = (void *)m;
  kyb_ctd_mount *mounts = calloc(r->n_mounts + 1, sizeof(*mounts));
  size_t n = 0;
  int rc = mounts ? 0 : kyb_error_set(err, ENOMEM, "snapshot mounts");
  for (; rc == 0 && n < r->n_mounts; n++)
    if (kyb_ctd_mount_copy(r->mounts[n], &mounts[n], err) < 0)
      rc = -1;
  protobuf_c_message_free_unpacked(m, NULL);
  if (rc < 0) {
    kyb_ctd_mounts_free(mounts, n);
    return -1;
  }
  *out = mounts;
  *nout = n;
  return 0;
}

int kyb_ctd_snapshot_remove(kyb_ctd_client *c, const char *snapshotter, const char *key,
                            kyb_error **err) {
  Containerd__Services__Snapshots__V1__RemoveSnapshotRequest req =
      CONTAINERD__SERVICES__SNAPSHOTS__V1__REMOVE_SNAPSHOT_REQUEST__INIT;
  req.snapshotter = (char *)snapshotter;
  req.key = (char *)key;
  if (kyb_ctd_call(c, NULL, SNAPSHOTS "Remove", &req.base, NULL, 0, NULL, err) < 0)
    return kyb_error_wrap(err, "remove snapshot %s/%s", snapshotter, key);
  return 0;
}
