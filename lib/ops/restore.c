/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The restore operation.  See restore.h for the steps and the cleanup rule.
 */
#define KYB_LOG_MODULE "restore"

#include "ops/restore.h"

#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "containerd/client.h"
#include "containerd/snapshots.h"
#include "cuda/visible.h"
#include "image/image.h"
#include "ops/gpu_spec.h"
#include "store/store.h"
#include "util/cleanup.h"
#include "util/log.h"

#define DEFAULT_NAMESPACE "default"
#define RUNTIME_BINARY "kybernate-runc"

/* What has been created so far, so a failure removes exactly that. */
typedef struct {
  kyb_ctd_client *ctd;
  const char *id;
  char *snapshotter; /* owned: outlives the manifest it came from */
  bool container;
  bool snapshot;
  bool task;
} created;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void kyb_restore_result_clear(kyb_restore_result *r) {
  if (r == NULL)
    return;
  free(r->container_id);
  free(r->ref);
  memset(r, 0, sizeof(*r));
}

/* kybernate-runc beside this program (the build or install folder), else
 * the one on PATH.  The shim needs a path it can exec. */
static char *find_runtime_binary(void) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    self[n] = '\0';
    char *dir = dirname(self);
    char *cand = NULL;
    if (asprintf(&cand, "%s/%s", dir, RUNTIME_BINARY) >= 0) {
      if (access(cand, X_OK) == 0)
        return cand;
      free(cand);
    }
  }
  const char *path = getenv("PATH");
  cleanup_free char *copy = strdup(path ? path : "/usr/local/bin:/usr/bin:/bin");
  char *save = NULL;
  for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d; d = strtok_r(NULL, ":", &save)) {
    char *cand = NULL;
    if (asprintf(&cand, "%s/%s", d, RUNTIME_BINARY) < 0)
      return NULL;
    if (access(cand, X_OK) == 0)
      return cand;
    free(cand);
  }
  return NULL;
}

static void undo(created *c) {
  cleanup_error kyb_error *e = NULL;
  if (c->task) {
    kyb_ctd_task_kill(c->ctd, c->id, NULL, 9, true, &e);
    kyb_error_clear(&e);
    if (kyb_ctd_task_delete(c->ctd, c->id, NULL, &e) < 0)
      log_warn_chain(e, "cleanup: delete task %s", c->id);
    kyb_error_clear(&e);
  }
  if (c->snapshot && kyb_ctd_snapshot_remove(c->ctd, c->snapshotter, c->id, &e) < 0)
    log_warn_chain(e, "cleanup: remove snapshot %s", c->id);
  kyb_error_clear(&e);
  if (c->container && kyb_ctd_container_delete(c->ctd, c->id, &e) < 0)
    log_warn_chain(e, "cleanup: delete container %s", c->id);
}

/* --gpus: the new container gets exactly these GPUs (ops/gpu_spec.h).
 * Checked against the image here, before anything is created; whether they
 * fit (model, memory) is kybernate-runc's to decide, with the driver. */
static int give_gpus(const kyb_restore_opts *o, const json_t *manifest, json_t *spec,
                     kyb_error **err) {
  kyb_cuda_visible v = {0};
  if (kyb_cuda_visible_parse(o->gpus, "--gpus", o->nvidia_proc, &v, err) < 0)
    return -1;
  const json_t *recorded = json_object_get(manifest, "gpus");
  size_t nrec = json_is_array(recorded) ? json_array_size(recorded) : 0;
  int r = 0;
  if (v.all)
    r = kyb_error_set(err, EINVAL,
                      "--gpus all: name the GPUs (indices or UUIDs), or leave --gpus out to keep "
                      "the recorded ones");
  else if (v.count == 0 && nrec > 0)
    r = kyb_error_set(err, EINVAL,
                      "--gpus %s: the image holds GPU state of %zu GPU(s), which must be "
                      "restored onto GPUs",
                      o->gpus, nrec);
  else if (v.count < nrec)
    r = kyb_error_set(err, EINVAL,
                      "--gpus gives %zu GPU(s), and the image holds GPU state of %zu: the "
                      "driver restores only with every checkpointed GPU paired",
                      v.count, nrec);
  else
    r = kyb_ops_spec_set_gpus(spec, &v, o->nvidia_proc, err);
  if (r == 0) {
    cleanup_free char *which = kyb_cuda_visible_describe(&v);
    log_info("the new container's GPUs: %s", which ? which : "?");
  }
  kyb_cuda_visible_clear(&v);
  return r;
}

/* The recorded spec, made the new container's: the restore annotation, a
 * cgroup of its own (the old one belongs to the old container), and the
 * GPUs of --gpus. */
static char *new_spec(const kyb_restore_opts *o, const json_t *manifest, const char *ref,
                      kyb_error **err) {
  const char *new_id = o->name;
  json_t *spec = json_object_get(json_object_get(manifest, "runtime"), "spec");
  if (!json_is_object(spec)) {
    kyb_error_set(err, EINVAL, "the image records no OCI spec");
    return NULL;
  }
  cleanup_json json_t *s = json_deep_copy(spec);
  if (s == NULL) {
    kyb_error_set(err, ENOMEM, "spec");
    return NULL;
  }
  json_t *ann = json_object_get(s, "annotations");
  if (!json_is_object(ann)) {
    ann = json_object();
    json_object_set_new(s, "annotations", ann);
  }
  json_object_set_new(ann, KYB_ANNOTATION_RESTORE_FROM, json_string(ref));
  json_t *linux_ = json_object_get(s, "linux");
  const char *cg = json_string_value(json_object_get(linux_, "cgroupsPath"));
  if (cg != NULL) {
    const char *slash = strrchr(cg, '/');
    size_t dirlen = slash ? (size_t)(slash - cg) : 0;
    cleanup_free char *ncg = NULL;
    /* "/parent/<old id>" -> "/parent/<new id>"; the systemd form
     * "slice:prefix:name" keeps its slice and prefix. */
    if (strchr(cg, ':') != NULL) {
      const char *colon = strrchr(cg, ':');
      if (asprintf(&ncg, "%.*s:%s", (int)(colon - cg), cg, new_id) < 0)
        ncg = NULL;
    } else if (asprintf(&ncg, "%.*s/%s", (int)dirlen, cg, new_id) < 0) {
      ncg = NULL;
    }
    if (ncg == NULL) {
      kyb_error_set(err, ENOMEM, "spec");
      return NULL;
    }
    json_object_set_new(linux_, "cgroupsPath", json_string(ncg));
  }
  if (o->gpus != NULL && give_gpus(o, manifest, s, err) < 0)
    return NULL;
  char *out = json_dumps(s, JSON_COMPACT);
  if (out == NULL)
    kyb_error_set(err, ENOMEM, "spec");
  return out;
}

static int run(const kyb_restore_opts *o, created *c, kyb_restore_result *out, kyb_error **err) {
  /* 1. the image: found and its manifest validated here; every digest is
   * verified by kybernate-runc before it restores. */
  cleanup_free char *store_uri = NULL, *name = NULL;
  if (kyb_image_ref_parse(o->ref, o->store_uri, &store_uri, &name, err) < 0)
    return -1;
  kyb_store *store = NULL;
  if (kyb_store_open(store_uri, o->store_flags, &store, err) < 0)
    return -1;
  if (o->transfer_progress != NULL)
    kyb_store_set_progress(store, o->transfer_progress, o->transfer_progress_ud);
  cleanup_free char *dir = NULL;
  int r = kyb_store_get_path(store, name, &dir, err);
  kyb_store_close(store);
  if (r < 0)
    return -1;
  cleanup_json json_t *m = NULL;
  if (kyb_image_load_manifest(dir, &m, err) < 0)
    return -1;
  if ((out->ref = kyb_image_ref_format(store_uri, name)) == NULL)
    return kyb_error_set(err, ENOMEM, "reference");
  json_t *src = json_object_get(m, "source");
  const char *image = json_string_value(json_object_get(src, "imageRef"));
  const char *snapshotter = json_string_value(json_object_get(src, "snapshotter"));
  const char *parent = json_string_value(json_object_get(src, "snapshotParent"));
  if (snapshotter == NULL || *snapshotter == '\0' || parent == NULL || *parent == '\0')
    return kyb_error_set(err, EINVAL,
                         "image %s records no snapshotter and snapshot parent: its rootfs "
                         "cannot be prepared",
                         name);
  c->snapshotter = strdup(snapshotter);
  if (c->snapshotter == NULL)
    return kyb_error_set(err, ENOMEM, "snapshotter");

  cleanup_free char *spec = new_spec(o, m, out->ref, err);
  if (spec == NULL)
    return -1;
  cleanup_free char *binary = o->runtime_binary ? strdup(o->runtime_binary) : find_runtime_binary();
  if (binary == NULL)
    return kyb_error_set(err, ENOENT, "%s not found beside this program nor on PATH",
                         RUNTIME_BINARY);

  kyb_ctd_client_opts copts = {.socket_path = o->address,
                               .ns = o->namespace_ ? o->namespace_ : DEFAULT_NAMESPACE};
  if (kyb_ctd_client_new(&copts, &c->ctd, err) < 0)
    return -1;

  /* 2. the container record, before its snapshot: a container references
   * its snapshot key, so garbage collection never takes the snapshot. */
  kyb_ctd_runc_options ro = {.binary_name = binary, .root = (char *)o->runc_root};
  kyb_ctd_any ropts = {0};
  if (kyb_ctd_any_from_runc_options(&ro, &ropts, err) < 0)
    return -1;
  kyb_ctd_kv label = {.key = (char *)KYB_LABEL_RESTORED_FROM, .value = name};
  kyb_ctd_container ct = {
      .id = (char *)o->name,
      .image = (char *)(image ? image : ""),
      .runtime_name = (char *)KYB_CTD_RUNC_RUNTIME,
      .runtime_options = ropts,
      .spec_json = spec,
      .spec_len = strlen(spec),
      .snapshotter = (char *)snapshotter,
      .snapshot_key = (char *)o->name,
      .labels = &label,
      .nlabels = 1,
  };
  r = kyb_ctd_container_create(c->ctd, &ct, NULL, err);
  kyb_ctd_any_clear(&ropts);
  if (r < 0) {
    if (kyb_grpc_status_of(*err) == KYB_GRPC_ALREADY_EXISTS)
      return kyb_error_set(err, EEXIST, "a container named %s exists already", o->name);
    return kyb_error_wrap(err, "create container %s", o->name);
  }
  c->container = true;

  /* 3. the rootfs */
  kyb_ctd_mount *mounts = NULL;
  size_t nmounts = 0;
  if (kyb_ctd_snapshot_prepare(c->ctd, snapshotter, o->name, parent, &mounts, &nmounts, err) < 0) {
    if (kyb_grpc_status_of(*err) == KYB_GRPC_NOT_FOUND)
      kyb_error_wrap(err, "the image's base layers (%s) are not on this node: pull image %s first",
                     parent, image ? image : "?");
    return -1;
  }
  c->snapshot = true;

  /* 4. the task: kybernate-runc restores on create */
  cleanup_free char *stdio = NULL;
  if (o->log_path != NULL && asprintf(&stdio, "file://%s", o->log_path) < 0)
    stdio = NULL;
  kyb_ctd_task_create_req req = {
      .container_id = o->name,
      .rootfs = mounts,
      .nrootfs = nmounts,
      .stdout_path = stdio,
      .stderr_path = stdio,
  };
  r = kyb_ctd_task_create(c->ctd, &req, &out->pid, err);
  kyb_ctd_mounts_free(mounts, nmounts);
  if (r < 0)
    return kyb_error_wrap(err, "restore into %s", o->name);
  c->task = true;
  uint32_t pid = 0;
  if (kyb_ctd_task_start(c->ctd, o->name, NULL, &pid, err) < 0)
    return kyb_error_wrap(err, "start restored container %s", o->name);
  if (pid != 0)
    out->pid = pid;
  out->container_id = strdup(o->name);
  if (out->container_id == NULL)
    return kyb_error_set(err, ENOMEM, "result");
  return 0;
}

int kyb_restore(const kyb_restore_opts *opts, kyb_restore_result *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  if (opts->name == NULL || *opts->name == '\0')
    return kyb_error_set(err, EINVAL, "restore needs a name for the new container");
  if (opts->log_path != NULL && opts->log_path[0] != '/')
    return kyb_error_set(err, EINVAL, "the log path must be absolute: %s", opts->log_path);
  uint64_t t0 = now_ms();
  created c = {.id = opts->name};
  int r = run(opts, &c, out, err);
  if (r < 0) {
    undo(&c);
    kyb_error_wrap(err, "restore %s", opts->ref);
    kyb_restore_result_clear(out);
  }
  out->total_ms = now_ms() - t0;
  kyb_ctd_client_free(c.ctd);
  free(c.snapshotter);
  return r;
}
