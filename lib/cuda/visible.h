/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which GPUs a container has: the answer the checkpoint needs to record
 * only the GPUs the process could see, and the restore needs to pair them
 * with exactly the GPUs the new container was given (the driver refuses a
 * restore map that names a GPU the process did not see, or leaves one out:
 * docs/gpu.md, "Which GPUs a container has").
 *
 * From the container's OCI spec (untrusted input), in this order:
 *
 *   1. linux.devices: every entry whose path is /dev/nvidia<N> (N digits;
 *      not nvidiactl, nvidia-uvm*, nvidia-modeset) is one GPU, named by its
 *      device minor (the entry's `minor` when it has one, else N).  When
 *      any such entry is there, these are the container's GPUs and the
 *      environment is not read: device nodes are what the process can open,
 *      while the variable below is only a request to a hook that may not
 *      run (and CUDA images set it to "all" themselves).
 *   2. else process.env NVIDIA_VISIBLE_DEVICES (nvidia-container-toolkit's
 *      convention; the last one wins): "all"; "none", "void" or empty: no
 *      GPU; else a comma list of indices (NVML order = PCI bus id order)
 *      and UUIDs (GPU-...).  MIG devices (MIG-..., or "0:1") are refused as
 *      not supported.
 *   3. neither: every GPU of the node (the container may be privileged).
 *
 * Device minors and indices become UUIDs through the driver's proc files,
 * <nvidia proc>/gpus/<pci bus id>/information ("Device Minor: N", "GPU UUID:
 * GPU-..."), read only when a minor or an index needs it.  The nvidia proc
 * directory is the caller's, else $KYBERNATE_NVIDIA_PROC, else
 * /proc/driver/nvidia.  Read it after the CUDA driver was initialised
 * (cuInit): a GPU the driver has not initialised shows "GPU-????????-..."
 * there, which is refused as unknown.
 */
#ifndef KYB_CUDA_VISIBLE_H
#define KYB_CUDA_VISIBLE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "cuda/abi.h"
#include "cuda/driver.h"
#include "util/error.h"

#define KYB_NVIDIA_PROC_DEFAULT "/proc/driver/nvidia"
#define KYB_NVIDIA_PROC_ENV "KYBERNATE_NVIDIA_PROC"
#define KYB_NVIDIA_VISIBLE_ENV "NVIDIA_VISIBLE_DEVICES"
/* The character device major of /dev/nvidia<N> (and nvidiactl). */
#define KYB_NVIDIA_MAJOR 195
/* Bounds on outside input: GPUs in a list or a proc directory, the list's
 * text, one information file. */
#define KYB_NVIDIA_MAX_GPUS 64
#define KYB_NVIDIA_LIST_MAX 4096
#define KYB_NVIDIA_INFO_MAX (64u << 10)

/* One GPU as the driver's proc files describe it. */
typedef struct {
  char bus_id[32];    /* the directory's name, e.g. "0000:18:00.0" */
  unsigned int minor; /* /dev/nvidia<minor> */
  kyb_cu_uuid uuid;
} kyb_nvidia_gpu;

/* The nvidia proc directory: `nvidia_proc`, else $KYBERNATE_NVIDIA_PROC,
 * else KYB_NVIDIA_PROC_DEFAULT. */
const char *kyb_nvidia_proc_dir(const char *nvidia_proc);

/* The node's GPUs from <nvidia proc>/gpus, in PCI bus id order (index i is
 * NVML's index i).  *out is a heap array (NULL when *count is 0).  A
 * malformed or incomplete information file, two GPUs with one minor or one
 * UUID, or more than KYB_NVIDIA_MAX_GPUS fail naming the file. */
int kyb_nvidia_gpus(const char *nvidia_proc, kyb_nvidia_gpu **out, size_t *count, kyb_error **err);

/* A set of GPUs: all of the node's, or a list (possibly empty). */
typedef struct {
  bool all;
  size_t count;
  kyb_cu_uuid *uuids; /* count entries, each GPU once, in the order given */
  int *minors;        /* count entries: the device minor, -1 while not looked up */
  char source[48];    /* where it came from, for messages: "NVIDIA_VISIBLE_DEVICES", ... */
} kyb_cuda_visible;

/* Parses a list in NVIDIA_VISIBLE_DEVICES's grammar ("all", "none", "void",
 * "", or indices and UUIDs separated by commas; blanks around entries are
 * ignored, a GPU named twice counts once).  `source` names the list in
 * messages and in out->source.  Indices are resolved through the proc
 * files (their minors with them); UUIDs are not checked against the node. */
int kyb_cuda_visible_parse(const char *list, const char *source, const char *nvidia_proc,
                           kyb_cuda_visible *out, kyb_error **err);

/* The GPUs a container with this OCI spec has (rules above). */
int kyb_cuda_visible_from_spec(const json_t *spec, const char *nvidia_proc, kyb_cuda_visible *out,
                               kyb_error **err);

/* One linux.devices entry (the i-th, for messages): 1 with *minor set
 * when it is a GPU's device node /dev/nvidia<N> (the entry's minor, else
 * N), 0 when it is another device, -1 when it is malformed (not an object
 * with a path; for a GPU node: type not "c", major not 195, minor out of
 * range). */
int kyb_nvidia_device_entry(const json_t *entry, size_t i, int *minor, kyb_error **err);

/* Fills the minors not known yet from the proc files; a UUID the driver
 * does not list there is an error.  Nothing to do for "all". */
int kyb_cuda_visible_minors(kyb_cuda_visible *v, const char *nvidia_proc, kyb_error **err);

/* Whether `uuid` is in the set (always, for "all"). */
bool kyb_cuda_visible_has(const kyb_cuda_visible *v, const kyb_cu_uuid *uuid);

/* The entries of `gpus` (a driver's list) that are in the set, in the
 * driver's order: all of them for "all".  A GPU of the set the driver does
 * not list is an error naming it and the driver's GPUs.  *out is a heap
 * array (NULL when *nout is 0). */
int kyb_cuda_visible_filter(const kyb_cuda_visible *v, const kyb_cuda_gpu *gpus, size_t n,
                            kyb_cuda_gpu **out, size_t *nout, kyb_error **err);

/* For messages: "GPU-a, GPU-b (from NVIDIA_VISIBLE_DEVICES)", "no GPU (from
 * ...)", "every GPU (...)".  Heap string; NULL on ENOMEM. */
char *kyb_cuda_visible_describe(const kyb_cuda_visible *v);

/* Releases the lists; the set becomes empty.  NULL is ignored. */
void kyb_cuda_visible_clear(kyb_cuda_visible *v);

#endif
