/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Restore markers: kybernate-runc's memory, between calls, that a container
 * was created by a restore.  The `start` that containerd's shim sends after
 * `create` must then answer success without calling runc (the restored
 * process already runs; runc would refuse to start it).
 *
 * A marker is keyed by the runc root (--root) AND the container id, the two
 * things that name a runc container: not by the working directory (in a pod
 * one shim runs the runtime for every container with the SANDBOX's bundle as
 * its working directory) and not by the id alone (two containerd instances,
 * or namespaces, may use the same id under different roots).  Layout:
 *
 *     <state dir>/<first 32 hex of sha256(root)>/<id>     JSON, mode 0600
 *
 * The state dir is /run/kybernate/runtime (tmpfs: markers vanish with a
 * reboot, as runc's own state does), or $KYBERNATE_RUNTIME_STATE_DIR.
 * `delete` removes the marker; a `create` removes a stale one first.
 */
#ifndef KYB_RUNTIME_MARKER_H
#define KYB_RUNTIME_MARKER_H

#include <stdbool.h>

#include "util/error.h"

#define KYB_RT_STATE_DIR_DEFAULT "/run/kybernate/runtime"
#define KYB_RT_STATE_DIR_ENV "KYBERNATE_RUNTIME_STATE_DIR"

/* $KYBERNATE_RUNTIME_STATE_DIR when set and absolute, else the default. */
const char *kyb_rt_state_dir(void);

/* The marker's path (heap).  Fails with EINVAL on an id runc would refuse
 * (kyb_runc_id_valid) or a root that is not absolute. */
int kyb_rt_marker_path(const char *state_dir, const char *root, const char *id, char **out,
                       kyb_error **err);

/* Records the restore: content is a JSON object text (what was restored, from
 * where), written atomically. */
int kyb_rt_marker_set(const char *state_dir, const char *root, const char *id, const char *content,
                      kyb_error **err);

/* *present: whether the marker exists. */
int kyb_rt_marker_check(const char *state_dir, const char *root, const char *id, bool *present,
                        kyb_error **err);

/* Removes the marker; a missing one is fine. */
int kyb_rt_marker_remove(const char *state_dir, const char *root, const char *id, kyb_error **err);

#endif
