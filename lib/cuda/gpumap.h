/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GPU identity across a checkpoint: UUID text as nvidia-smi prints it, and
 * the old -> new GPU map a restore hands the driver.
 *
 * Rules the map follows (docs/gpu.md, measured on two H200s): it pairs EVERY
 * GPU the process could see at checkpoint time -- a map that leaves one out
 * makes the driver answer CUDA_ERROR_INVALID_VALUE and the process stays
 * checkpointed; each new GPU is used once; the new GPU is the same model
 * (the driver demands the same chip) with at least as much memory.  A GPU
 * that is still here maps onto itself, so restoring on the same node stays
 * an in-place restore.
 */
#ifndef KYB_CUDA_GPUMAP_H
#define KYB_CUDA_GPUMAP_H

#include <stddef.h>

#include "cuda/abi.h"
#include "cuda/driver.h"
#include "util/error.h"

/* "GPU-" + 8-4-4-4-12 lowercase hex digits. */
#define KYB_CUDA_UUID_STRLEN 40

/* Writes the UUID as nvidia-smi does: GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx. */
void kyb_cuda_uuid_format(const kyb_cu_uuid *uuid, char out[KYB_CUDA_UUID_STRLEN + 1]);

/* Parses that form (the "GPU-" prefix optional, hex in either case).
 * Untrusted input (manifests, annotations): anything else is an error. */
int kyb_cuda_uuid_parse(const char *text, kyb_cu_uuid *out, kyb_error **err);

/* Builds the full map from the GPUs recorded at checkpoint to the GPUs
 * present now.  *pairs is a heap array of exactly nrecorded entries, in
 * recorded order (NULL when nrecorded is 0).  Fails, naming the GPUs, when
 * fewer GPUs are present than were recorded, when a recorded GPU has no free
 * present GPU of the same model, or when the only candidates have less
 * memory.  Only uuid, model and memory_bytes of the entries are read. */
int kyb_cuda_gpu_map(const kyb_cuda_gpu *recorded, size_t nrecorded, const kyb_cuda_gpu *present,
                     size_t npresent, kyb_cu_gpu_pair **pairs, kyb_error **err);

#endif
