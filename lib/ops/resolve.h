/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Checkpoint references -> local image directories, for restore.
 *
 * A reference is an image NAME (in the node's default store) or
 * "<store-uri>/<name>" ("oci://host/repo:<name>" for a registry) for a store
 * the node is configured for (nodeconf.h).  An image of a remote store is
 * fetched into the node cache (or found there) and used from there.  Never a host path: an
 * annotation on a pod must not be able to point the privileged runtime at an arbitrary directory.
 * Rejected with a clear error: absolute or relative paths, "..", names outside the naming rules,
 * stores not in the node's list, and image directories that are symlinks or resolve outside their
 * store.
 *
 * A remote store's image (oci://, s3://) is fetched by kybernate-agent when
 * this process knows its socket ($KYBERNATE_AGENT_SOCKET, else the node
 * config's agentSocket): POST /v1/images/fetch, the agent has
 * kybernate-uploader (the only holder of storage credentials) download it
 * into the node cache, and the store is then opened KYB_STORE_LOCAL_ONLY:
 * this process sends no request to storage and needs no credentials.  The
 * digests are verified here all the same, whoever fetched.  Without an agent
 * socket the store is read in-process (a warning says so; it works for
 * storage that needs no credentials).  The agent's answer may take minutes
 * for a big image (agent/client.h: KYB_AGENT_CLIENT_FETCH_TIMEOUT_S).
 */
#ifndef KYB_OPS_RESOLVE_H
#define KYB_OPS_RESOLVE_H

#include <jansson.h>

#include "ops/nodeconf.h"
#include "util/error.h"

typedef struct {
  char *store_uri;
  char *name;
  char *dir;        /* the image directory, resolved (no symlinks) */
  json_t *manifest; /* verified: every file matched its digest */
} kyb_resolved_image;

void kyb_resolved_image_clear(kyb_resolved_image *r);

/* The agent socket resolve uses for remote images: $KYBERNATE_AGENT_SOCKET
 * when set and not empty, else conf->agent_socket, else NULL. */
const char *kyb_resolve_agent_socket(const kyb_nodeconf *conf);

/* Resolves `ref` and verifies the image (kyb_image_verify) before returning. */
int kyb_resolve_image(const kyb_nodeconf *conf, const char *ref, kyb_resolved_image *out,
                      kyb_error **err);

#endif
