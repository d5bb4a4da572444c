/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming packaging of image parts for remote stores (oci://, s3://):
 * one file in, one zstd-compressed blob out, both hashed on the way, never
 * more than a few buffers in memory.  And the way back: a blob in, the file
 * out, both digests checked before the file may be used.
 *
 * Remote layout (docs/image-format.md, "Remote stores"): every file of an
 * image -- each entry of the manifest's `files`, and manifest.json itself --
 * is one blob, addressed by the sha256 of its compressed bytes (the blob
 * digest); the manifest's own `files[].sha256` stays the digest of the
 * uncompressed file.  A reader therefore checks twice: the blob digest while
 * downloading (storage or transport damage), the file digest after
 * decompressing (what the image promised).
 *
 * Digests are "sha256:<64 lowercase hex>" everywhere here.
 */
#ifndef KYB_STORE_PACK_H
#define KYB_STORE_PACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define KYB_DIGEST_LEN 71 /* "sha256:" + 64 hex */

/* zstd level when the caller gives none: 400-730 MB/s per core, within 10%
 * of level 9's ratio on a compressible heap (9x there; random pages stay
 * 1.0x); bench/results/compression-2026-12-01.md. */
#define KYB_PACK_DEFAULT_LEVEL 3

/* Receives compressed bytes in order; returns 0, or -1 with err to stop. */
typedef int (*kyb_pack_sink_fn)(void *ud, const void *buf, size_t len, kyb_error **err);

/* Called after each chunk read with the file's bytes read so far; 0 goes
 * on, -1 with err stops the pack with that error. */
typedef int (*kyb_pack_progress_fn)(void *ud, uint64_t file_bytes, kyb_error **err);

typedef struct {
  int level;   /* zstd level 1..19; 0 = KYB_PACK_DEFAULT_LEVEL */
  int threads; /* 1: compress in the calling thread; N > 1: N zstd workers beside it
                * (the caller reads, hashes and sinks meanwhile); 0 = one per online
                * CPU, at most 8.  The blob's bytes may differ between 1 and N > 1;
                * both unpack the same. */
  kyb_pack_progress_fn progress; /* NULL: none */
  void *progress_ud;
} kyb_pack_opts;

typedef struct {
  char file_digest[KYB_DIGEST_LEN + 1]; /* sha256 of the file's bytes */
  char blob_digest[KYB_DIGEST_LEN + 1]; /* sha256 of the compressed bytes */
  uint64_t file_size;
  uint64_t blob_size;
} kyb_pack_result;

/* Compresses the file at `path` into `sink`, hashing both sides.  The file
 * is read once, in bounded chunks (1 MiB) and becomes one zstd frame with
 * the content size and zstd's checksum.  A file that changes size while it
 * is read is an error (EAGAIN), as is a sink error (passed up as is, with
 * the path as context).  `res` (may be NULL) is filled on success only. */
int kyb_pack_file(const char *path, const kyb_pack_opts *opts, kyb_pack_sink_fn sink, void *ud,
                  kyb_pack_result *res, kyb_error **err);

/* The way back: a decompressor writing into `out_fd` (a new, empty file the
 * caller made), fed with the blob's bytes in order, in chunks of any size. */
typedef struct kyb_unpack kyb_unpack;

/* expected_*: the digests and the file size the remote index promised
 * (untrusted input: a malformed digest is an error here).  Output beyond
 * expected_file_size is an error at once (a decompression bomb stops there). */
int kyb_unpack_new(int out_fd, const char *expected_blob_digest, const char *expected_file_digest,
                   uint64_t expected_file_size, kyb_unpack **out, kyb_error **err);
/* An error (EBADMSG: corrupt zstd data, bytes after the frame; EFBIG:
 * output past the expected size) stops the stream: every later call fails. */
int kyb_unpack_feed(kyb_unpack *u, const void *buf, size_t len, kyb_error **err);
/* Ends the stream: the frame must be complete and both digests and the
 * size must match, else an error (EBADMSG) names both digests, expected and
 * got; the caller adds the part's name, then removes the file.  It does not
 * fsync out_fd.  Frees nothing: call kyb_unpack_free. */
int kyb_unpack_finish(kyb_unpack *u, kyb_error **err);
void kyb_unpack_free(kyb_unpack *u);
/* The file bytes written so far (for progress). */
uint64_t kyb_unpack_file_bytes(const kyb_unpack *u);

/* "sha256:<hex>" with exactly 64 lowercase hex digits. */
bool kyb_digest_valid(const char *digest);

#endif
