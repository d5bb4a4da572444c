/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kyb-store-bench: times one upload or download of an existing image through
 * the store API (lib/store), for bench/store_throughput.py.  Not a product
 * command; prints one JSON object per call on stdout.
 *
 *   kyb-store-bench push IMAGE_DIR STORE_URI
 *       kyb_store_open + kyb_store_stage of the image's name in STORE_URI
 *       (open_s), IMAGE_DIR's files hard-linked (copied when that fails) into
 *       the staging directory (place_s: not part of an upload), then
 *       kyb_store_put (put_s): for oci:// and
 *       s3:// the layout check, zstd + sha256 of every file while it is read
 *       and the upload, the same code path `kybernate checkpoint --to` ends in
 *   kyb-store-bench pull STORE_URI NAME
 *       kyb_store_get_path timed (get_s): for a remote store the download into
 *       the node cache ($KYBERNATE_IMAGE_CACHE) with every blob and file
 *       digest checked on the way, published atomically
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "image/image.h"
#include "store/store.h"
#include "util/cleanup.h"
#include "util/fs.h"

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

static int fail(kyb_error *err) {
  fprintf(stderr, "kyb-store-bench: %s\n", kyb_error_message(err));
  kyb_error_free(err);
  return 1;
}

static int copy_file(const char *from, const char *to, kyb_error **err) {
  cleanup_close int in = open(from, O_RDONLY | O_CLOEXEC);
  if (in < 0)
    return kyb_error_errno(err, "open %s", from);
  cleanup_close int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (out < 0)
    return kyb_error_errno(err, "create %s", to);
  char buf[1 << 16];
  for (;;) {
    ssize_t n = read(in, buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return kyb_error_errno(err, "read %s", from);
    if (n == 0)
      return 0;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(out, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0)
        return kyb_error_errno(err, "write %s", to);
      off += w;
    }
  }
}

/* <dst>/<rel> from <src>/<rel>: a hard link, else a copy. */
static int place(const char *src, const char *dst, const char *rel, uint64_t *bytes,
                 kyb_error **err) {
  cleanup_free char *from = kyb_path_join(src, rel);
  cleanup_free char *to = kyb_path_join(dst, rel);
  if (from == NULL || to == NULL)
    return kyb_error_set(err, ENOMEM, "path");
  cleanup_free char *parent = strdup(to);
  char *slash = parent ? strrchr(parent, '/') : NULL;
  if (slash == NULL)
    return kyb_error_set(err, ENOMEM, "path");
  *slash = '\0';
  if (kyb_mkdir_p(parent, 0700, err) < 0)
    return -1;
  struct stat sb;
  if (stat(from, &sb) < 0)
    return kyb_error_errno(err, "stat %s", from);
  *bytes += (uint64_t)sb.st_size;
  if (link(from, to) == 0)
    return 0;
  return copy_file(from, to, err);
}

static int do_push(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: kyb-store-bench push IMAGE_DIR STORE_URI\n");
    return 2;
  }
  const char *dir = argv[2];
  kyb_error *err = NULL;
  cleanup_json json_t *m = NULL;
  if (kyb_image_load_manifest(dir, &m, &err) < 0)
    return fail(err);
  const char *name = json_string_value(json_object_get(m, "name"));
  kyb_store *s = NULL;
  kyb_staging *st = NULL;
  double t0 = now_s();
  if (kyb_store_open(argv[3], KYB_STORE_CREATE, &s, &err) < 0 ||
      kyb_store_stage(s, name, &st, &err) < 0)
    goto out;
  double opened = now_s() - t0;
  t0 = now_s();
  uint64_t bytes = 0;
  const json_t *f;
  size_t i;
  json_array_foreach(json_object_get(m, "files"), i, f) {
    if (place(dir, kyb_staging_path(st), json_string_value(json_object_get(f, "path")), &bytes,
              &err) < 0)
      goto out;
  }
  if (place(dir, kyb_staging_path(st), "manifest.json", &bytes, &err) < 0)
    goto out;
  double placed = now_s() - t0;
  double c0 = cpu_s();
  t0 = now_s();
  if (kyb_store_put(s, st, &err) < 0)
    goto out;
  double wall = now_s() - t0;
  double cpu = cpu_s() - c0;
  kyb_staging_free(st);
  kyb_store_close(s);
  printf("{\"op\":\"push\",\"name\":\"%s\",\"bytes\":%" PRIu64
         ",\"open_s\":%.6f,\"place_s\":%.6f,\"put_s\":%.6f,\"cpu_s\":%.6f}\n",
         name, bytes, opened, placed, wall, cpu);
  return 0;
out:
  kyb_staging_free(st);
  kyb_store_close(s);
  return fail(err);
}

static int do_pull(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: kyb-store-bench pull STORE_URI NAME\n");
    return 2;
  }
  kyb_error *err = NULL;
  kyb_store *s = NULL;
  cleanup_free char *path = NULL;
  if (kyb_store_open(argv[2], 0, &s, &err) < 0)
    return fail(err);
  double c0 = cpu_s();
  double t0 = now_s();
  if (kyb_store_get_path(s, argv[3], &path, &err) < 0) {
    kyb_store_close(s);
    return fail(err);
  }
  double wall = now_s() - t0;
  double cpu = cpu_s() - c0;
  kyb_store_close(s);
  printf("{\"op\":\"pull\",\"path\":\"%s\",\"get_s\":%.6f,\"cpu_s\":%.6f}\n", path, wall, cpu);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "push") == 0)
    return do_push(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "pull") == 0)
    return do_pull(argc, argv);
  fprintf(stderr, "usage: kyb-store-bench push IMAGE_DIR STORE_URI\n"
                  "       kyb-store-bench pull STORE_URI NAME\n");
  return 2;
}
