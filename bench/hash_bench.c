/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kyb-hash-bench: times image hashing (lib/image: builder and verify with
 * chunk digests) against one sequential SHA-256 pass over the same file, for
 * bench/hash_bench.py.  Not a product command; prints one JSON object.
 *
 *   kyb-hash-bench DIR SIZE_MIB ROUNDS THREADS...
 *
 * Makes DIR/criu/pages-1.img (SIZE_MIB of xorshift bytes, fsynced so no
 * timing includes writeback) and a small core-1.img, then per round:
 *   baseline  kyb_sha256_fd over pages-1.img: one core, the whole file, as
 *             the builder and verify each did before chunk digests
 *   build_T   kyb_image_builder_finish with KYBERNATE_HASH_THREADS=T
 *             (whole-file and chunk digests, fsync, manifest)
 *   verify_T  kyb_image_verify with KYBERNATE_HASH_THREADS=T
 * The file stays in the page cache throughout (the machine must have the
 * memory): what is measured is hashing, not the disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "image/files.h"
#include "image/hashpool.h"
#include "image/image.h"
#include "util/cleanup.h"
#include "util/fs.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int die(kyb_error *err, const char *what) {
  fprintf(stderr, "kyb-hash-bench: %s: %s\n", what, err ? kyb_error_message(err) : strerror(errno));
  return 1;
}

static int make_pages(const char *path, unsigned long mib) {
  cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return -1;
  cleanup_free uint64_t *buf = malloc(1u << 20);
  if (buf == NULL)
    return -1;
  uint64_t x = 88172645463325252ull;
  for (unsigned long m = 0; m < mib; m++) {
    for (size_t i = 0; i < (1u << 20) / sizeof(uint64_t); i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      buf[i] = x;
    }
    if (write(fd, buf, 1u << 20) != (ssize_t)(1u << 20))
      return -1;
  }
  return fsync(fd);
}

static int build(const char *dir, kyb_error **err) {
  cleanup_free char *manifest = kyb_path_join(dir, KYB_IMAGE_MANIFEST);
  if (manifest == NULL)
    return kyb_error_set(err, ENOMEM, "path");
  unlink(manifest);
  kyb_image_builder *b = kyb_image_builder_new(dir, "hash-bench", err);
  if (b == NULL)
    return -1;
  kyb_image_source src = {.container_id = "bench"};
  cleanup_json json_t *spec = json_pack("{s:s}", "ociVersion", "1.0.2");
  int r = -1;
  if (kyb_image_builder_set_source(b, &src, err) == 0 &&
      kyb_image_builder_set_runtime(b, spec, "io.containerd.runc.v2", "runc", err) == 0 &&
      kyb_image_builder_finish(b, NULL, err) == 0)
    r = 0;
  kyb_image_builder_free(b);
  return r;
}

static void set_threads(unsigned t) {
  char v[16];
  snprintf(v, sizeof(v), "%u", t);
  setenv("KYBERNATE_HASH_THREADS", v, 1);
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: kyb-hash-bench DIR SIZE_MIB ROUNDS THREADS...\n");
    return 2;
  }
  const char *dir = argv[1];
  unsigned long mib = strtoul(argv[2], NULL, 10);
  int rounds = atoi(argv[3]);
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *criu = kyb_path_join(dir, "criu");
  cleanup_free char *pages = kyb_path_join(criu, "pages-1.img");
  cleanup_free char *core = kyb_path_join(criu, "core-1.img");
  if (kyb_mkdir_p(criu, 0700, &err) < 0)
    return die(err, criu);
  if (kyb_write_file_atomic(core, "core", 4, 0600, &err) < 0)
    return die(err, core);
  if (make_pages(pages, mib) < 0)
    return die(NULL, pages);
  unsetenv("KYBERNATE_HASH_THREADS");
  printf("{\"size_mib\": %lu, \"default_threads\": %u, \"chunk_mib\": %u, \"rounds\": [", mib,
         kyb_hash_threads(), KYB_IMAGE_CHUNK_SIZE >> 20);
  for (int r = 0; r < rounds; r++) {
    printf("%s{", r ? ", " : "");
    cleanup_close int fd = open(pages, O_RDONLY | O_CLOEXEC);
    char hex[KYB_SHA256_HEX_LEN + 1];
    double t0 = now_s();
    if (fd < 0 || kyb_sha256_fd(fd, false, hex, NULL, &err) < 0)
      return die(err, "baseline");
    printf("\"baseline\": %.3f", now_s() - t0);
    for (int a = 4; a < argc; a++) {
      unsigned t = (unsigned)strtoul(argv[a], NULL, 10);
      set_threads(t);
      t0 = now_s();
      if (build(dir, &err) < 0)
        return die(err, "build");
      double tb = now_s() - t0;
      t0 = now_s();
      if (kyb_image_verify(dir, NULL, &err) < 0)
        return die(err, "verify");
      printf(", \"build_%u\": %.3f, \"verify_%u\": %.3f", t, tb, t, now_s() - t0);
    }
    printf("}");
    fflush(stdout);
  }
  printf("]}\n");
  return 0;
}
