/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Checkpoint references and store URIs: they come from pod annotations and
 * requests, so from outside.  kyb_image_ref_parse (and below it the oci://
 * and s3:// URI parsers), then kyb_image_ref_format of what it returned must
 * parse back to the same store and name; the name is a valid image name.
 * The same bytes are also read as an S3 shared-credentials file.
 */
#include "fuzz.h"
#include "image/image.h"
#include "store/oci.h"
#include "store/s3.h"
#include "store/store.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_quiet_log();
  return 0;
}

static void ref(const char *s) {
  kyb_error *err = NULL;
  char *store = NULL, *name = NULL;
  int rc = kyb_image_ref_parse(s, "file:///var/lib/kybernate/images", &store, &name, &err);
  fuzz_check_rc(rc, &err);
  if (rc == 0) {
    FUZZ_ASSERT(store != NULL && name != NULL && kyb_image_name_valid(name));
    char *again = kyb_image_ref_format(store, name);
    FUZZ_ASSERT(again != NULL);
    char *store2 = NULL, *name2 = NULL;
    rc = kyb_image_ref_parse(again, "file:///var/lib/kybernate/images", &store2, &name2, &err);
    FUZZ_ASSERT(rc == 0 && err == NULL);
    FUZZ_ASSERT(strcmp(store, store2) == 0 && strcmp(name, name2) == 0);
    free(store2);
    free(name2);
    free(again);
  }
  free(store);
  free(name);
}

static void uris(const char *s) {
  kyb_error *err = NULL;
  char *host = NULL, *repo = NULL, *rest = NULL, *tag = NULL;
  int rc = kyb_oci_uri_parse(s, &host, &repo, &err);
  fuzz_check_rc(rc, &err);
  if (rc == 0) {
    FUZZ_ASSERT(host != NULL && repo != NULL && strlen(repo) <= KYB_OCI_REPO_MAX);
    for (const char *c = host; *c; c++)
      FUZZ_ASSERT(!(*c >= 'A' && *c <= 'Z'));
    (void)kyb_oci_plain_http(host, "reg.example:5000,Other.Example");
  }
  free(host);
  free(repo);
  rc = kyb_oci_ref_split(s, &rest, &tag, &err);
  fuzz_check_rc(rc, &err);
  if (rc == 0)
    FUZZ_ASSERT(rest != NULL && tag != NULL);
  free(rest);
  free(tag);

  char *bucket = NULL, *prefix = NULL;
  rc = kyb_s3_uri_parse(s, &bucket, &prefix, &err);
  fuzz_check_rc(rc, &err);
  if (rc == 0) {
    size_t bl = strlen(bucket), pl = strlen(prefix);
    FUZZ_ASSERT(bl >= 3 && bl <= 63 && pl <= 512);
    FUZZ_ASSERT(pl == 0 || (prefix[0] != '/' && prefix[pl - 1] != '/'));
  }
  free(bucket);
  free(prefix);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = fuzz_strndup(data, size);
  ref(s);
  uris(s);
  kyb_error *err = NULL;
  kyb_s3_config c;
  memset(&c, 0, sizeof(c));
  int rc = kyb_s3_credentials_parse(s, "default", &c, &err);
  fuzz_check_rc(rc, &err);
  if (rc == 0)
    FUZZ_ASSERT(c.access_key_id != NULL && c.access_key_id[0] != '\0' &&
                c.secret_access_key != NULL && c.secret_access_key[0] != '\0');
  kyb_s3_config_clear(&c);
  free(s);
  return 0;
}
