/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading CRIU's own log (dump.log / restore.log in the work directory runc
 * gives CRIU).  It is the one place that says *why* CRIU failed, and its
 * first line names CRIU's version, which goes into the manifest without
 * running CRIU ourselves.
 */
#ifndef KYB_OPS_CRIU_LOG_H
#define KYB_OPS_CRIU_LOG_H

#include <stddef.h>

#include "util/error.h"

/* The "Version: X.Y.Z" CRIU prints first, or NULL when the log is missing or
 * has none.  Heap string. */
char *kyb_criu_log_version(const char *log_path);

/* The lines of the log that report errors (CRIU's "Error" lines and the
 * lines around the failure), at most max_lines of them, joined by "\n".
 * NULL when the log is missing or shows no error line.  Heap string. */
char *kyb_criu_log_errors(const char *log_path, size_t max_lines);

#endif
