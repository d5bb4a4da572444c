/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the containerd message codec (lib/containerd/codec.c,
 * tasks.c, containers.c): requests must match the reference's byte vectors
 * (docs: shared/reference/containerd-protocol.md §1.8) and hand-built
 * replies, unknown fields included, must decode into the C structs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "containerd/client.h"
#include "containerd/codec.h"
#include "containerd/grpc.h"
#include "util/cleanup.h"

/* A tiny protobuf writer for expected bytes, independent of protobuf-c:
 * single-byte tags, lengths up to 2 varint bytes. */
typedef struct {
  uint8_t b[512];
  size_t n;
} wbuf;

static void put(wbuf *w, const void *p, size_t n) {
  assert_true(w->n + n <= sizeof(w->b));
  memcpy(w->b + w->n, p, n);
  w->n += n;
}

static void put_byte(wbuf *w, uint8_t v) {
  put(w, &v, 1);
}

static void put_len(wbuf *w, uint8_t tag, const void *p, size_t n) {
  assert_true(n < 16384);
  put_byte(w, tag);
  if (n >= 128) {
    put_byte(w, (uint8_t)(0x80 | (n & 0x7f)));
    put_byte(w, (uint8_t)(n >> 7));
  } else {
    put_byte(w, (uint8_t)n);
  }
  put(w, p, n);
}

static void put_str(wbuf *w, uint8_t tag, const char *s) {
  put_len(w, tag, s, strlen(s));
}

static void put_sub(wbuf *w, uint8_t tag, const wbuf *sub) {
  put_len(w, tag, sub->b, sub->n);
}

/* ---- requests against the reference vectors ---- */

static void test_checkpoint_request_matches_reference(void **state) {
  (void)state;
  kyb_ctd_checkpoint_opts o = {.image_path = "/var/lib/cp/ctr1",
                               .work_path = "/var/lib/cp/ctr1-work"};
  cleanup_free uint8_t *body = NULL;
  size_t len = 0;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_ctd_encode_checkpoint_request("ctr1", &o, &body, &len, &err), 0);

  wbuf value = {0};
  put_str(&value, 0x42, "/var/lib/cp/ctr1");
  put_str(&value, 0x4a, "/var/lib/cp/ctr1-work");
  assert_int_equal(value.n, 41);
  wbuf any = {0};
  put_str(&any, 0x0a, "containerd.runc.v1.CheckpointOptions");
  put_sub(&any, 0x12, &value);
  assert_int_equal(any.n, 81);
  wbuf want = {0};
  put_str(&want, 0x0a, "ctr1");
  put_sub(&want, 0x1a, &any);
  assert_int_equal(want.n, 89);

  assert_int_equal(len, 89);
  assert_memory_equal(body, want.b, 89);
  /* The first bytes as the reference spells them out. */
  const uint8_t head[] = {0x0a, 0x04, 'c', 't', 'r', '1', 0x1a, 0x51, 0x0a, 0x24};
  assert_memory_equal(body, head, sizeof(head));

  cleanup_free uint8_t *frame = NULL;
  size_t flen = 0;
  assert_int_equal(kyb_grpc_frame_encode(body, len, KYB_GRPC_MAX_MESSAGE, &frame, &flen, &err), 0);
  const uint8_t prefix[] = {0x00, 0x00, 0x00, 0x00, 0x59};
  assert_memory_equal(frame, prefix, 5);
}

static void test_checkpoint_flags_and_namespaces(void **state) {
  (void)state;
  const char *empty_ns[] = {"network"};
  kyb_ctd_checkpoint_opts o = {.exit = true,
                               .open_tcp = true,
                               .external_unix_sockets = true,
                               .terminal = true,
                               .file_locks = true,
                               .empty_namespaces = empty_ns,
                               .nempty_namespaces = 1,
                               .image_path = "/i"};
  kyb_ctd_any any = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_ctd_checkpoint_opts_to_any(&o, &any, &err), 0);
  assert_string_equal(any.type_url, KYB_CTD_TYPE_RUNC_CHECKPOINT_OPTIONS);
  wbuf want = {0};
  const uint8_t bools[] = {0x08, 0x01, 0x10, 0x01, 0x18, 0x01, 0x20, 0x01, 0x28, 0x01};
  put(&want, bools, sizeof(bools));
  put_str(&want, 0x32, "network");
  put_str(&want, 0x42, "/i");
  assert_int_equal(any.len, want.n);
  assert_memory_equal(any.value, want.b, want.n);
  kyb_ctd_any_clear(&any);

  /* No options at all: the request is just the container id. */
  cleanup_free uint8_t *body = NULL;
  size_t len = 0;
  assert_int_equal(kyb_ctd_encode_checkpoint_request("c", NULL, &body, &len, &err), 0);
  assert_int_equal(len, 3);
  assert_memory_equal(body,
                      "\x0a\x01"
                      "c",
                      3);
}

static void test_runc_options_any_matches_reference(void **state) {
  (void)state;
  kyb_ctd_runc_options o = {.binary_name = "/usr/local/bin/runc",
                            .criu_image_path = "/var/lib/cp/ctr1"};
  kyb_ctd_any any = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_ctd_any_from_runc_options(&o, &any, &err), 0);
  assert_string_equal(any.type_url, "containerd.runc.v1.Options");
  assert_int_equal(strlen(any.type_url), 0x1a);
  wbuf want = {0};
  put_str(&want, 0x32, "/usr/local/bin/runc");
  put_str(&want, 0x52, "/var/lib/cp/ctr1");
  assert_int_equal(want.n, 0x27);
  assert_int_equal(any.len, want.n);
  assert_memory_equal(any.value, want.b, want.n);

  /* And back. */
  kyb_ctd_runc_options back = {0};
  assert_int_equal(kyb_ctd_runc_options_from_bytes(any.value, any.len, &back, &err), 0);
  assert_string_equal(back.binary_name, "/usr/local/bin/runc");
  assert_string_equal(back.criu_image_path, "/var/lib/cp/ctr1");
  assert_string_equal(back.root, "");
  assert_false(back.systemd_cgroup);
  kyb_ctd_runc_options_clear(&back);
  kyb_ctd_any_clear(&any);
}

static void test_task_create_request(void **state) {
  (void)state;
  char *opts[] = {"index=off", "workdir=/w", "upperdir=/u", "lowerdir=/l"};
  kyb_ctd_mount rootfs = {.type = "overlay", .source = "overlay", .options = opts, .noptions = 4};
  kyb_ctd_runc_options ro = {.binary_name = "/usr/local/bin/runc",
                             .criu_image_path = "/var/lib/cp/ctr1"};
  kyb_ctd_task_create_req req = {.container_id = "ctr1",
                                 .rootfs = &rootfs,
                                 .nrootfs = 1,
                                 .stdout_path = "/run/o",
                                 .stderr_path = "/run/e",
                                 .options = &ro};
  cleanup_free uint8_t *body = NULL;
  size_t len = 0;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_ctd_encode_task_create_request(&req, &body, &len, &err), 0);

  wbuf mount = {0};
  put_str(&mount, 0x0a, "overlay");
  put_str(&mount, 0x12, "overlay");
  for (size_t i = 0; i < 4; i++)
    put_str(&mount, 0x22, opts[i]);
  wbuf value = {0};
  put_str(&value, 0x32, "/usr/local/bin/runc");
  put_str(&value, 0x52, "/var/lib/cp/ctr1");
  wbuf any = {0};
  put_str(&any, 0x0a, "containerd.runc.v1.Options");
  put_sub(&any, 0x12, &value);
  wbuf want = {0};
  put_str(&want, 0x0a, "ctr1");
  put_sub(&want, 0x1a, &mount);   /* rootfs = 3 */
  put_str(&want, 0x2a, "/run/o"); /* stdout = 5 */
  put_str(&want, 0x32, "/run/e"); /* stderr = 6 */
  put_sub(&want, 0x4a, &any);     /* options = 9 */
  assert_int_equal(len, want.n);
  assert_memory_equal(body, want.b, want.n);

  req.container_id = "";
  uint8_t *none = NULL;
  assert_int_equal(kyb_ctd_encode_task_create_request(&req, &none, &len, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
}

static void test_container_create_request_roundtrip(void **state) {
  (void)state;
  kyb_ctd_kv labels[] = {{"a", "b"}};
  kyb_ctd_runc_options ro = {.binary_name = "/usr/bin/kybernate-runc"};
  kyb_ctd_container spec = {.id = "r1",
                            .image = "docker.io/library/busybox:latest",
                            .runtime_name = KYB_CTD_RUNC_RUNTIME,
                            .spec_json = "{\"ociVersion\":\"1.0.2\"}",
                            .snapshotter = "overlayfs",
                            .snapshot_key = "r1",
                            .labels = labels,
                            .nlabels = 1};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_ctd_any_from_runc_options(&ro, &spec.runtime_options, &err), 0);
  cleanup_free uint8_t *body = NULL;
  size_t len = 0;
  assert_int_equal(kyb_ctd_encode_container_create_request(&spec, &body, &len, &err), 0);
  kyb_ctd_any_clear(&spec.runtime_options);

  ProtobufCMessage *m = NULL;
  assert_int_equal(
      kyb_ctd_unpack(&containerd__services__containers__v1__create_container_request__descriptor,
                     body, len, "test", &m, &err),
      0);
  Containerd__Services__Containers__V1__CreateContainerRequest *r = (void *)m;
  kyb_ctd_container back = {0};
  assert_int_equal(kyb_ctd_decode_container(r->container, &back, &err), 0);
  assert_string_equal(r->container->spec->type_url, KYB_CTD_TYPE_OCI_SPEC);
  assert_string_equal(back.spec_json, "{\"ociVersion\":\"1.0.2\"}");
  assert_string_equal(back.runtime_name, "io.containerd.runc.v2");
  assert_string_equal(back.runtime_options.type_url, "containerd.runc.v1.Options");
  assert_string_equal(kyb_ctd_container_label(&back, "a"), "b");
  assert_string_equal(back.snapshot_key, "r1");
  /* The labels map entry is encoded as the reference shows: 12 06 0a 01 61 12 01 62. */
  const uint8_t entry[] = {0x12, 0x06, 0x0a, 0x01, 'a', 0x12, 0x01, 'b'};
  assert_non_null(memmem(body, len, entry, sizeof(entry)));
  kyb_ctd_container_clear(&back);
  protobuf_c_message_free_unpacked(m, NULL);
}

/* ---- replies ---- */

/* Timestamp {1700000000, 5} from the reference: 08 80 e2 cf aa 06 10 05. */
static void put_timestamp(wbuf *w, uint8_t tag) {
  const uint8_t ts[] = {0x08, 0x80, 0xe2, 0xcf, 0xaa, 0x06, 0x10, 0x05};
  put_len(w, tag, ts, sizeof(ts));
}

static void test_decode_task_get_response(void **state) {
  (void)state;
  wbuf proc = {0};
  put_str(&proc, 0x12, "ctr1");          /* id = 2 (container_id left empty, as 1.7 does) */
  put(&proc, "\x18\x2a", 2);             /* pid = 42 */
  put(&proc, "\x20\x02", 2);             /* status = RUNNING */
  put_str(&proc, 0x32, "/run/fifo-out"); /* stdout = 6 */
  put(&proc, "\x48\x89\x01", 3);         /* exit_status = 137 */
  put_timestamp(&proc, 0x52);            /* exited_at = 10 */
  put(&proc, "\xa0\x01\x07", 3);         /* unknown field 20: skipped */
  wbuf resp = {0};
  put_sub(&resp, 0x0a, &proc);

  kyb_ctd_process p = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_ctd_decode_task_get_response(resp.b, resp.n, &p, &err), 0);
  assert_string_equal(p.id, "ctr1");
  assert_int_equal(p.pid, 42);
  assert_int_equal(p.status, KYB_CTD_TASK_RUNNING);
  assert_string_equal(kyb_ctd_task_status_name(p.status), "running");
  assert_string_equal(p.stdout_path, "/run/fifo-out");
  assert_string_equal(p.stdin_path, "");
  assert_int_equal(p.exit_status, 137);
  assert_true(p.exited_at_ns == 1700000000LL * 1000000000LL + 5);
  kyb_ctd_process_clear(&p);

  /* A reply without the process is a protocol error, not a crash. */
  assert_int_equal(kyb_ctd_decode_task_get_response((const uint8_t *)"", 0, &p, &err), -1);
  assert_int_equal(kyb_error_code(err), EPROTO);
  kyb_error_clear(&err);
  const uint8_t garbage[] = {0x0a, 0x7f, 0x01};
  assert_int_equal(kyb_ctd_decode_task_get_response(garbage, sizeof(garbage), &p, &err), -1);
  assert_int_equal(kyb_error_code(err), EPROTO);
}

static void test_decode_list_pids_response(void **state) {
  (void)state;
  wbuf init = {0};
  put(&init, "\x08\xe8\x07", 3); /* pid 1000, no info: the init process */
  wbuf details = {0};
  put_str(&details, 0x0a, "exec-1");
  wbuf any = {0};
  put_str(&any, 0x0a, "containerd.runc.v1.ProcessDetails");
  put_sub(&any, 0x12, &details);
  wbuf exec = {0};
  put(&exec, "\x08\xe9\x07", 3); /* pid 1001 */
  put_sub(&exec, 0x12, &any);
  wbuf resp = {0};
  put_sub(&resp, 0x0a, &init);
  put_sub(&resp, 0x0a, &exec);

  kyb_ctd_pid_list l = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_ctd_decode_list_pids_response(resp.b, resp.n, &l, &err), 0);
  assert_int_equal(l.n, 2);
  assert_int_equal(l.items[0].pid, 1000);
  assert_null(l.items[0].exec_id);
  assert_int_equal(l.items[1].pid, 1001);
  assert_string_equal(l.items[1].exec_id, "exec-1");
  kyb_ctd_pid_list_clear(&l);
}

static void test_decode_container_get_response(void **state) {
  (void)state;
  wbuf label1 = {0};
  put_str(&label1, 0x0a, "io.kubernetes.pod.name");
  put_str(&label1, 0x12, "web-0");
  wbuf label2 = {0};
  put_str(&label2, 0x0a, "io.kubernetes.container.name");
  put_str(&label2, 0x12, "app");
  wbuf opts = {0};
  put_str(&opts, 0x3a, "/run/containerd/runc");
  put(&opts, "\x48\x01", 2); /* systemd_cgroup */
  wbuf opts_any = {0};
  put_str(&opts_any, 0x0a, "containerd.runc.v1.Options");
  put_sub(&opts_any, 0x12, &opts);
  wbuf runtime = {0};
  put_str(&runtime, 0x0a, "io.containerd.runc.v2");
  put_sub(&runtime, 0x12, &opts_any);
  wbuf spec = {0};
  put_str(&spec, 0x0a, KYB_CTD_TYPE_OCI_SPEC);
  put_str(&spec, 0x12, "{\"ociVersion\":\"1.1.0\"}");
  wbuf ext = {0}; /* extensions (10): not in our .proto, must be skipped */
  put_str(&ext, 0x0a, "io.cri-containerd.container.metadata");
  wbuf ct = {0};
  put_str(&ct, 0x0a, "abc123");
  put_sub(&ct, 0x12, &label1);
  put_sub(&ct, 0x12, &label2);
  put_str(&ct, 0x1a, "registry.k8s.io/pause:3.8");
  put_sub(&ct, 0x22, &runtime);
  put_sub(&ct, 0x2a, &spec);
  put_str(&ct, 0x32, "overlayfs");
  put_str(&ct, 0x3a, "abc123");
  put_timestamp(&ct, 0x42);
  put_sub(&ct, 0x52, &ext);
  wbuf resp = {0};
  put_sub(&resp, 0x0a, &ct);

  kyb_ctd_container c = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_ctd_decode_container_get_response(resp.b, resp.n, &c, &err), 0);
  assert_string_equal(c.id, "abc123");
  assert_string_equal(c.image, "registry.k8s.io/pause:3.8");
  assert_string_equal(c.runtime_name, "io.containerd.runc.v2");
  assert_string_equal(c.spec_json, "{\"ociVersion\":\"1.1.0\"}");
  assert_int_equal(c.spec_len, strlen("{\"ociVersion\":\"1.1.0\"}"));
  assert_string_equal(c.snapshotter, "overlayfs");
  assert_string_equal(c.snapshot_key, "abc123");
  assert_true(c.created_at_ns == 1700000000LL * 1000000000LL + 5);
  assert_int_equal(c.updated_at_ns, 0);
  assert_int_equal(c.nlabels, 2);
  assert_string_equal(kyb_ctd_container_label(&c, KYB_CTD_LABEL_POD_NAME), "web-0");
  assert_string_equal(kyb_ctd_container_label(&c, KYB_CTD_LABEL_CONTAINER_NAME), "app");
  assert_null(kyb_ctd_container_label(&c, KYB_CTD_LABEL_POD_NAMESPACE));
  kyb_ctd_runc_options ro = {0};
  assert_int_equal(kyb_ctd_container_runc_options(&c, &ro, &err), 0);
  assert_string_equal(ro.root, "/run/containerd/runc");
  assert_true(ro.systemd_cgroup);
  kyb_ctd_runc_options_clear(&ro);

  /* Options of another type are refused by name. */
  free(c.runtime_options.type_url);
  c.runtime_options.type_url = strdup("containerd.linux.runc.RuncOptions");
  assert_int_equal(kyb_ctd_container_runc_options(&c, &ro, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
  kyb_ctd_container_clear(&c);
}

/* Go's zero time, which containerd sends for "not exited", must not
 * overflow: it reads as unset. */
static void test_timestamp_edges(void **state) {
  (void)state;
  Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
  ts.seconds = -62135596800LL;
  assert_int_equal(kyb_ctd_timestamp_ns(&ts), 0);
  ts.seconds = INT64_MAX / 1000;
  assert_int_equal(kyb_ctd_timestamp_ns(&ts), 0);
  ts.seconds = 1700000000;
  ts.nanos = 5;
  assert_true(kyb_ctd_timestamp_ns(&ts) == 1700000000LL * 1000000000LL + 5);
  ts.nanos = -1;
  assert_int_equal(kyb_ctd_timestamp_ns(&ts), 0);
  assert_int_equal(kyb_ctd_timestamp_ns(NULL), 0);
}

/* ---- helpers ---- */

static void test_filter_quote(void **state) {
  (void)state;
  cleanup_free char *a = kyb_ctd_filter_quote("web-0");
  assert_string_equal(a, "\"web-0\"");
  cleanup_free char *b = kyb_ctd_filter_quote("a\"b\\c");
  assert_string_equal(b, "\"a\\\"b\\\\c\"");
  cleanup_free char *c = kyb_ctd_filter_quote("");
  assert_string_equal(c, "\"\"");
  assert_null(kyb_ctd_filter_quote("line\nbreak"));
}

static void test_k8s_filter(void **state) {
  (void)state;
  cleanup_free char *f = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_ctd_k8s_container_filter("default", "web-0", "app", &f, &err), 0);
  assert_string_equal(f, "labels.\"io.kubernetes.pod.namespace\"==\"default\","
                         "labels.\"io.kubernetes.pod.name\"==\"web-0\","
                         "labels.\"io.kubernetes.container.name\"==\"app\","
                         "labels.\"io.cri-containerd.kind\"==container");
  char *bad = NULL;
  assert_int_equal(kyb_ctd_k8s_container_filter("default", "web\n0", "app", &bad, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
  assert_null(bad);
}

static void test_mount_option(void **state) {
  (void)state;
  char *opts[] = {"index=off", "upperdir=/var/lib/x/fs", "lowerdir=/a:/b", "ro"};
  kyb_ctd_mount m = {.type = "overlay", .options = opts, .noptions = 4};
  assert_string_equal(kyb_ctd_mount_option(&m, "upperdir"), "/var/lib/x/fs");
  assert_string_equal(kyb_ctd_mount_option(&m, "lowerdir"), "/a:/b");
  assert_null(kyb_ctd_mount_option(&m, "upper"));
  assert_null(kyb_ctd_mount_option(&m, "ro"));
  assert_null(kyb_ctd_mount_option(&m, "workdir"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_checkpoint_request_matches_reference),
      cmocka_unit_test(test_checkpoint_flags_and_namespaces),
      cmocka_unit_test(test_runc_options_any_matches_reference),
      cmocka_unit_test(test_task_create_request),
      cmocka_unit_test(test_container_create_request_roundtrip),
      cmocka_unit_test(test_decode_task_get_response),
      cmocka_unit_test(test_decode_list_pids_response),
      cmocka_unit_test(test_decode_container_get_response),
      cmocka_unit_test(test_timestamp_edges),
      cmocka_unit_test(test_filter_quote),
      cmocka_unit_test(test_k8s_filter),
      cmocka_unit_test(test_mount_option),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
