/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kyb_s3_index_parse: index.json of an image in an s3:// store.  An index
 * it accepts names the image it was found under, has valid digests and
 * sizes for the manifest and every part, and lists clean paths sorted and
 * unique; written out and parsed again it is still accepted.
 */
#include <jansson.h>

#include "fuzz.h"
#include "image/safepath.h"
#include "store/pack.h"
#include "store/s3.h"

#define NAME "web-1-20261128-134000"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_quiet_log();
  return 0;
}

static void check_part(const json_t *e) {
  FUZZ_ASSERT(json_is_object(e));
  FUZZ_ASSERT(json_integer_value(json_object_get(e, "size")) >= 0);
  FUZZ_ASSERT(json_integer_value(json_object_get(e, "blobSize")) >= 0);
  FUZZ_ASSERT(kyb_digest_valid(json_string_value(json_object_get(e, "digest"))));
  FUZZ_ASSERT(kyb_digest_valid(json_string_value(json_object_get(e, "blob"))));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kyb_error *err = NULL;
  json_t *ix = NULL;
  int rc = kyb_s3_index_parse((const char *)data, size, NAME, &ix, &err);
  fuzz_check_rc(rc, &err);
  if (rc < 0) {
    FUZZ_ASSERT(ix == NULL);
    return 0;
  }
  FUZZ_ASSERT(strcmp(json_string_value(json_object_get(ix, "name")), NAME) == 0);
  check_part(json_object_get(ix, "manifest"));
  const json_t *files = json_object_get(ix, "files");
  const char *prev = NULL;
  for (size_t i = 0; i < json_array_size(files); i++) {
    const json_t *e = json_array_get(files, i);
    check_part(e);
    const char *p = json_string_value(json_object_get(e, "path"));
    FUZZ_ASSERT(p != NULL && kyb_relpath_check(p, &err) == 0);
    FUZZ_ASSERT(prev == NULL || strcmp(prev, p) < 0);
    prev = p;
  }
  char *text = json_dumps(ix, JSON_COMPACT);
  FUZZ_ASSERT(text != NULL);
  json_t *again = NULL;
  FUZZ_ASSERT(kyb_s3_index_parse(text, strlen(text), NAME, &again, &err) == 0 && err == NULL);
  json_decref(again);
  free(text);
  json_decref(ix);
  return 0;
}
