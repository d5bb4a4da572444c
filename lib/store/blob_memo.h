/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node's blob memo (internal to lib/store), shared by oci:// and s3://:
 * <cache>/oci/blobs/<hex of a file digest> holds "sha256:<blob hex> <blob
 * size>\n", a zstd blob (pack.h) this node pushed or pulled that decompresses
 * to that file.  A push looks a file's manifest digest up before compressing
 * it and, when the store already has that blob (a HEAD, same size), sends
 * nothing for it: unchanged parts and retried pushes cost one request.
 *
 * The memo is a hint, never trusted for content: a wrong or stale entry
 * makes a push name a blob that does not hold the file, and every pull
 * checks the blob digest and the file digest, so the image is refused
 * there.  Reading never fails (a missing, unreadable or malformed entry is
 * "no memo"); writing is best effort (a failure is logged at debug level).
 */
#ifndef KYB_STORE_BLOB_MEMO_H
#define KYB_STORE_BLOB_MEMO_H

#include <stdint.h>

#include "store/pack.h"
#include "util/error.h"

/* "<cache root>/oci/blobs" into *dir (caller frees). */
int kyb_blob_memo_dir(char **dir, kyb_error **err);

/* 1 with the blob's digest and size for file_digest ("sha256:<hex>"), 0
 * when there is no usable entry. */
int kyb_blob_memo_get(const char *dir, const char *file_digest, char blob[KYB_DIGEST_LEN + 1],
                      uint64_t *blob_size);

/* Records that blob_digest (blob_size bytes) holds file_digest. */
void kyb_blob_memo_put(const char *dir, const char *file_digest, const char *blob_digest,
                       uint64_t blob_size);

#endif
