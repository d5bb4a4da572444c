/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kyb-pack-bench: times lib/store/pack on one file, for bench/compression.py.
 * Not a product command; prints one JSON object per call on stdout.
 *
 *   kyb-pack-bench pack FILE LEVEL THREADS [BLOB_OUT]
 *       one kyb_pack_file; the sink discards the blob, or writes it to
 *       BLOB_OUT (the time spent writing is reported apart as sink_s)
 *   kyb-pack-bench unpack BLOB BLOB_DIGEST FILE_DIGEST FILE_SIZE
 *       reads BLOB in 1 MiB chunks into kyb_unpack_* with /dev/null as the
 *       output file: decompression plus both digests
 *
 * Times: wall (CLOCK_MONOTONIC) and CPU (user + system of the whole process,
 * zstd's worker threads included).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "store/pack.h"
#include "util/cleanup.h"

#define CHUNK (1u << 20)

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

typedef struct {
  int fd; /* -1: discard */
  double seconds;
} sink_ctx;

static int sink(void *ud, const void *buf, size_t len, kyb_error **err) {
  sink_ctx *s = ud;
  if (s->fd < 0)
    return 0;
  double t0 = now_s();
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(s->fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return kyb_error_errno(err, "write blob");
    p += n;
    len -= (size_t)n;
  }
  s->seconds += now_s() - t0;
  return 0;
}

static int fail(kyb_error *err) {
  fprintf(stderr, "kyb-pack-bench: %s\n", kyb_error_message(err));
  kyb_error_free(err);
  return 1;
}

static int do_pack(int argc, char **argv) {
  if (argc < 5 || argc > 6) {
    fprintf(stderr, "usage: kyb-pack-bench pack FILE LEVEL THREADS [BLOB_OUT]\n");
    return 2;
  }
  kyb_pack_opts o = {.level = atoi(argv[3]), .threads = atoi(argv[4])};
  sink_ctx s = {.fd = -1};
  cleanup_close int fd = -1;
  if (argc == 6) {
    fd = open(argv[5], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
      perror(argv[5]);
      return 1;
    }
    s.fd = fd;
  }
  kyb_error *err = NULL;
  kyb_pack_result r;
  double c0 = cpu_s();
  double t0 = now_s();
  if (kyb_pack_file(argv[2], &o, sink, &s, &r, &err) < 0)
    return fail(err);
  double wall = now_s() - t0;
  double cpu = cpu_s() - c0;
  printf("{\"op\":\"pack\",\"level\":%d,\"threads\":%d,\"file_size\":%" PRIu64
         ",\"blob_size\":%" PRIu64 ",\"wall_s\":%.6f,\"sink_s\":%.6f,\"cpu_s\":%.6f,"
         "\"file_digest\":\"%s\",\"blob_digest\":\"%s\"}\n",
         o.level, o.threads, r.file_size, r.blob_size, wall, s.seconds, cpu, r.file_digest,
         r.blob_digest);
  return 0;
}

static int do_unpack(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: kyb-pack-bench unpack BLOB BLOB_DIGEST FILE_DIGEST FILE_SIZE\n");
    return 2;
  }
  cleanup_close int in = open(argv[2], O_RDONLY | O_CLOEXEC);
  cleanup_close int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
  cleanup_free char *buf = malloc(CHUNK);
  if (in < 0 || out < 0 || buf == NULL) {
    perror("unpack");
    return 1;
  }
  kyb_error *err = NULL;
  kyb_unpack *u = NULL;
  double c0 = cpu_s();
  double t0 = now_s();
  if (kyb_unpack_new(out, argv[3], argv[4], strtoull(argv[5], NULL, 10), &u, &err) < 0)
    return fail(err);
  uint64_t blob = 0;
  for (;;) {
    ssize_t n = read(in, buf, CHUNK);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      perror("read blob");
      kyb_unpack_free(u);
      return 1;
    }
    if (n == 0)
      break;
    blob += (uint64_t)n;
    if (kyb_unpack_feed(u, buf, (size_t)n, &err) < 0) {
      kyb_unpack_free(u);
      return fail(err);
    }
  }
  int rc = kyb_unpack_finish(u, &err);
  kyb_unpack_free(u);
  if (rc < 0)
    return fail(err);
  double wall = now_s() - t0;
  double cpu = cpu_s() - c0;
  printf("{\"op\":\"unpack\",\"blob_size\":%" PRIu64 ",\"wall_s\":%.6f,\"cpu_s\":%.6f}\n", blob,
         wall, cpu);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "pack") == 0)
    return do_pack(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "unpack") == 0)
    return do_unpack(argc, argv);
  fprintf(stderr, "usage: kyb-pack-bench pack FILE LEVEL THREADS [BLOB_OUT]\n"
                  "       kyb-pack-bench unpack BLOB BLOB_DIGEST FILE_DIGEST FILE_SIZE\n");
  return 2;
}
