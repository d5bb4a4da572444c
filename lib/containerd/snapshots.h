/* SPDX-License-Identifier: Apache-2.0 */
/*
 * containerd Snapshots calls beyond Mounts (client.h): Stat, Prepare and
 * Remove.  Checkpoint records a container's snapshot parent (Stat); restore
 * prepares the new container's rootfs from it (Prepare) and removes it again
 * when the restore fails (Remove).
 */
#ifndef KYB_CONTAINERD_SNAPSHOTS_H
#define KYB_CONTAINERD_SNAPSHOTS_H

#include <stddef.h>

#include "containerd/client.h"

/* The parent snapshot of `key` (heap; "" when it has none). */
int kyb_ctd_snapshot_parent(kyb_ctd_client *c, const char *snapshotter, const char *key,
                            char **parent, kyb_error **err);

/* Prepares an active snapshot `key` on top of `parent` and returns its mounts. */
int kyb_ctd_snapshot_prepare(kyb_ctd_client *c, const char *snapshotter, const char *key,
                             const char *parent, kyb_ctd_mount **out, size_t *nout,
                             kyb_error **err);

int kyb_ctd_snapshot_remove(kyb_ctd_client *c, const char *snapshotter, const char *key,
                            kyb_error **err);

#endif
