/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kyb_oci_manifest_parse: a registry's manifest of an image.  What it
 * accepts has valid digests, clean unique paths and no more layers than an
 * image may have files; built again with kyb_oci_manifest_build it parses
 * to the same layers.
 */
#include "fuzz.h"
#include "image/image.h"
#include "image/safepath.h"
#include "store/oci.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_quiet_log();
  return 0;
}

static void check(const kyb_oci_manifest *m) {
  kyb_error *err = NULL;
  FUZZ_ASSERT(kyb_digest_valid(m->config_digest));
  FUZZ_ASSERT(m->config_size <= KYB_IMAGE_MANIFEST_MAX_BYTES);
  FUZZ_ASSERT(m->nlayers <= KYB_IMAGE_MAX_FILES && (m->nlayers == 0 || m->layers != NULL));
  for (size_t i = 0; i < m->nlayers; i++) {
    const kyb_oci_layer *l = &m->layers[i];
    FUZZ_ASSERT(kyb_digest_valid(l->blob_digest) && kyb_digest_valid(l->file_digest));
    FUZZ_ASSERT(l->path != NULL && kyb_relpath_check(l->path, &err) == 0);
    FUZZ_ASSERT(strcmp(l->path, KYB_IMAGE_MANIFEST) != 0);
    for (size_t j = 0; j < i; j++)
      FUZZ_ASSERT(strcmp(m->layers[j].path, l->path) != 0);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kyb_error *err = NULL;
  kyb_oci_manifest m;
  int rc = kyb_oci_manifest_parse((const char *)data, size, &m, &err);
  fuzz_check_rc(rc, &err);
  if (rc < 0) {
    FUZZ_ASSERT(m.layers == NULL && m.nlayers == 0 && m.name == NULL);
    return 0;
  }
  check(&m);
  size_t len = 0;
  char *text = kyb_oci_manifest_build(&m, "2026-11-28T13:40:00Z", &len, &err);
  FUZZ_ASSERT(text != NULL && err == NULL && len == strlen(text));
  kyb_oci_manifest again;
  rc = kyb_oci_manifest_parse(text, len, &again, &err);
  FUZZ_ASSERT(rc == 0 && err == NULL);
  FUZZ_ASSERT(again.nlayers == m.nlayers && again.config_size == m.config_size);
  FUZZ_ASSERT(strcmp(again.config_digest, m.config_digest) == 0);
  FUZZ_ASSERT(strcmp(again.name, m.name ? m.name : "") == 0);
  for (size_t i = 0; i < m.nlayers; i++) {
    const kyb_oci_layer *a = &m.layers[i], *b = &again.layers[i];
    FUZZ_ASSERT(strcmp(a->path, b->path) == 0 && a->blob_size == b->blob_size &&
                a->file_size == b->file_size && strcmp(a->blob_digest, b->blob_digest) == 0 &&
                strcmp(a->file_digest, b->file_digest) == 0);
  }
  kyb_oci_manifest_clear(&again);
  kyb_oci_manifest_clear(&m);
  free(text);
  return 0;
}
