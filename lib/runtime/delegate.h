/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The delegate OCI runtime (runc): which binary, and running it as a child.
 *
 * Running the delegate is the one exec Kybernate allows itself
 * (docs/CONTRIBUTING.md).  The child gets our environment and our stdio:
 * for `runc restore` fds 0, 1 and 2 are the container's stdio pipes the shim
 * gave us, which runc hands to CRIU in place of the dumped ones.
 */
#ifndef KYB_RUNTIME_DELEGATE_H
#define KYB_RUNTIME_DELEGATE_H

#include <stdbool.h>

#include "ops/nodeconf.h"
#include "util/error.h"

#define KYB_RT_DELEGATE_ENV "KYBERNATE_RUNTIME_DELEGATE"

/* $KYBERNATE_RUNTIME_DELEGATE when set and non-empty, else conf->delegate
 * (conf may be NULL), else "runc". */
const char *kyb_rt_delegate(const kyb_nodeconf *conf);

/* Runs argv (argv[0] looked up on PATH) and waits for it.  quiet: its stdout
 * and stderr go to /dev/null (for clean-up calls whose chatter must not land
 * in the container's log).  *status: its wait status. */
int kyb_rt_spawn_wait(const char *const *argv, bool quiet, int *status, kyb_error **err);

/* "exit status 1", "killed by signal 9". */
void kyb_rt_describe_status(int status, char *buf, size_t size);

#endif
