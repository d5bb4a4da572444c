/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal to lib/containerd: the one call path every typed call goes
 * through (pack request -> unary call -> unpack reply).
 */
#ifndef KYB_CONTAINERD_CLIENT_INTERNAL_H
#define KYB_CONTAINERD_CLIENT_INTERNAL_H

#include "containerd/codec.h"

/* ns NULL: the client's namespace.  deadline_ms 0: the client's deadline,
 * < 0: none.  resp_desc NULL: the reply is google.protobuf.Empty and is
 * not decoded (resp may then be NULL). */
int kyb_ctd_call(kyb_ctd_client *c, const char *ns, const char *path, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *resp_desc, int64_t deadline_ms,
                 ProtobufCMessage **resp, kyb_error **err);

/* Same, for a request already serialised. */
int kyb_ctd_call_raw(kyb_ctd_client *c, const char *ns, const char *path, const uint8_t *req,
                     size_t req_len, const ProtobufCMessageDescriptor *resp_desc,
                     int64_t deadline_ms, ProtobufCMessage **resp, kyb_error **err);

/* kyb_ctd_task_get in namespace `ns` (NULL: the client's). */
int kyb_ctd_task_get_in(kyb_ctd_client *c, const char *ns, const char *container_id,
                        kyb_ctd_process *out, kyb_error **err);

#define KYB_CTD_TASKS "/containerd.services.tasks.v1.Tasks/"
#define KYB_CTD_CONTAINERS "/containerd.services.containers.v1.Containers/"

#endif
