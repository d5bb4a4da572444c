/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of lib/cuda/visible.c -- which GPUs a container has -- on a
 * FAKE NVIDIA proc directory (nvidia_proc_test.h) with two GPUs of one
 * model: G0 at bus 0000:18:00.0 with minor 0, G1 at bus 0000:9a:00.0 with
 * minor 1 (UUIDs as the libcuda double's gpu lines in test_runtime_gpu.c):
 *   - the proc files: PCI bus id order, every malformed or incomplete form;
 *   - lists in NVIDIA_VISIBLE_DEVICES's grammar: all, none, void, empty,
 *     indices, UUIDs, mixed, blanks, duplicates; MIG and every bad entry;
 *   - specs: linux.devices /dev/nvidiaN (minor field first), devices over
 *     the env, the env (last one wins), neither (all), and bad specs;
 *   - minors of a UUID list, filter against a driver's list, describe. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cuda/gpumap.h"
#include "cuda/visible.h"
#include "nvidia_proc_test.h"
#include "util/cleanup.h"

#define G0 "GPU-00000000-0000-0000-0000-0000000000b0"
#define G1 "GPU-00000000-0000-0000-0000-0000000000b1"
#define G9 "GPU-00000000-0000-0000-0000-0000000000b9" /* not on this node */
#define BUS0 "0000:18:00.0"
#define BUS1 "0000:9a:00.0"

static char base[64];
static char *proc; /* the two-GPU fake proc dir */

static int setup(void **state) {
  (void)state;
  snprintf(base, sizeof(base), "/tmp/kyb-test-visible-XXXXXX");
  if (mkdtemp(base) == NULL)
    return -1;
  proc = fake_nvidia_proc(base, "proc");
  if (proc == NULL)
    return -1;
  /* Written in reverse bus order: the listing must sort them. */
  if (fake_nvidia_gpu(proc, BUS1, 1, G1) < 0 || fake_nvidia_gpu(proc, BUS0, 0, G0) < 0)
    return -1;
  unsetenv(KYB_NVIDIA_PROC_ENV);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  kyb_error *err = NULL;
  kyb_remove_tree(base, &err);
  kyb_error_free(err);
  free(proc);
  unsetenv(KYB_NVIDIA_PROC_ENV);
  return 0;
}

/* ---- helpers ---- */

static void assert_contains(const char *msg, const char *want) {
  if (strstr(msg, want) == NULL)
    fail_msg("want \"%s\" in: %s", want, msg);
}

/* The set as text: "all", or "GPU-..:minor,GPU-..:minor" ("" when empty). */
static char *set_text(const kyb_cuda_visible *v) {
  if (v->all)
    return strdup("all");
  char *out = calloc(v->count + 1, KYB_CUDA_UUID_STRLEN + 8);
  assert_non_null(out);
  for (size_t i = 0; i < v->count; i++) {
    char u[KYB_CUDA_UUID_STRLEN + 1];
    kyb_cuda_uuid_format(&v->uuids[i], u);
    sprintf(out + strlen(out), "%s%s:%d", i ? "," : "", u, v->minors[i]);
  }
  return out;
}

static void parse_ok(const char *list, const char *want) {
  kyb_cuda_visible v = {0};
  cleanup_error kyb_error *err = NULL;
  if (kyb_cuda_visible_parse(list, "NVIDIA_VISIBLE_DEVICES", proc, &v, &err) < 0)
    fail_msg("parse \"%s\": %s", list, kyb_error_message(err));
  cleanup_free char *got = set_text(&v);
  if (strcmp(got, want) != 0)
    fail_msg("parse \"%s\": got \"%s\", want \"%s\"", list, got, want);
  assert_string_equal(v.source, "NVIDIA_VISIBLE_DEVICES");
  kyb_cuda_visible_clear(&v);
}

static void parse_fails(const char *list, int code, const char *want) {
  kyb_cuda_visible v = {0};
  cleanup_error kyb_error *err = NULL;
  if (kyb_cuda_visible_parse(list, "NVIDIA_VISIBLE_DEVICES", proc, &v, &err) == 0)
    fail_msg("parse \"%s\" succeeded", list);
  assert_contains(kyb_error_message(err), want);
  if (code != 0)
    assert_int_equal(kyb_error_code(err), code);
  assert_null(v.uuids); /* released */
}

static json_t *spec_of(const char *text) {
  json_error_t jerr;
  json_t *s = json_loads(text, 0, &jerr);
  if (s == NULL)
    fail_msg("bad test spec: %s", jerr.text);
  return s;
}

static void spec_ok(const char *text, const char *want, const char *want_source) {
  cleanup_json json_t *s = spec_of(text);
  kyb_cuda_visible v = {0};
  cleanup_error kyb_error *err = NULL;
  if (kyb_cuda_visible_from_spec(s, proc, &v, &err) < 0)
    fail_msg("spec %s: %s", text, kyb_error_message(err));
  cleanup_free char *got = set_text(&v);
  if (strcmp(got, want) != 0)
    fail_msg("spec %s: got \"%s\", want \"%s\"", text, got, want);
  assert_string_equal(v.source, want_source);
  kyb_cuda_visible_clear(&v);
}

static void spec_fails(const char *text, const char *want) {
  cleanup_json json_t *s = spec_of(text);
  kyb_cuda_visible v = {0};
  cleanup_error kyb_error *err = NULL;
  if (kyb_cuda_visible_from_spec(s, proc, &v, &err) == 0)
    fail_msg("spec %s succeeded", text);
  assert_contains(kyb_error_message(err), want);
  assert_null(v.uuids);
}

/* ---- the proc files ---- */

static void test_proc_lists_gpus_in_bus_order(void **state) {
  (void)state;
  kyb_nvidia_gpu *gpus = NULL;
  size_t n = 0;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_nvidia_gpus(proc, &gpus, &n, &err), 0);
  assert_int_equal(n, 2);
  char u[KYB_CUDA_UUID_STRLEN + 1];
  assert_string_equal(gpus[0].bus_id, BUS0);
  assert_int_equal(gpus[0].minor, 0);
  kyb_cuda_uuid_format(&gpus[0].uuid, u);
  assert_string_equal(u, G0);
  assert_string_equal(gpus[1].bus_id, BUS1);
  assert_int_equal(gpus[1].minor, 1);
  kyb_cuda_uuid_format(&gpus[1].uuid, u);
  assert_string_equal(u, G1);
  free(gpus);

  /* Index order is bus order, not minor order, and hex compares as numbers
   * (domain 0001 after 0000; bus 0a before 9a). */
  cleanup_free char *p = fake_nvidia_proc(base, "order");
  assert_int_equal(fake_nvidia_gpu(p, "0001:05:00.0", 0, G0), 0);
  assert_int_equal(fake_nvidia_gpu(p, "0000:9A:00.0", 2, G9), 0);
  assert_int_equal(fake_nvidia_gpu(p, "0000:0a:00.1", 1, G1), 0);
  assert_int_equal(kyb_nvidia_gpus(p, &gpus, &n, &err), 0);
  assert_int_equal(n, 3);
  assert_string_equal(gpus[0].bus_id, "0000:0a:00.1");
  assert_string_equal(gpus[1].bus_id, "0000:9A:00.0");
  assert_string_equal(gpus[2].bus_id, "0001:05:00.0");
  assert_int_equal(gpus[0].minor, 1);
  free(gpus);

  /* An empty gpus directory: no GPU. */
  cleanup_free char *empty = fake_nvidia_proc(base, "empty");
  gpus = (kyb_nvidia_gpu *)1;
  assert_int_equal(kyb_nvidia_gpus(empty, &gpus, &n, &err), 0);
  assert_int_equal(n, 0);
  assert_null(gpus);
}

static void test_proc_dir_from_env(void **state) {
  (void)state;
  assert_string_equal(kyb_nvidia_proc_dir(NULL), "/proc/driver/nvidia");
  assert_string_equal(kyb_nvidia_proc_dir(""), "/proc/driver/nvidia");
  setenv(KYB_NVIDIA_PROC_ENV, proc, 1);
  assert_string_equal(kyb_nvidia_proc_dir(NULL), proc);
  assert_string_equal(kyb_nvidia_proc_dir("/x"), "/x");
  /* NULL: the env's directory. */
  kyb_cuda_visible v = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_visible_parse("1", "--gpus", NULL, &v, &err), 0);
  cleanup_free char *got = set_text(&v);
  assert_string_equal(got, G1 ":1");
  assert_string_equal(v.source, "--gpus");
  kyb_cuda_visible_clear(&v);
  unsetenv(KYB_NVIDIA_PROC_ENV);
}

/* kyb_nvidia_gpus on a proc dir whose one GPU has `text`: must fail with `want`. */
static void info_fails(const char *text, const char *want) {
  cleanup_free char *p = fake_nvidia_proc(base, "bad");
  assert_int_equal(fake_nvidia_info(p, BUS0, text), 0);
  kyb_nvidia_gpu *gpus = NULL;
  size_t n = 0;
  cleanup_error kyb_error *err = NULL;
  if (kyb_nvidia_gpus(p, &gpus, &n, &err) == 0)
    fail_msg("information \"%s\" was accepted", text);
  const char *msg = kyb_error_message(err);
  assert_contains(msg, want);
  assert_contains(msg, "/bad/gpus/" BUS0 "/information");
  assert_null(gpus);
}

/* The information file exactly as the H200 machine's driver 580.159.04 wrote
 * it (2026-12-01, read with cat on the device): tab-padded values, more
 * colons in some values. */
static void test_proc_real_h200_information(void **state) {
  (void)state;
  static const char text[] = "Model: \t\t NVIDIA H200\n"
                             "IRQ:   \t\t 41\n"
                             "GPU UUID: \t GPU-88d608e1-16e4-a406-85cf-40a90bb1814f\n"
                             "Video BIOS: \t 96.00.a5.00.1a\n"
                             "Bus Type: \t PCIe\n"
                             "DMA Size: \t 52 bits\n"
                             "DMA Mask: \t 0xfffffffffffff\n"
                             "Bus Location: \t 0000:00:06.0\n"
                             "Device Minor: \t 0\n"
                             "GPU Firmware: \t 580.159.04\n"
                             "GPU Excluded:\t No\n";
  cleanup_free char *p = fake_nvidia_proc(base, "h200");
  assert_int_equal(fake_nvidia_info(p, "0000:00:06.0", text), 0);
  kyb_nvidia_gpu *gpus = NULL;
  size_t n = 0;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_nvidia_gpus(p, &gpus, &n, &err), 0);
  assert_int_equal(n, 1);
  assert_string_equal(gpus[0].bus_id, "0000:00:06.0");
  assert_int_equal(gpus[0].minor, 0);
  char uuid[KYB_CUDA_UUID_STRLEN + 1];
  kyb_cuda_uuid_format(&gpus[0].uuid, uuid);
  assert_string_equal(uuid, "GPU-88d608e1-16e4-a406-85cf-40a90bb1814f");
  free(gpus);
}

static void test_proc_bad_information(void **state) {
  (void)state;
  info_fails("Model: X\nGPU UUID: " G0 "\n", "has no \"Device Minor:\" line");
  info_fails("Device Minor: 0\n", "has no \"GPU UUID:\" line");
  info_fails("", "has no \"Device Minor:\" line");
  info_fails(
      "GPU UUID: GPU-\?\?\?\?\?\?\?\?-\?\?\?\?-\?\?\?\?-\?\?\?\?-\?\?\?\?\?\?\?\?\?\?\?\?\nDevice "
      "Minor: 0\n",
      "the driver does not know the GPU's UUID yet");
  info_fails("GPU UUID: GPU-123\nDevice Minor: 0\n", "GPU UUID 'GPU-123' is malformed");
  info_fails("GPU UUID: 00000000-0000-0000-0000-0000000000b0\nDevice Minor: 0\n",
             "is not a GPU UUID");
  info_fails("GPU UUID: " G0 "\nDevice Minor: x\n", "\"Device Minor: x\" is not a GPU minor");
  info_fails("GPU UUID: " G0 "\nDevice Minor: -1\n", "is not a GPU minor");
  info_fails("GPU UUID: " G0 "\nDevice Minor: 255\n", "\"Device Minor: 255\" is not a GPU minor");
  info_fails("GPU UUID: " G0 "\nDevice Minor: 99999999999999999999\n", "is not a GPU minor");
  info_fails("GPU UUID: " G0 "\nDevice Minor: 1 2\n", "is not a GPU minor");
  info_fails("GPU UUID: " G0 "\nDevice Minor: 0\nDevice Minor: 1\n",
             "names \"Device Minor\" twice");
  info_fails("GPU UUID: " G0 "\nGPU UUID: " G1 "\nDevice Minor: 0\n", "names \"GPU UUID\" twice");
  /* Too big for an information file. */
  size_t big = KYB_NVIDIA_INFO_MAX + 10;
  cleanup_free char *huge = malloc(big + 1);
  assert_non_null(huge);
  memset(huge, '#', big);
  huge[big] = '\0';
  info_fails(huge, "allowed");
  /* A NUL byte hides the rest of the file. */
  cleanup_free char *p = fake_nvidia_proc(base, "bad");
  char path[512];
  snprintf(path, sizeof(path), "%s/gpus/" BUS0, p);
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_mkdir_p(path, 0755, &err), 0);
  strcat(path, "/information");
  static const char nul[] = "GPU UUID: " G0 "\n\0Device Minor: 0\n";
  assert_int_equal(kyb_write_file_atomic(path, nul, sizeof(nul) - 1, 0444, &err), 0);
  kyb_nvidia_gpu *gpus = NULL;
  size_t n = 0;
  assert_int_equal(kyb_nvidia_gpus(p, &gpus, &n, &err), -1);
  assert_contains(kyb_error_message(err), "holds a NUL byte");
}

static void proc_fails(const char *dir, const char *want) {
  kyb_nvidia_gpu *gpus = NULL;
  size_t n = 0;
  cleanup_error kyb_error *err = NULL;
  if (kyb_nvidia_gpus(dir, &gpus, &n, &err) == 0)
    fail_msg("proc dir %s was accepted", dir);
  assert_contains(kyb_error_message(err), want);
  assert_null(gpus);
}

static void test_proc_bad_directory(void **state) {
  (void)state;
  /* No driver proc files at all. */
  cleanup_free char *none = kyb_path_join(base, "no-such-dir");
  proc_fails(none, "the NVIDIA driver's GPU list");
  proc_fails(none, "no-such-dir/gpus (is the nvidia module loaded?)");
  /* Entries that are not bus ids. */
  const char *names[] = {"gpu0",        "0000:18:00",    "0000:18:00.8", "000:18:00.0",
                         "0000:1:00.0", "0000:18:00.0x", "0000-18-00.0"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    cleanup_free char *p = fake_nvidia_proc(base, "names");
    assert_int_equal(fake_nvidia_gpu(p, names[i], 0, G0), 0);
    char want[96];
    snprintf(want, sizeof(want), "holds \"%s\", not a PCI bus id", names[i]);
    proc_fails(p, want);
  }
  /* A bus dir without its information file. */
  cleanup_free char *noinfo = fake_nvidia_proc(base, "noinfo");
  char path[512];
  snprintf(path, sizeof(path), "%s/gpus/" BUS0, noinfo);
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_mkdir_p(path, 0755, &err), 0);
  proc_fails(noinfo, BUS0 "/information");
  /* Two GPUs with one minor, or one UUID. */
  cleanup_free char *dupm = fake_nvidia_proc(base, "dupm");
  assert_int_equal(fake_nvidia_gpu(dupm, BUS0, 3, G0), 0);
  assert_int_equal(fake_nvidia_gpu(dupm, BUS1, 3, G1), 0);
  proc_fails(dupm, "GPUs " BUS0 " and " BUS1 " both have device minor 3");
  cleanup_free char *dupu = fake_nvidia_proc(base, "dupu");
  assert_int_equal(fake_nvidia_gpu(dupu, BUS0, 0, G0), 0);
  assert_int_equal(fake_nvidia_gpu(dupu, BUS1, 1, G0), 0);
  proc_fails(dupu, "GPUs " BUS0 " and " BUS1 " have the same UUID");
  /* More GPUs than a list may hold. */
  cleanup_free char *many = fake_nvidia_proc(base, "many");
  for (int i = 0; i <= KYB_NVIDIA_MAX_GPUS; i++) {
    char bus[32], uuid[64];
    snprintf(bus, sizeof(bus), "0000:%02x:00.0", i);
    snprintf(uuid, sizeof(uuid), "GPU-00000000-0000-0000-0000-0000000001%02x", i);
    assert_int_equal(fake_nvidia_gpu(many, bus, (unsigned)i, uuid), 0);
  }
  proc_fails(many, "lists more than 64 GPUs");
}

/* ---- lists ---- */

static void test_parse_lists(void **state) {
  (void)state;
  parse_ok("all", "all");
  parse_ok(" all ", "all");
  parse_ok("none", "");
  parse_ok("void", "");
  parse_ok("", "");
  parse_ok("  ", "");
  parse_ok("0", G0 ":0");
  parse_ok("1", G1 ":1");
  parse_ok("1,0", G1 ":1," G0 ":0");
  parse_ok(" 0 , 1 ", G0 ":0," G1 ":1");
  parse_ok("\t1\t", G1 ":1");
  parse_ok(G1, G1 ":-1");
  parse_ok("GPU-00000000-0000-0000-0000-0000000000B1", G1 ":-1");
  parse_ok(G9, G9 ":-1"); /* not checked against the node here */
  parse_ok(G0 ",1", G0 ":-1," G1 ":1");
  /* One GPU named twice counts once; the index's minor fills in. */
  parse_ok("0,0," G0, G0 ":0");
  parse_ok(G0 ",0", G0 ":0");
}

static void test_parse_uuids_need_no_proc_files(void **state) {
  (void)state;
  cleanup_free char *none = kyb_path_join(base, "no-such-dir");
  kyb_cuda_visible v = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_visible_parse(G1 "," G0, "x", none, &v, &err), 0);
  assert_int_equal(v.count, 2);
  kyb_cuda_visible_clear(&v);
  assert_int_equal(kyb_cuda_visible_parse("all", "x", none, &v, &err), 0);
  assert_true(v.all);
  kyb_cuda_visible_clear(&v);
  /* An index does need them, and says so. */
  assert_int_equal(kyb_cuda_visible_parse("0", "--gpus", none, &v, &err), -1);
  assert_contains(kyb_error_message(err), "--gpus: GPU index 0: the NVIDIA driver's GPU list");
  assert_contains(kyb_error_message(err), "no-such-dir/gpus");
}

static void test_parse_bad_lists(void **state) {
  (void)state;
  parse_fails("2", ENOENT,
              "NVIDIA_VISIBLE_DEVICES: GPU index 2, and the node has 2 GPU(s) "
              "(0 = " BUS0 " minor 0 " G0 ", 1 = " BUS1 " minor 1 " G1 ")");
  parse_fails("1234", EINVAL, "GPU index 1234 is out of range");
  parse_fails("MIG-4a2e5d4f-3c5b-5b1e-9b3a-6f0c1d2e3f40", ENOTSUP,
              "names the MIG device \"MIG-4a2e5d4f-3c5b-5b1e-9b3a-6f0c1d2e3f40\": MIG devices "
              "are not supported");
  parse_fails("MIG-GPU-00000000-0000-0000-0000-0000000000b0/1/0", ENOTSUP, "MIG devices");
  parse_fails("0:1", ENOTSUP, "names the MIG device \"0:1\"");
  parse_fails("0,1:0", ENOTSUP, "MIG devices are not supported");
  parse_fails("gpu0", EINVAL, "\"gpu0\" is neither a GPU index nor a GPU UUID (GPU-...)");
  parse_fails("-1", EINVAL, "is neither a GPU index nor a GPU UUID");
  parse_fails("0,all", EINVAL, "\"all\" is neither");
  parse_fails("none,0", EINVAL, "\"none\" is neither");
  parse_fails("0,,1", EINVAL, "NVIDIA_VISIBLE_DEVICES has an empty entry");
  parse_fails("0,", EINVAL, "has an empty entry");
  parse_fails(",0", EINVAL, "has an empty entry");
  parse_fails("GPU-123", EINVAL, "NVIDIA_VISIBLE_DEVICES: GPU UUID 'GPU-123' is malformed");
  parse_fails(G0 "0", EINVAL, "has trailing characters");
  parse_fails("/var/run/nvidia-container-devices", EINVAL, "is neither a GPU index");
  parse_fails("0\n1", EINVAL, "holds a control character");
  char long_list[KYB_NVIDIA_LIST_MAX + 8];
  memset(long_list, '0', sizeof(long_list) - 1);
  long_list[sizeof(long_list) - 1] = '\0';
  parse_fails(long_list, EINVAL, "bytes long, more than 4096");
  /* More distinct GPUs than a set holds. */
  char many[8192] = "";
  for (int i = 0; i <= KYB_NVIDIA_MAX_GPUS; i++)
    snprintf(many + strlen(many), sizeof(many) - strlen(many),
             "%sGPU-00000000-0000-0000-0000-0000000001%02x", i ? "," : "", i);
  parse_fails(many, E2BIG, "NVIDIA_VISIBLE_DEVICES names more than 64 GPUs");
}

/* ---- specs ---- */

#define DEV(path, minor)                                                                           \
  "{\"path\": \"" path "\", \"type\": \"c\", \"major\": 195, \"minor\": " #minor "}"
#define CTL "{\"path\": \"/dev/nvidiactl\", \"type\": \"c\", \"major\": 195, \"minor\": 255}"
#define UVM "{\"path\": \"/dev/nvidia-uvm\", \"type\": \"c\", \"major\": 510, \"minor\": 0}"
#define UVMT "{\"path\": \"/dev/nvidia-uvm-tools\", \"type\": \"c\", \"major\": 510, \"minor\": 1}"
#define MODESET                                                                                    \
  "{\"path\": \"/dev/nvidia-modeset\", \"type\": \"c\", \"major\": 195, \"minor\": 254}"
#define CAPS "{\"path\": \"/dev/nvidia-caps/nvidia-cap1\", \"type\": \"c\", \"major\": 237}"
#define FUSE "{\"path\": \"/dev/fuse\", \"type\": \"c\", \"major\": 10, \"minor\": 229}"

static void test_spec_devices(void **state) {
  (void)state;
  /* The GPU nodes among the others. */
  spec_ok("{\"linux\": {\"devices\": [" CTL ", " UVM
          ", " DEV("/dev/nvidia1", 1) ", " UVMT ", " MODESET ", " CAPS ", " FUSE "]}}",
          G1 ":1", "linux.devices");
  spec_ok("{\"linux\": {\"devices\": [" DEV("/dev/nvidia0", 0) ", " DEV("/dev/nvidia1", 1) "]}}",
          G0 ":0," G1 ":1", "linux.devices");
  /* The entry's minor is the host device; its path only a name. */
  spec_ok("{\"linux\": {\"devices\": [" DEV("/dev/nvidia0", 1) "]}}", G1 ":1", "linux.devices");
  /* Without a minor: the number in the name; type and major may be left out. */
  spec_ok("{\"linux\": {\"devices\": [{\"path\": \"/dev/nvidia1\"}]}}", G1 ":1", "linux.devices");
  /* Listed twice: once. */
  spec_ok("{\"linux\": {\"devices\": [" DEV("/dev/nvidia1", 1) ", " DEV("/dev/nvidia1", 1) "]}}",
          G1 ":1", "linux.devices");
  /* Devices win over the env: the env may say "all" (CUDA images do). */
  spec_ok("{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=all\"]}, "
          "\"linux\": {\"devices\": [" DEV("/dev/nvidia1", 1) "]}}",
          G1 ":1", "linux.devices");
  /* Only non-GPU nvidia nodes: the env decides. */
  spec_ok("{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=1\"]}, "
          "\"linux\": {\"devices\": [" CTL ", " UVM ", " MODESET "]}}",
          G1 ":1", "NVIDIA_VISIBLE_DEVICES");
}

static void test_spec_env(void **state) {
  (void)state;
  spec_ok("{\"process\": {\"env\": [\"PATH=/bin\", \"NVIDIA_VISIBLE_DEVICES=" G1 "\"]}}", G1 ":-1",
          "NVIDIA_VISIBLE_DEVICES");
  spec_ok("{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=0\"]}}", G0 ":0",
          "NVIDIA_VISIBLE_DEVICES");
  spec_ok("{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=all\"]}}", "all",
          "NVIDIA_VISIBLE_DEVICES");
  spec_ok("{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=none\"]}}", "",
          "NVIDIA_VISIBLE_DEVICES");
  spec_ok("{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=\"]}}", "", "NVIDIA_VISIBLE_DEVICES");
  /* The last one wins; look-alike names do not count. */
  spec_ok("{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=0\", \"NVIDIA_VISIBLE_DEVICES_X=1\", "
          "\"XNVIDIA_VISIBLE_DEVICES=1\", \"NVIDIA_VISIBLE_DEVICES=1\", "
          "\"NVIDIA_VISIBLE_DEVICES\"]}}",
          G1 ":1", "NVIDIA_VISIBLE_DEVICES");
  /* Neither: every GPU; a spec without process or linux too. */
  spec_ok("{\"process\": {\"env\": [\"PATH=/bin\"]}, \"linux\": {\"devices\": [" FUSE "]}}", "all",
          "no GPU setting in the spec");
  spec_ok("{}", "all", "no GPU setting in the spec");
  spec_ok("{\"process\": {\"env\": null}, \"linux\": {\"devices\": null}}", "all",
          "no GPU setting in the spec");
  kyb_cuda_visible v = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_visible_from_spec(NULL, proc, &v, &err), 0);
  assert_true(v.all);
  kyb_cuda_visible_clear(&v);
  /* The env's errors come with the variable's name. */
  spec_fails("{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=0:1\"]}}",
             "NVIDIA_VISIBLE_DEVICES names the MIG device \"0:1\"");
  spec_fails("{\"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=5\"]}}",
             "NVIDIA_VISIBLE_DEVICES: GPU index 5, and the node has 2 GPU(s)");
}

static void test_spec_bad(void **state) {
  (void)state;
  spec_fails("[]", "the OCI spec is not an object");
  spec_fails("{\"linux\": {\"devices\": {}}}", "spec linux.devices is not an array");
  spec_fails("{\"linux\": {\"devices\": [5]}}",
             "spec linux.devices[0]: want an object with a path");
  spec_fails("{\"linux\": {\"devices\": [" FUSE ", {\"type\": \"c\"}]}}",
             "spec linux.devices[1]: want an object with a path");
  spec_fails("{\"linux\": {\"devices\": [{\"path\": 7}]}}", "want an object with a path");
  spec_fails("{\"linux\": {\"devices\": [{\"path\": \"/dev/nvidia0\", \"type\": \"b\"}]}}",
             "spec linux.devices[0] (/dev/nvidia0): type is not \"c\"");
  spec_fails("{\"linux\": {\"devices\": [{\"path\": \"/dev/nvidia0\", \"major\": 10}]}}",
             "spec linux.devices[0] (/dev/nvidia0): major is not 195 (an NVIDIA GPU)");
  spec_fails("{\"linux\": {\"devices\": [{\"path\": \"/dev/nvidia0\", \"minor\": \"0\"}]}}",
             "minor is not a number");
  spec_fails("{\"linux\": {\"devices\": [{\"path\": \"/dev/nvidia0\", \"minor\": 255}]}}",
             "minor 255 is not a GPU minor (0..253)");
  spec_fails("{\"linux\": {\"devices\": [{\"path\": \"/dev/nvidia0\", \"minor\": -1}]}}",
             "minor -1 is not a GPU minor");
  spec_fails("{\"linux\": {\"devices\": [{\"path\": \"/dev/nvidia300\"}]}}",
             "minor 300 is not a GPU minor");
  spec_fails("{\"linux\": {\"devices\": [{\"path\": \"/dev/nvidia99999999999999999999\"}]}}",
             "is not a GPU minor");
  /* A minor the driver does not list. */
  spec_fails("{\"linux\": {\"devices\": [" DEV("/dev/nvidia2", 2) "]}}",
             "spec linux.devices gives the GPU device minor 2, and the NVIDIA driver lists no GPU "
             "with that minor (0 = " BUS0 " minor 0 " G0 ", 1 = " BUS1 " minor 1 " G1 ")");
  spec_fails("{\"process\": {\"env\": {}}}", "spec process.env is not an array");
  spec_fails("{\"process\": {\"env\": [\"A=1\", 3]}}", "spec process.env[1] is not a string");
  /* No proc files, and the devices need them. */
  cleanup_free char *none = kyb_path_join(base, "no-such-dir");
  cleanup_json json_t *s = spec_of("{\"linux\": {\"devices\": [" DEV("/dev/nvidia0", 0) "]}}");
  kyb_cuda_visible v = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_visible_from_spec(s, none, &v, &err), -1);
  assert_contains(kyb_error_message(err), "the GPUs of spec linux.devices: the NVIDIA driver's "
                                          "GPU list");
}

/* ---- minors, filter, describe ---- */

static void test_minors(void **state) {
  (void)state;
  kyb_cuda_visible v = {0};
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_visible_parse(G1 ",0", "--gpus", proc, &v, &err), 0);
  assert_int_equal(v.minors[0], -1);
  assert_int_equal(kyb_cuda_visible_minors(&v, proc, &err), 0);
  assert_int_equal(v.minors[0], 1);
  assert_int_equal(v.minors[1], 0);
  kyb_cuda_visible_clear(&v);
  /* A UUID the node's driver does not list. */
  assert_int_equal(kyb_cuda_visible_parse(G0 "," G9, "--gpus", proc, &v, &err), 0);
  assert_int_equal(kyb_cuda_visible_minors(&v, proc, &err), -1);
  assert_contains(kyb_error_message(err),
                  "--gpus names " G9 ", and the NVIDIA driver here lists no such GPU");
  kyb_cuda_visible_clear(&v);
  /* "all" and an empty list: nothing to look up, no proc files needed. */
  cleanup_free char *none = kyb_path_join(base, "no-such-dir");
  assert_int_equal(kyb_cuda_visible_parse("all", "x", none, &v, &err), 0);
  assert_int_equal(kyb_cuda_visible_minors(&v, none, &err), 0);
  kyb_cuda_visible_clear(&v);
  assert_int_equal(kyb_cuda_visible_parse("none", "x", none, &v, &err), 0);
  assert_int_equal(kyb_cuda_visible_minors(&v, none, &err), 0);
  kyb_cuda_visible_clear(&v);
  kyb_cuda_visible_clear(NULL);
}

static kyb_cuda_gpu driver_gpu(const char *uuid) {
  kyb_cuda_gpu g = {0};
  kyb_error *err = NULL;
  assert_int_equal(kyb_cuda_uuid_parse(uuid, &g.uuid, &err), 0);
  snprintf(g.model, sizeof(g.model), "NVIDIA H200");
  g.memory_bytes = 150109880320ull;
  return g;
}

static void test_filter(void **state) {
  (void)state;
  kyb_cuda_gpu driver[2] = {driver_gpu(G0), driver_gpu(G1)};
  kyb_cuda_visible v = {0};
  cleanup_error kyb_error *err = NULL;
  kyb_cuda_gpu *out = NULL;
  size_t n = 0;
  char u[KYB_CUDA_UUID_STRLEN + 1];
  /* In the driver's order, whatever order the set has. */
  assert_int_equal(kyb_cuda_visible_parse(G1 "," G0, "x", proc, &v, &err), 0);
  assert_true(kyb_cuda_visible_has(&v, &driver[0].uuid));
  assert_int_equal(kyb_cuda_visible_filter(&v, driver, 2, &out, &n, &err), 0);
  assert_int_equal(n, 2);
  kyb_cuda_uuid_format(&out[0].uuid, u);
  assert_string_equal(u, G0);
  free(out);
  kyb_cuda_visible_clear(&v);
  assert_int_equal(kyb_cuda_visible_parse("1", "x", proc, &v, &err), 0);
  assert_false(kyb_cuda_visible_has(&v, &driver[0].uuid));
  assert_int_equal(kyb_cuda_visible_filter(&v, driver, 2, &out, &n, &err), 0);
  assert_int_equal(n, 1);
  kyb_cuda_uuid_format(&out[0].uuid, u);
  assert_string_equal(u, G1);
  assert_string_equal(out[0].model, "NVIDIA H200");
  free(out);
  kyb_cuda_visible_clear(&v);
  /* all: every GPU; none: no GPU. */
  assert_int_equal(kyb_cuda_visible_parse("all", "x", proc, &v, &err), 0);
  assert_int_equal(kyb_cuda_visible_filter(&v, driver, 2, &out, &n, &err), 0);
  assert_int_equal(n, 2);
  free(out);
  kyb_cuda_visible_clear(&v);
  assert_int_equal(kyb_cuda_visible_parse("none", "x", proc, &v, &err), 0);
  assert_int_equal(kyb_cuda_visible_filter(&v, driver, 2, &out, &n, &err), 0);
  assert_int_equal(n, 0);
  assert_null(out);
  kyb_cuda_visible_clear(&v);
  /* A GPU of the set that the CUDA driver does not list. */
  assert_int_equal(kyb_cuda_visible_parse(G1 "," G9, "NVIDIA_VISIBLE_DEVICES", proc, &v, &err), 0);
  assert_int_equal(kyb_cuda_visible_filter(&v, driver, 2, &out, &n, &err), -1);
  assert_contains(kyb_error_message(err),
                  "the container's GPU " G9 " (from NVIDIA_VISIBLE_DEVICES) is not among the GPUs "
                  "the CUDA driver lists (" G0 ", " G1 ")");
  assert_null(out);
  kyb_error_clear(&err);
  assert_int_equal(kyb_cuda_visible_filter(&v, driver, 0, &out, &n, &err), -1);
  assert_contains(kyb_error_message(err), "the CUDA driver lists (none)");
  kyb_cuda_visible_clear(&v);
}

static void test_describe(void **state) {
  (void)state;
  kyb_cuda_visible v = {0};
  cleanup_error kyb_error *err = NULL;
  const char *cases[][2] = {
      {"all", "every GPU of the node (from S)"},
      {"none", "no GPU (from S)"},
      {"1,0", G1 ", " G0 " (from S)"},
  };
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(kyb_cuda_visible_parse(cases[i][0], "S", proc, &v, &err), 0);
    cleanup_free char *d = kyb_cuda_visible_describe(&v);
    assert_string_equal(d, cases[i][1]);
    kyb_cuda_visible_clear(&v);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_proc_lists_gpus_in_bus_order),
      cmocka_unit_test(test_proc_dir_from_env),
      cmocka_unit_test(test_proc_bad_information),
      cmocka_unit_test(test_proc_real_h200_information),
      cmocka_unit_test(test_proc_bad_directory),
      cmocka_unit_test(test_parse_lists),
      cmocka_unit_test(test_parse_uuids_need_no_proc_files),
      cmocka_unit_test(test_parse_bad_lists),
      cmocka_unit_test(test_spec_devices),
      cmocka_unit_test(test_spec_env),
      cmocka_unit_test(test_spec_bad),
      cmocka_unit_test(test_minors),
      cmocka_unit_test(test_filter),
      cmocka_unit_test(test_describe),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
