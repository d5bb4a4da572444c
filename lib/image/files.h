/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The files of an image directory: listing them (the builder lists what to
 * pin, verify lists what is actually there) and hashing them.  Internal to
 * lib/image.
 */
#ifndef KYB_IMAGE_FILES_H
#define KYB_IMAGE_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "util/error.h"

#define KYB_SHA256_HEX_LEN 64u

/* Reads fd to its end, hashing it.  When do_fsync is set the file is also
 * fsynced, so the builder needs no second pass to make an image durable. */
int kyb_sha256_fd(int fd, bool do_fsync, char hex[KYB_SHA256_HEX_LEN + 1], uint64_t *size,
                  kyb_error **err);
void kyb_sha256_buf(const void *data, size_t len, char hex[KYB_SHA256_HEX_LEN + 1]);
/* len bytes as 2*len lower-case hex digits and a NUL. */
void kyb_hex_lower(const unsigned char *md, size_t len, char *hex);

/* Reads a regular file from fd into a NUL-terminated heap buffer; EFBIG past
 * max bytes (the fd-based twin of kyb_read_file, for files opened with
 * O_NOFOLLOW beneath a root). */
int kyb_read_fd_bounded(int fd, size_t max, char **out, size_t *len, kyb_error **err);

/* Every non-directory entry below dirfd as a relative path, sorted (strcmp),
 * the top-level manifest.json left out.  Anything but a regular file or a
 * directory is an error: an image holds nothing else.  *out is a
 * NULL-terminated array. */
int kyb_image_list_files(int dirfd, char ***out, size_t *n, kyb_error **err);

/* files[] entries for paths[0..n) beneath dfd, appended to `files` in that
 * order: {path, size, sha256} and, for a file larger than `chunk` bytes,
 * chunks {size, sha256[]}.  Every file is fsynced.  (digests.c) */
int kyb_image_pin_files(int dfd, char *const *paths, size_t n, uint64_t chunk, json_t *files,
                        kyb_error **err);

/* Checks the digests of a validated files[] beneath dfd: the chunk digests
 * of a file that has them, else its sha256.  EBADMSG names the first
 * mismatch found.  (digests.c) */
int kyb_image_check_digests(int dfd, const json_t *files, kyb_error **err);
#endif
