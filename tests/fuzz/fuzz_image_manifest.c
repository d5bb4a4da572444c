/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kyb_image_manifest_parse: manifest.json as it comes back from storage.
 * A manifest it accepts must keep the promises image.h makes to the restore
 * path: every files[] entry has a clean relative path, a size >= 0 and a
 * 64-hex sha256, no path is listed twice or both as a file and as a
 * directory of another file, and the same manifest written out again
 * parses again.
 */
#include <jansson.h>

#include "fuzz.h"
#include "image/image.h"
#include "image/safepath.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_quiet_log();
  return 0;
}

static void check_files(const json_t *m) {
  const json_t *files = json_object_get(m, "files");
  FUZZ_ASSERT(json_is_array(files));
  size_t n = json_array_size(files);
  for (size_t i = 0; i < n; i++) {
    const json_t *f = json_array_get(files, i);
    const char *p = json_string_value(json_object_get(f, "path"));
    const char *sha = json_string_value(json_object_get(f, "sha256"));
    FUZZ_ASSERT(p != NULL && sha != NULL && strlen(sha) == 64);
    FUZZ_ASSERT(json_integer_value(json_object_get(f, "size")) >= 0);
    kyb_error *err = NULL;
    FUZZ_ASSERT(kyb_relpath_check(p, &err) == 0);
    FUZZ_ASSERT(strcmp(p, KYB_IMAGE_MANIFEST) != 0);
    /* Quadratic, but inputs stay small (-max_len). */
    for (size_t j = 0; j < n; j++) {
      const char *q = json_string_value(json_object_get(json_array_get(files, j), "path"));
      size_t l = strlen(p);
      FUZZ_ASSERT(i == j || strcmp(p, q) != 0);
      FUZZ_ASSERT(!(strncmp(p, q, l) == 0 && q[l] == '/'));
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kyb_error *err = NULL;
  json_t *m = NULL;
  int rc = kyb_image_manifest_parse((const char *)data, size, &m, &err);
  fuzz_check_rc(rc, &err);
  if (rc < 0) {
    FUZZ_ASSERT(m == NULL);
    return 0;
  }
  FUZZ_ASSERT(json_is_object(m));
  FUZZ_ASSERT(json_integer_value(json_object_get(m, "kybernateImage")) == 1);
  FUZZ_ASSERT(kyb_image_name_valid(json_string_value(json_object_get(m, "name"))));
  check_files(m);
  FUZZ_ASSERT(kyb_image_manifest_validate(m, &err) == 0 && err == NULL);

  char *text = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
  FUZZ_ASSERT(text != NULL);
  json_t *again = NULL;
  rc = kyb_image_manifest_parse(text, strlen(text), &again, &err);
  FUZZ_ASSERT(rc == 0 && err == NULL);
  FUZZ_ASSERT(json_equal(m, again));
  json_decref(again);
  free(text);
  json_decref(m);
  return 0;
}
