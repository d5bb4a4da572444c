/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The rootfs diff: what a container changed in its writable layer.
 *
 * Writing walks an overlayfs upperdir (never following a symlink) into a pax
 * tar of regular files, directories, symlinks and hard links with their mode,
 * owner, mtime and xattrs (overlay's own trusted.overlay.* aside).  Overlay's
 * bookkeeping does not go into the tar: whiteouts (0:0 character devices)
 * become `deleted` paths and directories marked trusted.overlay.opaque=y
 * become `opaque` paths, both kept in kyb_rootfs_changes, which the image
 * manifest stores as "rootfs".  Sockets, fifos and device nodes are skipped
 * (CRIU recreates bound sockets; a container cannot own device nodes).
 *
 * Applying replays a diff onto a target root directory (the new container's
 * rootfs): first it removes the deleted paths and empties the opaque
 * directories, then it extracts the tar.  Tar members and change lists are
 * untrusted: every path must be clean and relative, every walk is
 * fd-relative and refuses symlinks, nothing is ever created outside the
 * target, and the number of members and the bytes written are bounded.  The
 * whole tar is checked once before anything is written, so a tar with a bad
 * member name, a forbidden member type or too much content changes nothing.
 * A failure during extraction itself (a symlink already in the target on a
 * member's path, a full disk) leaves the target partly written: the caller
 * throws the target away.
 */
#ifndef KYB_IMAGE_ROOTFS_H
#define KYB_IMAGE_ROOTFS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define KYB_ROOTFS_DEFAULT_MAX_ENTRIES 1000000u
#define KYB_ROOTFS_DEFAULT_MAX_BYTES (64ull << 30)
/* Bound on each of the deleted and opaque lists (they live in the manifest). */
#define KYB_ROOTFS_MAX_CHANGES 262144u

typedef struct kyb_rootfs_limits {
  uint64_t max_entries; /* tar members; 0 means the default */
  uint64_t max_bytes;   /* bytes of regular-file content; 0 means the default */
} kyb_rootfs_limits;

typedef struct kyb_rootfs_changes {
  char **deleted; /* NULL-terminated; paths relative to the rootfs */
  size_t ndeleted;
  char **opaque; /* NULL-terminated; directories whose lower content is hidden */
  size_t nopaque;
  uint64_t entries; /* members in the tar */
  uint64_t bytes;   /* regular-file bytes in the tar */
  uint64_t skipped; /* sockets, fifos and devices left out */
} kyb_rootfs_changes;

void kyb_rootfs_changes_release(kyb_rootfs_changes *c);

/* The manifest's "rootfs" object: {"deleted":[..],"opaque":[..],"entries":n,
 * "bytes":n,"skipped":n}.  NULL on ENOMEM. */
json_t *kyb_rootfs_changes_to_json(const kyb_rootfs_changes *c);
/* Validates a "rootfs" object (types, bounds, clean relative paths) and
 * copies it into *out. */
int kyb_rootfs_changes_from_json(const json_t *rootfs, kyb_rootfs_changes *out, kyb_error **err);

/* Writes tar_path (created, must not exist) from upperdir; fills *out. */
int kyb_rootfs_diff_write(const char *upperdir, const char *tar_path, kyb_rootfs_changes *out,
                          kyb_error **err);

/* Applies changes + tar_path onto target.  limits may be NULL (defaults). */
int kyb_rootfs_diff_apply(const char *tar_path, const kyb_rootfs_changes *changes,
                          const char *target, const kyb_rootfs_limits *limits, kyb_error **err);

/* Convenience for the restore path: applies the rootfs diff of a verified
 * image (manifest from kyb_image_verify) onto target.  An image without a
 * rootfs diff changes nothing. */
int kyb_image_apply_rootfs(const char *image_dir, const json_t *manifest, const char *target,
                           const kyb_rootfs_limits *limits, kyb_error **err);

#endif
