/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The uploader's HTTP server: the API of api.h over a unix socket, with
 * libmicrohttpd and a thread per connection (a listing of a remote store
 * takes a while; job calls never block).
 *
 * The socket: its parent directory is created mode 0750 when missing; a
 * stale socket file (nobody answers on it) is replaced, a live one is not
 * (EADDRINUSE: another uploader runs), anything else at the path is
 * refused; the socket is made mode 0660.  Access is the file mode's: who
 * can connect can submit jobs.
 *
 * Requests are untrusted: bodies over KYB_JOB_REQUEST_MAX get 413 without
 * being read on, headers are bounded by libmicrohttpd's per-connection
 * memory (32 KiB), connections by a limit and an idle timeout.
 */
#ifndef KYB_UPLOADER_SERVER_H
#define KYB_UPLOADER_SERVER_H

#include "uploader/request.h"
#include "uploader/service.h"
#include "util/error.h"

#define KYB_UPLOADER_SOCKET_ENV "KYBERNATE_UPLOADER_SOCKET"
#define KYB_UPLOADER_SOCKET_DEFAULT "/run/kybernate/uploader.sock"

typedef struct kyb_uploader_server kyb_uploader_server;

/* Serves u on socket_path until kyb_uploader_server_stop.  pol must outlive
 * the server. */
int kyb_uploader_server_start(const char *socket_path, kyb_uploader *u, const kyb_job_policy *pol,
                              kyb_uploader_server **out, kyb_error **err);
/* Stops serving, closes and removes the socket. */
void kyb_uploader_server_stop(kyb_uploader_server *s);

#endif
