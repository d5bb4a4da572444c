/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal to lib/containerd (and its unit tests): the conversions between
 * the public C structs of client.h and the protobuf-c messages generated
 * from proto/containerd_*.proto, plus the request encoders and reply
 * decoders that have byte-exact tests.  Pure functions: no I/O.
 *
 * Decoders copy what they keep (results never point into a protobuf-c
 * message) and never leave NULL strings in results unless client.h says so.
 */
#ifndef KYB_CONTAINERD_CODEC_H
#define KYB_CONTAINERD_CODEC_H

#include <errno.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "containerd/client.h"
#include "containerd_containers.pb-c.h"
#include "containerd_images.pb-c.h"
#include "containerd_runc_options.pb-c.h"
#include "containerd_snapshots.pb-c.h"
#include "containerd_task_types.pb-c.h"
#include "containerd_tasks.pb-c.h"
#include "containerd_types.pb-c.h"
#include "containerd_version.pb-c.h"
#include "google_protobuf.pb-c.h"
#include "util/error.h"

/* Any message -> heap bytes (free()).  An empty message gives a 1-byte
 * buffer with *len 0, never NULL. */
int kyb_ctd_pack(const ProtobufCMessage *m, uint8_t **out, size_t *len, kyb_error **err);

/* Bytes -> message (free with protobuf_c_message_free_unpacked(m, NULL)).
 * `what` names the reply in the error. */
int kyb_ctd_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                   const char *what, ProtobufCMessage **out, kyb_error **err);

/* Fills err with ENOMEM and returns -1.  Inline so that static analysis sees
 * the -1 (it cannot see into kyb_error_set in another file). */
static inline int kyb_ctd_oom(kyb_error **err, const char *what) {
  kyb_error_set(err, ENOMEM, "%s", what);
  return -1;
}

/* strdup that maps NULL to "" and reports ENOMEM through the return value. */
char *kyb_ctd_strdup(const char *s);

int64_t kyb_ctd_timestamp_ns(const Google__Protobuf__Timestamp *ts);

/* Any packing of the runc option messages. */
int kyb_ctd_runc_options_to_any(const kyb_ctd_runc_options *o, kyb_ctd_any *out, kyb_error **err);
int kyb_ctd_checkpoint_opts_to_any(const kyb_ctd_checkpoint_opts *o, kyb_ctd_any *out,
                                   kyb_error **err);
int kyb_ctd_runc_options_from_bytes(const uint8_t *buf, size_t len, kyb_ctd_runc_options *out,
                                    kyb_error **err);

/* Protobuf-c views of the C structs.  The *_view functions fill `pb` with
 * pointers into the source (nothing copied); arrays they need are allocated
 * and released with the matching *_view_free. */
int kyb_ctd_mounts_view(const kyb_ctd_mount *m, size_t n, Containerd__Types__Mount ***out,
                        kyb_error **err);
void kyb_ctd_mounts_view_free(Containerd__Types__Mount **pb, size_t n);

/* Copies out of protobuf-c messages. */
int kyb_ctd_mount_copy(const Containerd__Types__Mount *pb, kyb_ctd_mount *out, kyb_error **err);
int kyb_ctd_descriptor_copy(const Containerd__Types__Descriptor *pb, kyb_ctd_descriptor *out,
                            kyb_error **err);
int kyb_ctd_any_copy(const Google__Protobuf__Any *pb, kyb_ctd_any *out, kyb_error **err);

/* ---- encoders and decoders with byte-exact tests ---- */

int kyb_ctd_encode_checkpoint_request(const char *container_id, const kyb_ctd_checkpoint_opts *opts,
                                      uint8_t **out, size_t *len, kyb_error **err);
int kyb_ctd_encode_task_create_request(const kyb_ctd_task_create_req *req, uint8_t **out,
                                       size_t *len, kyb_error **err);
int kyb_ctd_encode_container_create_request(const kyb_ctd_container *spec, uint8_t **out,
                                            size_t *len, kyb_error **err);

int kyb_ctd_decode_task_get_response(const uint8_t *buf, size_t len, kyb_ctd_process *out,
                                     kyb_error **err);
int kyb_ctd_decode_list_pids_response(const uint8_t *buf, size_t len, kyb_ctd_pid_list *out,
                                      kyb_error **err);
int kyb_ctd_decode_container(const Containerd__Services__Containers__V1__Container *pb,
                             kyb_ctd_container *out, kyb_error **err);
/* The containerd filter that selects a Kubernetes container by its CRI
 * labels (used by kyb_ctd_container_find_k8s).  *out is heap. */
int kyb_ctd_k8s_container_filter(const char *pod_ns, const char *pod_name,
                                 const char *container_name, char **out, kyb_error **err);
int kyb_ctd_decode_container_get_response(const uint8_t *buf, size_t len, kyb_ctd_container *out,
                                          kyb_error **err);

#endif
