/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming packaging of image parts: zstd + sha256 both ways.  See pack.h
 * for the contract.
 *
 * Memory stays bounded: one read buffer and one output buffer (PACK_BUF_SIZE
 * each) plus zstd's own state, which depends on the level and the worker
 * count but never on the file's size.  No globals: every call owns its
 * contexts, so any number of packs and unpacks may run in parallel threads.
 *
 * pack writes exactly one zstd frame with the content size (pledged from
 * fstat) and zstd's own content checksum in it: a damaged blob then usually
 * fails inside zstd already while it streams in, before the sha256 checks at
 * the end.  unpack accepts exactly one frame and nothing after it.
 */
#define KYB_LOG_MODULE "pack"
#include "store/pack.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "util/cleanup.h"
#include "util/log.h"

#define PACK_BUF_SIZE (1u << 20)
#define PACK_MAX_LEVEL 19
#define PACK_MAX_THREADS 64
#define PACK_AUTO_THREADS_MAX 8
#define SHA256_LEN 32
#define DIGEST_PREFIX "sha256:"
#define DIGEST_PREFIX_LEN 7

bool kyb_digest_valid(const char *digest) {
  if (digest == NULL || strncmp(digest, DIGEST_PREFIX, DIGEST_PREFIX_LEN) != 0)
    return false;
  const char *hex = digest + DIGEST_PREFIX_LEN;
  size_t i = 0;
  for (; hex[i] != '\0'; i++) {
    if (i >= 2 * SHA256_LEN)
      return false;
    if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
      return false;
  }
  return i == 2 * SHA256_LEN;
}

static EVP_MD_CTX *sha256_new(void) {
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  if (c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
    EVP_MD_CTX_free(c);
    return NULL;
  }
  return c;
}

static int sha256_update(EVP_MD_CTX *c, const void *buf, size_t len, kyb_error **err) {
  if (len > 0 && EVP_DigestUpdate(c, buf, len) != 1)
    return kyb_error_set(err, EIO, "sha256: OpenSSL digest update failed");
  return 0;
}

/* Writes "sha256:<hex>" into out (KYB_DIGEST_LEN + 1 bytes). */
static int sha256_final(EVP_MD_CTX *c, char out[KYB_DIGEST_LEN + 1], kyb_error **err) {
  static const char digits[] = "0123456789abcdef";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  if (EVP_DigestFinal_ex(c, md, &mdlen) != 1 || mdlen != SHA256_LEN)
    return kyb_error_set(err, EIO, "sha256: OpenSSL digest final failed");
  memcpy(out, DIGEST_PREFIX, DIGEST_PREFIX_LEN);
  for (unsigned i = 0; i < mdlen; i++) {
    out[DIGEST_PREFIX_LEN + 2 * i] = digits[md[i] >> 4];
    out[DIGEST_PREFIX_LEN + 2 * i + 1] = digits[md[i] & 15];
  }
  out[KYB_DIGEST_LEN] = '\0';
  return 0;
}

/* ---- pack ---------------------------------------------------------------- */

/* One pack's working set, released in one place (pack_state_release). */
typedef struct {
  ZSTD_CCtx *cctx;
  EVP_MD_CTX *file_md;
  EVP_MD_CTX *blob_md;
  unsigned char *in;
  unsigned char *out;
  kyb_pack_sink_fn sink;
  void *ud;
  uint64_t blob_size;
  kyb_pack_progress_fn progress;
  void *progress_ud;
} pack_state;

static void pack_state_release(pack_state *ps) {
  ZSTD_freeCCtx(ps->cctx);
  EVP_MD_CTX_free(ps->file_md);
  EVP_MD_CTX_free(ps->blob_md);
  free(ps->in);
  free(ps->out);
}

static int resolve_opts(const kyb_pack_opts *opts, int *level, int *threads, kyb_error **err) {
  *level = opts ? opts->level : 0;
  *threads = opts ? opts->threads : 0;
  if (*level == 0)
    *level = KYB_PACK_DEFAULT_LEVEL;
  if (*level < 1 || *level > PACK_MAX_LEVEL)
    return kyb_error_set(err, EINVAL, "zstd level %d is outside 1..%d", *level, PACK_MAX_LEVEL);
  if (*threads < 0 || *threads > PACK_MAX_THREADS)
    return kyb_error_set(err, EINVAL, "thread count %d is outside 0..%d", *threads,
                         PACK_MAX_THREADS);
  if (*threads == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    *threads = n < 1 ? 1 : n > PACK_AUTO_THREADS_MAX ? PACK_AUTO_THREADS_MAX : (int)n;
  }
  return 0;
}

static int zstd_param(ZSTD_CCtx *c, ZSTD_cParameter p, int v, const char *what, kyb_error **err) {
  size_t r = ZSTD_CCtx_setParameter(c, p, v);
  if (ZSTD_isError(r))
    return kyb_error_set(err, EINVAL, "zstd: set %s to %d: %s", what, v, ZSTD_getErrorName(r));
  return 0;
}

/* threads == 1 compresses in the calling thread (nbWorkers 0); more use
 * that many zstd workers while the caller reads, hashes and sinks. */
static int pack_configure(ZSTD_CCtx *c, int level, int threads, uint64_t size, kyb_error **err) {
  if (zstd_param(c, ZSTD_c_compressionLevel, level, "level", err) < 0 ||
      zstd_param(c, ZSTD_c_checksumFlag, 1, "checksum flag", err) < 0 ||
      zstd_param(c, ZSTD_c_nbWorkers, threads > 1 ? threads : 0, "worker threads", err) < 0)
    return -1;
  size_t r = ZSTD_CCtx_setPledgedSrcSize(c, size);
  if (ZSTD_isError(r))
    return kyb_error_set(err, EINVAL, "zstd: pledge size %" PRIu64 ": %s", size,
                         ZSTD_getErrorName(r));
  return 0;
}

/* Runs one ZSTD_compressStream2 step loop over `in` and hands every byte
 * produced to the sink.  With ZSTD_e_end it loops until the frame is done. */
static int pack_step(pack_state *ps, ZSTD_inBuffer *in, ZSTD_EndDirective mode, kyb_error **err) {
  for (;;) {
    ZSTD_outBuffer o = {ps->out, PACK_BUF_SIZE, 0};
    size_t rem = ZSTD_compressStream2(ps->cctx, &o, in, mode);
    if (ZSTD_isError(rem))
      return kyb_error_set(err, EIO, "zstd compression: %s", ZSTD_getErrorName(rem));
    if (o.pos > 0) {
      if (sha256_update(ps->blob_md, ps->out, o.pos, err) < 0)
        return -1;
      ps->blob_size += o.pos;
      if (ps->sink(ps->ud, ps->out, o.pos, err) < 0)
        return kyb_error_wrap(err, "sink");
    }
    if (mode == ZSTD_e_end ? rem == 0 : in->pos == in->size)
      return 0;
  }
}

static ssize_t read_some(int fd, void *buf, size_t len) {
  for (;;) {
    ssize_t n = read(fd, buf, len);
    if (n >= 0 || errno != EINTR)
      return n;
  }
}

static int pack_fd(int fd, uint64_t size, pack_state *ps, kyb_error **err) {
  unsigned char *in = ps->in;
  uint64_t total = 0;
  for (;;) {
    ssize_t n = read_some(fd, in, PACK_BUF_SIZE);
    if (n < 0)
      return kyb_error_errno(err, "read after %" PRIu64 " bytes", total);
    if (n == 0)
      break;
    total += (uint64_t)n;
    if (total > size)
      return kyb_error_set(err, EAGAIN, "file grew while read: %" PRIu64 " bytes at start", size);
    if (sha256_update(ps->file_md, in, (size_t)n, err) < 0)
      return -1;
    ZSTD_inBuffer ib = {in, (size_t)n, 0};
    if (pack_step(ps, &ib, ZSTD_e_continue, err) < 0)
      return -1;
    if (ps->progress != NULL && ps->progress(ps->progress_ud, total, err) < 0)
      return -1;
  }
  struct stat st;
  if (fstat(fd, &st) < 0)
    return kyb_error_errno(err, "stat");
  if (total != size || (uint64_t)st.st_size != size)
    return kyb_error_set(err, EAGAIN,
                         "file changed size while read: %" PRIu64 " bytes at start, %" PRIu64
                         " read, %" PRIu64 " now",
                         size, total, (uint64_t)st.st_size);
  ZSTD_inBuffer none = {NULL, 0, 0};
  return pack_step(ps, &none, ZSTD_e_end, err);
}

static int pack_run(int fd, int level, int threads, pack_state *ps, kyb_pack_result *r,
                    kyb_error **err) {
  ps->cctx = ZSTD_createCCtx();
  ps->file_md = sha256_new();
  ps->blob_md = sha256_new();
  ps->in = malloc(PACK_BUF_SIZE);
  ps->out = malloc(PACK_BUF_SIZE);
  if (ps->cctx == NULL || ps->file_md == NULL || ps->blob_md == NULL || ps->in == NULL ||
      ps->out == NULL)
    return kyb_error_set(err, ENOMEM, "compression and digest state");
  if (pack_configure(ps->cctx, level, threads, r->file_size, err) < 0 ||
      pack_fd(fd, r->file_size, ps, err) < 0 ||
      sha256_final(ps->file_md, r->file_digest, err) < 0 ||
      sha256_final(ps->blob_md, r->blob_digest, err) < 0)
    return -1;
  r->blob_size = ps->blob_size;
  return 0;
}

int kyb_pack_file(const char *path, const kyb_pack_opts *opts, kyb_pack_sink_fn sink, void *ud,
                  kyb_pack_result *res, kyb_error **err) {
  if (res != NULL)
    memset(res, 0, sizeof(*res));
  int level = 0;
  int threads = 0;
  if (resolve_opts(opts, &level, &threads, err) < 0)
    return kyb_error_wrap(err, "pack %s", path);
  cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return kyb_error_errno(err, "pack: open %s", path);
  struct stat st;
  if (fstat(fd, &st) < 0)
    return kyb_error_errno(err, "pack: stat %s", path);
  if (!S_ISREG(st.st_mode))
    return kyb_error_set(err, EINVAL, "pack %s: not a regular file", path);

  pack_state ps = {.sink = sink,
                   .ud = ud,
                   .progress = opts ? opts->progress : NULL,
                   .progress_ud = opts ? opts->progress_ud : NULL};
  kyb_pack_result r = {.file_size = (uint64_t)st.st_size};
  int rc = pack_run(fd, level, threads, &ps, &r, err);
  pack_state_release(&ps);
  if (rc < 0)
    return kyb_error_wrap(err, "pack %s", path);
  log_debug("packed %s: %" PRIu64 " -> %" PRIu64 " bytes (level %d, %d threads), %s", path,
            r.file_size, r.blob_size, level, threads, r.blob_digest);
  if (res != NULL)
    *res = r;
  return 0;
}

/* ---- unpack -------------------------------------------------------------- */

struct kyb_unpack {
  int fd; /* the caller's; not closed here */
  ZSTD_DCtx *dctx;
  EVP_MD_CTX *blob_md;
  EVP_MD_CTX *file_md;
  unsigned char *out;
  size_t out_cap;
  char want_blob[KYB_DIGEST_LEN + 1];
  char want_file[KYB_DIGEST_LEN + 1];
  uint64_t want_size;
  uint64_t blob_size;
  uint64_t file_size;
  bool frame_done; /* zstd reported the end of the frame */
  bool broken;     /* an error happened: every later call fails */
  bool finished;
};

void kyb_unpack_free(kyb_unpack *u) {
  if (u == NULL)
    return;
  ZSTD_freeDCtx(u->dctx);
  EVP_MD_CTX_free(u->blob_md);
  EVP_MD_CTX_free(u->file_md);
  free(u->out);
  free(u);
}

uint64_t kyb_unpack_file_bytes(const kyb_unpack *u) {
  return u->file_size;
}

int kyb_unpack_new(int out_fd, const char *expected_blob_digest, const char *expected_file_digest,
                   uint64_t expected_file_size, kyb_unpack **out, kyb_error **err) {
  *out = NULL;
  if (out_fd < 0)
    return kyb_error_set(err, EBADF, "unpack: no output file");
  if (!kyb_digest_valid(expected_blob_digest))
    return kyb_error_set(err, EINVAL, "unpack: malformed blob digest \"%.80s\"",
                         expected_blob_digest ? expected_blob_digest : "(null)");
  if (!kyb_digest_valid(expected_file_digest))
    return kyb_error_set(err, EINVAL, "unpack: malformed file digest \"%.80s\"",
                         expected_file_digest ? expected_file_digest : "(null)");
  kyb_unpack *u = calloc(1, sizeof(*u));
  if (u == NULL)
    return kyb_error_set(err, ENOMEM, "unpack");
  u->fd = out_fd;
  u->want_size = expected_file_size;
  memcpy(u->want_blob, expected_blob_digest, KYB_DIGEST_LEN + 1);
  memcpy(u->want_file, expected_file_digest, KYB_DIGEST_LEN + 1);
  /* The default window limit (ZSTD_WINDOWLOG_LIMIT_DEFAULT, 128 MiB) stays:
   * our frames need at most 8 MiB (level 19); a hostile frame asking for
   * more is refused by zstd rather than allocated. */
  u->dctx = ZSTD_createDCtx();
  u->blob_md = sha256_new();
  u->file_md = sha256_new();
  u->out_cap = PACK_BUF_SIZE;
  u->out = malloc(u->out_cap);
  if (u->dctx == NULL || u->blob_md == NULL || u->file_md == NULL || u->out == NULL) {
    kyb_unpack_free(u);
    return kyb_error_set(err, ENOMEM, "unpack: decompression and digest state");
  }
  *out = u;
  return 0;
}

static int write_all(int fd, const unsigned char *buf, size_t len, kyb_error **err) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return kyb_error_errno(err, "write");
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Hashes and writes one chunk of decompressed output, refusing anything
 * past the promised size before it reaches the file. */
static int unpack_emit(kyb_unpack *u, size_t len, kyb_error **err) {
  if (len > u->want_size - u->file_size)
    return kyb_error_set(err, EFBIG,
                         "output exceeds the expected %" PRIu64 " bytes (got at least %" PRIu64 ")",
                         u->want_size, u->file_size + len);
  if (sha256_update(u->file_md, u->out, len, err) < 0 || write_all(u->fd, u->out, len, err) < 0)
    return -1;
  u->file_size += len;
  return 0;
}

static int unpack_stream(kyb_unpack *u, const void *buf, size_t len, kyb_error **err) {
  if (sha256_update(u->blob_md, buf, len, err) < 0)
    return -1;
  ZSTD_inBuffer in = {buf, len, 0};
  bool more_out = false; /* the last call filled the buffer: zstd may hold more */
  while (in.pos < in.size || more_out) {
    if (u->frame_done)
      return kyb_error_set(err, EBADMSG,
                           "trailing data: %zu byte(s) after the end of the zstd frame at blob "
                           "offset %" PRIu64,
                           in.size - in.pos, u->blob_size + in.pos);
    ZSTD_outBuffer o = {u->out, u->out_cap, 0};
    size_t r = ZSTD_decompressStream(u->dctx, &o, &in);
    if (ZSTD_isError(r))
      return kyb_error_set(err, EBADMSG,
                           "corrupt blob: zstd: %s (in blob bytes %" PRIu64 "..%" PRIu64 ")",
                           ZSTD_getErrorName(r), u->blob_size, u->blob_size + len);
    if (o.pos > 0 && unpack_emit(u, o.pos, err) < 0)
      return -1;
    more_out = o.pos == o.size;
    if (r == 0) {
      u->frame_done = true;
      more_out = false;
    }
  }
  u->blob_size += len;
  return 0;
}

static int unpack_usable(const kyb_unpack *u, kyb_error **err) {
  if (u->finished)
    return kyb_error_set(err, EINVAL, "unpack: stream already finished");
  if (u->broken)
    return kyb_error_set(err, EINVAL, "unpack: stream stopped by an earlier error");
  return 0;
}

int kyb_unpack_feed(kyb_unpack *u, const void *buf, size_t len, kyb_error **err) {
  if (unpack_usable(u, err) < 0)
    return -1;
  if (len == 0)
    return 0;
  if (unpack_stream(u, buf, len, err) < 0) {
    u->broken = true;
    return kyb_error_wrap(err, "unpack");
  }
  return 0;
}

static int unpack_check(kyb_unpack *u, kyb_error **err) {
  char blob[KYB_DIGEST_LEN + 1];
  char file[KYB_DIGEST_LEN + 1];
  if (sha256_final(u->blob_md, blob, err) < 0)
    return -1;
  if (!u->frame_done)
    return kyb_error_set(err, EBADMSG,
                         "truncated blob: it ends inside its zstd frame after %" PRIu64
                         " bytes (blob digest expected %s, got %s)",
                         u->blob_size, u->want_blob, blob);
  if (strcmp(blob, u->want_blob) != 0)
    return kyb_error_set(err, EBADMSG,
                         "blob digest mismatch: expected %s, got %s (%" PRIu64 " bytes)",
                         u->want_blob, blob, u->blob_size);
  if (sha256_final(u->file_md, file, err) < 0)
    return -1;
  if (u->file_size != u->want_size)
    return kyb_error_set(err, EBADMSG,
                         "file size mismatch: expected %" PRIu64 " bytes, got %" PRIu64
                         " (file digest expected %s, got %s)",
                         u->want_size, u->file_size, u->want_file, file);
  if (strcmp(file, u->want_file) != 0)
    return kyb_error_set(err, EBADMSG, "file digest mismatch: expected %s, got %s", u->want_file,
                         file);
  return 0;
}

int kyb_unpack_finish(kyb_unpack *u, kyb_error **err) {
  if (unpack_usable(u, err) < 0)
    return -1;
  u->finished = true;
  if (unpack_check(u, err) < 0)
    return kyb_error_wrap(err, "unpack");
  return 0;
}
