/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of lib/store/pack: round trips (empty, 1 byte, MiBs of random
 * and of compressible data; levels 1/3/19; 1 and 4 threads) with digests
 * checked against OpenSSL called here directly, unpack fed in 1-byte,
 * 7-byte and whole chunks; every corruption (flipped byte, truncation,
 * trailing bytes, a second frame, wrong digests, wrong size, malformed
 * digests) refused with a clear error; a sink error and a file changing
 * size while read abort cleanly; packs in parallel threads; and a seeded
 * mutation loop (fuzz-style) in which no damaged blob is ever accepted. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
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

#include "store/pack.h"
#include "util/cleanup.h"
#include "util/fs.h"

#define MIB (1024u * 1024u)

static char tmpdir[] = "/tmp/kyb-test-pack-XXXXXX";
static _Atomic int counter; /* file names; test_parallel shares it */

static int setup(void **state) {
  (void)state;
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  kyb_error *err = NULL;
  int r = kyb_remove_tree(tmpdir, &err);
  kyb_error_free(err);
  return r;
}

/* ---- helpers ------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s) { /* xorshift64*: reproducible data */
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

enum { RANDOM, TEXT };

/* RANDOM: incompressible bytes.  TEXT: log-like lines, compressible. */
static unsigned char *gen(size_t n, int kind, uint64_t seed) {
  unsigned char *b = malloc(n ? n : 1);
  assert_non_null(b);
  uint64_t s = seed | 1;
  size_t i = 0;
  while (i < n) {
    if (kind == RANDOM) {
      b[i++] = (unsigned char)(rng_next(&s) >> 56);
      continue;
    }
    char line[96];
    int len = snprintf(line, sizeof(line), "counter pid %5u tick %10zu value %08x ok\n",
                       (unsigned)(seed % 65536), i / 48, (unsigned)(rng_next(&s) & 0xff));
    for (int k = 0; k < len && i < n; k++)
      b[i++] = (unsigned char)line[k];
  }
  return b;
}

/* sha256 straight from OpenSSL, independent of pack.c's code. */
static void digest_of(const void *buf, size_t len, char out[KYB_DIGEST_LEN + 1]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  assert_int_equal(EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL), 1);
  assert_int_equal(mdlen, 32);
  int n = snprintf(out, KYB_DIGEST_LEN + 1, "sha256:");
  for (unsigned i = 0; i < mdlen; i++)
    n += snprintf(out + n, (size_t)(KYB_DIGEST_LEN + 1 - n), "%02x", md[i]);
  assert_int_equal(n, KYB_DIGEST_LEN);
}

static char *write_tmp(const void *data, size_t len) {
  char *path = NULL;
  assert_true(asprintf(&path, "%s/f%d", tmpdir, counter++) > 0);
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_write_file_atomic(path, data, len, 0600, &err), 0);
  return path;
}

typedef struct {
  unsigned char *buf;
  size_t len, cap;
  int calls;
  int fail_at;          /* fail on this call (1-based); 0: never */
  const char *grow;     /* on the first call: append a byte to this file */
  const char *truncate; /* on the first call: cut this file to half a MiB */
} mem_sink;

static int sink_mem(void *ud, const void *buf, size_t len, kyb_error **err) {
  mem_sink *m = ud;
  m->calls++;
  if (m->fail_at == m->calls)
    return kyb_error_set(err, ENOSPC, "test sink refuses call %d", m->calls);
  if (m->calls == 1 && m->grow != NULL) {
    int fd = open(m->grow, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "+", 1), 1);
    close(fd);
  }
  if (m->calls == 1 && m->truncate != NULL)
    assert_int_equal(truncate(m->truncate, MIB / 2), 0);
  if (m->len + len > m->cap) {
    m->cap = (m->len + len) * 2;
    m->buf = realloc(m->buf, m->cap);
    assert_non_null(m->buf);
  }
  memcpy(m->buf + m->len, buf, len);
  m->len += len;
  return 0;
}

/* Packs data (through a file) and checks the result against independent
 * digests; returns the blob (caller frees). */
static unsigned char *pack_buf(const unsigned char *data, size_t len, int level, int threads,
                               size_t *blen, kyb_pack_result *res) {
  cleanup_free char *path = write_tmp(data, len);
  cleanup_error kyb_error *err = NULL;
  mem_sink m = {0};
  kyb_pack_opts o = {.level = level, .threads = threads};
  int rc = kyb_pack_file(path, &o, sink_mem, &m, res, &err);
  if (rc < 0)
    fail_msg("pack: %s", kyb_error_message(err));
  char want[KYB_DIGEST_LEN + 1];
  digest_of(data, len, want);
  assert_string_equal(res->file_digest, want);
  digest_of(m.buf, m.len, want);
  assert_string_equal(res->blob_digest, want);
  assert_int_equal(res->file_size, len);
  assert_int_equal(res->blob_size, m.len);
  assert_true(m.len >= 4);
  assert_memory_equal(m.buf, "\x28\xb5\x2f\xfd", 4); /* zstd frame magic */
  *blen = m.len;
  return m.buf;
}

/* Feeds blob in chunks of `chunk` bytes (0: all at once) into a new file;
 * returns the first failing call's -1, else finish's result.  *out_path
 * (optional) receives the output file's path. */
static int unpack_try(const unsigned char *blob, size_t blen, size_t chunk, const char *want_blob,
                      const char *want_file, uint64_t want_size, char **out_path, kyb_error **err) {
  cleanup_free char *path = NULL;
  assert_true(asprintf(&path, "%s/u%d", tmpdir, counter++) > 0);
  cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  assert_true(fd >= 0);
  kyb_unpack *u = NULL;
  int rc = kyb_unpack_new(fd, want_blob, want_file, want_size, &u, err);
  if (rc < 0) {
    assert_null(u);
  } else {
    size_t step = chunk ? chunk : (blen ? blen : 1);
    for (size_t off = 0; off < blen && rc == 0; off += step)
      rc = kyb_unpack_feed(u, blob + off, blen - off < step ? blen - off : step, err);
    if (rc == 0)
      rc = kyb_unpack_finish(u, err);
    kyb_unpack_free(u);
  }
  if (out_path)
    *out_path = steal_ptr(path);
  return rc;
}

static void assert_file_is(const char *path, const unsigned char *data, size_t len) {
  cleanup_free char *got = NULL;
  size_t got_len = 0;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_read_file(path, len + 1, &got, &got_len, &err), 0);
  assert_int_equal(got_len, len);
  if (len > 0)
    assert_memory_equal(got, data, len);
}

static uint64_t file_size(const char *path) {
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  return (uint64_t)st.st_size;
}

#define assert_err_has(err, text)                                                                  \
  do {                                                                                             \
    const char *msg_ = kyb_error_message(err);                                                     \
    if (strstr(msg_, (text)) == NULL)                                                              \
      fail_msg("error \"%s\" lacks \"%s\"", msg_, (text));                                         \
  } while (0)

/* One full round trip, unpacked with every chunk size that is affordable. */
static void round_trip(size_t len, int kind, int level, int threads) {
  cleanup_free unsigned char *data = gen(len, kind, len + (uint64_t)level);
  kyb_pack_result res;
  size_t blen = 0;
  cleanup_free unsigned char *blob = pack_buf(data, len, level, threads, &blen, &res);
  if (kind == TEXT && len >= MIB)
    assert_true(blen < len / 4);
  const size_t chunks[] = {0, 7, 1};
  for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
    if (chunks[i] == 1 && blen > 256 * 1024)
      continue; /* a byte at a time is for small blobs; 7 bytes covers the odd split */
    cleanup_error kyb_error *err = NULL;
    cleanup_free char *out = NULL;
    int rc = unpack_try(blob, blen, chunks[i], res.blob_digest, res.file_digest, len, &out, &err);
    if (rc < 0)
      fail_msg("unpack (chunk %zu): %s", chunks[i], kyb_error_message(err));
    assert_file_is(out, data, len);
  }
}

/* ---- tests --------------------------------------------------------------- */

static void test_digest_valid(void **state) {
  (void)state;
  char d[KYB_DIGEST_LEN + 2];
  digest_of("x", 1, d);
  assert_true(kyb_digest_valid(d));
  assert_true(
      kyb_digest_valid("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  assert_false(kyb_digest_valid(NULL));
  assert_false(kyb_digest_valid(""));
  assert_false(kyb_digest_valid("sha256:"));
  assert_false(kyb_digest_valid(d + 7)); /* bare hex */
  d[KYB_DIGEST_LEN - 1] = '\0';          /* 63 digits */
  assert_false(kyb_digest_valid(d));
  digest_of("x", 1, d);
  d[KYB_DIGEST_LEN] = '0'; /* 65 digits */
  d[KYB_DIGEST_LEN + 1] = '\0';
  assert_false(kyb_digest_valid(d));
  assert_false(
      kyb_digest_valid("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"));
  assert_false(
      kyb_digest_valid("sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  assert_false(
      kyb_digest_valid("SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  assert_false(
      kyb_digest_valid("sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  assert_false(
      kyb_digest_valid("sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  assert_false(
      kyb_digest_valid("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85\n"));
}

static void test_round_trip_small(void **state) {
  (void)state;
  round_trip(0, RANDOM, 3, 1);
  round_trip(0, RANDOM, 3, 4);
  round_trip(1, RANDOM, 3, 1);
  round_trip(1, RANDOM, 19, 4);
  round_trip(1000, TEXT, 1, 1);
}

static void test_round_trip_random(void **state) {
  (void)state;
  round_trip(5 * MIB + 123, RANDOM, 3, 1);
  round_trip(5 * MIB + 123, RANDOM, 3, 4);
  round_trip(3 * MIB, RANDOM, 1, 4);
  round_trip(MIB + 1, RANDOM, 19, 1);
}

static void test_round_trip_compressible(void **state) {
  (void)state;
  const int levels[] = {1, 3, 19};
  for (size_t i = 0; i < 3; i++) {
    size_t len = levels[i] == 19 ? 3 * MIB + 5 : 6 * MIB + 5;
    round_trip(len, TEXT, levels[i], 1);
    round_trip(len, TEXT, levels[i], 4);
  }
}

/* Default options (NULL, and zeros) work and give the same file digest. */
static void test_default_opts(void **state) {
  (void)state;
  cleanup_free unsigned char *data = gen(200000, TEXT, 9);
  cleanup_free char *path = write_tmp(data, 200000);
  cleanup_error kyb_error *err = NULL;
  mem_sink a = {0}, b = {0};
  kyb_pack_result ra, rb;
  kyb_pack_opts zero = {0};
  assert_int_equal(kyb_pack_file(path, NULL, sink_mem, &a, &ra, &err), 0);
  assert_int_equal(kyb_pack_file(path, &zero, sink_mem, &b, &rb, &err), 0);
  assert_string_equal(ra.file_digest, rb.file_digest);
  assert_int_equal(a.len, ra.blob_size);
  free(a.buf);
  free(b.buf);
  mem_sink c = {0};
  assert_int_equal(kyb_pack_file(path, NULL, sink_mem, &c, NULL, &err), 0); /* no result wanted */
  assert_int_equal(c.len, ra.blob_size);
  free(c.buf);
}

static void test_pack_refusals(void **state) {
  (void)state;
  cleanup_free char *path = write_tmp("abc", 3);
  cleanup_free char *missing = kyb_path_join(tmpdir, "no-such-file");
  const struct {
    const char *path;
    kyb_pack_opts opts;
    int code;
    const char *text;
  } cases[] = {
      {missing, {0, 0}, ENOENT, "no-such-file"},
      {tmpdir, {0, 0}, EINVAL, "not a regular file"},
      {path, {20, 1}, EINVAL, "zstd level 20 is outside 1..19"},
      {path, {-1, 1}, EINVAL, "zstd level -1"},
      {path, {3, -1}, EINVAL, "thread count -1"},
      {path, {3, 1000}, EINVAL, "thread count 1000"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    cleanup_error kyb_error *err = NULL;
    mem_sink m = {0};
    kyb_pack_result res;
    memset(&res, 0xaa, sizeof(res));
    assert_int_equal(kyb_pack_file(cases[i].path, &cases[i].opts, sink_mem, &m, &res, &err), -1);
    assert_int_equal(kyb_error_code(err), cases[i].code);
    assert_err_has(err, cases[i].text);
    assert_int_equal(res.blob_size, 0);
    assert_string_equal(res.blob_digest, "");
    assert_int_equal(m.calls, 0);
  }
}

static void test_sink_error(void **state) {
  (void)state;
  cleanup_free unsigned char *data = gen(4 * MIB, RANDOM, 5);
  cleanup_free char *path = write_tmp(data, 4 * MIB);
  const int threads[] = {1, 4};
  const int fail_at[] = {1, 2};
  for (size_t t = 0; t < 2; t++) {
    for (size_t f = 0; f < 2; f++) {
      cleanup_error kyb_error *err = NULL;
      mem_sink m = {.fail_at = fail_at[f]};
      kyb_pack_opts o = {.level = 1, .threads = threads[t]};
      kyb_pack_result res;
      assert_int_equal(kyb_pack_file(path, &o, sink_mem, &m, &res, &err), -1);
      assert_int_equal(kyb_error_code(err), ENOSPC);
      assert_err_has(err, "test sink refuses call");
      assert_err_has(err, path);
      assert_int_equal(m.calls, fail_at[f]); /* stopped at once */
      assert_int_equal(res.file_size, 0);
      free(m.buf);
    }
  }
  /* The empty file still writes a frame: its only sink call fails too. */
  cleanup_free char *empty = write_tmp("", 0);
  cleanup_error kyb_error *err = NULL;
  mem_sink m = {.fail_at = 1};
  assert_int_equal(kyb_pack_file(empty, NULL, sink_mem, &m, NULL, &err), -1);
  assert_err_has(err, "test sink refuses call 1");
}

/* A file that grows or shrinks while it is read is refused (the sink's
 * first call, after the first 1 MiB chunk, changes the file). */
static void test_file_changes_size(void **state) {
  (void)state;
  cleanup_free unsigned char *data = gen(4 * MIB, RANDOM, 6);
  for (int shrink = 0; shrink < 2; shrink++) {
    cleanup_free char *path = write_tmp(data, 4 * MIB);
    cleanup_error kyb_error *err = NULL;
    mem_sink m = {0};
    if (shrink)
      m.truncate = path;
    else
      m.grow = path;
    kyb_pack_opts o = {.level = 1, .threads = 1};
    assert_int_equal(kyb_pack_file(path, &o, sink_mem, &m, NULL, &err), -1);
    assert_err_has(err, shrink ? "file changed size while read: 4194304 bytes at start, 1048576 "
                                 "read, 524288 now"
                               : "file grew while read: 4194304 bytes at start");
    free(m.buf);
  }
}

/* A blob and its facts for the corruption tests. */
typedef struct {
  unsigned char *data;
  size_t len;
  unsigned char *blob;
  size_t blen;
  kyb_pack_result res;
} sample;

static void sample_make(sample *s, size_t len) {
  s->len = len;
  s->data = gen(len, TEXT, 77);
  for (size_t i = len / 2; i < len / 2 + len / 8; i++)
    s->data[i] ^= (unsigned char)(i * 2654435761u >> 13); /* some entropy */
  s->blob = pack_buf(s->data, len, 3, 1, &s->blen, &s->res);
}

static void sample_free(sample *s) {
  free(s->data);
  free(s->blob);
}

static void test_flipped_byte(void **state) {
  (void)state;
  sample s;
  sample_make(&s, 2 * MIB);
  const size_t where[] = {0, 4, 5, 20, s.blen / 3, s.blen / 2, s.blen - 5, s.blen - 1};
  for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
    for (size_t c = 0; c < 2; c++) {
      cleanup_error kyb_error *err = NULL;
      s.blob[where[i]] ^= 0x10;
      int rc = unpack_try(s.blob, s.blen, c ? 4096 : 0, s.res.blob_digest, s.res.file_digest, s.len,
                          NULL, &err);
      s.blob[where[i]] ^= 0x10;
      assert_int_equal(rc, -1);
      assert_true(kyb_error_code(err) == EBADMSG || kyb_error_code(err) == EFBIG);
      const char *msg = kyb_error_message(err);
      if (strstr(msg, "zstd") == NULL && strstr(msg, "blob digest mismatch") == NULL &&
          strstr(msg, "exceeds the expected") == NULL && strstr(msg, "truncated") == NULL)
        fail_msg("flip at %zu: unclear error: %s", where[i], msg);
    }
  }
  sample_free(&s);
}

static void test_truncated(void **state) {
  (void)state;
  sample s;
  sample_make(&s, 2 * MIB);
  const size_t keep[] = {0, 1, 3, 10, s.blen / 2, s.blen - 4, s.blen - 1};
  for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
    cleanup_error kyb_error *err = NULL;
    int rc =
        unpack_try(s.blob, keep[i], 7, s.res.blob_digest, s.res.file_digest, s.len, NULL, &err);
    assert_int_equal(rc, -1);
    assert_int_equal(kyb_error_code(err), EBADMSG);
    assert_err_has(err, "truncated blob: it ends inside its zstd frame");
    assert_err_has(err, s.res.blob_digest); /* expected vs got */
    char got[KYB_DIGEST_LEN + 1];
    digest_of(s.blob, keep[i], got);
    assert_err_has(err, got);
  }
  sample_free(&s);
}

static void test_trailing_bytes(void **state) {
  (void)state;
  sample s;
  sample_make(&s, MIB);
  /* blob + junk, blob + a second copy of itself (a valid second frame) */
  cleanup_free unsigned char *more = malloc(2 * s.blen);
  assert_non_null(more);
  memcpy(more, s.blob, s.blen);
  memcpy(more + s.blen, s.blob, s.blen);
  const size_t extra[] = {1, 3, s.blen};
  const size_t chunks[] = {0, 7, 1};
  for (size_t i = 0; i < 3; i++) {
    cleanup_error kyb_error *err = NULL;
    if (i == 0)
      more[s.blen] = 'X';
    int rc = unpack_try(more, s.blen + extra[i], chunks[i], s.res.blob_digest, s.res.file_digest,
                        s.len, NULL, &err);
    assert_int_equal(rc, -1);
    assert_int_equal(kyb_error_code(err), EBADMSG);
    assert_err_has(err, "after the end of the zstd frame at blob offset");
    more[s.blen] = s.blob[0];
  }
  /* trailing bytes in a later feed call than the frame's end */
  cleanup_free char *path = kyb_path_join(tmpdir, "trail");
  cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
  assert_true(fd >= 0);
  cleanup_error kyb_error *err = NULL;
  kyb_unpack *u = NULL;
  assert_int_equal(kyb_unpack_new(fd, s.res.blob_digest, s.res.file_digest, s.len, &u, &err), 0);
  assert_int_equal(kyb_unpack_feed(u, s.blob, s.blen, &err), 0);
  assert_int_equal(kyb_unpack_feed(u, "", 0, &err), 0); /* nothing is nothing */
  assert_int_equal(kyb_unpack_feed(u, "Z", 1, &err), -1);
  assert_err_has(err, "trailing data: 1 byte(s) after the end of the zstd frame");
  kyb_error_clear(&err);
  assert_int_equal(kyb_unpack_finish(u, &err), -1); /* stays broken */
  assert_err_has(err, "earlier error");
  kyb_unpack_free(u);
  sample_free(&s);
}

static void test_wrong_digests(void **state) {
  (void)state;
  sample s;
  sample_make(&s, MIB + 17);
  char other[KYB_DIGEST_LEN + 1];
  digest_of("other", 5, other);
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *out = NULL;
  assert_int_equal(unpack_try(s.blob, s.blen, 0, s.res.blob_digest, other, s.len, &out, &err), -1);
  assert_int_equal(kyb_error_code(err), EBADMSG);
  char msg[256];
  snprintf(msg, sizeof(msg), "file digest mismatch: expected %s, got %s", other, s.res.file_digest);
  assert_err_has(err, msg);
  assert_file_is(out, s.data, s.len); /* written; the caller removes it */
  kyb_error_clear(&err);

  assert_int_equal(unpack_try(s.blob, s.blen, 0, other, s.res.file_digest, s.len, NULL, &err), -1);
  snprintf(msg, sizeof(msg), "blob digest mismatch: expected %s, got %s", other, s.res.blob_digest);
  assert_err_has(err, msg);
  sample_free(&s);
}

static void test_wrong_size(void **state) {
  (void)state;
  sample s;
  sample_make(&s, 3 * MIB);
  cleanup_error kyb_error *err = NULL;
  /* promised more than the blob holds: caught at the end */
  assert_int_equal(
      unpack_try(s.blob, s.blen, 0, s.res.blob_digest, s.res.file_digest, s.len + 1, NULL, &err),
      -1);
  assert_err_has(err, "file size mismatch: expected 3145729 bytes, got 3145728");
  /* promised less: output stops at once, never past the promise */
  const uint64_t less[] = {0, 1, 1000, MIB, s.len - 1};
  for (size_t i = 0; i < sizeof(less) / sizeof(less[0]); i++) {
    kyb_error_clear(&err);
    cleanup_free char *out = NULL;
    assert_int_equal(
        unpack_try(s.blob, s.blen, 0, s.res.blob_digest, s.res.file_digest, less[i], &out, &err),
        -1);
    assert_int_equal(kyb_error_code(err), EFBIG);
    assert_err_has(err, "output exceeds the expected");
    assert_true(file_size(out) <= less[i]);
  }
  sample_free(&s);
}

static void test_malformed_digests(void **state) {
  (void)state;
  char good[KYB_DIGEST_LEN + 1];
  digest_of("", 0, good);
  const char *bad[] = {NULL, "", "sha256:abc", "sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709",
                       "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    for (int which = 0; which < 2; which++) {
      cleanup_error kyb_error *err = NULL;
      kyb_unpack *u = (kyb_unpack *)(uintptr_t)1; /* must be reset to NULL */
      assert_int_equal(kyb_unpack_new(1, which ? good : bad[i], which ? bad[i] : good, 0, &u, &err),
                       -1);
      assert_null(u);
      assert_int_equal(kyb_error_code(err), EINVAL);
      assert_err_has(err, which ? "malformed file digest" : "malformed blob digest");
    }
  }
  cleanup_error kyb_error *err = NULL;
  kyb_unpack *u = NULL;
  assert_int_equal(kyb_unpack_new(-1, good, good, 0, &u, &err), -1);
  assert_int_equal(kyb_error_code(err), EBADF);
}

static void test_finish_twice(void **state) {
  (void)state;
  sample s;
  sample_make(&s, 1000);
  cleanup_free char *path = kyb_path_join(tmpdir, "twice");
  cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
  cleanup_error kyb_error *err = NULL;
  kyb_unpack *u = NULL;
  assert_int_equal(kyb_unpack_new(fd, s.res.blob_digest, s.res.file_digest, s.len, &u, &err), 0);
  assert_int_equal(kyb_unpack_feed(u, s.blob, s.blen, &err), 0);
  assert_int_equal(kyb_unpack_finish(u, &err), 0);
  assert_int_equal(kyb_unpack_finish(u, &err), -1);
  assert_err_has(err, "already finished");
  kyb_error_clear(&err);
  assert_int_equal(kyb_unpack_feed(u, "x", 1, &err), -1);
  kyb_unpack_free(u);
  kyb_unpack_free(NULL);
  assert_file_is(path, s.data, s.len);
  sample_free(&s);
}

/* No shared state: packs and unpacks in parallel threads. */
static void *parallel_one(void *arg) {
  size_t i = (size_t)(uintptr_t)arg;
  round_trip(MIB + i * 4097, i % 2 ? TEXT : RANDOM, 1 + (int)i, 1 + (int)(i % 3));
  return NULL;
}

static void test_parallel(void **state) {
  (void)state;
  pthread_t t[4];
  for (size_t i = 0; i < 4; i++)
    assert_int_equal(pthread_create(&t[i], NULL, parallel_one, (void *)(uintptr_t)i), 0);
  for (size_t i = 0; i < 4; i++)
    assert_int_equal(pthread_join(t[i], NULL), 0);
}

/* Fuzz-style: seeded random damage (bit flips, cuts, inserted and deleted
 * runs) fed in random chunk sizes.  A damaged blob must never be accepted
 * and the output never exceeds the promised size. */
static void test_mutations(void **state) {
  (void)state;
  sample s;
  sample_make(&s, 300000);
  cleanup_free unsigned char *m = malloc(s.blen + 64);
  assert_non_null(m);
  uint64_t seed = 0x6b7962;
  for (int iter = 0; iter < 300; iter++) {
    memcpy(m, s.blob, s.blen);
    size_t mlen = s.blen;
    size_t at = (size_t)(rng_next(&seed) % s.blen);
    switch (rng_next(&seed) % 4) {
    case 0: /* flip 1..3 bits */
      for (uint64_t k = 0, n = 1 + rng_next(&seed) % 3; k < n; k++)
        m[(at + k * 131) % s.blen] ^= (unsigned char)(1u << (rng_next(&seed) % 8));
      break;
    case 1: /* cut */
      mlen = at;
      break;
    case 2: { /* insert 1..64 random bytes */
      size_t n = 1 + (size_t)(rng_next(&seed) % 64);
      memmove(m + at + n, m + at, s.blen - at);
      for (size_t k = 0; k < n; k++)
        m[at + k] = (unsigned char)rng_next(&seed);
      mlen += n;
      break;
    }
    default: { /* delete 1..64 bytes */
      size_t n = 1 + (size_t)(rng_next(&seed) % 64);
      if (n > s.blen - at)
        n = s.blen - at;
      memmove(m + at, m + at + n, s.blen - at - n);
      mlen -= n;
    }
    }
    if (mlen == s.blen && memcmp(m, s.blob, s.blen) == 0)
      continue;
    cleanup_error kyb_error *err = NULL;
    cleanup_free char *out = NULL;
    size_t chunk = 1 + (size_t)(rng_next(&seed) % 9000);
    int rc = unpack_try(m, mlen, chunk, s.res.blob_digest, s.res.file_digest, s.len, &out, &err);
    if (rc == 0)
      fail_msg("iteration %d: damaged blob accepted", iter);
    assert_true(file_size(out) <= s.len);
    unlink(out);
  }
  sample_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_digest_valid),      cmocka_unit_test(test_round_trip_small),
      cmocka_unit_test(test_round_trip_random), cmocka_unit_test(test_round_trip_compressible),
      cmocka_unit_test(test_default_opts),      cmocka_unit_test(test_pack_refusals),
      cmocka_unit_test(test_sink_error),        cmocka_unit_test(test_file_changes_size),
      cmocka_unit_test(test_flipped_byte),      cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_trailing_bytes),    cmocka_unit_test(test_wrong_digests),
      cmocka_unit_test(test_wrong_size),        cmocka_unit_test(test_malformed_digests),
      cmocka_unit_test(test_finish_twice),      cmocka_unit_test(test_parallel),
      cmocka_unit_test(test_mutations),
  };
  return cmocka_run_group_tests_name("pack", tests, setup, teardown);
}
