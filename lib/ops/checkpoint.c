/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint operation.  See checkpoint.h for the order of steps and the
 * rollback contract.
 */
#define KYB_LOG_MODULE "checkpoint"

#include "ops/checkpoint.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "containerd/client.h"
#include "containerd/snapshots.h"
#include "image/image.h"
#include "ops/criu_log.h"
#include "ops/gpu.h"
#include "ops/interrupt.h"
#include "store/store.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "version.h"

#define DEFAULT_NAMESPACE "default"
#define DEFAULT_DUMP_TIMEOUT_MS (30LL * 60 * 1000)
#define CRIU_ERROR_LINES 8
/* Less free space than this after a failed dump: the store was full. */
#define STORE_FULL_BYTES (4u << 20)

/* Everything one checkpoint holds; released in one place. */
typedef struct {
  const kyb_checkpoint_opts *opts;
  kyb_ctd_client *ctd;
  kyb_ctd_container *ct;
  kyb_store *store;
  kyb_staging *staging;
  kyb_image_builder *builder;
  char *criu_dir;
  char *work_dir;
  json_t *spec;     /* the container's OCI spec */
  kyb_ops_gpu *gpu; /* NULL: nothing done on the GPU */
  bool paused;
  uint64_t frozen_at; /* when the workload stopped making progress (GPU lock) */
  uint64_t phase_start;
  const char *phase; /* the phase under way, for an interrupt's message */
  int interrupt_sig; /* the signal that stopped the operation; 0: none */
  char interrupt_where[48];
} op_ctx;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void phase_begin(op_ctx *c, const char *phase) {
  c->phase_start = now_ms();
  c->phase = phase;
  log_debug("%s ...", phase);
  if (c->opts->progress)
    c->opts->progress(c->opts->progress_ud, phase, false, 0);
}

/* Ends a phase: its duration goes to the progress callback and, when the
 * builder exists, into the manifest's timings. */
static int phase_end(op_ctx *c, const char *phase, kyb_error **err) {
  uint64_t ms = now_ms() - c->phase_start;
  log_debug("%s done in %llu ms", phase, (unsigned long long)ms);
  if (c->opts->progress)
    c->opts->progress(c->opts->progress_ud, phase, true, ms);
  if (c->builder != NULL)
    return kyb_image_builder_set_timing(c->builder, phase, ms, err);
  return 0;
}

static void op_ctx_release(op_ctx *c) {
  kyb_ops_gpu_free(c->gpu);
  json_decref(c->spec);
  kyb_image_builder_free(c->builder);
  kyb_staging_free(c->staging); /* removes the staging dir unless published */
  kyb_store_close(c->store);
  kyb_ctd_container_free(c->ct);
  kyb_ctd_client_free(c->ctd);
  free(c->criu_dir);
  free(c->work_dir);
}

void kyb_checkpoint_result_clear(kyb_checkpoint_result *r) {
  if (r == NULL)
    return;
  free(r->container_id);
  free(r->name);
  free(r->ref);
  free(r->digest);
  memset(r, 0, sizeof(*r));
}

static int pending_signal(const op_ctx *c) {
  return c->opts->interrupted != NULL ? (int)*c->opts->interrupted : 0;
}

/* A signal the caller caught (opts->interrupted) ends the checkpoint here, at
 * a phase boundary, and the failure takes the rollback every failure takes. */
static int check_interrupt(op_ctx *c, const char *where, kyb_error **err) {
  int sig = pending_signal(c);
  if (sig == 0)
    return 0;
  c->interrupt_sig = sig;
  snprintf(c->interrupt_where, sizeof(c->interrupt_where), "%s", where);
  log_warn("interrupted by %s %s: rolling back, please wait", kyb_interrupt_name(sig), where);
  return kyb_error_set(err, 0, "interrupted by %s (%s)", kyb_interrupt_name(sig), where);
}

/* The store's stop callback: a remote store's upload ends on a signal too. */
static int stop_on_interrupt(void *ud) {
  return pending_signal(ud) != 0;
}

static int find_container(op_ctx *c, kyb_error **err) {
  const kyb_checkpoint_opts *o = c->opts;
  if (o->container != NULL) {
    if (kyb_ctd_container_get(c->ctd, o->container, &c->ct, err) < 0) {
      if (kyb_grpc_status_of(*err) == KYB_GRPC_NOT_FOUND)
        return kyb_error_set(err, ENOENT, "container %s not found in namespace %s", o->container,
                             kyb_ctd_client_namespace(c->ctd));
      return -1;
    }
    return 0;
  }
  if (o->pod_namespace == NULL || o->pod_name == NULL || o->container_name == NULL)
    return kyb_error_set(err, EINVAL,
                         "no container given (a container id, or pod namespace, "
                         "pod name and container name)");
  if (kyb_ctd_container_find_k8s(c->ctd, o->pod_namespace, o->pod_name, o->container_name, &c->ct,
                                 err) < 0)
    return -1;
  /* Task calls go to the namespace the CRI plugin uses. */
  return kyb_ctd_client_set_namespace(c->ctd, KYB_CTD_K8S_NAMESPACE, err);
}

static int require_running(op_ctx *c, kyb_error **err) {
  kyb_ctd_process p = {0};
  if (kyb_ctd_task_get(c->ctd, c->ct->id, NULL, &p, err) < 0) {
    if (kyb_grpc_status_of(*err) == KYB_GRPC_NOT_FOUND)
      return kyb_error_set(err, ESRCH, "container %s is not running (it has no task)", c->ct->id);
    return kyb_error_wrap(err, "get task of %s", c->ct->id);
  }
  kyb_ctd_task_status st = p.status;
  kyb_ctd_process_clear(&p);
  if (st != KYB_CTD_TASK_RUNNING)
    return kyb_error_set(err, ESRCH, "container %s is not running (task status %s)", c->ct->id,
                         kyb_ctd_task_status_name(st));
  return 0;
}

/* A pod fact: kubelet's label on the container, else the annotation
 * containerd's CRI plugin itself puts into the spec (a CRI client other than
 * kubelet may not set the labels). */
static const char *pod_fact(const kyb_ctd_container *ct, const json_t *spec, const char *label,
                            const char *annotation) {
  const char *v = kyb_ctd_container_label(ct, label);
  if (v != NULL && *v != '\0')
    return v;
  v = json_string_value(json_object_get(json_object_get(spec, "annotations"), annotation));
  return (v != NULL && *v != '\0') ? v : NULL;
}

static int describe_source(op_ctx *c, kyb_error **err) {
  const kyb_ctd_container *ct = c->ct;
  json_error_t jerr;
  cleanup_json json_t *spec =
      json_loadb(ct->spec_json ? ct->spec_json : "", ct->spec_len, 0, &jerr);
  if (spec == NULL || !json_is_object(spec))
    return kyb_error_set(err, EINVAL, "container %s has no usable OCI spec: %s", ct->id,
                         spec ? "not an object" : jerr.text);
  /* The image's top layer the rootfs sits on: restore prepares its new
   * rootfs from it.  Unknown is not fatal to a checkpoint. */
  cleanup_free char *parent = NULL;
  cleanup_error kyb_error *perr = NULL;
  if (ct->snapshotter != NULL && *ct->snapshotter && ct->snapshot_key != NULL &&
      *ct->snapshot_key &&
      kyb_ctd_snapshot_parent(c->ctd, ct->snapshotter, ct->snapshot_key, &parent, &perr) < 0)
    log_warn_chain(perr, "snapshot parent of %s unknown", ct->id);
  kyb_image_source src = {
      .snapshot_parent = parent,
      .container_id = ct->id,
      .namespace_ = kyb_ctd_client_namespace(c->ctd),
      .image_ref = ct->image,
      .snapshotter = ct->snapshotter,
      .pod_name = pod_fact(ct, spec, KYB_CTD_LABEL_POD_NAME, "io.kubernetes.cri.sandbox-name"),
      .pod_namespace =
          pod_fact(ct, spec, KYB_CTD_LABEL_POD_NAMESPACE, "io.kubernetes.cri.sandbox-namespace"),
      .pod_uid = pod_fact(ct, spec, KYB_CTD_LABEL_POD_UID, "io.kubernetes.cri.sandbox-uid"),
      .container_name =
          pod_fact(ct, spec, KYB_CTD_LABEL_CONTAINER_NAME, "io.kubernetes.cri.container-name"),
  };
  if (kyb_image_builder_set_source(c->builder, &src, err) < 0)
    return -1;
  kyb_ctd_runc_options ro = {0};
  if (kyb_ctd_container_runc_options(ct, &ro, err) < 0)
    return kyb_error_wrap(err, "runtime options of %s", ct->id);
  int r = kyb_image_builder_set_runtime(c->builder, spec, ct->runtime_name, ro.binary_name, err);
  kyb_ctd_runc_options_clear(&ro);
  c->spec = steal_ptr(spec); /* the GPU step reads the container's GPUs from it */
  return r;
}

static int stage_image(op_ctx *c, kyb_error **err) {
  const kyb_checkpoint_opts *o = c->opts;
  if (kyb_store_open(o->store_uri, KYB_STORE_CREATE, &c->store, err) < 0)
    return -1;
  if (o->transfer_progress != NULL)
    kyb_store_set_progress(c->store, o->transfer_progress, o->transfer_progress_ud);
  if (o->interrupted != NULL)
    kyb_store_set_stop(c->store, stop_on_interrupt, c);
  cleanup_free char *name = NULL;
  if (o->name != NULL) {
    if (kyb_image_name_check(o->name, err) < 0)
      return -1;
    name = strdup(o->name);
  } else {
    const char *base = kyb_ctd_container_label(c->ct, KYB_CTD_LABEL_CONTAINER_NAME);
    if (kyb_image_name_default(base ? base : c->ct->id, time(NULL), &name, err) < 0)
      return -1;
  }
  if (name == NULL)
    return kyb_error_set(err, ENOMEM, "image name");
  if (kyb_store_stage(c->store, name, &c->staging, err) < 0)
    return -1;
  const char *dir = kyb_staging_path(c->staging);
  c->criu_dir = kyb_path_join(dir, KYB_IMAGE_CRIU_DIR);
  /* CRIU's work dir (its log) sits beside the image, not in it. */
  c->work_dir = kyb_path_join(dir, "criu-work");
  if (c->criu_dir == NULL || c->work_dir == NULL)
    return kyb_error_set(err, ENOMEM, "staging paths");
  if (kyb_mkdir_p(c->criu_dir, 0700, err) < 0 || kyb_mkdir_p(c->work_dir, 0700, err) < 0)
    return -1;
  c->builder = kyb_image_builder_new(dir, name, err);
  return c->builder ? 0 : -1;
}

/* The CRIU dump through containerd.  The task is paused; runc hands CRIU the
 * frozen cgroup and CRIU leaves it frozen, so nothing runs until step 6. */
/* A full store is the commonest reason a dump fails, and CRIU's log is
 * written into the same file system, so the line that says so can be cut
 * short by the very lack of space: say it from statvfs.  NULL when the file
 * system has room. */
static char *store_full_note(const char *dir) {
  struct statvfs sv;
  if (dir == NULL || statvfs(dir, &sv) < 0)
    return NULL;
  uint64_t avail = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
  if (avail >= STORE_FULL_BYTES)
    return NULL;
  char *s = NULL;
  if (asprintf(&s, "the store's file system is full (%llu bytes free under %s)",
               (unsigned long long)avail, dir) < 0)
    return NULL;
  return s;
}

static int dump(op_ctx *c, kyb_error **err) {
  const kyb_checkpoint_opts *o = c->opts;
  kyb_ctd_checkpoint_opts co = {
      .exit = false,
      .open_tcp = o->open_tcp,
      .file_locks = o->file_locks,
      .external_unix_sockets = o->external_unix_sockets,
      .image_path = c->criu_dir,
      .work_path = c->work_dir,
  };
  int64_t deadline = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_DUMP_TIMEOUT_MS;
  if (kyb_ctd_task_checkpoint(c->ctd, c->ct->id, &co, deadline, NULL, NULL, err) == 0)
    return 0;
  cleanup_free char *log = kyb_path_join(c->work_dir, "dump.log");
  cleanup_free char *lines = log ? kyb_criu_log_errors(log, CRIU_ERROR_LINES) : NULL;
  cleanup_free char *full = store_full_note(c->criu_dir);
  if (lines == NULL)
    return full ? kyb_error_wrap(err, "CRIU dump failed: %s", full)
                : kyb_error_wrap(err, "CRIU dump failed");
  /* CRIU's own words say why; containerd's message only says that runc
   * failed.  Keep both, CRIU's lines first: they name the cause. */
  kyb_error *inner = *err;
  *err = NULL;
  kyb_error_set(err, kyb_error_code(inner),
                "CRIU dump failed%s%s; CRIU's log says:\n%s\n(containerd: %s)", full ? ": " : "",
                full ? full : "", lines, kyb_error_message(inner));
  kyb_error_free(inner);
  return -1;
}

static int rootfs_diff(op_ctx *c, kyb_error **err) {
  const kyb_ctd_container *ct = c->ct;
  if (ct->snapshotter == NULL || ct->snapshot_key == NULL || !*ct->snapshotter ||
      !*ct->snapshot_key)
    return kyb_error_set(err, ENOTSUP,
                         "container %s has no snapshot (rootfs not managed by "
                         "containerd): its writable layer cannot be saved",
                         ct->id);
  kyb_ctd_mount *mounts = NULL;
  size_t n = 0;
  if (kyb_ctd_snapshot_mounts(c->ctd, ct->snapshotter, ct->snapshot_key, &mounts, &n, err) < 0)
    return kyb_error_wrap(err, "rootfs of %s", ct->id);
  const char *upper = NULL;
  for (size_t i = 0; i < n && upper == NULL; i++)
    if (mounts[i].type != NULL && strcmp(mounts[i].type, "overlay") == 0)
      upper = kyb_ctd_mount_option(&mounts[i], "upperdir");
  int r;
  if (upper == NULL)
    r = kyb_error_set(err, ENOTSUP,
                      "container %s uses snapshotter %s without an overlay upper dir: only "
                      "overlayfs writable layers can be saved",
                      ct->id, ct->snapshotter);
  else
    r = kyb_image_builder_write_rootfs_diff(c->builder, upper, err);
  kyb_ctd_mounts_free(mounts, n);
  return r;
}

static int record_versions(op_ctx *c, kyb_error **err) {
  cleanup_free char *log = kyb_path_join(c->work_dir, "dump.log");
  cleanup_free char *criu = log ? kyb_criu_log_version(log) : NULL;
  kyb_ctd_version v = {0};
  cleanup_error kyb_error *verr = NULL;
  if (kyb_ctd_version_get(c->ctd, &v, &verr) < 0)
    log_warn_chain(verr, "containerd version unknown");
  kyb_image_versions vers = {.kybernate = KYB_VERSION, .criu = criu, .containerd = v.version};
  int r = kyb_image_builder_set_versions(c->builder, &vers, err);
  kyb_ctd_version_clear(&v);
  return r;
}

static int set_options(op_ctx *c, kyb_error **err) {
  kyb_image_options io = {.leave_running = c->opts->leave_running,
                          .tcp_established = c->opts->open_tcp,
                          .ext_unix_sk = c->opts->external_unix_sockets,
                          .file_locks = c->opts->file_locks};
  return kyb_image_builder_set_options(c->builder, &io, err);
}

/* GPU (DESIGN.md checkpoint flow, step 4), before the pause: the driver
 * works through the processes' own threads, so they must still run. */
static int gpu_checkpoint(op_ctx *c, kyb_error **err) {
  cleanup_free pid_t *pids = NULL;
  size_t n = 0;
  kyb_ops_gpu_opts go = {.spec = c->spec,
                         .lock_timeout_ms = c->opts->gpu_lock_timeout_ms,
                         .progress = c->opts->progress,
                         .progress_ud = c->opts->progress_ud};
  if (kyb_ops_gpu_task_pids(c->ctd, c->ct->id, &pids, &n, err) < 0)
    return -1;
  return kyb_ops_gpu_checkpoint(&go, pids, n, c->builder, &c->gpu, err);
}

/* Rollback: a paused task is resumed so the workload goes on.  A failure
 * here is added to the error the caller reports: the container is frozen and
 * someone must know. */
static int resume_after_failure(op_ctx *c, kyb_error **err) {
  if (!c->paused)
    return 0;
  cleanup_error kyb_error *rerr = NULL;
  if (kyb_ctd_task_resume(c->ctd, c->ct->id, &rerr) < 0) {
    /* Someone may have resumed it meanwhile: what matters is that it runs. */
    kyb_ctd_process p = {0};
    cleanup_error kyb_error *gerr = NULL;
    bool running = kyb_ctd_task_get(c->ctd, c->ct->id, NULL, &p, &gerr) == 0 &&
                   p.status == KYB_CTD_TASK_RUNNING;
    kyb_ctd_process_clear(&p);
    if (!running) {
      log_error_chain(rerr, "rollback: resuming %s failed; the container stays paused", c->ct->id);
      return kyb_error_wrap(err, "rollback failed too (container %s is still paused: %s) after",
                            c->ct->id, kyb_error_message(rerr));
    }
  }
  c->paused = false;
  log_info("rollback: container %s resumed", c->ct->id);
  return 0;
}

/* --leave-running, once the image's files are complete (CRIU dump and rootfs
 * diff): the workload runs again and its CUDA processes get their GPU state
 * back, while the image is hashed and published.  Packaging a 16 GiB image
 * took 22 s on the H200, all of it downtime when it ran before the resume.
 * A failed GPU restore leaves the image valid: it goes to *gpu_err and is
 * reported after the publish. */
static int resume_workload(op_ctx *c, kyb_error **gpu_err, kyb_error **err) {
  const char *id = c->ct->id;
  phase_begin(c, "resume");
  if (kyb_ctd_task_resume(c->ctd, id, err) < 0)
    return kyb_error_wrap(err, "resume container %s after the dump", id);
  c->paused = false;
  if (phase_end(c, "resume", err) < 0)
    return -1;
  /* Running again: its CUDA processes get their GPU state back.  Before the
   * manifest is written, so its timings hold the GPU restore too. */
  uint64_t t0 = now_ms();
  if (kyb_ops_gpu_restore(c->gpu, gpu_err) < 0)
    return 0;
  if (c->gpu != NULL &&
      kyb_image_builder_set_timing(c->builder, "gpu_restore", now_ms() - t0, err) < 0)
    return -1;
  log_info(
      "container %s runs again %llu ms after it was stopped%s; the image is packaged meanwhile", id,
      (unsigned long long)(now_ms() - c->frozen_at),
      c->gpu != NULL ? " (GPU lock to GPU restore)" : "");
  return 0;
}

/* Without --leave-running, after the image is published: end the workload. */
static int stop_task(op_ctx *c, kyb_error **err) {
  const char *id = c->ct->id;
  if (kyb_ctd_task_kill(c->ctd, id, NULL, SIGKILL, true, err) < 0)
    return kyb_error_wrap(err, "stop container %s after checkpoint", id);
  c->paused = false; /* it is ending: nothing to roll back any more */
  /* Its GPU state ends with it: nothing to restore either. */
  kyb_ops_gpu_forget(c->gpu);
  /* A cgroup v1 freezer holds even SIGKILL until thawed.  runc thaws the
   * cgroup itself when it signals every process, but containerd may still
   * call the task paused: ask for a resume and accept "not paused". */
  cleanup_error kyb_error *rerr = NULL;
  if (kyb_ctd_task_resume(c->ctd, id, &rerr) < 0)
    log_debug("resume after kill: %s", kyb_error_message(rerr));
  kyb_ctd_exit ex = {0};
  if (kyb_ctd_task_wait(c->ctd, id, NULL, 30000, &ex, err) < 0) {
    /* Whoever owns the container may delete its task as soon as it exits
     * (the CRI plugin does for a pod's container): gone is stopped. */
    if (err != NULL && kyb_grpc_status_of(*err) == KYB_GRPC_NOT_FOUND) {
      log_debug("task %s already deleted after the kill: %s", id, kyb_error_message(*err));
      kyb_error_clear(err);
      return 0;
    }
    return kyb_error_wrap(err, "wait for container %s to stop after checkpoint", id);
  }
  return 0;
}

static int run(op_ctx *c, kyb_checkpoint_result *out, kyb_error **err) {
  const kyb_checkpoint_opts *o = c->opts;
  kyb_ctd_client_opts copts = {.socket_path = o->address,
                               .ns = o->namespace_ ? o->namespace_ : DEFAULT_NAMESPACE};
  if (kyb_ctd_client_new(&copts, &c->ctd, err) < 0)
    return -1;
  if (find_container(c, err) < 0 || require_running(c, err) < 0)
    return -1;
  if (stage_image(c, err) < 0 || describe_source(c, err) < 0 || set_options(c, err) < 0)
    return -1;
  log_info("checkpoint of %s into %s/%s", c->ct->id, kyb_store_uri(c->store),
           kyb_staging_name(c->staging));
  if (check_interrupt(c, "before the GPU lock", err) < 0)
    return -1;
  c->phase = "gpu_checkpoint";
  c->frozen_at = now_ms();
  if (gpu_checkpoint(c, err) < 0)
    return -1;
  if (check_interrupt(c, "after the GPU checkpoint", err) < 0)
    return -1;

  phase_begin(c, "pause");
  if (kyb_ctd_task_pause(c->ctd, c->ct->id, err) < 0)
    return kyb_error_wrap(err, "pause container %s", c->ct->id);
  c->paused = true;
  if (phase_end(c, "pause", err) < 0 || check_interrupt(c, "after the pause", err) < 0)
    return -1;

  phase_begin(c, "criu_dump");
  if (dump(c, err) < 0 || phase_end(c, "criu_dump", err) < 0)
    return -1;
  if (check_interrupt(c, "after the CRIU dump", err) < 0 || record_versions(c, err) < 0)
    return -1;
  cleanup_error kyb_error *rmerr = NULL;
  if (kyb_remove_tree(c->work_dir, &rmerr) < 0)
    log_warn_chain(rmerr, "CRIU work dir left behind");

  /* The builder times "rootfs_diff" itself. */
  if (o->progress)
    o->progress(o->progress_ud, "rootfs_diff", false, 0);
  uint64_t t0 = now_ms();
  c->phase = "rootfs_diff";
  if (rootfs_diff(c, err) < 0)
    return -1;
  if (o->progress)
    o->progress(o->progress_ud, "rootfs_diff", true, now_ms() - t0);
  if (check_interrupt(c, "after the rootfs diff", err) < 0)
    return -1;
  cleanup_error kyb_error *gpu_err = NULL;
  if (o->leave_running && resume_workload(c, &gpu_err, err) < 0)
    return -1;

  phase_begin(c, "package");
  cleanup_free char *digest = NULL;
  if (kyb_image_builder_finish(c->builder, &digest, err) < 0)
    return kyb_error_wrap(err, "write image manifest");
  /* The last way back: once published, the operation finishes. */
  if (check_interrupt(c, "before the publish", err) < 0)
    return -1;
  if (kyb_store_put(c->store, c->staging, err) < 0)
    return kyb_error_wrap(err, "publish image %s", kyb_staging_name(c->staging));
  if (o->progress)
    o->progress(o->progress_ud, "package", true, now_ms() - c->phase_start);

  kyb_image_summary sum = {0};
  cleanup_error kyb_error *serr = NULL;
  if (kyb_store_stat(c->store, kyb_staging_name(c->staging), &sum, &serr) == 0)
    out->size = sum.size;
  kyb_image_summary_release(&sum);
  out->name = strdup(kyb_staging_name(c->staging));
  out->container_id = strdup(c->ct->id);
  out->digest = steal_ptr(digest);
  out->ref = out->name ? kyb_image_ref_format(kyb_store_uri(c->store), out->name) : NULL;
  if (out->name == NULL || out->container_id == NULL || out->ref == NULL)
    return kyb_error_set(err, ENOMEM, "checkpoint result");

  if (gpu_err != NULL) {
    if (err != NULL) {
      kyb_error_clear(err);
      *err = steal_ptr(gpu_err);
    }
    return kyb_error_wrap(err, "image %s was published, but", out->ref);
  }
  if (o->leave_running)
    return 0;
  phase_begin(c, "stop");
  if (stop_task(c, err) < 0)
    return kyb_error_wrap(err, "image %s was published, but", out->ref);
  if (o->progress)
    o->progress(o->progress_ud, "stop", true, now_ms() - c->phase_start);
  return 0;
}

/* A failure while a signal was pending (an EINTR, a cancelled upload, or a
 * mere coincidence) is reported as the interrupt it ends in; its own words
 * go to the log.  Not before the image is staged: until then the failure
 * (no such container, not running) says more than the signal. */
static void note_late_interrupt(op_ctx *c, const kyb_checkpoint_result *out, kyb_error **err) {
  int sig = pending_signal(c);
  if (c->interrupt_sig != 0 || sig == 0 || c->staging == NULL || out->ref != NULL)
    return;
  c->interrupt_sig = sig;
  snprintf(c->interrupt_where, sizeof(c->interrupt_where), "during %s",
           c->phase != NULL ? c->phase : "the staging");
  log_warn("interrupted by %s %s (%s): rolling back, please wait", kyb_interrupt_name(sig),
           c->interrupt_where, kyb_error_message(*err));
  kyb_error_set(err, 0, "interrupted by %s (%s)", kyb_interrupt_name(sig), c->interrupt_where);
}

/* An interrupt rolled back cleanly: the one thing to say. */
static void report_interrupt(const op_ctx *c, kyb_error **err) {
  const char *name = kyb_interrupt_name(c->interrupt_sig);
  log_info("interrupted by %s: rolled back", name);
  kyb_error_set(err, 0, "interrupted by %s (%s): rolled back, the container keeps running", name,
                c->interrupt_where);
}

int kyb_checkpoint(const kyb_checkpoint_opts *opts, kyb_checkpoint_result *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  op_ctx c = {.opts = opts};
  uint64_t t0 = now_ms();
  int r = run(&c, out, err);
  if (r < 0) {
    note_late_interrupt(&c, out, err);
    int rolled = resume_after_failure(&c, err);
    /* needs the task running */
    if (kyb_ops_gpu_rollback(c.gpu, !c.paused, err) < 0)
      rolled = -1;
    if (c.interrupt_sig != 0 && rolled == 0)
      report_interrupt(&c, err);
    const char *what = c.ct ? c.ct->id : (opts->container ? opts->container : opts->pod_name);
    kyb_error_wrap(err, "checkpoint %s", what ? what : "?");
    /* A published image stays valid even when stopping the task failed. */
    if (out->ref == NULL)
      kyb_checkpoint_result_clear(out);
  }
  out->total_ms = now_ms() - t0;
  op_ctx_release(&c);
  return r;
}
