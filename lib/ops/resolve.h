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

/* Resolves `ref` and verifies the image (kyb_image_verify) before returning. */
int kyb_resolve_image(const kyb_nodeconf *conf, const char *ref, kyb_resolved_image *out,
                      kyb_error **err);

#endif
