/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Typed containerd 1.7 client: the Version, Containers, Tasks, Snapshots and
 * Images calls Kybernate needs, over the gRPC transport in grpc.h.  Callers
 * see small C structs; the protobuf-c messages stay inside lib/containerd.
 *
 * Contract:
 *  - A client is one connection (one curl handle): use it from one thread at
 *    a time.  Every call uses the client's namespace (default "k8s.io")
 *    unless it says otherwise.
 *  - A function that fails returns -1 and fills err.  For a gRPC failure the
 *    errno follows the status (NOT_FOUND -> ENOENT, ALREADY_EXISTS -> EEXIST,
 *    FAILED_PRECONDITION -> EBUSY, ...) and kyb_grpc_status_of(err) gives the
 *    exact status: test that, not the errno, to tell "not found" apart.
 *  - Results are owned by the caller and released with the matching
 *    *_free or *_clear function; those accept NULL / zeroed values.
 *  - Input structs are only read; the library never keeps pointers to them.
 */
#ifndef KYB_CONTAINERD_CLIENT_H
#define KYB_CONTAINERD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "containerd/grpc.h"
#include "util/error.h"

#define KYB_CTD_DEFAULT_SOCKET "/run/containerd/containerd.sock"
#define KYB_CTD_K8S_NAMESPACE "k8s.io"
#define KYB_CTD_RUNC_RUNTIME "io.containerd.runc.v2"

/* Type URLs, bare as containerd's typeurl registry writes them (the runc
 * shim compares them exactly: a type.googleapis.com/ prefix fails there). */
#define KYB_CTD_TYPE_RUNC_OPTIONS "containerd.runc.v1.Options"
#define KYB_CTD_TYPE_RUNC_CHECKPOINT_OPTIONS "containerd.runc.v1.CheckpointOptions"
#define KYB_CTD_TYPE_RUNC_PROCESS_DETAILS "containerd.runc.v1.ProcessDetails"
#define KYB_CTD_TYPE_OCI_SPEC "types.containerd.io/opencontainers/runtime-spec/1/Spec"

/* CRI labels on Kubernetes containers (namespace k8s.io). */
#define KYB_CTD_LABEL_POD_NAMESPACE "io.kubernetes.pod.namespace"
#define KYB_CTD_LABEL_POD_NAME "io.kubernetes.pod.name"
#define KYB_CTD_LABEL_POD_UID "io.kubernetes.pod.uid"
#define KYB_CTD_LABEL_CONTAINER_NAME "io.kubernetes.container.name"
#define KYB_CTD_LABEL_CRI_KIND "io.cri-containerd.kind"

typedef struct kyb_ctd_client kyb_ctd_client;

/* ---- shared value types ---- */

typedef struct {
  char *key;
  char *value;
} kyb_ctd_kv;

/* google.protobuf.Any: type_url plus the raw bytes. */
typedef struct {
  char *type_url;
  uint8_t *value;
  size_t len;
} kyb_ctd_any;

typedef struct {
  char *type; /* "overlay", "bind", ... */
  char *source;
  char *target;
  char **options; /* fstab-style, e.g. "upperdir=/var/lib/..." */
  size_t noptions;
} kyb_ctd_mount;

typedef struct {
  char *media_type;
  char *digest; /* "sha256:<hex>" */
  int64_t size;
} kyb_ctd_descriptor;

/* containerd.runc.v1.Options (runtime options of a container, or the task
 * create options).  Strings may be NULL for "unset". */
typedef struct {
  bool no_pivot_root;
  bool no_new_keyring;
  char *shim_cgroup;
  uint32_t io_uid;
  uint32_t io_gid;
  char *binary_name; /* runc executable; NULL/"" = runc from PATH */
  char *root;        /* runc --root base; NULL/"" = /run/containerd/runc */
  bool systemd_cgroup;
  char *criu_image_path; /* restore source directory (task create) */
  char *criu_work_path;
} kyb_ctd_runc_options;

/* ---- client ---- */

typedef struct {
  const char *socket_path; /* NULL: KYB_CTD_DEFAULT_SOCKET */
  const char *ns;          /* NULL: KYB_CTD_K8S_NAMESPACE */
  int64_t deadline_ms;     /* 0: KYB_GRPC_DEFAULT_DEADLINE_MS */
} kyb_ctd_client_opts;

/* opts may be NULL.  Connects lazily: the first call reports an unreachable
 * daemon. */
int kyb_ctd_client_new(const kyb_ctd_client_opts *opts, kyb_ctd_client **out, kyb_error **err);
void kyb_ctd_client_free(kyb_ctd_client *c);
int kyb_ctd_client_set_namespace(kyb_ctd_client *c, const char *ns, kyb_error **err);
const char *kyb_ctd_client_namespace(const kyb_ctd_client *c);
/* The transport underneath, for calls this header does not wrap. */
kyb_grpc_conn *kyb_ctd_client_conn(kyb_ctd_client *c);

/* ---- Version ---- */

typedef struct {
  char *version; /* "1.7.24" */
  char *revision;
} kyb_ctd_version;

int kyb_ctd_version_get(kyb_ctd_client *c, kyb_ctd_version *out, kyb_error **err);
void kyb_ctd_version_clear(kyb_ctd_version *v);

/* ---- Containers ---- */

typedef struct {
  char *id;
  char *image;
  char *runtime_name;          /* "io.containerd.runc.v2" */
  kyb_ctd_any runtime_options; /* usually containerd.runc.v1.Options */
  char *spec_json;             /* the OCI runtime spec (config.json), NUL-terminated */
  size_t spec_len;
  char *snapshotter;
  char *snapshot_key;
  kyb_ctd_kv *labels;
  size_t nlabels;
  int64_t created_at_ns; /* Unix time in ns; 0 when unset (or Go's zero time) */
  int64_t updated_at_ns;
  char *sandbox;
} kyb_ctd_container;

typedef struct {
  kyb_ctd_container *items;
  size_t n;
} kyb_ctd_container_list;

void kyb_ctd_container_clear(kyb_ctd_container *ct);
void kyb_ctd_container_free(kyb_ctd_container *ct);
void kyb_ctd_container_list_clear(kyb_ctd_container_list *l);

/* The value of label `key`, NULL when absent. */
const char *kyb_ctd_container_label(const kyb_ctd_container *ct, const char *key);
/* Decodes runtime_options as containerd.runc.v1.Options; fails with EINVAL
 * when they carry another type.  Absent options give all-zero options. */
int kyb_ctd_container_runc_options(const kyb_ctd_container *ct, kyb_ctd_runc_options *out,
                                   kyb_error **err);

int kyb_ctd_container_get(kyb_ctd_client *c, const char *id, kyb_ctd_container **out,
                          kyb_error **err);

/* filters: containerd filter strings, OR-ed; within one, ","-separated
 * selectors are AND-ed.  nfilters 0 lists everything in the namespace. */
int kyb_ctd_container_list_get(kyb_ctd_client *c, const char *const *filters, size_t nfilters,
                               kyb_ctd_container_list *out, kyb_error **err);

/* `value` quoted for a filter (`"..."`, Go escaping): heap, NULL on ENOMEM
 * or when value holds control characters. */
char *kyb_ctd_filter_quote(const char *value);

/* The Kubernetes container <pod_ns>/<pod_name>/<container_name> in namespace
 * k8s.io (whatever the client's namespace is), found by its CRI labels.
 * When kubelet keeps an exited earlier instance next to the current one, the
 * instance whose task is running or paused wins, then the newest.
 * ENOENT (NOT_FOUND) when none matches. */
int kyb_ctd_container_find_k8s(kyb_ctd_client *c, const char *pod_ns, const char *pod_name,
                               const char *container_name, kyb_ctd_container **out,
                               kyb_error **err);

/* Creates the record described by `spec` (id, image, runtime_name,
 * runtime_options, spec_json, snapshotter, snapshot_key, labels are sent;
 * timestamps are the server's).  *out (may be NULL) gets the stored record. */
int kyb_ctd_container_create(kyb_ctd_client *c, const kyb_ctd_container *spec,
                             kyb_ctd_container **out, kyb_error **err);
int kyb_ctd_container_delete(kyb_ctd_client *c, const char *id, kyb_error **err);

/* ---- Tasks ---- */

typedef enum {
  KYB_CTD_TASK_UNKNOWN = 0,
  KYB_CTD_TASK_CREATED = 1,
  KYB_CTD_TASK_RUNNING = 2,
  KYB_CTD_TASK_STOPPED = 3,
  KYB_CTD_TASK_PAUSED = 4,
  KYB_CTD_TASK_PAUSING = 5,
} kyb_ctd_task_status;

const char *kyb_ctd_task_status_name(kyb_ctd_task_status s);

typedef struct {
  char *id; /* task id = container id for the init process, else exec id */
  uint32_t pid;
  kyb_ctd_task_status status;
  char *stdin_path;
  char *stdout_path;
  char *stderr_path;
  bool terminal;
  uint32_t exit_status;
  int64_t exited_at_ns;
} kyb_ctd_process;

void kyb_ctd_process_clear(kyb_ctd_process *p);

typedef struct {
  uint32_t pid;
  char *exec_id; /* NULL for processes that are not execs (the shim only tags execs) */
} kyb_ctd_pid;

typedef struct {
  kyb_ctd_pid *items;
  size_t n;
} kyb_ctd_pid_list;

void kyb_ctd_pid_list_clear(kyb_ctd_pid_list *l);

/* What Delete and Wait report about an exited process. */
typedef struct {
  uint32_t pid;
  uint32_t exit_status;
  int64_t exited_at_ns;
} kyb_ctd_exit;

/* containerd.runc.v1.CheckpointOptions. */
typedef struct {
  bool exit; /* stop the container after the dump (else --leave-running) */
  bool open_tcp;
  bool external_unix_sockets;
  bool terminal; /* --shell-job */
  bool file_locks;
  const char *const *empty_namespaces;
  size_t nempty_namespaces;
  const char *cgroups_mode; /* sent, but dropped by the 1.7 shim */
  const char *image_path;   /* where CRIU writes the images; NULL/"" = content store */
  const char *work_path;    /* CRIU work dir (dump.log); NULL = <bundle>/work/criu-work */
} kyb_ctd_checkpoint_opts;

typedef struct {
  const char *container_id;
  const kyb_ctd_mount *rootfs; /* from kyb_ctd_snapshot_mounts() */
  size_t nrootfs;
  const char *stdin_path; /* FIFO/file paths, NULL for none */
  const char *stdout_path;
  const char *stderr_path;
  bool terminal;
  const kyb_ctd_descriptor *checkpoint; /* checkpoint tar in the content store */
  /* Task options (containerd.runc.v1.Options).  When given they REPLACE the
   * container's runtime options, so repeat binary_name/root/... here. */
  const kyb_ctd_runc_options *options;
  const char *runtime_path;
} kyb_ctd_task_create_req;

/* exec_id NULL or "" means the init process. */
int kyb_ctd_task_get(kyb_ctd_client *c, const char *container_id, const char *exec_id,
                     kyb_ctd_process *out, kyb_error **err);
int kyb_ctd_task_list_pids(kyb_ctd_client *c, const char *container_id, kyb_ctd_pid_list *out,
                           kyb_error **err);
int kyb_ctd_task_pause(kyb_ctd_client *c, const char *container_id, kyb_error **err);
int kyb_ctd_task_resume(kyb_ctd_client *c, const char *container_id, kyb_error **err);
/* out (may be NULL) gets the content-store descriptors: none when
 * opts->image_path is set, which is how Kybernate calls it.  deadline_ms 0
 * uses the client's deadline; a big process needs more (its dump time). */
int kyb_ctd_task_checkpoint(kyb_ctd_client *c, const char *container_id,
                            const kyb_ctd_checkpoint_opts *opts, int64_t deadline_ms,
                            kyb_ctd_descriptor **out, size_t *nout, kyb_error **err);
int kyb_ctd_task_kill(kyb_ctd_client *c, const char *container_id, const char *exec_id,
                      uint32_t signal, bool all, kyb_error **err);
int kyb_ctd_task_delete(kyb_ctd_client *c, const char *container_id, kyb_ctd_exit *out,
                        kyb_error **err);
int kyb_ctd_task_create(kyb_ctd_client *c, const kyb_ctd_task_create_req *req, uint32_t *pid,
                        kyb_error **err);
int kyb_ctd_task_start(kyb_ctd_client *c, const char *container_id, const char *exec_id,
                       uint32_t *pid, kyb_error **err);
/* Blocks until the process exits: deadline_ms < 0 waits forever, 0 uses the
 * client's deadline. */
int kyb_ctd_task_wait(kyb_ctd_client *c, const char *container_id, const char *exec_id,
                      int64_t deadline_ms, kyb_ctd_exit *out, kyb_error **err);

/* ---- Snapshots and Images ---- */

void kyb_ctd_mounts_free(kyb_ctd_mount *mounts, size_t n);
/* The value of option "<name>=..." of a mount (e.g. "upperdir"), NULL when
 * absent.  Points into the mount. */
const char *kyb_ctd_mount_option(const kyb_ctd_mount *m, const char *name);

int kyb_ctd_snapshot_mounts(kyb_ctd_client *c, const char *snapshotter, const char *key,
                            kyb_ctd_mount **out, size_t *nout, kyb_error **err);

void kyb_ctd_descriptor_clear(kyb_ctd_descriptor *d);
void kyb_ctd_descriptors_free(kyb_ctd_descriptor *d, size_t n);

/* The image's target descriptor (manifest or index). */
int kyb_ctd_image_get(kyb_ctd_client *c, const char *name, kyb_ctd_descriptor *target,
                      kyb_error **err);

void kyb_ctd_any_clear(kyb_ctd_any *a);
void kyb_ctd_runc_options_clear(kyb_ctd_runc_options *o);
/* Encodes runc options as the Any a container's runtime.options carries. */
int kyb_ctd_any_from_runc_options(const kyb_ctd_runc_options *o, kyb_ctd_any *out, kyb_error **err);

#endif
