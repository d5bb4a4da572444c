/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The server side of a local daemon's HTTP API on a unix socket (the agent's
 * and the uploader's, served with libmicrohttpd): the listening socket and a
 * request body collected up to a bound.
 */
#ifndef KYB_UTIL_UNIX_SERVER_H
#define KYB_UTIL_UNIX_SERVER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

/* Binds and listens on `path` (non-blocking, close-on-exec), mode 0660 set
 * before listen so nobody connects earlier; the parent directory is made
 * 0750 when missing.  A stale socket (nobody answers) is replaced; a live
 * one fails with EADDRINUSE ("<path>: another process answers there" plus
 * " (<who_runs>)" when given), anything that is not a socket with EEXIST.
 * Returns the fd or -1. */
int kyb_unix_listen(const char *path, int backlog, const char *who_runs, kyb_error **err);

/* One request's body. */
typedef struct {
  char *buf; /* heap, NUL-terminated; NULL while empty */
  size_t len;
  bool too_large; /* more than the bound arrived: nothing beyond it is kept */
} kyb_http_body;

/* Adds one upload chunk while the body stays within `max` bytes, else marks
 * it too_large.  False only when out of memory. */
bool kyb_http_body_add(kyb_http_body *b, const char *data, size_t len, size_t max);

/* Frees the body and the structure itself (both calloc'ed per request). */
void kyb_http_body_free(kyb_http_body *b);

/* libmicrohttpd's own messages (MHD_OPTION_EXTERNAL_LOGGER, for any daemon
 * served with it, the operator's TCP one too): one warning line each, the
 * trailing newline cut.  `cls` is unused. */
void kyb_mhd_log(void *cls, const char *fmt, va_list ap);
#endif
