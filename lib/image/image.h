/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Checkpoint image format v1 (docs/image-format.md is the full contract).
 *
 * An image is a directory: manifest.json, criu/ (CRIU's image files) and
 * rootfs-diff.tar (the container's writable layer).  The manifest lists every
 * other file with its size and sha256, so a directory that passes
 * kyb_image_verify() is exactly what was checkpointed: nothing missing,
 * nothing changed, nothing added.
 *
 * Manifests are outside input (they come back from storage): the loader
 * bounds the size, checks every type and required field, and refuses paths
 * that could leave the image directory.  Once kyb_image_load_manifest() or
 * kyb_image_verify() has returned a manifest, callers may read it with plain
 * jansson calls and rely on the types documented in docs/image-format.md.
 *
 * Writing: a kyb_image_builder collects the metadata while the checkpoint
 * runs, then hashes the staging directory and writes manifest.json last, so a
 * directory without a manifest is never mistaken for a finished image.
 */
#ifndef KYB_IMAGE_IMAGE_H
#define KYB_IMAGE_IMAGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "util/error.h"

#define KYB_IMAGE_FORMAT_VERSION 1
#define KYB_IMAGE_MANIFEST "manifest.json"
#define KYB_IMAGE_CRIU_DIR "criu"
#define KYB_IMAGE_ROOTFS_DIFF "rootfs-diff.tar"

/* Bounds on outside input. */
#define KYB_IMAGE_MANIFEST_MAX_BYTES (16u << 20)
#define KYB_IMAGE_MAX_FILES 262144u
#define KYB_IMAGE_NAME_MAX 128u

/* Files larger than a chunk are also pinned chunk by chunk (files[].chunks),
 * so verification can hash one file on many cores.  A reader takes any
 * power of two from KYB_IMAGE_CHUNK_MIN to KYB_IMAGE_CHUNK_MAX. */
#define KYB_IMAGE_CHUNK_SIZE (64u << 20)
#define KYB_IMAGE_CHUNK_MIN (1u << 20)
#define KYB_IMAGE_CHUNK_MAX (1u << 30)

/* ---- names ---------------------------------------------------------------- */

/* Image names match [a-z0-9][a-z0-9._-]{0,127}: safe as a directory name, a
 * Kubernetes label value prefix and an OCI tag. */
bool kyb_image_name_valid(const char *name);
/* Like kyb_image_name_valid, but says why in err (EINVAL). */
int kyb_image_name_check(const char *name, kyb_error **err);

/* A default name "<base>-<YYYYMMDD>-<HHMMSS>" (UTC) from a container name or
 * id: lower-cased, other characters turned into '-', a 64-hex container id
 * shortened to 12, empty or unusable bases replaced by "checkpoint". */
int kyb_image_name_default(const char *base, time_t when, char **out, kyb_error **err);

/* "2026-11-28T13:40:00Z" into buf (at least 21 bytes). */
void kyb_image_format_time(time_t t, char buf[static 21]);
/* RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm). */
bool kyb_image_time_valid(const char *s);

/* ---- reading -------------------------------------------------------------- */

/* Parses and validates a manifest held in memory. */
int kyb_image_manifest_parse(const char *data, size_t len, json_t **out, kyb_error **err);

/* Reads <dir>/manifest.json (never through a symlink, at most
 * KYB_IMAGE_MANIFEST_MAX_BYTES) and validates it. */
int kyb_image_load_manifest(const char *dir, json_t **out, kyb_error **err);
int kyb_image_load_manifest_at(int dirfd, json_t **out, kyb_error **err);

/* Checks a manifest object: version, types, required fields, bounds, paths. */
int kyb_image_manifest_validate(const json_t *m, kyb_error **err);

/* Checks that every file the manifest lists is there with its size and
 * sha256 (or, for a file with chunk digests, every chunk's sha256), and
 * that no other file is (manifest.json aside).  Files and chunks are hashed
 * on kyb_hash_threads() threads.  Fails naming the first missing, changed or
 * extra file.  On success, *manifest_out (when not
 * NULL) receives the manifest that was checked, so the caller uses exactly
 * what was verified instead of reading it a second time. */
int kyb_image_verify(const char *dir, json_t **manifest_out, kyb_error **err);

/* The same without hashing: manifest valid, exactly the listed files, each
 * of its size.  For an image this process has just built and hashed (the
 * store's publish), where hashing every byte a second time would only cost
 * time (about 1 s per GiB, bench/results/gpu-h200-2026-12-01.md). */
int kyb_image_verify_layout(const char *dir, json_t **manifest_out, kyb_error **err);

/* "sha256:<hex>" of <dir>/manifest.json: the image's digest (the manifest
 * pins every other file). */
int kyb_image_digest(const char *dir, char **out, kyb_error **err);

/* ---- writing -------------------------------------------------------------- */

typedef struct kyb_image_source {
  const char *container_id; /* required */
  const char *namespace_;   /* containerd namespace, e.g. "k8s.io" */
  const char *image_ref;    /* the container's image, e.g. "docker.io/library/python:3.12" */
  const char *snapshotter;  /* e.g. "overlayfs" */
  /* The snapshot the container's rootfs was prepared from (the image's top
   * layer): a restore prepares its new rootfs from the same parent. */
  const char *snapshot_parent;
  /* Kubernetes: all NULL when the container is not a pod's; then the
   * manifest has no "pod" object. */
  const char *pod_name;
  const char *pod_namespace;
  const char *pod_uid;
  const char *container_name;
} kyb_image_source;

/* NULL means unknown (written as ""); kernel NULL is filled from uname(2). */
typedef struct kyb_image_versions {
  const char *kybernate;
  const char *criu;
  const char *kernel;
  const char *containerd;
  const char *runc;
} kyb_image_versions;

typedef struct kyb_image_options {
  bool leave_running;
  /* CRIU dump options a restore must repeat (runc restore takes the same
   * flags): established TCP connections, external unix sockets, file locks. */
  bool tcp_established;
  bool ext_unix_sk;
  bool file_locks;
} kyb_image_options;

typedef struct kyb_image_builder kyb_image_builder;

/* Starts the manifest of image `name` for the staging directory `dir`, which
 * must exist (the caller lets runc/CRIU write dir/criu/).  `created` is now. */
kyb_image_builder *kyb_image_builder_new(const char *dir, const char *name, kyb_error **err);
void kyb_image_builder_free(kyb_image_builder *b);

int kyb_image_builder_set_source(kyb_image_builder *b, const kyb_image_source *src,
                                 kyb_error **err);
/* spec: the container's OCI runtime spec (config.json), copied. */
int kyb_image_builder_set_runtime(kyb_image_builder *b, const json_t *spec, const char *name,
                                  const char *binary, kyb_error **err);
int kyb_image_builder_set_versions(kyb_image_builder *b, const kyb_image_versions *v,
                                   kyb_error **err);
int kyb_image_builder_set_options(kyb_image_builder *b, const kyb_image_options *o,
                                  kyb_error **err);
/* gpus: a JSON array (copied); the default is []. */
int kyb_image_builder_set_gpus(kyb_image_builder *b, const json_t *gpus, kyb_error **err);
/* phase: [a-z0-9_]{1,64}, e.g. "pause", "criu_dump". */
int kyb_image_builder_set_timing(kyb_image_builder *b, const char *phase, uint64_t ms,
                                 kyb_error **err);
void kyb_image_builder_set_created(kyb_image_builder *b, time_t created);

/* Writes dir/rootfs-diff.tar from the overlayfs upperdir and records its
 * deleted and opaque paths in the manifest ("rootfs") and its duration as
 * timing "rootfs_diff". */
int kyb_image_builder_write_rootfs_diff(kyb_image_builder *b, const char *upperdir,
                                        kyb_error **err);

/* Lists, fsyncs and hashes every file under dir (manifest.json aside), adds
 * timing "package", and writes manifest.json atomically.  Source and runtime
 * must have been set.  *digest (when not NULL) receives "sha256:<hex>" of the
 * manifest written. */
int kyb_image_builder_finish(kyb_image_builder *b, char **digest, kyb_error **err);

/* The chunk size for files[].chunks (default KYB_IMAGE_CHUNK_SIZE; a power of
 * two from KYB_IMAGE_CHUNK_MIN to KYB_IMAGE_CHUNK_MAX).  For tests and
 * benchmarks: small chunks on small files. */
int kyb_image_builder_set_chunk_size(kyb_image_builder *b, uint64_t size, kyb_error **err);

#endif
