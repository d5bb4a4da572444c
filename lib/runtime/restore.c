/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Restore instead of create (restore.h).
 */
#define KYB_LOG_MODULE "runtime"
#include "runtime/restore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "image/image.h"
#include "image/rootfs.h"
#include "ops/criu_log.h"
#include "ops/resolve.h"
#include "runtime/decide.h"
#include "runtime/delegate.h"
#include "runtime/gpu_restore.h"
#include "runtime/marker.h"
#include "runtime/runc_log.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"

/* CRIU's error lines quoted in an error message. */
#define CRIU_ERROR_LINES 8

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int kyb_rt_load_spec(const char *bundle, json_t **out, kyb_error **err) {
  *out = NULL;
  cleanup_free char *path = kyb_path_join(bundle, "config.json");
  if (path == NULL)
    return kyb_error_set(err, ENOMEM, "spec path");
  cleanup_free char *buf = NULL;
  size_t len = 0;
  if (kyb_read_file(path, KYB_RT_SPEC_MAX_BYTES, &buf, &len, err) < 0)
    return kyb_error_wrap(err, "OCI spec");
  json_error_t jerr;
  json_t *spec = json_loadb(buf, len, 0, &jerr);
  if (spec == NULL)
    return kyb_error_set(err, EINVAL, "OCI spec %s: line %d column %d: %s", path, jerr.line,
                         jerr.column, jerr.text);
  if (!json_is_object(spec)) {
    json_decref(spec);
    return kyb_error_set(err, EINVAL, "OCI spec %s is not a JSON object", path);
  }
  *out = spec;
  return 0;
}

const json_t *kyb_rt_spec_annotations(const json_t *spec) {
  const json_t *a = json_object_get(spec, "annotations");
  return json_is_object(a) ? a : NULL;
}

int kyb_rt_spec_rootfs(const json_t *spec, const char *bundle, char **out, kyb_error **err) {
  *out = NULL;
  const char *p = json_string_value(json_object_get(json_object_get(spec, "root"), "path"));
  if (p == NULL || *p == '\0')
    return kyb_error_set(err, EINVAL, "the OCI spec has no root.path");
  *out = p[0] == '/' ? strdup(p) : kyb_path_join(bundle, p);
  if (*out == NULL)
    return kyb_error_set(err, ENOMEM, "rootfs path");
  return 0;
}

void kyb_rt_restore_result_clear(kyb_rt_restore_result *r) {
  if (r == NULL)
    return;
  free(r->image_dir);
  memset(r, 0, sizeof(*r));
}

char *kyb_rt_relative_path(const char *from, const char *to) {
  /* The longest common prefix that ends at a component boundary. */
  size_t common = 0;
  for (size_t i = 0;; i++) {
    bool fe = from[i] == '\0' || from[i] == '/';
    bool te = to[i] == '\0' || to[i] == '/';
    if (fe && te)
      common = i;
    if (from[i] != to[i] || from[i] == '\0')
      break;
  }
  size_t ups = 0;
  for (const char *p = from + common; *p; p++)
    if (*p == '/' && p[1] != '\0')
      ups++;
  const char *rest = to + common;
  while (*rest == '/')
    rest++;
  size_t len = ups * 3 + strlen(rest) + 2;
  char *out = malloc(len);
  if (out == NULL)
    return NULL;
  char *w = out;
  for (size_t i = 0; i < ups; i++)
    w = stpcpy(w, "../");
  if (*rest != '\0')
    stpcpy(w, rest);
  else if (ups > 0)
    w[-1] = '\0'; /* "../.." rather than "../../" */
  else
    stpcpy(w, ".");
  return out;
}

/* dst: a new directory of symlinks to every entry of src (the image's
 * criu/).  CRIU reads the images through them and writes its own files
 * (stats-restore) beside them, never into the image.  The links are
 * RELATIVE: CRIU opens some images (pagemap, pages) from inside the
 * container's mount namespace and root, where an absolute target would be
 * looked up in the container's file system; a relative one is walked from
 * the directory fd CRIU holds, in the host's mount tree. */
static int link_images(const char *src, const char *dst, kyb_error **err) {
  char real_src[PATH_MAX], real_dst[PATH_MAX];
  if (realpath(src, real_src) == NULL)
    return kyb_error_errno(err, "the image has no CRIU files: %s", src);
  cleanup_dir DIR *d = opendir(real_src);
  if (d == NULL)
    return kyb_error_errno(err, "the image has no CRIU files: %s", src);
  if (mkdir(dst, 0700) < 0)
    return kyb_error_errno(err, "create %s", dst);
  if (realpath(dst, real_dst) == NULL)
    return kyb_error_errno(err, "%s", dst);
  cleanup_free char *rel = kyb_rt_relative_path(real_dst, real_src);
  cleanup_close int dfd = open(dst, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (rel == NULL)
    return kyb_error_set(err, ENOMEM, "image link");
  if (dfd < 0)
    return kyb_error_errno(err, "open %s", dst);
  size_t n = 0;
  for (struct dirent *e; (errno = 0, e = readdir(d)) != NULL;) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    cleanup_free char *target = kyb_path_join(rel, e->d_name);
    if (target == NULL)
      return kyb_error_set(err, ENOMEM, "image link");
    if (symlinkat(target, dfd, e->d_name) < 0)
      return kyb_error_errno(err, "link %s into %s", target, dst);
    n++;
  }
  if (errno != 0)
    return kyb_error_errno(err, "list %s", src);
  if (n == 0)
    return kyb_error_set(err, ENOENT, "the image's CRIU directory %s is empty", src);
  return 0;
}

/* <bundle>/kybernate-restore/{images,work}, fresh. */
static int prepare_work(const char *bundle, const char *criu_src, char **top, char **images,
                        char **work, kyb_error **err) {
  *top = kyb_path_join(bundle, KYB_RT_WORK_NAME);
  *images = *top ? kyb_path_join(*top, "images") : NULL;
  *work = *top ? kyb_path_join(*top, "work") : NULL;
  if (*top == NULL || *images == NULL || *work == NULL)
    return kyb_error_set(err, ENOMEM, "work paths");
  if (kyb_remove_tree(*top, err) < 0)
    return -1;
  if (mkdir(*top, 0700) < 0)
    return kyb_error_errno(err, "create %s", *top);
  if (mkdir(*work, 0700) < 0)
    return kyb_error_errno(err, "create %s", *work);
  return link_images(criu_src, *images, err);
}

int kyb_rt_delete_leftover(const kyb_runc_cmdline *g, const char *delegate, const char *id,
                           kyb_error **err) {
  cleanup_free char *state = kyb_path_join(kyb_runc_root(g), id);
  if (state == NULL)
    return kyb_error_set(err, ENOMEM, "runc state path");
  struct stat st;
  if (lstat(state, &st) < 0)
    return 0; /* runc made no container: nothing to remove */
  cleanup_free const char **argv = NULL;
  if (kyb_runc_delete_argv(g, delegate, id, &argv, err) < 0)
    return -1;
  int status = 0;
  if (kyb_rt_spawn_wait(argv, true, &status, err) < 0)
    return kyb_error_wrap(err, "remove the half-restored container %s", id);
  if (lstat(state, &st) == 0) {
    char how[96];
    kyb_rt_describe_status(status, how, sizeof(how));
    return kyb_error_set(err, EBUSY, "%s delete --force %s (%s) left its state %s", delegate, id,
                         how, state);
  }
  log_info("removed the half-restored container %s", id);
  return 0;
}

/* The bundle (and with it CRIU's work dir) goes as soon as containerd sees
 * the create fail, so a failed restore's restore.log is copied to
 * <state dir>/failed/<id>.restore.log for a person to read; only the
 * newest KEEP_FAILED_LOGS stay.  Returns the copy's path, or NULL. */
#define KEEP_FAILED_LOGS 16
#define RESTORE_LOG_MAX (64u << 20)

static void prune_failed_logs(const char *dir) {
  cleanup_dir DIR *d = opendir(dir);
  if (d == NULL)
    return;
  for (;;) {
    size_t n = 0;
    char oldest[NAME_MAX + 1] = "";
    struct timespec oldest_t = {0};
    rewinddir(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
      struct stat st;
      if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
          !S_ISREG(st.st_mode))
        continue;
      n++;
      if (oldest[0] == '\0' || st.st_mtim.tv_sec < oldest_t.tv_sec ||
          (st.st_mtim.tv_sec == oldest_t.tv_sec && st.st_mtim.tv_nsec < oldest_t.tv_nsec)) {
        snprintf(oldest, sizeof(oldest), "%s", e->d_name);
        oldest_t = st.st_mtim;
      }
    }
    if (n <= KEEP_FAILED_LOGS || unlinkat(dirfd(d), oldest, 0) < 0)
      return;
  }
}

static char *keep_failed_log(const char *state_dir, const char *id, const char *log) {
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *dir = kyb_path_join(state_dir, "failed");
  cleanup_free char *buf = NULL;
  size_t len = 0;
  char name[1100];
  snprintf(name, sizeof(name), "%s.restore.log", id);
  char *path = dir ? kyb_path_join(dir, name) : NULL;
  if (path == NULL || kyb_read_file(log, RESTORE_LOG_MAX, &buf, &len, &err) < 0 ||
      kyb_mkdir_p(dir, 0700, &err) < 0 || kyb_write_file_atomic(path, buf, len, 0600, &err) < 0) {
    if (err != NULL)
      log_warn_chain(err, "CRIU's restore.log of %s not kept", id);
    free(path);
    return NULL;
  }
  prune_failed_logs(dir);
  return path;
}

/* A dump option from the manifest's "options" (validated by the loader;
 * images written before it was recorded lack it: false). */
static bool dump_option(const json_t *manifest, const char *key) {
  return json_is_true(json_object_get(json_object_get(manifest, "options"), key));
}

static int run_restore(const kyb_rt_restore_req *req, const json_t *manifest, const char *images,
                       const char *work, kyb_error **err) {
  kyb_runc_restore_paths p = {.delegate = req->delegate,
                              .bundle = req->bundle,
                              .image_path = images,
                              .work_path = work,
                              .tcp_established = dump_option(manifest, "tcpEstablished"),
                              .ext_unix_sk = dump_option(manifest, "extUnixSk"),
                              .file_locks = dump_option(manifest, "fileLocks")};
  cleanup_free const char **argv = NULL;
  if (kyb_runc_restore_argv(req->global, req->create, &p, &argv, err) < 0)
    return -1;
  off_t log_from = kyb_runc_log_size(req->global->log);
  int status = 0;
  if (kyb_rt_spawn_wait(argv, false, &status, err) < 0)
    return -1;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return 0;
  char how[96];
  kyb_rt_describe_status(status, how, sizeof(how));
  cleanup_free char *runc_msg = kyb_runc_log_is_json(req->global)
                                    ? kyb_runc_log_last_error(req->global->log, log_from)
                                    : NULL;
  /* runc adds "\nlog file: <work>/restore.log": that file goes with the
   * bundle, the kept copy is named instead. */
  char *tail = runc_msg ? strstr(runc_msg, "\nlog file: ") : NULL;
  if (tail != NULL)
    *tail = '\0';
  cleanup_free char *log = kyb_path_join(work, "restore.log");
  cleanup_free char *lines = log ? kyb_criu_log_errors(log, CRIU_ERROR_LINES) : NULL;
  cleanup_free char *kept = log ? keep_failed_log(req->state_dir, req->create->id, log) : NULL;
  kyb_error_set(err, EIO, "%s restore failed (%s)%s%s; CRIU restore.log %s%s%s%s", req->delegate,
                how, runc_msg ? ": " : "", runc_msg ? runc_msg : "", kept ? "kept as " : "not kept",
                kept ? kept : "", lines ? ", its errors:\n" : "", lines ? lines : "");
  cleanup_error kyb_error *derr = NULL;
  if (kyb_rt_delete_leftover(req->global, req->delegate, req->create->id, &derr) < 0) {
    log_error_chain(derr, "clean-up after the failed restore");
    kyb_error_wrap(err, "removing the half-restored container failed too (%s) after",
                   kyb_error_message(derr));
  }
  return -1;
}

/* The work directory goes; failing to remove it is worth a warning only. */
static void remove_quietly(const char *dir) {
  cleanup_error kyb_error *rerr = NULL;
  if (kyb_remove_tree(dir, &rerr) < 0)
    log_warn_chain(rerr, "restore work directory %s left behind", dir);
}

static char *marker_content(const kyb_rt_restore_req *req, const char *image_dir) {
  char when[21];
  kyb_image_format_time(time(NULL), when);
  cleanup_json json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", req->create->id,
                                     "root", kyb_runc_root(req->global), "bundle", req->bundle,
                                     "ref", req->ref, "image", image_dir, "restoredAt", when);
  return o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
}

static int restore_prepared(const kyb_rt_restore_req *req, kyb_rt_restore_result *res,
                            const json_t *manifest, const char *criu_src, kyb_rt_gpu *gpu,
                            kyb_error **err);

static int restore(const kyb_rt_restore_req *req, kyb_rt_restore_result *res, kyb_error **err) {
  const json_t *annotations = kyb_rt_spec_annotations(req->spec);
  uint64_t t0 = now_ms();
  kyb_resolved_image img = {0};
  if (kyb_resolve_image(req->conf, req->ref, &img, err) < 0)
    return -1;
  res->resolve_ms = now_ms() - t0;
  res->image_dir = strdup(img.dir);
  cleanup_json json_t *manifest = json_incref(img.manifest);
  cleanup_free char *criu_src = kyb_path_join(img.dir, KYB_IMAGE_CRIU_DIR);
  kyb_resolved_image_clear(&img);
  if (res->image_dir == NULL || criu_src == NULL)
    return kyb_error_set(err, ENOMEM, "image path");
  if (kyb_rt_check_namespace(manifest, annotations, err) < 0)
    return -1;
  /* The GPU map before anything is touched: a node that cannot take the
   * image's GPU state refuses it here, with nothing to undo. */
  kyb_rt_gpu *gpu = NULL;
  if (kyb_rt_gpu_prepare(manifest, req->spec, req->gpu_driver, req->nvidia_proc, &gpu, err) < 0)
    return -1;
  int r = restore_prepared(req, res, manifest, criu_src, gpu, err);
  kyb_rt_gpu_free(gpu);
  return r;
}

/* Undoes a restore whose container runs already (runc has state for it). */
static void undo_restored(const kyb_rt_restore_req *req, const char *top, kyb_error **err) {
  cleanup_error kyb_error *derr = NULL;
  if (kyb_rt_delete_leftover(req->global, req->delegate, req->create->id, &derr) < 0)
    kyb_error_wrap(err, "removing the restored container failed too (%s) after",
                   kyb_error_message(derr));
  remove_quietly(top);
}

/* After runc restore: the GPU state of every CUDA process comes back. */
static int restore_gpu(const kyb_rt_restore_req *req, kyb_rt_gpu *gpu, kyb_rt_restore_result *res,
                       kyb_error **err) {
  if (req->create->pid_file == NULL)
    return kyb_error_set(err, EINVAL, "GPU restore needs the container's pid (no --pid-file)");
  pid_t pid = 0;
  cleanup_free char *cgroup = NULL;
  if (kyb_rt_read_pid_file(req->create->pid_file, &pid, err) < 0 ||
      kyb_rt_pid_cgroup_dir(NULL, NULL, pid, &cgroup, err) < 0)
    return kyb_error_wrap(err, "GPU restore");
  kyb_rt_gpu_times t = {0};
  int r = kyb_rt_gpu_restore(gpu, cgroup, &t, err);
  res->gpu_procs = t.procs;
  res->gpu_remapped = t.remapped;
  res->gpu_restore_ms = t.restore_ms;
  res->gpu_unlock_ms = t.unlock_ms;
  res->gpu_ms = t.total_ms;
  if (r == 0)
    log_info("GPU restore of %zu CUDA process(es) in %s: %.1f ms (restore %.1f ms, unlock %.1f "
             "ms), %zu GPU(s) remapped",
             t.procs, cgroup, t.total_ms, t.restore_ms, t.unlock_ms, t.remapped);
  return r;
}

static int restore_prepared(const kyb_rt_restore_req *req, kyb_rt_restore_result *res,
                            const json_t *manifest, const char *criu_src, kyb_rt_gpu *gpu,
                            kyb_error **err) {
  uint64_t t0;

  cleanup_free char *rootfs = NULL;
  if (kyb_rt_spec_rootfs(req->spec, req->bundle, &rootfs, err) < 0)
    return -1;
  cleanup_free char *top = NULL, *images = NULL, *work = NULL;
  if (prepare_work(req->bundle, criu_src, &top, &images, &work, err) < 0) {
    if (top != NULL)
      remove_quietly(top);
    return kyb_error_wrap(err, "prepare the restore in %s", req->bundle);
  }

  t0 = now_ms();
  res->rootfs_partial = true;
  if (kyb_image_apply_rootfs(res->image_dir, manifest, rootfs, NULL, err) < 0) {
    remove_quietly(top);
    return kyb_error_wrap(err, "apply the rootfs diff onto %s", rootfs);
  }
  res->rootfs_partial = false;
  res->rootfs_changed = true;
  res->rootfs_ms = now_ms() - t0;

  t0 = now_ms();
  if (run_restore(req, manifest, images, work, err) < 0) {
    remove_quietly(top);
    return -1;
  }
  res->criu_ms = now_ms() - t0;

  if (gpu != NULL && restore_gpu(req, gpu, res, err) < 0) {
    undo_restored(req, top, err);
    return -1;
  }

  cleanup_free char *content = marker_content(req, res->image_dir);
  if (content == NULL || kyb_rt_marker_set(req->state_dir, kyb_runc_root(req->global),
                                           req->create->id, content, err) < 0) {
    if (content == NULL)
      kyb_error_set(err, ENOMEM, "restore marker");
    /* Without the marker `start` would fail on a running container: undo. */
    undo_restored(req, top, err);
    return -1;
  }
  remove_quietly(top);
  return 0;
}

int kyb_rt_restore(const kyb_rt_restore_req *req, kyb_rt_restore_result *res, kyb_error **err) {
  memset(res, 0, sizeof(*res));
  if (!kyb_runc_id_valid(req->create->id))
    return kyb_error_set(err, EINVAL, "\"%s\" is not a valid container id", req->create->id);
  if (restore(req, res, err) < 0)
    return kyb_error_wrap(err, "restore container %s from checkpoint \"%s\"", req->create->id,
                          req->ref);
  return 0;
}
