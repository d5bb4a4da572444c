/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of lib/store/blob_memo (the node's file digest -> blob memo
 * shared by oci:// and s3://): its directory under $KYBERNATE_IMAGE_CACHE,
 * put then get, an entry replaced, a missing entry, every malformed entry
 * (truncated, bad digest, bad size, trailing bytes, too long) read as "no
 * memo", an invalid file digest neither read nor written, and a put into a
 * directory that cannot be created failing quietly. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/blob_memo.h"
#include "util/cleanup.h"
#include "util/fs.h"

#define FILE_D "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define BLOB_D "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define BLOB_E "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define FILE_HEX "1111111111111111111111111111111111111111111111111111111111111111"

static int setup(void **state) {
  char tmpl[] = "/tmp/kyb-memo-XXXXXX";
  char *d = mkdtemp(tmpl) ? strdup(tmpl) : NULL;
  if (d == NULL)
    return -1;
  setenv("KYBERNATE_IMAGE_CACHE", d, 1);
  *state = d;
  return 0;
}

static int teardown(void **state) {
  cleanup_error kyb_error *err = NULL;
  kyb_remove_tree(*state, &err);
  free(*state);
  unsetenv("KYBERNATE_IMAGE_CACHE");
  return 0;
}

static char *memo_dir(void) {
  char *dir = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_blob_memo_dir(&dir, &err), 0);
  return dir;
}

static void test_dir(void **state) {
  cleanup_free char *dir = memo_dir();
  cleanup_free char *want = NULL;
  assert_true(asprintf(&want, "%s/oci/blobs", (char *)*state) > 0);
  assert_string_equal(dir, want);
  setenv("KYBERNATE_IMAGE_CACHE", "relative/path", 1);
  char *bad = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_blob_memo_dir(&bad, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
  setenv("KYBERNATE_IMAGE_CACHE", (char *)*state, 1);
}

static void test_put_get(void **state) {
  (void)state;
  cleanup_free char *dir = memo_dir();
  char blob[KYB_DIGEST_LEN + 1] = "";
  uint64_t size = 0;
  assert_int_equal(kyb_blob_memo_get(dir, FILE_D, blob, &size), 0); /* none yet */
  kyb_blob_memo_put(dir, FILE_D, BLOB_D, 567);                      /* creates the dir */
  assert_int_equal(kyb_blob_memo_get(dir, FILE_D, blob, &size), 1);
  assert_string_equal(blob, BLOB_D);
  assert_int_equal(size, 567);
  kyb_blob_memo_put(dir, FILE_D, BLOB_E, 18446744073709551615ull); /* replaced */
  assert_int_equal(kyb_blob_memo_get(dir, FILE_D, blob, &size), 1);
  assert_string_equal(blob, BLOB_E);
  assert_true(size == 18446744073709551615ull);
  cleanup_free char *path = kyb_path_join(dir, FILE_HEX);
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);
}

static void test_malformed(void **state) {
  (void)state;
  cleanup_free char *dir = memo_dir();
  cleanup_free char *path = kyb_path_join(dir, FILE_HEX);
  const char *bad[] = {
      "",
      BLOB_D,
      BLOB_D " \n",
      BLOB_D " 12",
      BLOB_D " 12\nx",
      BLOB_D " -1\n",
      BLOB_D "  12\n",
      BLOB_D " 12x\n",
      BLOB_D " 99999999999999999999999\n",
      "sha256:AAAAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 12\n",
      "sha512:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 12\n",
      BLOB_D " 1200000000000000000000000000000000000000000000000000000000000000000000000000\n",
  };
  kyb_blob_memo_put(dir, FILE_D, BLOB_D, 1); /* the directory */
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cleanup_error kyb_error *err = NULL;
    assert_int_equal(kyb_write_file_atomic(path, bad[i], strlen(bad[i]), 0600, &err), 0);
    char blob[KYB_DIGEST_LEN + 1] = "";
    uint64_t size = 7;
    if (kyb_blob_memo_get(dir, FILE_D, blob, &size) != 0)
      fail_msg("accepted malformed memo %zu: \"%s\"", i, bad[i]);
    assert_int_equal(size, 7);
  }
}

static void test_invalid_digests(void **state) {
  (void)state;
  cleanup_free char *dir = memo_dir();
  char blob[KYB_DIGEST_LEN + 1] = "";
  uint64_t size = 0;
  /* a file digest that is not one: no path is built from it */
  kyb_blob_memo_put(dir, "sha256:../../etc/passwd", BLOB_D, 1);
  kyb_blob_memo_put(dir, "sha256:1111", BLOB_D, 1);
  assert_int_equal(kyb_blob_memo_get(dir, "sha256:../../etc/passwd", blob, &size), 0);
  assert_int_equal(kyb_blob_memo_get(dir, NULL, blob, &size), 0);
  assert_int_equal(kyb_blob_memo_get(NULL, FILE_D, blob, &size), 0);
  struct stat sb;
  assert_int_equal(stat(dir, &sb), -1); /* nothing was written */
  /* a blob digest that is not one is not recorded */
  kyb_blob_memo_put(dir, FILE_D, "sha256:xyz", 1);
  assert_int_equal(kyb_blob_memo_get(dir, FILE_D, blob, &size), 0);
}

static void test_unwritable(void **state) {
  /* the memo's directory cannot be created (a file is in the way): the put
   * fails quietly, a get finds nothing */
  cleanup_free char *oci = kyb_path_join(*state, "oci");
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_write_file_atomic(oci, "x", 1, 0600, &err), 0);
  cleanup_free char *dir = memo_dir();
  kyb_blob_memo_put(dir, FILE_D, BLOB_D, 1);
  char blob[KYB_DIGEST_LEN + 1] = "";
  uint64_t size = 0;
  assert_int_equal(kyb_blob_memo_get(dir, FILE_D, blob, &size), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_dir, setup, teardown),
      cmocka_unit_test_setup_teardown(test_put_get, setup, teardown),
      cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_invalid_digests, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unwritable, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
