/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The OCI distribution side of the oci:// store (internal to lib/store):
 * store URIs, auth challenges and credentials, and the OCI image manifest
 * that describes a checkpoint in a registry.  Pure functions over strings
 * and JSON, so the unit tests cover them without a registry;
 * store_oci.c does the I/O.
 *
 * An image in a registry (docs/image-format.md, "Remote stores"):
 *
 *   {"schemaVersion": 2,
 *    "mediaType": "application/vnd.oci.image.manifest.v1+json",
 *    "artifactType": "application/vnd.kybernate.checkpoint.v1",
 *    "config": {"mediaType": "application/vnd.kybernate.checkpoint.manifest.v1+json",
 *               "digest": <sha256 of manifest.json>, "size": <its bytes>},
 *    "layers": [{"mediaType": "application/vnd.kybernate.checkpoint.part.v1+zstd",
 *                "digest": <blob digest>, "size": <blob bytes>,
 *                "annotations": {"org.opencontainers.image.title": <path>,
 *                                "io.kybernate.part.sha256": "sha256:<file digest>",
 *                                "io.kybernate.part.size": "<file bytes>"}}, ...],
 *    "annotations": {"io.kybernate.image.name": <name>,
 *                    "org.opencontainers.image.created": <created>}}
 *
 * Everything a registry sends is untrusted: kyb_oci_manifest_parse bounds
 * and checks every field before anything is downloaded.
 */
#ifndef KYB_STORE_OCI_H
#define KYB_STORE_OCI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/pack.h"
#include "util/error.h"

#define KYB_OCI_MEDIA_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define KYB_OCI_ARTIFACT_TYPE "application/vnd.kybernate.checkpoint.v1"
#define KYB_OCI_MEDIA_CONFIG "application/vnd.kybernate.checkpoint.manifest.v1+json"
#define KYB_OCI_MEDIA_PART "application/vnd.kybernate.checkpoint.part.v1+zstd"
#define KYB_OCI_ANN_TITLE "org.opencontainers.image.title"
#define KYB_OCI_ANN_PART_SHA256 "io.kybernate.part.sha256"
#define KYB_OCI_ANN_PART_SIZE "io.kybernate.part.size"
#define KYB_OCI_ANN_NAME "io.kybernate.image.name"
#define KYB_OCI_ANN_CREATED "org.opencontainers.image.created"

/* Registries refuse larger manifests (distribution: 4 MiB); so do we. */
#define KYB_OCI_MANIFEST_MAX (4u << 20)
#define KYB_OCI_REPO_MAX 255u
#define KYB_OCI_HOST_MAX 255u

/* Environment: registries (host or host:port, comma-separated) spoken to
 * over plain http.  127.0.0.1, localhost and [::1] always are. */
#define KYB_OCI_INSECURE_ENV "KYBERNATE_OCI_INSECURE"
/* Environment: a PEM CA bundle that https registries are verified against
 * instead of the system's CA store. */
#define KYB_OCI_CA_ENV "KYBERNATE_OCI_CA_FILE"
/* Environment: a docker config.json with an "auths" map; default below. */
#define KYB_OCI_AUTH_ENV "KYBERNATE_REGISTRY_AUTH"
#define KYB_OCI_AUTH_DEFAULT "/etc/kybernate/registry-auth.json"
/* Environment: credentials for any registry that asks (after the file). */
#define KYB_OCI_USER_ENV "KYBERNATE_REGISTRY_USERNAME"
#define KYB_OCI_PASSWORD_ENV "KYBERNATE_REGISTRY_PASSWORD"

/* ---- URIs ----------------------------------------------------------------- */

/* Splits the part after "oci://" into host ("name[:port]", lower-cased) and
 * repository (distribution's grammar: lower-case components of
 * [a-z0-9]+ joined by '.', '_', '__' or dashes, separated by '/'; at most
 * 255 bytes).  No tag here: "host/repo:tag" is a reference
 * (kyb_oci_ref_split).  EINVAL naming the rule broken. */
int kyb_oci_uri_parse(const char *rest, char **host, char **repo, kyb_error **err);

/* "host/repo:tag" -> store part "host/repo" and tag.  A reference by digest
 * (@sha256:...) fails with ENOTSUP; a missing tag with EINVAL. */
int kyb_oci_ref_split(const char *rest, char **store_rest, char **tag, kyb_error **err);

/* Whether the registry at host is spoken to over plain http: a loopback
 * name, or listed in `insecure_list` (the value of KYB_OCI_INSECURE_ENV;
 * NULL = none). */
bool kyb_oci_plain_http(const char *host, const char *insecure_list);

/* ---- auth ----------------------------------------------------------------- */

typedef struct {
  char *scheme; /* "basic" or "bearer", lower-cased */
  char *realm;
  char *service; /* NULL when absent */
  char *scope;   /* NULL when absent */
} kyb_oci_challenge;

void kyb_oci_challenge_clear(kyb_oci_challenge *c);

/* Parses a WWW-Authenticate value: `Bearer realm="...",service="...",
 * scope="..."` or `Basic realm="..."` (quoted or token values, any order,
 * unknown parameters ignored, commas inside quotes kept).  A Bearer realm
 * must be an http(s) URL.  EINVAL otherwise. */
int kyb_oci_challenge_parse(const char *header, kyb_oci_challenge *out, kyb_error **err);

/* Looks host up in a docker config.json text's "auths" map: keys may be
 * "host[:port]" or URLs ("https://host/v1/"); the entry holds "auth"
 * (base64 "user:password") or "username" and "password".  1 with *user and
 * *password set; 0 when host has no entry; -1 on a malformed file. */
int kyb_oci_auth_lookup(const char *config_json, size_t len, const char *host, char **user,
                        char **password, kyb_error **err);

/* ---- manifests ------------------------------------------------------------ */

typedef struct {
  char *path;                           /* the file's path in the image */
  char blob_digest[KYB_DIGEST_LEN + 1]; /* compressed */
  uint64_t blob_size;
  char file_digest[KYB_DIGEST_LEN + 1]; /* uncompressed, "sha256:<hex>" */
  uint64_t file_size;
} kyb_oci_layer;

typedef struct {
  char config_digest[KYB_DIGEST_LEN + 1]; /* manifest.json = the image digest */
  uint64_t config_size;
  kyb_oci_layer *layers;
  size_t nlayers;
  char *name; /* io.kybernate.image.name, NULL when absent */
} kyb_oci_manifest;

void kyb_oci_manifest_clear(kyb_oci_manifest *m);

/* The registry manifest of an image: compact JSON with sorted keys,
 * malloc'd.  name and created go into the annotations. */
char *kyb_oci_manifest_build(const kyb_oci_manifest *m, const char *created, size_t *len,
                             kyb_error **err);

/* Parses and checks a registry manifest (at most KYB_OCI_MANIFEST_MAX
 * bytes): schema 2, OCI manifest media type, our artifact type and config
 * media type, valid digests, every layer ours with a clean path (unique),
 * a file digest and size, at most KYB_IMAGE_MAX_FILES layers.  EBADMSG
 * naming the problem; ENOTSUP for an artifact that is not a checkpoint. */
int kyb_oci_manifest_parse(const char *data, size_t len, kyb_oci_manifest *out, kyb_error **err);

/* Checks that the layers describe exactly the files an image manifest
 * (validated, from the config blob) lists: same paths, sizes and digests.
 * EBADMSG naming the first difference. */
int kyb_oci_manifest_match(const kyb_oci_manifest *m, const json_t *image_manifest,
                           kyb_error **err);

/* The next page of a tags listing from a Link header (`<url>; rel="next"`):
 * a path+query starting with "/v2/", malloc'd; NULL when there is none or
 * it is not a same-registry path. */
char *kyb_oci_link_next(const char *link);

#endif
