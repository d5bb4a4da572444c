/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The processes of a container, from its cgroup: every pid listed in
 * cgroup.procs of the given directory and of all directories below it
 * (cgroup v2 nests a container's sub-cgroups; under v1 pass the container's
 * directory in one hierarchy, e.g. /sys/fs/cgroup/pids/<path>).
 *
 * It lives beside the CUDA code because finding a container's CUDA
 * processes is its first user; nothing in it is CUDA-specific.
 */
#ifndef KYB_CUDA_CGROUP_H
#define KYB_CUDA_CGROUP_H

#include <stddef.h>
#include <sys/types.h>

#include "util/error.h"

/* *pids: heap array, sorted, without duplicates (NULL when *count is 0).
 * The top directory must exist; a sub-cgroup removed while we walk is
 * skipped.  Symlinks are not followed; depth is limited. */
int kyb_cgroup_pids(const char *cgroup_dir, pid_t **pids, size_t *count, kyb_error **err);

#endif
