/* SPDX-License-Identifier: Apache-2.0 */
/*
 * containerd.services.tasks.v1.Tasks: the running side of a container
 * (its init process and execs): get, pids, pause/resume, checkpoint, kill,
 * delete, create, start, wait.  See client.h for the contract.
 *
 * Checkpoint is the call Kybernate exists for: the runc shim reads its
 * options as containerd.runc.v1.CheckpointOptions by exact type URL, and
 * with image_path set containerd leaves the CRIU images in that directory
 * and answers with no descriptors.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "containerd/client_internal.h"
#include "util/cleanup.h"

static const char *const status_names[] = {"unknown", "created", "running",
                                           "stopped", "paused",  "pausing"};

const char *kyb_ctd_task_status_name(kyb_ctd_task_status s) {
  if ((unsigned)s >= sizeof(status_names) / sizeof(status_names[0]))
    return "unknown";
  return status_names[s];
}

void kyb_ctd_process_clear(kyb_ctd_process *p) {
  if (p == NULL)
    return;
  free(p->id);
  free(p->stdin_path);
  free(p->stdout_path);
  free(p->stderr_path);
  memset(p, 0, sizeof(*p));
}

void kyb_ctd_pid_list_clear(kyb_ctd_pid_list *l) {
  if (l == NULL)
    return;
  if (l->items != NULL) {
    for (size_t i = 0; i < l->n; i++)
      free(l->items[i].exec_id);
    free(l->items);
  }
  l->items = NULL;
  l->n = 0;
}

/* ---- decoding ---- */

static int copy_process(const Containerd__V1__Types__Process *pb, kyb_ctd_process *out,
                        kyb_error **err) {
  memset(out, 0, sizeof(*out));
  if (pb == NULL)
    return kyb_error_set(err, EPROTO, "process missing from the reply");
  /* 1.7 leaves container_id empty in Get/List; id carries the task id. */
  out->id = kyb_ctd_strdup(pb->id[0] != '\0' ? pb->id : pb->container_id);
  out->stdin_path = kyb_ctd_strdup(pb->stdin);
  out->stdout_path = kyb_ctd_strdup(pb->stdout);
  out->stderr_path = kyb_ctd_strdup(pb->stderr);
  if (out->id == NULL || out->stdin_path == NULL || out->stdout_path == NULL ||
      out->stderr_path == NULL) {
    kyb_ctd_process_clear(out);
    return kyb_error_set(err, ENOMEM, "process record");
  }
  out->pid = pb->pid;
  out->status = (unsigned)pb->status <= KYB_CTD_TASK_PAUSING ? (kyb_ctd_task_status)pb->status
                                                             : KYB_CTD_TASK_UNKNOWN;
  out->terminal = pb->terminal;
  out->exit_status = pb->exit_status;
  out->exited_at_ns = kyb_ctd_timestamp_ns(pb->exited_at);
  return 0;
}

int kyb_ctd_decode_task_get_response(const uint8_t *buf, size_t len, kyb_ctd_process *out,
                                     kyb_error **err) {
  memset(out, 0, sizeof(*out));
  ProtobufCMessage *m = NULL;
  if (kyb_ctd_unpack(&containerd__services__tasks__v1__get_response__descriptor, buf, len,
                     "containerd Tasks.Get", &m, err) < 0)
    return -1;
  int rc = copy_process(((Containerd__Services__Tasks__V1__GetResponse *)m)->process, out, err);
  protobuf_c_message_free_unpacked(m, NULL);
  return rc;
}

/* The shim tags exec processes with ProcessDetails{exec_id}; anything else
 * (no info, another type) is reported as "not an exec". */
static int exec_id_of(const Google__Protobuf__Any *info, char **out, kyb_error **err) {
  *out = NULL;
  if (info == NULL || strcmp(info->type_url, KYB_CTD_TYPE_RUNC_PROCESS_DETAILS) != 0)
    return 0;
  ProtobufCMessage *m = NULL;
  if (kyb_ctd_unpack(&containerd__runc__v1__process_details__descriptor, info->value.data,
                     info->value.len, "process details", &m, err) < 0)
    return -1;
  const char *id = ((Containerd__Runc__V1__ProcessDetails *)m)->exec_id;
  if (id[0] != '\0') {
    *out = strdup(id);
    if (*out == NULL) {
      protobuf_c_message_free_unpacked(m, NULL);
      return kyb_error_set(err, ENOMEM, "process details");
    }
  }
  protobuf_c_message_free_unpacked(m, NULL);
  return 0;
}

int kyb_ctd_decode_list_pids_response(const uint8_t *buf, size_t len, kyb_ctd_pid_list *out,
                                      kyb_error **err) {
  memset(out, 0, sizeof(*out));
  ProtobufCMessage *m = NULL;
  if (kyb_ctd_unpack(&containerd__services__tasks__v1__list_pids_response__descriptor, buf, len,
                     "containerd Tasks.ListPids", &m, err) < 0)
    return -1;
  Containerd__Services__Tasks__V1__ListPidsResponse *r = (void *)m;
  out->items = calloc(r->n_processes + 1, sizeof(*out->items));
  int rc = out->items == NULL ? kyb_ctd_oom(err, "pid list") : 0;
  for (size_t i = 0; rc == 0 && i < r->n_processes; i++) {
    out->items[i].pid = r->processes[i]->pid;
    rc = exec_id_of(r->processes[i]->info, &out->items[i].exec_id, err);
    out->n = i + 1;
  }
  protobuf_c_message_free_unpacked(m, NULL);
  if (rc < 0)
    kyb_ctd_pid_list_clear(out);
  return rc;
}

/* ---- encoding ---- */

int kyb_ctd_encode_checkpoint_request(const char *container_id, const kyb_ctd_checkpoint_opts *opts,
                                      uint8_t **out, size_t *len, kyb_error **err) {
  Containerd__Services__Tasks__V1__CheckpointTaskRequest req =
      CONTAINERD__SERVICES__TASKS__V1__CHECKPOINT_TASK_REQUEST__INIT;
  Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
  kyb_ctd_any packed = {0};
  req.container_id = (char *)container_id;
  if (opts != NULL) {
    if (kyb_ctd_checkpoint_opts_to_any(opts, &packed, err) < 0)
      return -1;
    any.type_url = packed.type_url;
    any.value.data = packed.value;
    any.value.len = packed.len;
    req.options = &any;
  }
  int rc = kyb_ctd_pack(&req.base, out, len, err);
  kyb_ctd_any_clear(&packed);
  return rc;
}

int kyb_ctd_encode_task_create_request(const kyb_ctd_task_create_req *r, uint8_t **out, size_t *len,
                                       kyb_error **err) {
  if (r->container_id == NULL || r->container_id[0] == '\0')
    return kyb_error_set(err, EINVAL, "task create needs a container id");
  Containerd__Services__Tasks__V1__CreateTaskRequest req =
      CONTAINERD__SERVICES__TASKS__V1__CREATE_TASK_REQUEST__INIT;
  Containerd__Types__Descriptor cp = CONTAINERD__TYPES__DESCRIPTOR__INIT;
  Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
  kyb_ctd_any packed = {0};
  req.container_id = (char *)r->container_id;
  req.stdin = (char *)r->stdin_path;
  req.stdout = (char *)r->stdout_path;
  req.stderr = (char *)r->stderr_path;
  req.terminal = r->terminal;
  req.runtime_path = (char *)r->runtime_path;
  if (r->checkpoint != NULL) {
    cp.media_type = r->checkpoint->media_type;
    cp.digest = r->checkpoint->digest;
    cp.size = r->checkpoint->size;
    req.checkpoint = &cp;
  }
  if (kyb_ctd_mounts_view(r->rootfs, r->nrootfs, &req.rootfs, err) < 0)
    return -1;
  req.n_rootfs = r->nrootfs;
  int rc = 0;
  if (r->options != NULL) {
    rc = kyb_ctd_runc_options_to_any(r->options, &packed, err);
    any.type_url = packed.type_url;
    any.value.data = packed.value;
    any.value.len = packed.len;
    req.options = &any;
  }
  if (rc == 0)
    rc = kyb_ctd_pack(&req.base, out, len, err);
  kyb_ctd_any_clear(&packed);
  kyb_ctd_mounts_view_free(req.rootfs, req.n_rootfs);
  return rc;
}

/* ---- calls ---- */

int kyb_ctd_task_get_in(kyb_ctd_client *c, const char *ns, const char *container_id,
                        kyb_ctd_process *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  Containerd__Services__Tasks__V1__GetRequest req =
      CONTAINERD__SERVICES__TASKS__V1__GET_REQUEST__INIT;
  req.container_id = (char *)container_id;
  cleanup_free uint8_t *buf = NULL;
  size_t len = 0;
  if (kyb_ctd_pack(&req.base, &buf, &len, err) < 0)
    return -1;
  kyb_grpc_call_opts o = {.ns = ns};
  cleanup_free uint8_t *resp = NULL;
  size_t resp_len = 0;
  if (kyb_grpc_unary(kyb_ctd_client_conn(c), KYB_CTD_TASKS "Get", buf, len, &o, &resp, &resp_len,
                     err) < 0 ||
      kyb_ctd_decode_task_get_response(resp, resp_len, out, err) < 0)
    return kyb_error_wrap(err, "task %s", container_id);
  return 0;
}

int kyb_ctd_task_get(kyb_ctd_client *c, const char *container_id, const char *exec_id,
                     kyb_ctd_process *out, kyb_error **err) {
  if (exec_id == NULL || exec_id[0] == '\0')
    return kyb_ctd_task_get_in(c, NULL, container_id, out, err);
  memset(out, 0, sizeof(*out));
  Containerd__Services__Tasks__V1__GetRequest req =
      CONTAINERD__SERVICES__TASKS__V1__GET_REQUEST__INIT;
  req.container_id = (char *)container_id;
  req.exec_id = (char *)exec_id;
  ProtobufCMessage *m = NULL;
  if (kyb_ctd_call(c, NULL, KYB_CTD_TASKS "Get", &req.base,
                   &containerd__services__tasks__v1__get_response__descriptor, 0, &m, err) < 0)
    return kyb_error_wrap(err, "task %s exec %s", container_id, exec_id);
  int rc = copy_process(((Containerd__Services__Tasks__V1__GetResponse *)m)->process, out, err);
  protobuf_c_message_free_unpacked(m, NULL);
  return rc;
}

int kyb_ctd_task_list_pids(kyb_ctd_client *c, const char *container_id, kyb_ctd_pid_list *out,
                           kyb_error **err) {
  memset(out, 0, sizeof(*out));
  Containerd__Services__Tasks__V1__ListPidsRequest req =
      CONTAINERD__SERVICES__TASKS__V1__LIST_PIDS_REQUEST__INIT;
  req.container_id = (char *)container_id;
  cleanup_free uint8_t *buf = NULL;
  size_t len = 0;
  if (kyb_ctd_pack(&req.base, &buf, &len, err) < 0)
    return -1;
  kyb_grpc_call_opts o = {0};
  cleanup_free uint8_t *resp = NULL;
  size_t resp_len = 0;
  if (kyb_grpc_unary(kyb_ctd_client_conn(c), KYB_CTD_TASKS "ListPids", buf, len, &o, &resp,
                     &resp_len, err) < 0 ||
      kyb_ctd_decode_list_pids_response(resp, resp_len, out, err) < 0)
    return kyb_error_wrap(err, "pids of task %s", container_id);
  return 0;
}

/* Pause, Resume: a request with only container_id, an Empty reply. */
static int simple_call(kyb_ctd_client *c, const char *method, const char *container_id,
                       kyb_error **err) {
  /* PauseTaskRequest and ResumeTaskRequest are both {container_id = 1}. */
  Containerd__Services__Tasks__V1__PauseTaskRequest req =
      CONTAINERD__SERVICES__TASKS__V1__PAUSE_TASK_REQUEST__INIT;
  req.container_id = (char *)container_id;
  char path[96];
  snprintf(path, sizeof(path), KYB_CTD_TASKS "%s", method);
  if (kyb_ctd_call(c, NULL, path, &req.base, NULL, 0, NULL, err) < 0)
    return kyb_error_wrap(err, "%s task %s", method, container_id);
  return 0;
}

int kyb_ctd_task_pause(kyb_ctd_client *c, const char *container_id, kyb_error **err) {
  return simple_call(c, "Pause", container_id, err);
}

int kyb_ctd_task_resume(kyb_ctd_client *c, const char *container_id, kyb_error **err) {
  return simple_call(c, "Resume", container_id, err);
}

int kyb_ctd_task_checkpoint(kyb_ctd_client *c, const char *container_id,
                            const kyb_ctd_checkpoint_opts *opts, int64_t deadline_ms,
                            kyb_ctd_descriptor **out, size_t *nout, kyb_error **err) {
  if (out != NULL)
    *out = NULL;
  if (nout != NULL)
    *nout = 0;
  cleanup_free uint8_t *buf = NULL;
  size_t len = 0;
  if (kyb_ctd_encode_checkpoint_request(container_id, opts, &buf, &len, err) < 0)
    return kyb_error_wrap(err, "checkpoint task %s", container_id);
  ProtobufCMessage *m = NULL;
  if (kyb_ctd_call_raw(c, NULL, KYB_CTD_TASKS "Checkpoint", buf, len,
                       &containerd__services__tasks__v1__checkpoint_task_response__descriptor,
                       deadline_ms, &m, err) < 0)
    return kyb_error_wrap(err, "checkpoint task %s", container_id);
  Containerd__Services__Tasks__V1__CheckpointTaskResponse *r = (void *)m;
  int rc = 0;
  if (out != NULL && nout != NULL && r->n_descriptors > 0) {
    kyb_ctd_descriptor *d = calloc(r->n_descriptors, sizeof(*d));
    size_t n = 0;
    rc = d == NULL ? kyb_ctd_oom(err, "checkpoint descriptors") : 0;
    for (; rc == 0 && n < r->n_descriptors; n++)
      rc = kyb_ctd_descriptor_copy(r->descriptors[n], &d[n], err);
    if (rc == 0) {
      *out = d;
      *nout = n;
    } else {
      kyb_ctd_descriptors_free(d, n);
    }
  }
  protobuf_c_message_free_unpacked(m, NULL);
  return rc;
}

int kyb_ctd_task_kill(kyb_ctd_client *c, const char *container_id, const char *exec_id,
                      uint32_t signal, bool all, kyb_error **err) {
  Containerd__Services__Tasks__V1__KillRequest req =
      CONTAINERD__SERVICES__TASKS__V1__KILL_REQUEST__INIT;
  req.container_id = (char *)container_id;
  req.exec_id = (char *)exec_id;
  req.signal = signal;
  req.all = all;
  if (kyb_ctd_call(c, NULL, KYB_CTD_TASKS "Kill", &req.base, NULL, 0, NULL, err) < 0)
    return kyb_error_wrap(err, "signal %u to task %s", signal, container_id);
  return 0;
}

int kyb_ctd_task_delete(kyb_ctd_client *c, const char *container_id, kyb_ctd_exit *out,
                        kyb_error **err) {
  Containerd__Services__Tasks__V1__DeleteTaskRequest req =
      CONTAINERD__SERVICES__TASKS__V1__DELETE_TASK_REQUEST__INIT;
  req.container_id = (char *)container_id;
  ProtobufCMessage *m = NULL;
  if (kyb_ctd_call(c, NULL, KYB_CTD_TASKS "Delete", &req.base,
                   &containerd__services__tasks__v1__delete_response__descriptor, 0, &m, err) < 0)
    return kyb_error_wrap(err, "delete task %s", container_id);
  Containerd__Services__Tasks__V1__DeleteResponse *r = (void *)m;
  if (out != NULL) {
    out->pid = r->pid;
    out->exit_status = r->exit_status;
    out->exited_at_ns = kyb_ctd_timestamp_ns(r->exited_at);
  }
  protobuf_c_message_free_unpacked(m, NULL);
  return 0;
}

int kyb_ctd_task_create(kyb_ctd_client *c, const kyb_ctd_task_create_req *req, uint32_t *pid,
                        kyb_error **err) {
  const char *id = req->container_id != NULL ? req->container_id : "(no id)";
  cleanup_free uint8_t *buf = NULL;
  size_t len = 0;
  if (kyb_ctd_encode_task_create_request(req, &buf, &len, err) < 0)
    return kyb_error_wrap(err, "create task %s", id);
  ProtobufCMessage *m = NULL;
  if (kyb_ctd_call_raw(c, NULL, KYB_CTD_TASKS "Create", buf, len,
                       &containerd__services__tasks__v1__create_task_response__descriptor, 0, &m,
                       err) < 0)
    return kyb_error_wrap(err, "create task %s", id);
  if (pid != NULL)
    *pid = ((Containerd__Services__Tasks__V1__CreateTaskResponse *)m)->pid;
  protobuf_c_message_free_unpacked(m, NULL);
  return 0;
}

int kyb_ctd_task_start(kyb_ctd_client *c, const char *container_id, const char *exec_id,
                       uint32_t *pid, kyb_error **err) {
  Containerd__Services__Tasks__V1__StartRequest req =
      CONTAINERD__SERVICES__TASKS__V1__START_REQUEST__INIT;
  req.container_id = (char *)container_id;
  req.exec_id = (char *)exec_id;
  ProtobufCMessage *m = NULL;
  if (kyb_ctd_call(c, NULL, KYB_CTD_TASKS "Start", &req.base,
                   &containerd__services__tasks__v1__start_response__descriptor, 0, &m, err) < 0)
    return kyb_error_wrap(err, "start task %s", container_id);
  if (pid != NULL)
    *pid = ((Containerd__Services__Tasks__V1__StartResponse *)m)->pid;
  protobuf_c_message_free_unpacked(m, NULL);
  return 0;
}

int kyb_ctd_task_wait(kyb_ctd_client *c, const char *container_id, const char *exec_id,
                      int64_t deadline_ms, kyb_ctd_exit *out, kyb_error **err) {
  Containerd__Services__Tasks__V1__WaitRequest req =
      CONTAINERD__SERVICES__TASKS__V1__WAIT_REQUEST__INIT;
  req.container_id = (char *)container_id;
  req.exec_id = (char *)exec_id;
  ProtobufCMessage *m = NULL;
  if (kyb_ctd_call(c, NULL, KYB_CTD_TASKS "Wait", &req.base,
                   &containerd__services__tasks__v1__wait_response__descriptor, deadline_ms, &m,
                   err) < 0)
    return kyb_error_wrap(err, "wait for task %s", container_id);
  Containerd__Services__Tasks__V1__WaitResponse *r = (void *)m;
  if (out != NULL) {
    out->pid = 0;
    out->exit_status = r->exit_status;
    out->exited_at_ns = kyb_ctd_timestamp_ns(r->exited_at);
  }
  protobuf_c_message_free_unpacked(m, NULL);
  return 0;
}
