/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one error convention of Kybernate.
 *
 * A function that can fail returns a negative int (or NULL) and fills a
 * `kyb_error **err` out-parameter.  The error carries an errno-style cause
 * and a chain of messages: the root cause first, then every context a
 * caller added on the way up.  Printed, the chain reads outermost first:
 *
 *     checkpoint web-1: containerd Tasks.Checkpoint: criu dump failed (No such process)
 *
 * Library code never exits or aborts on bad input; it returns an error.
 * An error that is not passed up must be released (kyb_error_free or the
 * cleanup_error attribute from cleanup.h).
 *
 * Allocation failures while building an error never lose the failure: the
 * caller gets a static "out of memory" error that kyb_error_free ignores.
 */
#ifndef KYB_UTIL_ERROR_H
#define KYB_UTIL_ERROR_H

#include <stdarg.h>
#include <stddef.h>

typedef struct kyb_error {
  int errnum;     /* errno-style cause; 0 when the cause is not a system error */
  size_t nframes; /* frames[0] is the root cause, frames[n-1] the outermost context */
  char **frames;
  char *text; /* cached rendering, built on demand */
} kyb_error;

/* Create *err with errno-style cause `errnum`.  Always returns -1 so a caller
 * can write `return kyb_error_set(err, ENOENT, "no container %s", id);`.
 * If *err already holds an error, the old one is released first. */
int kyb_error_set(kyb_error **err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int kyb_error_setv(kyb_error **err, int errnum, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Like kyb_error_set with errnum = errno (read before anything else runs). */
int kyb_error_errno(kyb_error **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Add a context frame to an existing error and return -1.  Called with no
 * error in *err (a bug in the callee), it records that fact instead of
 * crashing. */
int kyb_error_wrap(kyb_error **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The whole chain, outermost first, joined by ": ", with strerror(errnum)
 * appended in parentheses when errnum != 0.  Owned by the error. */
const char *kyb_error_message(kyb_error *err);

/* The root cause message alone (frames[0]).  Owned by the error. */
const char *kyb_error_root(const kyb_error *err);

int kyb_error_code(const kyb_error *err);

/* Releases the error; NULL and the static out-of-memory error are ignored. */
void kyb_error_free(kyb_error *err);

/* Releases *err and sets it to NULL. */
void kyb_error_clear(kyb_error **err);

#endif
