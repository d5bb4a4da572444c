/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which GPUs a container has.  See visible.h for the rules.
 */
#define KYB_LOG_MODULE "cuda"
#include "cuda/visible.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "cuda/gpumap.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"

/* The highest GPU minor: 254 is nvidia-modeset, 255 nvidiactl. */
#define MAX_GPU_MINOR 253

const char *kyb_nvidia_proc_dir(const char *nvidia_proc) {
  if (nvidia_proc != NULL && nvidia_proc[0] != '\0')
    return nvidia_proc;
  const char *env = getenv(KYB_NVIDIA_PROC_ENV);
  return env != NULL && env[0] != '\0' ? env : KYB_NVIDIA_PROC_DEFAULT;
}

/* ---- the driver's proc files ---- */

typedef struct {
  kyb_nvidia_gpu gpu;
  unsigned long key[4]; /* domain, bus, device, function: the sort key */
} proc_entry;

/* "0000:18:00.0": domain (4..8 hex), bus (2 hex), device (2 hex), function (0-7). */
static bool parse_bus_id(const char *name, unsigned long key[4]) {
  static const size_t min_digits[3] = {4, 2, 2}, max_digits[3] = {8, 2, 2};
  static const char seps[3] = {':', ':', '.'};
  const char *p = name;
  for (int i = 0; i < 3; i++) {
    size_t n = strspn(p, "0123456789abcdefABCDEF");
    if (n < min_digits[i] || n > max_digits[i] || p[n] != seps[i])
      return false;
    key[i] = strtoul(p, NULL, 16);
    p += n + 1;
  }
  if (p[0] < '0' || p[0] > '7' || p[1] != '\0')
    return false;
  key[3] = (unsigned long)(p[0] - '0');
  return true;
}

static int cmp_entry(const void *a, const void *b) {
  const proc_entry *x = a, *y = b;
  for (int i = 0; i < 4; i++)
    if (x->key[i] != y->key[i])
      return x->key[i] < y->key[i] ? -1 : 1;
  return 0;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
    s[--n] = '\0';
  return s;
}

/* "Device Minor: N" and "GPU UUID: GPU-..." of one information file. */
static int parse_information(const char *path, char *text, kyb_nvidia_gpu *g, kyb_error **err) {
  bool have_minor = false, have_uuid = false;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *colon = strchr(line, ':');
    if (colon == NULL)
      continue;
    *colon = '\0';
    const char *key = trim(line);
    char *value = trim(colon + 1);
    if (strcmp(key, "Device Minor") == 0) {
      if (have_minor)
        return kyb_error_set(err, EINVAL, "%s names \"Device Minor\" twice", path);
      char *end = NULL;
      errno = 0;
      unsigned long m = strtoul(value, &end, 10);
      if (value[0] < '0' || value[0] > '9' || errno != 0 || *end != '\0' || m > MAX_GPU_MINOR)
        return kyb_error_set(err, EINVAL, "%s: \"Device Minor: %.32s\" is not a GPU minor (0..%d)",
                             path, value, MAX_GPU_MINOR);
      g->minor = (unsigned int)m;
      have_minor = true;
    } else if (strcmp(key, "GPU UUID") == 0) {
      if (have_uuid)
        return kyb_error_set(err, EINVAL, "%s names \"GPU UUID\" twice", path);
      if (strchr(value, '?') != NULL)
        return kyb_error_set(err, EAGAIN,
                             "%s: the driver does not know the GPU's UUID yet (\"%.64s\"): the "
                             "GPU is not initialised",
                             path, value);
      if (strncmp(value, "GPU-", 4) != 0)
        return kyb_error_set(err, EINVAL, "%s: \"GPU UUID: %.64s\" is not a GPU UUID", path, value);
      if (kyb_cuda_uuid_parse(value, &g->uuid, err) < 0)
        return kyb_error_wrap(err, "%s", path);
      have_uuid = true;
    }
  }
  if (!have_minor || !have_uuid)
    return kyb_error_set(err, EINVAL, "%s has no \"%s:\" line", path,
                         have_minor ? "GPU UUID" : "Device Minor");
  return 0;
}

static int read_gpu(const char *gpus_dir, const char *name, proc_entry *e, kyb_error **err) {
  char path[PATH_MAX];
  if ((size_t)snprintf(path, sizeof(path), "%s/%s/information", gpus_dir, name) >= sizeof(path))
    return kyb_error_set(err, ENAMETOOLONG, "%s/%s: path too long", gpus_dir, name);
  cleanup_free char *text = NULL;
  size_t len = 0;
  if (kyb_read_file(path, KYB_NVIDIA_INFO_MAX, &text, &len, err) < 0)
    return -1;
  if (strlen(text) != len)
    return kyb_error_set(err, EINVAL, "%s holds a NUL byte", path);
  snprintf(e->gpu.bus_id, sizeof(e->gpu.bus_id), "%s", name);
  return parse_information(path, text, &e->gpu, err);
}

int kyb_nvidia_gpus(const char *nvidia_proc, kyb_nvidia_gpu **out, size_t *count, kyb_error **err) {
  *out = NULL;
  *count = 0;
  cleanup_free char *gpus_dir = kyb_path_join(kyb_nvidia_proc_dir(nvidia_proc), "gpus");
  if (gpus_dir == NULL)
    return kyb_error_set(err, ENOMEM, "nvidia proc path");
  cleanup_dir DIR *d = opendir(gpus_dir);
  if (d == NULL)
    return kyb_error_errno(err, "the NVIDIA driver's GPU list %s (is the nvidia module loaded?)",
                           gpus_dir);
  cleanup_free proc_entry *entries = calloc(KYB_NVIDIA_MAX_GPUS, sizeof(*entries));
  if (entries == NULL)
    return kyb_error_set(err, ENOMEM, "GPU list");
  size_t n = 0;
  errno = 0;
  for (struct dirent *de; (de = readdir(d)) != NULL; errno = 0) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (n == KYB_NVIDIA_MAX_GPUS)
      return kyb_error_set(err, E2BIG, "%s lists more than %d GPUs", gpus_dir, KYB_NVIDIA_MAX_GPUS);
    if (strlen(de->d_name) >= sizeof(entries[n].gpu.bus_id) ||
        !parse_bus_id(de->d_name, entries[n].key))
      return kyb_error_set(err, EINVAL, "%s holds \"%.64s\", not a PCI bus id (0000:18:00.0)",
                           gpus_dir, de->d_name);
    if (read_gpu(gpus_dir, de->d_name, &entries[n], err) < 0)
      return kyb_error_wrap(err, "the NVIDIA driver's GPU list");
    n++;
  }
  if (errno != 0)
    return kyb_error_errno(err, "read %s", gpus_dir);
  qsort(entries, n, sizeof(*entries), cmp_entry);
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < i; j++) {
      if (entries[i].gpu.minor == entries[j].gpu.minor)
        return kyb_error_set(err, EINVAL, "%s: GPUs %s and %s both have device minor %u", gpus_dir,
                             entries[j].gpu.bus_id, entries[i].gpu.bus_id, entries[i].gpu.minor);
      if (memcmp(&entries[i].gpu.uuid, &entries[j].gpu.uuid, sizeof(kyb_cu_uuid)) == 0)
        return kyb_error_set(err, EINVAL, "%s: GPUs %s and %s have the same UUID", gpus_dir,
                             entries[j].gpu.bus_id, entries[i].gpu.bus_id);
    }
  if (n == 0)
    return 0;
  kyb_nvidia_gpu *gpus = calloc(n, sizeof(*gpus));
  if (gpus == NULL)
    return kyb_error_set(err, ENOMEM, "GPU list");
  for (size_t i = 0; i < n; i++)
    gpus[i] = entries[i].gpu;
  *out = gpus;
  *count = n;
  return 0;
}

/* "0 (0000:18:00.0, minor 0), 1 (...)" for messages; static-sized. */
static void describe_node(const kyb_nvidia_gpu *gpus, size_t n, char *buf, size_t cap) {
  size_t used = 0;
  buf[0] = '\0';
  if (n == 0)
    snprintf(buf, cap, "none");
  for (size_t i = 0; i < n; i++) {
    char u[KYB_CUDA_UUID_STRLEN + 1];
    kyb_cuda_uuid_format(&gpus[i].uuid, u);
    int w = snprintf(buf + used, cap - used, "%s%zu = %s minor %u %s", i ? ", " : "", i,
                     gpus[i].bus_id, gpus[i].minor, u);
    if (w < 0 || (size_t)w >= cap - used)
      return;
    used += (size_t)w;
  }
}

/* ---- sets ---- */

void kyb_cuda_visible_clear(kyb_cuda_visible *v) {
  if (v == NULL)
    return;
  free(v->uuids);
  free(v->minors);
  memset(v, 0, sizeof(*v));
}

static int visible_init(kyb_cuda_visible *v, const char *source, kyb_error **err) {
  memset(v, 0, sizeof(*v));
  snprintf(v->source, sizeof(v->source), "%s", source);
  v->uuids = calloc(KYB_NVIDIA_MAX_GPUS, sizeof(*v->uuids));
  v->minors = calloc(KYB_NVIDIA_MAX_GPUS, sizeof(*v->minors));
  if (v->uuids == NULL || v->minors == NULL) {
    kyb_cuda_visible_clear(v);
    return kyb_error_set(err, ENOMEM, "GPU set");
  }
  return 0;
}

static ssize_t find_uuid(const kyb_cuda_visible *v, const kyb_cu_uuid *u) {
  for (size_t i = 0; i < v->count; i++)
    if (memcmp(&v->uuids[i], u, sizeof(*u)) == 0)
      return (ssize_t)i;
  return -1;
}

bool kyb_cuda_visible_has(const kyb_cuda_visible *v, const kyb_cu_uuid *uuid) {
  return v->all || find_uuid(v, uuid) >= 0;
}

/* Adds a GPU once (minor -1: not known). */
static int add_gpu(kyb_cuda_visible *v, const kyb_cu_uuid *u, int minor, kyb_error **err) {
  ssize_t i = find_uuid(v, u);
  if (i >= 0) {
    if (v->minors[i] < 0)
      v->minors[i] = minor;
    return 0;
  }
  if (v->count == KYB_NVIDIA_MAX_GPUS)
    return kyb_error_set(err, E2BIG, "%s names more than %d GPUs", v->source, KYB_NVIDIA_MAX_GPUS);
  v->uuids[v->count] = *u;
  v->minors[v->count] = minor;
  v->count++;
  return 0;
}

/* The node's GPUs from the proc files, loaded once per set operation. */
typedef struct {
  const char *nvidia_proc;
  kyb_nvidia_gpu *gpus;
  size_t n;
  bool loaded;
} node_gpus;

static int node_load(node_gpus *ng, const char *why, kyb_error **err) {
  if (ng->loaded)
    return 0;
  if (kyb_nvidia_gpus(ng->nvidia_proc, &ng->gpus, &ng->n, err) < 0)
    return kyb_error_wrap(err, "%s", why);
  ng->loaded = true;
  return 0;
}

static void node_release(node_gpus *ng) {
  free(ng->gpus);
  ng->gpus = NULL;
}

/* One entry of a list: an index or a UUID. */
static int parse_entry(kyb_cuda_visible *v, const char *tok, node_gpus *ng, kyb_error **err) {
  size_t len = strlen(tok);
  if (len == 0)
    return kyb_error_set(err, EINVAL, "%s has an empty entry", v->source);
  if (strncmp(tok, "MIG-", 4) == 0 || strchr(tok, ':') != NULL)
    return kyb_error_set(err, ENOTSUP,
                         "%s names the MIG device \"%.64s\": MIG devices are not supported (a "
                         "checkpoint needs whole GPUs)",
                         v->source, tok);
  if (strspn(tok, "0123456789") == len) {
    if (len > 3)
      return kyb_error_set(err, EINVAL, "%s: GPU index %.64s is out of range", v->source, tok);
    unsigned long idx = strtoul(tok, NULL, 10);
    char why[96];
    snprintf(why, sizeof(why), "%s: GPU index %lu", v->source, idx);
    if (node_load(ng, why, err) < 0)
      return -1;
    if (idx >= ng->n) {
      char have[1024];
      describe_node(ng->gpus, ng->n, have, sizeof(have));
      return kyb_error_set(err, ENOENT, "%s: GPU index %lu, and the node has %zu GPU(s) (%s)",
                           v->source, idx, ng->n, have);
    }
    return add_gpu(v, &ng->gpus[idx].uuid, (int)ng->gpus[idx].minor, err);
  }
  if (strncmp(tok, "GPU-", 4) != 0)
    return kyb_error_set(err, EINVAL,
                         "%s: \"%.64s\" is neither a GPU index nor a GPU UUID (GPU-...)", v->source,
                         tok);
  kyb_cu_uuid u;
  if (kyb_cuda_uuid_parse(tok, &u, err) < 0)
    return kyb_error_wrap(err, "%s", v->source);
  return add_gpu(v, &u, -1, err);
}

static int parse_list(kyb_cuda_visible *v, const char *list, node_gpus *ng, kyb_error **err) {
  size_t len = strlen(list);
  if (len > KYB_NVIDIA_LIST_MAX)
    return kyb_error_set(err, EINVAL, "%s is %zu bytes long, more than %d", v->source, len,
                         KYB_NVIDIA_LIST_MAX);
  for (const char *p = list; *p != '\0'; p++)
    if ((unsigned char)*p < 0x20 && *p != '\t')
      return kyb_error_set(err, EINVAL, "%s holds a control character", v->source);
  cleanup_free char *copy = strdup(list);
  if (copy == NULL)
    return kyb_error_set(err, ENOMEM, "GPU list");
  char *whole = trim(copy);
  if (strcmp(whole, "all") == 0) {
    v->all = true;
    return 0;
  }
  if (whole[0] == '\0' || strcmp(whole, "none") == 0 || strcmp(whole, "void") == 0)
    return 0;
  for (char *p = whole;;) {
    char *comma = strchr(p, ',');
    if (comma != NULL)
      *comma = '\0';
    if (parse_entry(v, trim(p), ng, err) < 0)
      return -1;
    if (comma == NULL)
      return 0;
    p = comma + 1;
  }
}

int kyb_cuda_visible_parse(const char *list, const char *source, const char *nvidia_proc,
                           kyb_cuda_visible *out, kyb_error **err) {
  if (visible_init(out, source, err) < 0)
    return -1;
  node_gpus ng = {.nvidia_proc = nvidia_proc};
  int r = parse_list(out, list, &ng, err);
  node_release(&ng);
  if (r < 0)
    kyb_cuda_visible_clear(out);
  return r;
}

/* "/dev/nvidia<digits>": a GPU's device node (N into *n). */
static bool gpu_device_path(const char *path, unsigned long *n) {
  static const char prefix[] = "/dev/nvidia";
  if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
    return false;
  const char *d = path + sizeof(prefix) - 1;
  size_t len = strspn(d, "0123456789");
  if (len == 0 || d[len] != '\0')
    return false;
  *n = len > 6 ? ULONG_MAX : strtoul(d, NULL, 10);
  return true;
}

int kyb_nvidia_device_entry(const json_t *d, size_t i, int *minor, kyb_error **err) {
  const char *path = json_string_value(json_object_get(d, "path"));
  if (!json_is_object(d) || path == NULL)
    return kyb_error_set(err, EINVAL, "spec linux.devices[%zu]: want an object with a path", i);
  unsigned long num = 0;
  if (!gpu_device_path(path, &num))
    return 0;
  const json_t *type = json_object_get(d, "type");
  const json_t *major = json_object_get(d, "major");
  const json_t *jminor = json_object_get(d, "minor");
  if (type != NULL && (!json_is_string(type) || strcmp(json_string_value(type), "c") != 0))
    return kyb_error_set(err, EINVAL, "spec linux.devices[%zu] (%.64s): type is not \"c\"", i,
                         path);
  if (major != NULL && (!json_is_integer(major) || json_integer_value(major) != KYB_NVIDIA_MAJOR))
    return kyb_error_set(err, EINVAL,
                         "spec linux.devices[%zu] (%.64s): major is not %d (an NVIDIA GPU)", i,
                         path, KYB_NVIDIA_MAJOR);
  /* The entry's minor is the host device; the path is only its name in the
   * container (a device plugin may show host nvidia3 as nvidia0). */
  if (jminor != NULL && !json_is_integer(jminor))
    return kyb_error_set(err, EINVAL, "spec linux.devices[%zu] (%.64s): minor is not a number", i,
                         path);
  long long m = jminor != NULL ? json_integer_value(jminor) : (long long)num;
  if (num > MAX_GPU_MINOR || m < 0 || m > MAX_GPU_MINOR)
    return kyb_error_set(err, EINVAL,
                         "spec linux.devices[%zu] (%.64s): minor %lld is not a GPU minor (0..%d)",
                         i, path, m, MAX_GPU_MINOR);
  *minor = (int)m;
  return 1;
}

/* linux.devices: the minors of every /dev/nvidia<N> entry into minors[]
 * (each once); *n 0 when there is none. */
static int device_minors(const json_t *spec, int *minors, size_t *n, kyb_error **err) {
  *n = 0;
  const json_t *devs = json_object_get(json_object_get(spec, "linux"), "devices");
  if (devs == NULL || json_is_null(devs))
    return 0;
  if (!json_is_array(devs))
    return kyb_error_set(err, EINVAL, "spec linux.devices is not an array");
  size_t i;
  const json_t *d;
  json_array_foreach(devs, i, d) {
    int m = -1;
    int r = kyb_nvidia_device_entry(d, i, &m, err);
    if (r < 0)
      return -1;
    bool seen = r == 0;
    for (size_t j = 0; j < *n && !seen; j++)
      seen = minors[j] == m;
    if (seen)
      continue;
    if (*n == KYB_NVIDIA_MAX_GPUS)
      return kyb_error_set(err, E2BIG, "spec linux.devices names more than %d GPUs",
                           KYB_NVIDIA_MAX_GPUS);
    minors[(*n)++] = m;
  }
  return 0;
}

/* The value of the last NAME=... in process.env; NULL when absent. */
static int env_value(const json_t *spec, const char *name, const char **value, kyb_error **err) {
  *value = NULL;
  const json_t *env = json_object_get(json_object_get(spec, "process"), "env");
  if (env == NULL || json_is_null(env))
    return 0;
  if (!json_is_array(env))
    return kyb_error_set(err, EINVAL, "spec process.env is not an array");
  size_t nlen = strlen(name), i;
  const json_t *e;
  json_array_foreach(env, i, e) {
    const char *s = json_string_value(e);
    if (s == NULL)
      return kyb_error_set(err, EINVAL, "spec process.env[%zu] is not a string", i);
    if (strncmp(s, name, nlen) == 0 && s[nlen] == '=')
      *value = s + nlen + 1;
  }
  return 0;
}

static int from_devices(kyb_cuda_visible *v, const int *minors, size_t n, node_gpus *ng,
                        kyb_error **err) {
  if (node_load(ng, "the GPUs of spec linux.devices", err) < 0)
    return -1;
  for (size_t i = 0; i < n; i++) {
    const kyb_nvidia_gpu *g = NULL;
    for (size_t j = 0; j < ng->n && g == NULL; j++)
      if ((int)ng->gpus[j].minor == minors[i])
        g = &ng->gpus[j];
    if (g == NULL) {
      char have[1024];
      describe_node(ng->gpus, ng->n, have, sizeof(have));
      return kyb_error_set(err, ENOENT,
                           "spec linux.devices gives the GPU device minor %d, and the NVIDIA "
                           "driver lists no GPU with that minor (%s)",
                           minors[i], have);
    }
    if (add_gpu(v, &g->uuid, minors[i], err) < 0)
      return -1;
  }
  return 0;
}

int kyb_cuda_visible_from_spec(const json_t *spec, const char *nvidia_proc, kyb_cuda_visible *out,
                               kyb_error **err) {
  int minors[KYB_NVIDIA_MAX_GPUS];
  size_t nminors = 0;
  const char *env = NULL;
  if (spec != NULL && !json_is_object(spec))
    return kyb_error_set(err, EINVAL, "the OCI spec is not an object");
  if (spec != NULL && (device_minors(spec, minors, &nminors, err) < 0 ||
                       env_value(spec, KYB_NVIDIA_VISIBLE_ENV, &env, err) < 0))
    return -1;
  const char *source = nminors > 0   ? "linux.devices"
                       : env != NULL ? KYB_NVIDIA_VISIBLE_ENV
                                     : "no GPU setting in the spec";
  if (visible_init(out, source, err) < 0)
    return -1;
  node_gpus ng = {.nvidia_proc = nvidia_proc};
  int r = 0;
  if (nminors > 0) {
    r = from_devices(out, minors, nminors, &ng, err);
  } else if (env != NULL) {
    r = parse_list(out, env, &ng, err);
  } else {
    log_debug("the container's spec names no GPU (no /dev/nvidiaN device, no %s): every GPU of "
              "the node counts as its",
              KYB_NVIDIA_VISIBLE_ENV);
    out->all = true;
  }
  node_release(&ng);
  if (r < 0)
    kyb_cuda_visible_clear(out);
  return r;
}

int kyb_cuda_visible_minors(kyb_cuda_visible *v, const char *nvidia_proc, kyb_error **err) {
  if (v->all)
    return 0;
  node_gpus ng = {.nvidia_proc = nvidia_proc};
  int r = 0;
  for (size_t i = 0; i < v->count && r == 0; i++) {
    if (v->minors[i] >= 0)
      continue;
    if ((r = node_load(&ng, "the device minors of the GPUs", err)) < 0)
      break;
    for (size_t j = 0; j < ng.n && v->minors[i] < 0; j++)
      if (memcmp(&ng.gpus[j].uuid, &v->uuids[i], sizeof(kyb_cu_uuid)) == 0)
        v->minors[i] = (int)ng.gpus[j].minor;
    if (v->minors[i] < 0) {
      char u[KYB_CUDA_UUID_STRLEN + 1], have[1024];
      kyb_cuda_uuid_format(&v->uuids[i], u);
      describe_node(ng.gpus, ng.n, have, sizeof(have));
      r = kyb_error_set(err, ENOENT,
                        "%s names %s, and the NVIDIA driver here lists no such GPU (%s)", v->source,
                        u, have);
    }
  }
  node_release(&ng);
  return r;
}

int kyb_cuda_visible_filter(const kyb_cuda_visible *v, const kyb_cuda_gpu *gpus, size_t n,
                            kyb_cuda_gpu **out, size_t *nout, kyb_error **err) {
  *out = NULL;
  *nout = 0;
  for (size_t i = 0; !v->all && i < v->count; i++) {
    bool listed = false;
    for (size_t j = 0; j < n && !listed; j++)
      listed = memcmp(&gpus[j].uuid, &v->uuids[i], sizeof(kyb_cu_uuid)) == 0;
    if (!listed) {
      char u[KYB_CUDA_UUID_STRLEN + 1];
      kyb_cuda_uuid_format(&v->uuids[i], u);
      cleanup_free char *have = NULL;
      size_t len = 0;
      FILE *f = open_memstream(&have, &len);
      for (size_t j = 0; f != NULL && j < n; j++) {
        char g[KYB_CUDA_UUID_STRLEN + 1];
        kyb_cuda_uuid_format(&gpus[j].uuid, g);
        fprintf(f, "%s%s", j ? ", " : "", g);
      }
      if (f != NULL)
        fclose(f);
      return kyb_error_set(err, ENOENT,
                           "the container's GPU %s (from %s) is not among the GPUs the CUDA "
                           "driver lists (%s)",
                           u, v->source, have && *have ? have : "none");
    }
  }
  if (n == 0)
    return 0;
  cleanup_free kyb_cuda_gpu *sel = calloc(n, sizeof(*sel));
  if (sel == NULL)
    return kyb_error_set(err, ENOMEM, "GPU list");
  size_t k = 0;
  for (size_t j = 0; j < n; j++)
    if (kyb_cuda_visible_has(v, &gpus[j].uuid))
      sel[k++] = gpus[j];
  if (k > 0) {
    *out = steal_ptr(sel);
    *nout = k;
  }
  return 0;
}

char *kyb_cuda_visible_describe(const kyb_cuda_visible *v) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (f == NULL)
    return NULL;
  if (v->all)
    fprintf(f, "every GPU of the node");
  else if (v->count == 0)
    fprintf(f, "no GPU");
  for (size_t i = 0; !v->all && i < v->count; i++) {
    char u[KYB_CUDA_UUID_STRLEN + 1];
    kyb_cuda_uuid_format(&v->uuids[i], u);
    fprintf(f, "%s%s", i ? ", " : "", u);
  }
  fprintf(f, " (from %s)", v->source);
  if (fclose(f) != 0) {
    free(text);
    return NULL;
  }
  return text;
}
