/* SPDX-License-Identifier: Apache-2.0 */
/*
 * S3's XML answers as lib/store/s3_client.c scans them: a ListObjectsV2
 * page, a ListMultipartUploads page and an error document's Code and
 * Message, all from the same input.  Whatever the bytes: no read outside
 * the body, every key and prefix collected is a NUL-terminated string
 * without NUL inside, entity decoding never grows the text, and a failed
 * page leaves nothing behind that the caller cannot free.
 */
#include "fuzz.h"
#include "store/s3.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_quiet_log();
  return 0;
}

static void text_of(const char *body, size_t len, const char *tag) {
  const char *cs = NULL, *ce = NULL;
  if (!kyb_s3_xml_find(body, body + len, tag, &cs, &ce))
    return;
  FUZZ_ASSERT(cs >= body && cs <= ce && ce <= body + len);
  char *t = kyb_s3_xml_text(cs, ce);
  if (t != NULL) {
    FUZZ_ASSERT(strlen(t) <= (size_t)(ce - cs));
    free(t);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* A heap copy of exactly `size` bytes, so ASan sees any read past it. */
  char *body = malloc(size ? size : 1);
  FUZZ_ASSERT(body != NULL);
  if (size > 0)
    memcpy(body, data, size);

  kyb_error *err = NULL;
  kyb_s3_list_acc a = {0};
  int rc = kyb_s3_list_page(body, size, &a, &err);
  fuzz_check_rc(rc, &err);
  for (size_t i = 0; i < a.nobjs; i++)
    FUZZ_ASSERT(a.objs[i].key != NULL && strlen(a.objs[i].key) <= size);
  for (size_t i = 0; i < a.npre; i++)
    FUZZ_ASSERT(a.prefixes[i] != NULL && strlen(a.prefixes[i]) <= size);
  kyb_s3_list_acc_clear(&a);

  kyb_s3_upload *v = NULL;
  size_t n = 0, cap = 0;
  rc = kyb_s3_uploads_page(body, size, &v, &n, &cap, &err);
  fuzz_check_rc(rc, &err);
  FUZZ_ASSERT(n <= cap);
  for (size_t i = 0; i < n; i++)
    FUZZ_ASSERT(v[i].key != NULL && v[i].upload_id != NULL);
  kyb_s3_uploads_free(v, n);

  text_of(body, size, "Code");
  text_of(body, size, "Message");
  text_of(body, size, "NextContinuationToken");
  /* LastModified and Initiated go through kyb_s3_parse_time. */
  char *s = fuzz_strndup(data, size < 64 ? size : 64);
  (void)kyb_s3_parse_time(s);
  free(s);
  free(body);
  return 0;
}
