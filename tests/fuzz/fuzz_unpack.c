/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kyb_unpack_*: a packed part (one zstd frame) as it comes from a registry
 * or S3.  Input: one byte that sets the chunk size the blob is fed in, then
 * the blob.  The blob digest is the input's own (so the fuzzer gets past
 * it); the file digest and size are unknown, so the first pass must fail,
 * and when it failed only on the file's digest or size, a second pass told
 * the right digest and size must succeed, with the same output, whatever
 * the chunking.  Told one byte less, it must stop with EFBIG.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "store/pack.h"

#define OUT_MAX (4u << 20) /* keeps one run fast; bombs stop here */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_quiet_log();
  return 0;
}

static void digest_of(const void *buf, size_t len, char out[KYB_DIGEST_LEN + 1]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  FUZZ_ASSERT(EVP_Digest(buf, len, md, &n, EVP_sha256(), NULL) == 1 && n == 32);
  memcpy(out, "sha256:", 7);
  for (unsigned i = 0; i < n; i++)
    snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
}

/* Feeds blob in chunks of `chunk` bytes; returns finish's result, or the
 * first feed's failure (then *fed_fail is set).  The error stays in *err. */
static int run(int fd, const char *blob_digest, const char *file_digest, uint64_t size,
               const uint8_t *blob, size_t len, size_t chunk, bool *feed_failed, kyb_error **err) {
  kyb_unpack *u = NULL;
  int rc = kyb_unpack_new(fd, blob_digest, file_digest, size, &u, err);
  FUZZ_ASSERT(rc == 0 && u != NULL);
  *feed_failed = false;
  for (size_t off = 0; rc == 0 && off < len; off += chunk) {
    size_t n = len - off < chunk ? len - off : chunk;
    rc = kyb_unpack_feed(u, blob + off, n, err);
    if (rc < 0) {
      *feed_failed = true;
      /* a stopped stream stays stopped */
      kyb_error *again = NULL;
      FUZZ_ASSERT(kyb_unpack_feed(u, blob, 1, &again) < 0 && again != NULL);
      kyb_error_free(again);
    }
  }
  FUZZ_ASSERT(kyb_unpack_file_bytes(u) <= size);
  if (rc == 0)
    rc = kyb_unpack_finish(u, err);
  kyb_unpack_free(u);
  return rc;
}

static int new_out(void) {
  int fd = memfd_create("fuzz-unpack", MFD_CLOEXEC);
  FUZZ_ASSERT(fd >= 0);
  return fd;
}

static uint8_t *read_back(int fd, size_t *len) {
  off_t end = lseek(fd, 0, SEEK_END);
  FUZZ_ASSERT(end >= 0 && (uint64_t)end <= OUT_MAX);
  uint8_t *buf = malloc((size_t)end + 1);
  FUZZ_ASSERT(buf != NULL);
  FUZZ_ASSERT(pread(fd, buf, (size_t)end, 0) == end);
  *len = (size_t)end;
  return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t chunk = (size_t)data[0] + 1;
  const uint8_t *blob = data + 1;
  size_t len = size - 1;
  char blob_digest[KYB_DIGEST_LEN + 1], file_digest[KYB_DIGEST_LEN + 1];
  digest_of(blob, len, blob_digest);
  static const char zero[] =
      "sha256:0000000000000000000000000000000000000000000000000000000000000000";

  kyb_error *err = NULL;
  bool feed_failed = false;
  int fd = new_out();
  int rc = run(fd, blob_digest, zero, OUT_MAX, blob, len, chunk, &feed_failed, &err);
  FUZZ_ASSERT(rc < 0 && err != NULL); /* the file digest cannot be all zeros */
  bool only_file = !feed_failed && kyb_error_code(err) == EBADMSG &&
                   (strstr(kyb_error_root(err), "file size mismatch") != NULL ||
                    strstr(kyb_error_root(err), "file digest mismatch") != NULL);
  fuzz_check_rc(rc, &err);
  size_t out_len = 0;
  uint8_t *out = read_back(fd, &out_len);
  close(fd);
  if (!only_file) {
    free(out);
    return 0;
  }

  /* The frame was whole and the blob digest right: with the true file
   * digest and size it unpacks, in one piece as in any chunks. */
  digest_of(out, out_len, file_digest);
  fd = new_out();
  rc = run(fd, blob_digest, file_digest, out_len, blob, len, len ? len : 1, &feed_failed, &err);
  FUZZ_ASSERT(rc == 0 && err == NULL);
  size_t again_len = 0;
  uint8_t *again = read_back(fd, &again_len);
  FUZZ_ASSERT(again_len == out_len && memcmp(again, out, out_len) == 0);
  close(fd);
  free(again);

  if (out_len > 0) {
    fd = new_out();
    rc = run(fd, blob_digest, file_digest, out_len - 1, blob, len, chunk, &feed_failed, &err);
    FUZZ_ASSERT(rc < 0 && feed_failed && kyb_error_code(err) == EFBIG);
    fuzz_check_rc(rc, &err);
    close(fd);
  }
  free(out);
  return 0;
}
