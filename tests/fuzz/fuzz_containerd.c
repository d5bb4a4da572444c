/* SPDX-License-Identifier: Apache-2.0 */
/*
 * containerd's answers: the gRPC body (length-prefixed messages) and the
 * protobuf replies decoded from it (lib/containerd/grpc_wire.c, codec.c,
 * tasks.c, containers.c), plus the header and trailer lines libcurl hands
 * over.  Input: one selector byte, then the bytes.
 *   selector & 3    which reply: Tasks.Get, Tasks.ListPids, Containers.Get,
 *                   runc Options (also decoded from a container's Any)
 *   selector & 4    the bytes are a gRPC body (framed) rather than the bare
 *                   message; the streaming decoder must then agree with the
 *                   unary one whatever the chunking (selector >> 4 + 1)
 *   selector & 8    the bytes are header lines instead (kyb_grpc_meta_header)
 */
#include <stdbool.h>

#include "containerd/codec.h"
#include "containerd/grpc.h"
#include "fuzz.h"

#define MAX_MSG (1u << 20)

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_quiet_log();
  return 0;
}

static void check_runc_options(const kyb_ctd_runc_options *o) {
  /* strings may be NULL ("unset"), else NUL-terminated */
  const char *s[] = {o->shim_cgroup, o->binary_name, o->root, o->criu_image_path,
                     o->criu_work_path};
  for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
    if (s[i] != NULL)
      (void)strlen(s[i]);
}

static void decode(unsigned which, const uint8_t *msg, size_t len) {
  kyb_error *err = NULL;
  int rc;
  switch (which) {
  case 0: {
    kyb_ctd_process p;
    rc = kyb_ctd_decode_task_get_response(msg, len, &p, &err);
    fuzz_check_rc(rc, &err);
    if (rc == 0) {
      FUZZ_ASSERT(p.id != NULL && p.stdin_path != NULL && p.stdout_path != NULL &&
                  p.stderr_path != NULL);
      FUZZ_ASSERT(p.status <= KYB_CTD_TASK_PAUSING);
      FUZZ_ASSERT(kyb_ctd_task_status_name(p.status) != NULL);
    }
    kyb_ctd_process_clear(&p);
    break;
  }
  case 1: {
    kyb_ctd_pid_list l;
    rc = kyb_ctd_decode_list_pids_response(msg, len, &l, &err);
    fuzz_check_rc(rc, &err);
    if (rc == 0) {
      FUZZ_ASSERT(l.items != NULL);
      for (size_t i = 0; i < l.n; i++)
        FUZZ_ASSERT(l.items[i].exec_id == NULL || l.items[i].exec_id[0] != '\0');
    } else {
      FUZZ_ASSERT(l.items == NULL && l.n == 0);
    }
    kyb_ctd_pid_list_clear(&l);
    break;
  }
  case 2: {
    kyb_ctd_container ct;
    rc = kyb_ctd_decode_container_get_response(msg, len, &ct, &err);
    fuzz_check_rc(rc, &err);
    if (rc == 0) {
      FUZZ_ASSERT(ct.id != NULL && ct.image != NULL && ct.runtime_name != NULL &&
                  ct.snapshotter != NULL && ct.snapshot_key != NULL && ct.sandbox != NULL);
      FUZZ_ASSERT(ct.spec_json != NULL && ct.spec_json[ct.spec_len] == '\0');
      for (size_t i = 0; i < ct.nlabels; i++) {
        FUZZ_ASSERT(ct.labels[i].key != NULL && ct.labels[i].value != NULL);
        FUZZ_ASSERT(kyb_ctd_container_label(&ct, ct.labels[i].key) != NULL);
      }
      kyb_ctd_runc_options o;
      memset(&o, 0, sizeof(o));
      rc = kyb_ctd_container_runc_options(&ct, &o, &err);
      fuzz_check_rc(rc, &err);
      if (rc == 0)
        check_runc_options(&o);
      kyb_ctd_runc_options_clear(&o);
    }
    kyb_ctd_container_clear(&ct);
    break;
  }
  default: {
    kyb_ctd_runc_options o;
    memset(&o, 0, sizeof(o));
    rc = kyb_ctd_runc_options_from_bytes(msg, len, &o, &err);
    fuzz_check_rc(rc, &err);
    if (rc == 0)
      check_runc_options(&o);
    kyb_ctd_runc_options_clear(&o);
    break;
  }
  }
}

typedef struct {
  size_t n, bytes;
} counter;

static int count(void *ud, const uint8_t *msg, size_t len, kyb_error **err) {
  (void)err;
  counter *c = ud;
  FUZZ_ASSERT(msg != NULL && len <= MAX_MSG);
  c->n++;
  c->bytes += len;
  return 0;
}

/* The streaming decoder in chunks agrees with one feed of everything. */
static void stream(const uint8_t *body, size_t len, size_t chunk) {
  kyb_error *err = NULL;
  counter whole = {0}, parts = {0};
  kyb_grpc_decoder d;
  kyb_grpc_decoder_init(&d, MAX_MSG);
  int rw = kyb_grpc_decoder_feed(&d, body, len, count, &whole, &err);
  if (rw == 0)
    rw = kyb_grpc_decoder_finish(&d, &err);
  fuzz_check_rc(rw, &err);
  kyb_grpc_decoder_clear(&d);

  kyb_grpc_decoder_init(&d, MAX_MSG);
  int rp = 0;
  for (size_t off = 0; rp == 0 && off < len; off += chunk)
    rp = kyb_grpc_decoder_feed(&d, body + off, len - off < chunk ? len - off : chunk, count, &parts,
                               &err);
  if (rp == 0)
    rp = kyb_grpc_decoder_finish(&d, &err);
  fuzz_check_rc(rp, &err);
  kyb_grpc_decoder_clear(&d);
  FUZZ_ASSERT(rw == rp && whole.n == parts.n && whole.bytes == parts.bytes);
  if (rw == 0)
    FUZZ_ASSERT(whole.bytes + whole.n * KYB_GRPC_FRAME_HEADER == len);
}

static void headers(const uint8_t *data, size_t size) {
  kyb_grpc_meta m;
  kyb_grpc_meta_init(&m);
  const char *p = (const char *)data, *end = p + size;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = nl != NULL ? (size_t)(nl - p) + 1 : (size_t)(end - p);
    FUZZ_ASSERT(kyb_grpc_meta_header(&m, p, n) == 0);
    p += n;
  }
  FUZZ_ASSERT(m.http_status >= 0 && m.http_status <= 999);
  FUZZ_ASSERT(m.grpc_status >= KYB_GRPC_NO_STATUS);
  if (m.grpc_message != NULL)
    FUZZ_ASSERT(strlen(m.grpc_message) <= size);
  if (m.grpc_status >= 0) {
    (void)kyb_grpc_code_name(m.grpc_status);
    (void)kyb_grpc_status_errno(m.grpc_status);
  }
  (void)kyb_grpc_http_to_status(m.http_status);
  kyb_grpc_meta_clear(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  unsigned sel = data[0];
  data++;
  size--;
  if (sel & 8) {
    headers(data, size);
    return 0;
  }
  if (!(sel & 4)) {
    decode(sel & 3, data, size);
    return 0;
  }
  stream(data, size, (sel >> 4) + 1);
  kyb_error *err = NULL;
  uint8_t *msg = NULL;
  size_t len = 0;
  int rc = kyb_grpc_decode_unary(data, size, MAX_MSG, &msg, &len, &err);
  fuzz_check_rc(rc, &err);
  if (rc == 0) {
    FUZZ_ASSERT(msg != NULL && len + KYB_GRPC_FRAME_HEADER == size);
    decode(sel & 3, msg, len);
    free(msg);
  }
  return 0;
}
