/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The client side of kybernate-agent's local API (api.h, docs/agent.md),
 * over its unix socket with libcurl: what kybernate-runc and the kybernate
 * CLI use to have the agent fetch a remote image into the node cache (the
 * agent hands that to kybernate-uploader, the only process with storage
 * credentials) and to checkpoint through the agent's queue.
 *
 *     kyb_agent_client *c = NULL;
 *     kyb_agent_client_new("/run/kybernate/agent.sock", &c, err);
 *     kyb_agent_fetched f = {0};
 *     kyb_agent_client_fetch(c, "oci://reg/team/ckpt:web-1", &f, err);
 *     ... f.path (the agent's word; the caller re-derives and verifies) ...
 *     kyb_agent_fetched_clear(&f);
 *     kyb_agent_client_free(c);
 *
 * The agent answers a fetch or a checkpoint when it is done, so those calls
 * wait long: KYB_AGENT_CLIENT_FETCH_TIMEOUT_S (a 17 GB image at 100 MB/s is
 * about 3 minutes) and KYB_AGENT_CLIENT_CHECKPOINT_TIMEOUT_S; connecting is
 * limited to KYB_AGENT_CLIENT_CONNECT_TIMEOUT_S.  Errors name the agent's
 * socket and carry the agent's own message, with an errno for its status
 * (400 EINVAL, 403 EPERM, 404 ENOENT, 413 EMSGSIZE, 422 EIO, 503 EAGAIN,
 * others EIO); no agent at the socket is ECONNREFUSED, no answer in time
 * ETIMEDOUT.  Answers are untrusted input: bounded (1 MiB), parsed and
 * type-checked.  Not thread-safe: one client per thread.
 */
#ifndef KYB_AGENT_CLIENT_H
#define KYB_AGENT_CLIENT_H

#include <jansson.h>

#include "util/error.h"

#define KYB_AGENT_SOCKET_ENV "KYBERNATE_AGENT_SOCKET"
#define KYB_AGENT_CLIENT_CONNECT_TIMEOUT_S 10
#define KYB_AGENT_CLIENT_HEALTH_TIMEOUT_S 10
#define KYB_AGENT_CLIENT_FETCH_TIMEOUT_S 3600
#define KYB_AGENT_CLIENT_CHECKPOINT_TIMEOUT_S 7200
/* A restore outcome is sent from inside a container's create: short. */
#define KYB_AGENT_CLIENT_REPORT_TIMEOUT_S 5

typedef struct kyb_agent_client kyb_agent_client;

/* The answer of POST /v1/images/fetch. */
typedef struct {
  char *ref;    /* the image's full reference */
  char *path;   /* the local image directory the agent names */
  char *digest; /* sha256 of manifest.json, or NULL (file:// answers have none) */
} kyb_agent_fetched;

void kyb_agent_fetched_clear(kyb_agent_fetched *f);

/* socket: the agent's socket path (required). */
int kyb_agent_client_new(const char *socket, kyb_agent_client **out, kyb_error **err);
void kyb_agent_client_free(kyb_agent_client *c);
const char *kyb_agent_client_socket(const kyb_agent_client *c);

/* One limit (ms) for every call instead of the defaults above; 0: the
 * defaults again. */
void kyb_agent_client_set_timeout(kyb_agent_client *c, long ms);

/* GET /v1/healthz: *out (may be NULL) gets the answer; 0 when "ok". */
int kyb_agent_client_health(kyb_agent_client *c, json_t **out, kyb_error **err);

/* POST /v1/images/fetch {"ref"}: *out is replaced only on success. */
int kyb_agent_client_fetch(kyb_agent_client *c, const char *ref, kyb_agent_fetched *out,
                           kyb_error **err);

/* POST /v1/checkpoint with `body` (api.h); *out gets the 200 answer
 * ({"container", "name", "ref", "digest", "size", "totalMs", "timings"},
 * checked for those fields' types). */
int kyb_agent_client_checkpoint(kyb_agent_client *c, const json_t *body, json_t **out,
                                kyb_error **err);

/* POST /v1/restore-outcome with `body` (report.h): 0 when the agent
 * recorded it. */
int kyb_agent_client_report_outcome(kyb_agent_client *c, const json_t *body, kyb_error **err);

/* Parses a fetch answer (exposed for tests). */
int kyb_agent_fetched_parse(const char *text, size_t len, kyb_agent_fetched *out, kyb_error **err);

#endif
