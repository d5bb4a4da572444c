/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Minimal gRPC client transport: unary calls over HTTP/2 cleartext on a unix
 * socket, through libcurl (prior knowledge, no TLS).  It knows nothing about
 * containerd's messages: callers hand in serialised protobuf bytes and get the
 * reply's bytes back.  Reused by every client of a gRPC daemon on the node
 * (containerd's services, CRI, events).
 *
 * Contract:
 *  - One kyb_grpc_conn per thread: it owns one CURL handle.  With libcurl >=
 *    8.0 the HTTP/2 connection stays open between calls; older libcurl gets
 *    a fresh connection per call (see grpc.c for the libcurl bug).
 *  - A failed call returns -1 and fills err.  When the server answered with a
 *    gRPC status, the root message reads
 *        "containerd Tasks.Get: <grpc-message> (grpc status NOT_FOUND)"
 *    with an errno mapped from the status (kyb_grpc_status_errno), and
 *    kyb_grpc_status_of(err) gives the status code back.  A call that fails
 *    after its deadline passed, or gets no reply in time, reports
 *    DEADLINE_EXCEEDED (ETIMEDOUT), as gRPC clients do: containerd itself
 *    often answers UNKNOWN "context deadline exceeded" then.
 *  - A socket that is missing or refuses gives the root message
 *    "containerd unreachable at <path>, is containerd running?" with the
 *    connect errno (ENOENT, ECONNREFUSED, EACCES); kyb_grpc_status_of answers
 *    KYB_GRPC_NO_STATUS for that and for every other failure that did not
 *    come with a status (malformed reply, out of memory).
 *  - Replies are size-limited (KYB_GRPC_MAX_MESSAGE): they are outside input.
 *  - KYB_CURL_VERBOSE=1 in the environment makes libcurl trace each call to
 *    stderr (for debugging the transport only).
 *
 * The framing and status helpers below are pure so they can be tested without
 * a server.
 */
#ifndef KYB_CONTAINERD_GRPC_H
#define KYB_CONTAINERD_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

/* containerd's own default limit in each direction. */
#define KYB_GRPC_MAX_MESSAGE (16u << 20)
#define KYB_GRPC_FRAME_HEADER 5
#define KYB_GRPC_DEFAULT_DEADLINE_MS 30000

/* The gRPC status codes (grpc/status.h numbering). */
typedef enum {
  KYB_GRPC_NO_STATUS = -1, /* the failure did not come with a gRPC status */
  KYB_GRPC_OK = 0,
  KYB_GRPC_CANCELLED = 1,
  KYB_GRPC_UNKNOWN = 2,
  KYB_GRPC_INVALID_ARGUMENT = 3,
  KYB_GRPC_DEADLINE_EXCEEDED = 4,
  KYB_GRPC_NOT_FOUND = 5,
  KYB_GRPC_ALREADY_EXISTS = 6,
  KYB_GRPC_PERMISSION_DENIED = 7,
  KYB_GRPC_RESOURCE_EXHAUSTED = 8,
  KYB_GRPC_FAILED_PRECONDITION = 9,
  KYB_GRPC_ABORTED = 10,
  KYB_GRPC_OUT_OF_RANGE = 11,
  KYB_GRPC_UNIMPLEMENTED = 12,
  KYB_GRPC_INTERNAL = 13,
  KYB_GRPC_UNAVAILABLE = 14,
  KYB_GRPC_DATA_LOSS = 15,
  KYB_GRPC_UNAUTHENTICATED = 16,
} kyb_grpc_code;

typedef struct kyb_grpc_conn kyb_grpc_conn;

/* Per-call settings; a NULL pointer means "the connection's defaults". */
typedef struct {
  /* NULL: the connection's namespace.  "": send no containerd-namespace. */
  const char *ns;
  /* 0: the connection's deadline; < 0: no deadline (Tasks.Wait). */
  int64_t deadline_ms;
} kyb_grpc_call_opts;

/* socket_path: the daemon's unix socket.  ns: value of the
 * containerd-namespace header (NULL or "" sends none).  deadline_ms: default
 * per-call deadline, 0 for KYB_GRPC_DEFAULT_DEADLINE_MS.  Nothing is connected
 * yet: the first call connects. */
int kyb_grpc_conn_new(const char *socket_path, const char *ns, int64_t deadline_ms,
                      kyb_grpc_conn **out, kyb_error **err);
void kyb_grpc_conn_free(kyb_grpc_conn *conn);

int kyb_grpc_conn_set_namespace(kyb_grpc_conn *conn, const char *ns, kyb_error **err);
const char *kyb_grpc_conn_namespace(const kyb_grpc_conn *conn);
const char *kyb_grpc_conn_socket(const kyb_grpc_conn *conn);

/* One unary call.  path: "/<package>.<Service>/<Method>".  req/req_len: the
 * serialised request (req_len 0 sends the empty message).  On success *resp
 * (heap, free()) holds the serialised reply, possibly with *resp_len 0. */
int kyb_grpc_unary(kyb_grpc_conn *conn, const char *path, const uint8_t *req, size_t req_len,
                   const kyb_grpc_call_opts *opts, uint8_t **resp, size_t *resp_len,
                   kyb_error **err);

/* The gRPC status carried by an error from kyb_grpc_unary (read back from its
 * root message): KYB_GRPC_OK for NULL, KYB_GRPC_NO_STATUS when the failure
 * came without one. */
kyb_grpc_code kyb_grpc_status_of(const kyb_error *err);

/* ---- pure helpers: framing ---- */

/* Writes the 5-byte prefix of an uncompressed message of `len` bytes. */
void kyb_grpc_frame_header(uint8_t out[KYB_GRPC_FRAME_HEADER], uint32_t len);

/* prefix + msg in one heap buffer (free()).  Rejects len > max_len. */
int kyb_grpc_frame_encode(const uint8_t *msg, size_t len, size_t max_len, uint8_t **out,
                          size_t *out_len, kyb_error **err);

/* Called once per complete message; msg is valid only during the call and
 * is never NULL (an empty message has len 0).  Return -1 with err to stop. */
typedef int (*kyb_grpc_message_fn)(void *ud, const uint8_t *msg, size_t len, kyb_error **err);

/* Reassembles length-prefixed messages from arbitrary chunks of a response
 * body.  Rejects a set compressed flag (we never offer compression) and any
 * message longer than max_len before buffering it. */
typedef struct {
  size_t max_len;
  uint8_t hdr[KYB_GRPC_FRAME_HEADER];
  size_t hdr_have;
  uint8_t *buf;
  size_t msg_len;
  size_t msg_have;
  size_t nmessages;
} kyb_grpc_decoder;

void kyb_grpc_decoder_init(kyb_grpc_decoder *d, size_t max_len);
int kyb_grpc_decoder_feed(kyb_grpc_decoder *d, const uint8_t *data, size_t len,
                          kyb_grpc_message_fn on_message, void *ud, kyb_error **err);
/* End of stream: fails when a message was cut off. */
int kyb_grpc_decoder_finish(const kyb_grpc_decoder *d, kyb_error **err);
void kyb_grpc_decoder_clear(kyb_grpc_decoder *d);

/* Decodes exactly one message from a complete body: an absent message, a cut
 * one and bytes after the first are errors.  *out is heap (free()). */
int kyb_grpc_decode_unary(const uint8_t *body, size_t len, size_t max_len, uint8_t **out,
                          size_t *out_len, kyb_error **err);

/* ---- pure helpers: status ---- */

/* What the response headers and trailers said. */
typedef struct {
  long http_status;   /* 0 until the status line is seen */
  int grpc_status;    /* KYB_GRPC_NO_STATUS until seen */
  char *grpc_message; /* percent-decoded; NULL when absent */
  bool content_type_grpc;
} kyb_grpc_meta;

void kyb_grpc_meta_init(kyb_grpc_meta *m);
void kyb_grpc_meta_clear(kyb_grpc_meta *m);
/* Feeds one header line as libcurl hands it over ("name: value\r\n" or the
 * "HTTP/2 200" status line); trailers come the same way.  Returns -1 only
 * when out of memory. */
int kyb_grpc_meta_header(kyb_grpc_meta *m, const char *line, size_t len);

/* "%41b%" -> "Ab%": %XX becomes a byte; anything malformed stays as it was
 * (what grpc-go does).  Heap result, NULL when out of memory. */
char *kyb_grpc_percent_decode(const char *in, size_t len);

/* Parses a grpc-status value: decimal digits only.  -1 when malformed. */
int kyb_grpc_parse_status(const char *s, size_t len);

const char *kyb_grpc_code_name(int code);
int kyb_grpc_status_errno(int code);
/* The gRPC code a non-gRPC HTTP status stands for (gRPC's HTTP mapping). */
int kyb_grpc_http_to_status(long http_status);

/* "/containerd.services.tasks.v1.Tasks/Get" -> "Tasks.Get" into buf. */
void kyb_grpc_method_name(const char *path, char *buf, size_t size);

/* "5m"-style grpc-timeout header value for a deadline in ms (at most 8
 * digits, coarser units for long deadlines). */
void kyb_grpc_timeout_value(int64_t ms, char *buf, size_t size);

#endif
