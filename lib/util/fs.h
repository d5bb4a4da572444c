/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small file-system helpers every module needs: bounded whole-file reads,
 * atomic writes (temp file + fsync + rename, so a reader never sees half a
 * file), mkdir -p and recursive removal that never follows symlinks.
 */
#ifndef KYB_UTIL_FS_H
#define KYB_UTIL_FS_H

#include <stddef.h>
#include <sys/types.h>

#include "util/error.h"

/* Reads all of `path` into a NUL-terminated heap buffer.  Fails with EFBIG
 * when the file is larger than max_size: outside input is size-limited. */
int kyb_read_file(const char *path, size_t max_size, char **out, size_t *out_len, kyb_error **err);

/* Writes data to path atomically: path.tmp.XXXXXX in the same directory,
 * fsync, rename over path, fsync of the directory. */
int kyb_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                          kyb_error **err);

/* mkdir -p; existing directories are fine. */
int kyb_mkdir_p(const char *path, mode_t mode, kyb_error **err);

/* rm -rf that stays on one file system and never follows symlinks.
 * A missing path is not an error. */
int kyb_remove_tree(const char *path, kyb_error **err);

/* Joins two path parts with exactly one '/'.  Returns NULL on ENOMEM. */
char *kyb_path_join(const char *a, const char *b);

#endif
