/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Giving a container other GPUs: the OCI spec rewrite behind `kybernate
 * restore --gpus LIST` (docs/gpu.md, "Which GPUs a container has").  The
 * recorded spec names the GPUs of the checkpointed container; the new one
 * gets exactly the GPUs given, in the forms the recorded spec used:
 *
 *   - linux.devices: when it has /dev/nvidia<N> entries, they are dropped
 *     with their allow rules in linux.resources.devices (allow, type c,
 *     major 195, that minor), and one entry per given GPU is added
 *     (/dev/nvidia<minor>, type c, major 195, fileMode 0666, uid 0, gid 0)
 *     with its allow rule (access rwm).  Other devices and rules, deny rules
 *     included, stay as they are;
 *   - process.env NVIDIA_VISIBLE_DEVICES: when it is there, its value
 *     becomes the given GPUs' UUIDs ("none" for no GPU);
 *   - neither: NVIDIA_VISIBLE_DEVICES=<UUIDs> is added, so that the GPUs
 *     given are what the new container has (cuda/visible.h).
 *
 * Minors come from the driver's proc files (cuda/visible.h), read only
 * when device entries are written.
 */
#ifndef KYB_OPS_GPU_SPEC_H
#define KYB_OPS_GPU_SPEC_H

#include <jansson.h>

#include "cuda/visible.h"
#include "util/error.h"

/* Rewrites `spec` in place to give its container the GPUs of `gpus` (a
 * list, possibly empty; not "all").  The minors of `gpus` are filled when
 * needed (nvidia_proc NULL: $KYBERNATE_NVIDIA_PROC, else
 * /proc/driver/nvidia).  On failure the spec may be half rewritten: the
 * caller drops it. */
int kyb_ops_spec_set_gpus(json_t *spec, kyb_cuda_visible *gpus, const char *nvidia_proc,
                          kyb_error **err);

#endif
