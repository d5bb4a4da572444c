/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The uploader's job runner (a kyb_job_runner, service.h): one attempt of
 * an upload or a fetch through the stores (store.h), their progress passed
 * to the job, a cancel stopping the store's transfer.
 *
 * Upload: the local image's layout is checked, its files linked (copied
 * across file systems) into a staging directory of the destination store,
 * and the store publishes it (kyb_store_put): for oci:// and s3:// every
 * file is packed and checked against the manifest on the way, and the image
 * becomes visible only with its last write.  The local image stays.
 *
 * Fetch: kyb_store_get_path, which for a remote store downloads into the
 * node's image cache with every blob and file digest checked and publishes
 * the cached copy atomically (or answers a current cached copy).
 *
 * Each attempt opens its own stores: stores are not thread-safe, and a
 * fresh open reads rotated credentials.
 */
#ifndef KYB_UPLOADER_TRANSFER_H
#define KYB_UPLOADER_TRANSFER_H

#include "uploader/service.h"

int kyb_transfer_run(void *ud, kyb_job_ctx *ctx, const kyb_job_request *req, kyb_job_result *res,
                     kyb_error **err);

#endif
