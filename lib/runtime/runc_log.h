/* SPDX-License-Identifier: Apache-2.0 */
/*
 * runc's log file (--log, --log-format): the channel through which
 * containerd's runc shim learns why a runtime call failed.
 *
 * After a failed create/start/restore/delete the shim reads the log file as a
 * stream of JSON objects {"level":..,"msg":..,"time":..} and reports the
 * "msg" of the LAST object whose level is "error" (go-runc; a line that is
 * not valid JSON stops its reading, and "time" must be RFC 3339).  So
 * kybernate-runc writes its messages in exactly runc's format (logrus'
 * JSON formatter, or its text formatter for --log-format text), each line in
 * one append-mode write so lines from runc itself, running as our child and
 * appending to the same file, never interleave with ours.
 */
#ifndef KYB_RUNTIME_RUNC_LOG_H
#define KYB_RUNTIME_RUNC_LOG_H

#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include "util/error.h"

/* One log line, '\n'-terminated, heap string (NULL on ENOMEM):
 *   json: {"level":"error","msg":"...","time":"2026-11-28T13:40:00.123456789Z"}
 *   text: time="2026-11-28T13:40:00.123456789Z" level=error msg="..."
 * level is runc's (logrus) level name: "error", "warning", "info", "debug".
 * ts NULL means now. */
char *kyb_runc_log_line(bool json, const char *level, const char *msg, const struct timespec *ts);

/* Appends one line to path (created 0644 when missing). */
int kyb_runc_log_append(const char *path, bool json, const char *level, const char *msg,
                        kyb_error **err);

/* The current size of the log file (0 when it does not exist yet): where the
 * lines of a child runc we are about to run will start. */
off_t kyb_runc_log_size(const char *path);

/* The msg of the last level-"error" JSON line at or after byte `from` of a
 * runc JSON log, or NULL (none, unreadable, not JSON).  Heap string. */
char *kyb_runc_log_last_error(const char *path, off_t from);

#endif
