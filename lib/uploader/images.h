/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The uploader's image calls beside jobs: list the images of a store and
 * delete one, for callers without credentials (`kybernate images ls|rm`
 * through the uploader).  Synchronous: each runs in its HTTP connection's
 * thread with its own store handle.
 *
 *     GET    /v1/images?store=<store URI>   200 {"store": uri, "images": [...]}
 *     DELETE /v1/images?ref=<image ref>     200 {"deleted": ref}
 *
 * A file:// store must be one of the node's (request.h's policy).
 */
#ifndef KYB_UPLOADER_IMAGES_H
#define KYB_UPLOADER_IMAGES_H

#include <jansson.h>

#include "store/store.h"
#include "uploader/request.h"
#include "util/error.h"

/* {"name", "created", "size", "container", "containerName", "podNamespace",
 * "podName", "error"?} -- the CLI's `images ls --json` shape. */
json_t *kyb_image_summary_json(const kyb_image_summary *s);

int kyb_images_list(const kyb_job_policy *pol, const char *store_uri, json_t **out,
                    kyb_error **err);
int kyb_images_delete(const kyb_job_policy *pol, const char *ref, json_t **out, kyb_error **err);

#endif
