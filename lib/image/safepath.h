/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Confined paths: the one place that decides whether a path taken from
 * outside input (a manifest entry, a tar member, a deleted-path record) is
 * acceptable, and that opens such a path beneath a root directory.
 *
 * Every walk is fd-relative: each component is opened with O_NOFOLLOW
 * relative to the one before, so neither a symlink already in the tree nor
 * one swapped in while we walk can lead outside the root.  A symlink on the
 * way is an error (ELOOP) that names it; it is never followed, not even one
 * that would stay inside.  Nothing here changes the working directory:
 * daemons are threaded.
 */
#ifndef KYB_IMAGE_SAFEPATH_H
#define KYB_IMAGE_SAFEPATH_H

#include <stdbool.h>

#include "util/error.h"

#define KYB_RELPATH_MAX 4095u /* bytes, as PATH_MAX - 1 */

/* Accepts a clean relative path: not empty, no leading '/', no empty, "." or
 * ".." component, no trailing '/', at most KYB_RELPATH_MAX bytes, components
 * at most NAME_MAX.  Otherwise EINVAL saying which rule it breaks. */
int kyb_relpath_check(const char *path, kyb_error **err);

/* Opens (O_DIRECTORY) the directory holding the last component of relpath
 * (already checked with kyb_relpath_check) beneath rootfd, creating missing
 * directories (0755) when `create` is set.  *leaf points at the last
 * component inside relpath.  Returns the fd; the caller closes it.  A
 * missing directory with create unset fails with ENOENT. */
int kyb_open_parent_beneath(int rootfd, const char *relpath, bool create, const char **leaf,
                            kyb_error **err);

/* openat of relpath beneath rootfd, with O_NOFOLLOW on every component. */
int kyb_open_beneath(int rootfd, const char *relpath, int flags, kyb_error **err);

/* Removes dirfd/name and, for a directory, everything below it; never follows
 * symlinks and never crosses into another file system.  Missing is fine. */
int kyb_remove_at(int dirfd, const char *name, kyb_error **err);

/* Removes everything inside the directory dirfd, keeping the directory. */
int kyb_empty_dir(int dirfd, kyb_error **err);

#endif
