/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's local API: HTTP/1.1 over a unix socket (libmicrohttpd), for
 * the kybernate CLI and kybernate-runc on the same node.  No network port
 * (DESIGN.md).  JSON in, JSON out; errors are {"error": {"status", "message"}}.
 *
 *   GET  /v1/healthz        200 {"status": "ok", "node", "mode", "watching",
 *                           "busy", "current", "queued", "completed"}
 *   POST /v1/checkpoint     body {"container": ID, "namespace": NS} or
 *                           {"pod": "NS/NAME", "container": NAME}, optional
 *                           "store", "name", "leaveRunning" (false),
 *                           "gpuLockTimeoutSeconds" (10), "tcpEstablished",
 *                           "fileLocks", "extUnixSk".  Runs in the agent's
 *                           worker (one checkpoint at a time on the node,
 *                           queued behind CheckpointRequests) and answers when
 *                           it is done: 200 {"container", "name", "ref",
 *                           "digest", "size", "totalMs", "timings"}; 422 with
 *                           the checkpoint's error.  file:// stores must be
 *                           the node's (config, --store).
 *   POST /v1/images/fetch   body {"ref": REF}: makes an image available on
 *                           this node and answers {"ref", "path"} (and "digest"
 *                           through the uploader).  file:// (the node's
 *                           stores): the image's directory; oci:// and s3://:
 *                           through kybernate-uploader into the node cache (503
 *                           when no uploader is configured).
 *   POST /v1/restore-outcome  (report.h) kybernate-runc's word on a pod's
 *                           container: restored, or started cold (the
 *                           fallback); recorded on the pod as annotation
 *                           kybernate.io/restore-outcome and an Event:
 *                           200 {"annotation", "outcome"}; 400 bad body,
 *                           404 no such pod, 409 replaced, 403 another
 *                           node's pod, 502 API server error, 503
 *                           standalone.
 *
 * Request bodies are limited to KYB_AGENT_API_MAX_BODY; who can connect is
 * the socket's file mode (0660, root).
 */
#ifndef KYB_AGENT_API_H
#define KYB_AGENT_API_H

#include <jansson.h>

#define KYB_AGENT_API_MAX_BODY (64u << 10)

/* The pure part of POST /v1/checkpoint: the worker job for a request body,
 * or NULL with *status and *message (400) when the body is not acceptable.
 * default_store is used when the body names none. */
json_t *kyb_agent_api_checkpoint_job(const json_t *body, const char *address,
                                     const char *default_store, int *status, char *message,
                                     size_t size);

#endif
