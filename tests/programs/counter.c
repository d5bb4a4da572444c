/* SPDX-License-Identifier: Apache-2.0 */
/*
 * counter: the workload of the checkpoint/restore tests (static, no libc
 * dependencies in the image).  It
 *   - prints "count N" every --interval ms, N going up by one each time;
 *   - fills --mem MiB with a pattern derived from a seed and re-verifies all of
 *     it every --verify-every lines, printing "memory ok <checksum>" or
 *     "memory CORRUPT" (then exits 3);
 *   - keeps --file open for the whole run and rewrites "count N" in it on each
 *     line, so a restore must bring back an open, modified rootfs file.
 * After a restore the next line must be N+1 of the last line before the
 * checkpoint, and the checksum must equal the one printed at start.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig) {
  (void)sig;
  stop = 1;
}

static uint64_t next(uint64_t *s) { /* xorshift64: cheap, deterministic */
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static uint64_t fill(uint64_t *mem, size_t words, uint64_t seed) {
  uint64_t s = seed, sum = 0;
  for (size_t i = 0; i < words; i++) {
    mem[i] = next(&s);
    sum += mem[i] * (i | 1);
  }
  return sum;
}

static int verify(const uint64_t *mem, size_t words, uint64_t seed, uint64_t *sum_out) {
  uint64_t s = seed, sum = 0;
  int ok = 1;
  for (size_t i = 0; i < words; i++) {
    if (mem[i] != next(&s))
      ok = 0;
    sum += mem[i] * (i | 1);
  }
  *sum_out = sum;
  return ok;
}

static void usage(void) {
  fprintf(stderr, "usage: counter [--mem MiB] [--file PATH] [--interval MS] [--verify-every N] "
                  "[--start N]\n");
}

int main(int argc, char **argv) {
  size_t mib = 0;
  const char *path = NULL;
  long interval_ms = 200, verify_every = 10;
  unsigned long long count = 0;
  for (int i = 1; i < argc; i++) {
    if (i + 1 < argc && strcmp(argv[i], "--mem") == 0)
      mib = strtoul(argv[++i], NULL, 10);
    else if (i + 1 < argc && strcmp(argv[i], "--file") == 0)
      path = argv[++i];
    else if (i + 1 < argc && strcmp(argv[i], "--interval") == 0)
      interval_ms = strtol(argv[++i], NULL, 10);
    else if (i + 1 < argc && strcmp(argv[i], "--verify-every") == 0)
      verify_every = strtol(argv[++i], NULL, 10);
    else if (i + 1 < argc && strcmp(argv[i], "--start") == 0)
      count = strtoull(argv[++i], NULL, 10);
    else {
      usage();
      return 2;
    }
  }
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  setvbuf(stdout, NULL, _IOLBF, 0);

  const uint64_t seed = 0x6b7962u; /* "kyb" */
  size_t words = mib * 1024 * 1024 / sizeof(uint64_t);
  uint64_t *mem = NULL, expect = 0;
  if (words > 0) {
    mem = mmap(NULL, words * sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
               -1, 0);
    if (mem == MAP_FAILED) {
      perror("counter: mmap");
      return 1;
    }
    expect = fill(mem, words, seed);
    printf("memory filled %zu MiB checksum %016" PRIx64 "\n", mib, expect);
  }
  int fd = -1;
  if (path != NULL) {
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      fprintf(stderr, "counter: open %s: %s\n", path, strerror(errno));
      return 1;
    }
  }
  while (!stop) {
    count++;
    printf("count %llu\n", count);
    if (fd >= 0) {
      char line[64];
      int n = snprintf(line, sizeof(line), "count %llu\n", count);
      if (pwrite(fd, line, (size_t)n, 0) != n || ftruncate(fd, n) != 0) {
        fprintf(stderr, "counter: write %s: %s\n", path, strerror(errno));
        return 1;
      }
    }
    if (mem != NULL && verify_every > 0 && count % (unsigned long long)verify_every == 0) {
      uint64_t sum;
      if (!verify(mem, words, seed, &sum) || sum != expect) {
        printf("memory CORRUPT checksum %016" PRIx64 " expected %016" PRIx64 "\n", sum, expect);
        return 3;
      }
      printf("memory ok %016" PRIx64 "\n", sum);
    }
    struct timespec ts = {.tv_sec = interval_ms / 1000, .tv_nsec = (interval_ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !stop)
      ;
  }
  printf("counter stopped at %llu\n", count);
  return 0;
}
