/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Recovery from the node's state (recover.h).
 */
#define KYB_LOG_MODULE "recover"

#include "agent/recover.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "containerd/client.h"
#include "containerd/grpc.h"
#include "cuda/driver.h"
#include "cuda/group.h"
#include "image/image.h"
#include "ops/gpu.h"
#include "store/store.h"
#include "util/cleanup.h"
#include "util/log.h"

/* How long recovery waits for a task held by a dump still in flight. */
#define RECOVER_WAIT_MS 120000
#define STOP_WAIT_MS 30000

/* 0 found, 1 not there (no error: containerd said NOT_FOUND), -1 any other
 * failure.  Only containerd's NOT_FOUND counts as "gone": an unreachable
 * socket also carries ENOENT, and must not pass for a vanished container. */
static int find(kyb_ctd_client *ctd, const kyb_agent_recover_target *t, kyb_ctd_container **ct,
                kyb_error **err) {
  int r = t->container_id != NULL ? kyb_ctd_container_get(ctd, t->container_id, ct, err)
                                  : kyb_ctd_container_find_k8s(ctd, t->pod_namespace, t->pod_name,
                                                               t->container_name, ct, err);
  if (r < 0) {
    if (kyb_grpc_status_of(*err) != KYB_GRPC_NOT_FOUND)
      return -1;
    kyb_error_clear(err);
    return 1;
  }
  return t->container_id != NULL ? 0
                                 : kyb_ctd_client_set_namespace(ctd, KYB_CTD_K8S_NAMESPACE, err);
}

/* The task's status; *exists false (and 0) when the container has none.
 * UNKNOWN with *exists is what containerd answers while the shim is busy,
 * e.g. with a checkpoint that outlived its worker. */
static int task_status(kyb_ctd_client *ctd, const char *id, kyb_ctd_task_status *st, bool *exists,
                       kyb_error **err) {
  kyb_ctd_process p = {0};
  *st = KYB_CTD_TASK_UNKNOWN;
  *exists = false;
  if (kyb_ctd_task_get(ctd, id, NULL, &p, err) < 0) {
    if (kyb_grpc_status_of(*err) == KYB_GRPC_NOT_FOUND) {
      kyb_error_clear(err);
      return 0;
    }
    return kyb_error_wrap(err, "task of %s", id);
  }
  *st = p.status;
  *exists = true;
  kyb_ctd_process_clear(&p);
  return 0;
}

/* Not known to run: paused, pausing, or the shim too busy to say. */
static bool held(kyb_ctd_task_status s) {
  return s == KYB_CTD_TASK_PAUSED || s == KYB_CTD_TASK_PAUSING || s == KYB_CTD_TASK_UNKNOWN;
}

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Resume until the task runs.  The runc shim serialises Resume behind a
 * Checkpoint still in flight (a dump that outlived the worker that asked
 * for it): the Resume then waits in the shim until the dump ends, within
 * the client's deadline (RECOVER_WAIT_MS); PAUSING needs a moment to become
 * PAUSED, which is when the shim accepts a Resume. */
static int resume(kyb_ctd_client *ctd, const char *id, kyb_ctd_task_status *st, kyb_error **err) {
  uint64_t until = mono_ms() + RECOVER_WAIT_MS;
  bool exists = true;
  for (int i = 1; held(*st) && exists && mono_ms() < until; i++) {
    cleanup_error kyb_error *rerr = NULL;
    if (kyb_ctd_task_resume(ctd, id, &rerr) < 0)
      log_debug("resume %s (attempt %d): %s", id, i, kyb_error_message(rerr));
    if (task_status(ctd, id, st, &exists, err) < 0)
      return -1;
    if (held(*st) && exists)
      usleep(200 * 1000);
  }
  if (held(*st) && exists)
    return kyb_error_set(err, EBUSY,
                         "container %s is still %s after %d s (a dump that outlived its worker "
                         "may still hold it: containerd answers UNKNOWN while the shim is busy)",
                         id, kyb_ctd_task_status_name(*st), RECOVER_WAIT_MS / 1000);
  return 0;
}

static int stop(kyb_ctd_client *ctd, const char *id, kyb_error **err) {
  if (kyb_ctd_task_kill(ctd, id, NULL, SIGKILL, true, err) < 0)
    return kyb_error_wrap(err, "stop container %s", id);
  /* A frozen cgroup holds SIGKILL until thawed (as in lib/ops/checkpoint). */
  cleanup_error kyb_error *rerr = NULL;
  if (kyb_ctd_task_resume(ctd, id, &rerr) < 0)
    log_debug("resume after kill: %s", kyb_error_message(rerr));
  kyb_ctd_exit ex = {0};
  if (kyb_ctd_task_wait(ctd, id, NULL, STOP_WAIT_MS, &ex, err) < 0)
    return kyb_error_wrap(err, "wait for container %s to stop", id);
  return 0;
}

/* Every CUDA process of the task that is not RUNNING: restore + unlock. */
static int gpu_recover(kyb_ctd_client *ctd, const char *id, kyb_agent_recover_report *out,
                       kyb_error **err) {
  cleanup_free pid_t *pids = NULL;
  size_t n = 0;
  if (kyb_ops_gpu_task_pids(ctd, id, &pids, &n, err) < 0)
    return -1;
  kyb_cuda_driver *drv = NULL;
  int r = kyb_cuda_driver_open(NULL, &drv, err);
  if (r == KYB_CUDA_NO_DRIVER) {
    const char *why = kyb_error_message(*err);
    if (strncmp(why, "no CUDA driver: ", 16) == 0)
      why += 16; /* said once is enough */
    log_info("no CUDA driver: GPU recovery skipped (%s)", why);
    kyb_error_clear(err);
    return 0;
  }
  if (r < 0)
    return kyb_error_wrap(err, "CUDA driver");
  kyb_cuda_group g = {0};
  r = kyb_cuda_group_discover(drv, pids, n, &g, err);
  size_t stuck = 0;
  for (size_t i = 0; r == 0 && i < g.count; i++)
    if (g.procs[i].state != KYB_CU_PROCESS_STATE_RUNNING)
      stuck++;
  out->gpu_processes = g.count;
  if (r == 0 && stuck > 0) {
    log_info("container %s: %zu CUDA process(es) left locked or checkpointed: restoring", id,
             stuck);
    r = kyb_cuda_group_restore(drv, &g, NULL, 0, err);
    size_t still = 0;
    for (size_t i = 0; i < g.count; i++)
      if (g.procs[i].state != KYB_CU_PROCESS_STATE_RUNNING)
        still++;
    out->gpu_restored = stuck - still;
  }
  kyb_cuda_group_release(&g);
  kyb_cuda_driver_close(drv);
  return r;
}

int kyb_agent_recover_container(const kyb_agent_recover_target *t, kyb_agent_recover_report *out,
                                kyb_error **err) {
  memset(out, 0, sizeof(*out));
  kyb_ctd_client_opts copts = {.socket_path = t->address,
                               .ns = t->namespace_ ? t->namespace_ : KYB_CTD_K8S_NAMESPACE,
                               .deadline_ms = RECOVER_WAIT_MS};
  kyb_ctd_client *ctd = NULL;
  if (kyb_ctd_client_new(&copts, &ctd, err) < 0)
    return -1;
  kyb_ctd_container *ct = NULL;
  int r = find(ctd, t, &ct, err);
  if (r != 0) {
    kyb_ctd_container_free(ct);
    kyb_ctd_client_free(ctd);
    return r < 0 ? -1 : 0; /* 1: gone, nothing is left paused or locked */
  }
  out->found = true;
  const char *id = ct->id;
  kyb_ctd_task_status st;
  bool exists = false;
  r = task_status(ctd, id, &st, &exists, err);
  if (r == 0 && exists) {
    out->had_task = true;
    if (t->stop && st != KYB_CTD_TASK_STOPPED) {
      r = stop(ctd, id, err);
      out->stopped = r == 0;
    } else if (held(st)) {
      log_info("container %s is %s: resuming it", id, kyb_ctd_task_status_name(st));
      r = resume(ctd, id, &st, err);
      out->resumed = r == 0 && st == KYB_CTD_TASK_RUNNING;
    }
    /* The GPU state of processes that run on: only a running task can be
     * restored (the driver works through the processes' own threads). */
    if (r == 0 && !t->stop && st == KYB_CTD_TASK_RUNNING)
      r = gpu_recover(ctd, id, out, err);
    cleanup_error kyb_error *serr = NULL;
    kyb_ctd_task_status after;
    bool still = false;
    if (task_status(ctd, id, &after, &still, &serr) == 0)
      snprintf(out->status_after, sizeof(out->status_after), "%s",
               still ? kyb_ctd_task_status_name(after) : "gone");
  }
  if (r < 0)
    kyb_error_wrap(err, "recover container %s", id);
  kyb_ctd_container_free(ct);
  kyb_ctd_client_free(ctd);
  return r;
}

void kyb_agent_recover_describe(const kyb_agent_recover_report *r, const char *what, char *buf,
                                size_t size) {
  if (!r->found) {
    snprintf(buf, size, "%s: no such container any more", what);
    return;
  }
  if (!r->had_task) {
    snprintf(buf, size, "%s: no task (not running)", what);
    return;
  }
  /* A stopped task may have been paused too: whether is not recorded. */
  snprintf(buf, size, "%s: %s; %zu CUDA process(es), %zu restored and unlocked; task now %s", what,
           r->stopped   ? "stopped (hibernation)"
           : r->resumed ? "was paused, resumed"
                        : "was not paused",
           r->gpu_processes, r->gpu_restored, r->status_after[0] ? r->status_after : "gone");
}

/* ---- the store ------------------------------------------------------------------------- */

void kyb_agent_image_info_clear(kyb_agent_image_info *i) {
  if (i == NULL)
    return;
  free(i->ref);
  free(i->digest);
  json_decref(i->gpus);
  json_decref(i->timings);
  memset(i, 0, sizeof(*i));
}

int kyb_agent_image_published(const char *store_uri, const char *name, kyb_agent_image_info *info,
                              kyb_error **err) {
  kyb_store *s = NULL;
  if (kyb_store_open(store_uri, 0, &s, err) < 0) {
    if (kyb_error_code(*err) == ENOENT) { /* no store directory: nothing was published */
      kyb_error_clear(err);
      return 0;
    }
    return -1;
  }
  kyb_image_summary sum = {0};
  int r = kyb_store_stat(s, name, &sum, err);
  if (r < 0) {
    kyb_store_close(s);
    if (kyb_error_code(*err) == ENOENT) {
      kyb_error_clear(err);
      return 0;
    }
    return kyb_error_wrap(err, "image %s", name);
  }
  bool remote = strncmp(store_uri, "file://", 7) != 0;
  if (sum.error != NULL) {
    r = kyb_error_set(err, EINVAL, "image %s is in the store but unusable: %s", name, sum.error);
  } else if (info != NULL && remote) {
    /* Reading the manifest of a remote image means downloading it: the
     * listing's word is enough here (the worker reported the digest). */
    info->size = sum.size;
    info->ref = kyb_image_ref_format(kyb_store_uri(s), name);
    if (info->ref == NULL)
      r = kyb_error_set(err, ENOMEM, "image ref");
  } else if (info != NULL) {
    info->size = sum.size;
    info->ref = kyb_image_ref_format(kyb_store_uri(s), name);
    cleanup_free char *path = NULL;
    cleanup_json json_t *m = NULL;
    /* A file:// store: the image itself, nothing is copied. */
    if (info->ref == NULL)
      r = kyb_error_set(err, ENOMEM, "image ref");
    else if (kyb_store_get_path(s, name, &path, err) < 0 ||
             kyb_image_load_manifest(path, &m, err) < 0 ||
             kyb_image_digest(path, &info->digest, err) < 0)
      r = kyb_error_wrap(err, "image %s", name);
    if (r == 0) {
      json_t *g = json_object_get(m, "gpus");
      info->gpus = json_is_array(g) ? json_incref(g) : NULL;
      json_t *t = json_object_get(m, "timings");
      info->timings = json_is_object(t) ? json_incref(t) : NULL;
    } else {
      kyb_agent_image_info_clear(info);
    }
  }
  kyb_image_summary_release(&sum);
  kyb_store_close(s);
  return r < 0 ? -1 : 1;
}

size_t kyb_agent_store_cleanup(const char *store_uri) {
  /* Remote stores are the uploader's to clean (it holds the credentials);
   * the agent cleans the node's own directories. */
  if (store_uri == NULL || strncmp(store_uri, "file://", 7) != 0)
    return 0;
  kyb_store *s = NULL;
  cleanup_error kyb_error *err = NULL;
  size_t removed = 0;
  if (kyb_store_open(store_uri, 0, &s, &err) < 0) {
    if (kyb_error_code(err) != ENOENT)
      log_warn_chain(err, "clean up store %s", store_uri);
    return 0;
  }
  if (kyb_store_cleanup(s, 0, &removed, &err) < 0)
    log_warn_chain(err, "clean up store %s", store_uri);
  else if (removed > 0)
    log_info("removed %zu staging leftover(s) from %s", removed, store_uri);
  kyb_store_close(s);
  return removed;
}

int kyb_agent_image_delete(const char *store_uri, const char *name, bool *existed,
                           kyb_error **err) {
  *existed = false;
  kyb_store *s = NULL;
  if (kyb_store_open(store_uri, 0, &s, err) < 0) {
    if (kyb_error_code(*err) == ENOENT) {
      kyb_error_clear(err);
      return 0;
    }
    return -1;
  }
  int r = kyb_store_delete(s, name, err);
  if (r < 0 && kyb_error_code(*err) == ENOENT) {
    kyb_error_clear(err);
    r = 0;
  } else if (r == 0) {
    *existed = true;
  }
  kyb_store_close(s);
  return r;
}
