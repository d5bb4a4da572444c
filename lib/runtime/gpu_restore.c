/* SPDX-License-Identifier: Apache-2.0 */
/* GPU restore after `runc restore` (gpu_restore.h). */
#define KYB_LOG_MODULE "runtime"
#include "runtime/gpu_restore.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cuda/cgroup.h"
#include "cuda/driver.h"
#include "cuda/gpumap.h"
#include "cuda/group.h"
#include "cuda/visible.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"

struct kyb_rt_gpu {
  kyb_cuda_driver *drv;
  kyb_cuda_gpu *recorded;
  size_t nrecorded;
  kyb_cu_gpu_pair *pairs; /* one per recorded GPU, recorded order */
  size_t remapped;        /* pairs whose new GPU differs from the old */
};

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void kyb_rt_gpu_free(kyb_rt_gpu *g) {
  if (g == NULL)
    return;
  kyb_cuda_driver_close(g->drv);
  free(g->recorded);
  free(g->pairs);
  free(g);
}

/* One `gpus` entry of the manifest (untrusted): uuid, model, memoryBytes. */
static int parse_recorded(const json_t *o, size_t i, kyb_cuda_gpu *out, kyb_error **err) {
  if (!json_is_object(o))
    return kyb_error_set(err, EINVAL, "manifest gpus[%zu] is not an object", i);
  const json_t *uuid = json_object_get(o, "uuid");
  const json_t *model = json_object_get(o, "model");
  const json_t *mem = json_object_get(o, "memoryBytes");
  if (!json_is_string(uuid))
    return kyb_error_set(err, EINVAL, "manifest gpus[%zu].uuid: want a GPU UUID string", i);
  if (kyb_cuda_uuid_parse(json_string_value(uuid), &out->uuid, err) < 0)
    return kyb_error_wrap(err, "manifest gpus[%zu].uuid", i);
  if (!json_is_string(model) || json_string_length(model) == 0 ||
      json_string_length(model) >= sizeof(out->model))
    return kyb_error_set(err, EINVAL, "manifest gpus[%zu].model: want a string of 1..%zu bytes", i,
                         sizeof(out->model) - 1);
  if (!json_is_integer(mem) || json_integer_value(mem) < 0)
    return kyb_error_set(err, EINVAL, "manifest gpus[%zu].memoryBytes: want an integer >= 0", i);
  snprintf(out->model, sizeof(out->model), "%s", json_string_value(model));
  out->memory_bytes = (uint64_t)json_integer_value(mem);
  out->ordinal = (int)i;
  return 0;
}

/* A GPU listed twice would pair one old GPU with two new ones, a map the
 * driver refuses only after runc restore: refuse it here. */
static int check_unique(const kyb_cuda_gpu *gpus, size_t i, kyb_error **err) {
  for (size_t j = 0; j < i; j++)
    if (memcmp(&gpus[j].uuid, &gpus[i].uuid, sizeof(kyb_cu_uuid)) == 0) {
      char u[KYB_CUDA_UUID_STRLEN + 1];
      kyb_cuda_uuid_format(&gpus[i].uuid, u);
      return kyb_error_set(err, EINVAL, "manifest gpus[%zu].uuid: %s is gpus[%zu] already", i, u,
                           j);
    }
  return 0;
}

/* "GPU-a (NVIDIA H200), GPU-b (...)" for messages; heap, NULL on ENOMEM. */
static char *describe_gpus(const kyb_cuda_gpu *gpus, size_t n) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (f == NULL)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    char u[KYB_CUDA_UUID_STRLEN + 1];
    kyb_cuda_uuid_format(&gpus[i].uuid, u);
    fprintf(f, "%s%s (%s)", i ? ", " : "", u, gpus[i].model);
  }
  if (n == 0)
    fprintf(f, "none");
  if (fclose(f) != 0) {
    free(text);
    return NULL;
  }
  return text;
}

/* The GPUs the new container has: those of the driver's list its spec
 * gives it (cuda/visible.h), all of them when the spec names none.  The
 * driver pairs exactly the GPUs the process saw with GPUs it can see now,
 * so the map's targets are these and no others. */
static int container_gpus(kyb_rt_gpu *g, const json_t *spec, const char *nvidia_proc,
                          kyb_cuda_gpu **present, size_t *npresent, kyb_cuda_visible *v,
                          kyb_error **err) {
  cleanup_free kyb_cuda_gpu *all = NULL;
  size_t nall = 0;
  if (kyb_cuda_list_gpus(g->drv, &all, &nall, err) < 0)
    return kyb_error_wrap(err, "list this node's GPUs");
  if (kyb_cuda_visible_from_spec(spec, nvidia_proc, v, err) < 0)
    return kyb_error_wrap(err, "the new container's GPUs");
  return kyb_cuda_visible_filter(v, all, nall, present, npresent, err);
}

static int build_map(kyb_rt_gpu *g, const json_t *spec, const char *nvidia_proc, kyb_error **err) {
  cleanup_free kyb_cuda_gpu *present = NULL;
  size_t npresent = 0;
  kyb_cuda_visible v = {0};
  int r = container_gpus(g, spec, nvidia_proc, &present, &npresent, &v, err);
  if (r == 0 &&
      kyb_cuda_gpu_map(g->recorded, g->nrecorded, present, npresent, &g->pairs, err) < 0) {
    /* Both sides, so the reader sees what was asked of which GPUs. */
    cleanup_free char *had = describe_gpus(g->recorded, g->nrecorded);
    cleanup_free char *has = describe_gpus(present, npresent);
    r = kyb_error_wrap(err, "the checkpoint's GPUs: %s; the new container's (%sfrom %s): %s",
                       had ? had : "?", v.all ? "every GPU here, " : "", v.source, has ? has : "?");
  }
  kyb_cuda_visible_clear(&v);
  if (r < 0)
    return -1;
  for (size_t i = 0; i < g->nrecorded; i++)
    g->remapped += memcmp(&g->pairs[i].old_uuid, &g->pairs[i].new_uuid, sizeof(kyb_cu_uuid)) != 0;
  if (g->remapped > 0 && !kyb_cuda_driver_can_remap(g->drv))
    return kyb_error_set(err, ENOTSUP,
                         "%zu GPU(s) would move but the driver (CUDA version %d) cannot remap: "
                         "GPU remapping needs CUDA 13.0 (driver r580) or newer",
                         g->remapped, kyb_cuda_driver_version(g->drv));
  for (size_t i = 0; i < g->nrecorded; i++) {
    char from[KYB_CUDA_UUID_STRLEN + 1], to[KYB_CUDA_UUID_STRLEN + 1];
    kyb_cuda_uuid_format(&g->pairs[i].old_uuid, from);
    kyb_cuda_uuid_format(&g->pairs[i].new_uuid, to);
    log_info("GPU map: %s -> %s%s", from, to, strcmp(from, to) == 0 ? " (same GPU)" : "");
  }
  return 0;
}

int kyb_rt_gpu_prepare(const json_t *manifest, const json_t *spec, const char *driver_path,
                       const char *nvidia_proc, kyb_rt_gpu **out, kyb_error **err) {
  *out = NULL;
  const json_t *gpus = json_object_get(manifest, "gpus");
  if (gpus == NULL || (json_is_array(gpus) && json_array_size(gpus) == 0))
    return 0;
  if (!json_is_array(gpus))
    return kyb_error_set(err, EINVAL, "manifest gpus is not an array");
  size_t n = json_array_size(gpus);
  if (n > KYB_RT_GPU_MAX)
    return kyb_error_set(err, EINVAL, "manifest gpus lists %zu GPUs, more than %d", n,
                         KYB_RT_GPU_MAX);
  kyb_rt_gpu *g = calloc(1, sizeof(*g));
  if (g == NULL || (g->recorded = calloc(n, sizeof(*g->recorded))) == NULL) {
    kyb_rt_gpu_free(g);
    return kyb_error_set(err, ENOMEM, "GPU restore");
  }
  g->nrecorded = n;
  for (size_t i = 0; i < n; i++)
    if (parse_recorded(json_array_get(gpus, i), i, &g->recorded[i], err) < 0 ||
        check_unique(g->recorded, i, err) < 0) {
      kyb_rt_gpu_free(g);
      return -1;
    }
  int rc = kyb_cuda_driver_open(driver_path, &g->drv, err);
  if (rc != 0) {
    kyb_rt_gpu_free(g);
    return kyb_error_wrap(err,
                          "the image holds GPU state of %zu GPU(s), and this node cannot restore "
                          "it%s",
                          n, rc == KYB_CUDA_NO_DRIVER ? " (no usable CUDA driver)" : "");
  }
  if (build_map(g, spec, nvidia_proc, err) < 0) {
    kyb_rt_gpu_free(g);
    return kyb_error_wrap(err, "the image's GPUs do not fit this node");
  }
  *out = g;
  return 0;
}

int kyb_rt_gpu_restore(kyb_rt_gpu *g, const char *cgroup_dir, kyb_rt_gpu_times *times,
                       kyb_error **err) {
  memset(times, 0, sizeof(*times));
  double t0 = now_ms();
  cleanup_free pid_t *pids = NULL;
  size_t npids = 0;
  if (kyb_cgroup_pids(cgroup_dir, &pids, &npids, err) < 0)
    return kyb_error_wrap(err, "the restored container's processes");
  kyb_cuda_group grp = {0};
  if (kyb_cuda_group_discover(g->drv, pids, npids, &grp, err) < 0) {
    kyb_cuda_group_release(&grp);
    return kyb_error_wrap(err, "find the restored CUDA processes");
  }
  if (grp.count == 0) {
    kyb_cuda_group_release(&grp);
    return kyb_error_set(err, ESRCH,
                         "none of the %zu process(es) in %s is a CUDA process, yet the image "
                         "holds GPU state",
                         npids, cgroup_dir);
  }
  int r = kyb_cuda_group_restore(g->drv, &grp, g->pairs, g->nrecorded, err);
  times->procs = grp.count;
  times->remapped = g->remapped;
  times->restore_ms = grp.times.restore_ms;
  times->unlock_ms = grp.times.unlock_ms;
  times->total_ms = now_ms() - t0;
  kyb_cuda_group_release(&grp);
  if (r < 0) /* kyb_cuda_group_restore's message says "GPU restore: ..." */
    return kyb_error_wrap(err, "the restored container's %zu CUDA process(es) (cgroup %s)",
                          times->procs, cgroup_dir);
  return 0;
}

int kyb_rt_read_pid_file(const char *path, pid_t *out, kyb_error **err) {
  cleanup_free char *buf = NULL;
  size_t len = 0;
  if (kyb_read_file(path, 64, &buf, &len, err) < 0)
    return kyb_error_wrap(err, "runc's pid file");
  char *end = NULL;
  errno = 0;
  long v = strtol(buf, &end, 10);
  while (end != NULL && (*end == '\n' || *end == ' '))
    end++;
  if (errno != 0 || end == buf || end == NULL || *end != '\0' || v <= 0 || v > INT_MAX)
    return kyb_error_set(err, EINVAL, "runc's pid file %s does not hold a pid", path);
  *out = (pid_t)v;
  return 0;
}

/* Under cgroup v1 the hierarchies looked at, in order. */
static const char *const v1_controllers[] = {"pids",    "memory",  "freezer", "cpu",
                                             "cpuacct", "devices", NULL};

static bool has_controller(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; p != NULL && *p != '\0';) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    if (len == n && strncmp(p, name, n) == 0)
      return true;
    p = comma ? comma + 1 : NULL;
  }
  return false;
}

int kyb_rt_pid_cgroup_dir(const char *proc, const char *mount, pid_t pid, char **out,
                          kyb_error **err) {
  *out = NULL;
  if (mount == NULL)
    mount = KYB_RT_CGROUP_MOUNT;
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "%s/%d/cgroup", proc ? proc : "/proc", (int)pid);
  cleanup_free char *buf = NULL;
  size_t len = 0;
  if (kyb_read_file(path, 1u << 16, &buf, &len, err) < 0)
    return kyb_error_wrap(err, "the cgroup of pid %d", (int)pid);
  char v2_marker[PATH_MAX];
  snprintf(v2_marker, sizeof(v2_marker), "%s/cgroup.controllers", mount);
  bool v2 = access(v2_marker, F_OK) == 0;
  for (size_t c = 0; v2 ? c == 0 : v1_controllers[c] != NULL; c++) {
    char *save = NULL;
    cleanup_free char *copy = strdup(buf);
    if (copy == NULL)
      return kyb_error_set(err, ENOMEM, "cgroup");
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
      char *c1 = strchr(line, ':');
      char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
      if (c2 == NULL || c2[1] != '/' || strstr(c2 + 1, "/..") != NULL)
        continue;
      *c2 = '\0';
      const char *ctrls = c1 + 1, *rel = c2 + 1;
      bool match = v2 ? (strncmp(line, "0:", 2) == 0 && *ctrls == '\0')
                      : has_controller(ctrls, v1_controllers[c]);
      if (!match)
        continue;
      int n =
          v2 ? asprintf(out, "%s%s", mount, strcmp(rel, "/") == 0 ? "" : rel)
             : asprintf(out, "%s/%s%s", mount, v1_controllers[c], strcmp(rel, "/") == 0 ? "" : rel);
      if (n < 0) {
        *out = NULL;
        return kyb_error_set(err, ENOMEM, "cgroup");
      }
      return 0;
    }
  }
  return kyb_error_set(err, ENOENT, "%s names no %s cgroup of pid %d", path,
                       v2 ? "cgroup v2 (\"0::\")" : "v1 pids/memory/freezer/cpu/devices", (int)pid);
}
