/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A FAKE of the NVIDIA driver's proc directory for unit tests:
 * <dir>/gpus/<pci bus id>/information, written the way driver 5xx writes it
 * (key, colon, blanks and tabs, value).  What the real files hold is in
 * docs/gpu.md ("Which GPUs a container has").
 */
#ifndef KYB_TESTS_NVIDIA_PROC_TEST_H
#define KYB_TESTS_NVIDIA_PROC_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/fs.h"

/* Writes <dir>/gpus/<bus>/information with `text` as it is. */
static inline int fake_nvidia_info(const char *dir, const char *bus, const char *text) {
  char path[512];
  kyb_error *err = NULL;
  snprintf(path, sizeof(path), "%s/gpus/%s", dir, bus);
  int rc = kyb_mkdir_p(path, 0755, &err);
  strncat(path, "/information", sizeof(path) - strlen(path) - 1);
  if (rc == 0)
    rc = kyb_write_file_atomic(path, text, strlen(text), 0444, &err);
  kyb_error_free(err);
  return rc;
}

/* One GPU's information file as the driver writes it. */
static inline int fake_nvidia_gpu(const char *dir, const char *bus, unsigned minor,
                                  const char *uuid) {
  char text[1024];
  snprintf(text, sizeof(text),
           "Model: \t\t NVIDIA H200\n"
           "IRQ:   \t\t 187\n"
           "GPU UUID: \t %s\n"
           "Video BIOS: \t 96.00.a5.00.01\n"
           "Bus Type: \t PCIe\n"
           "DMA Size: \t 52 bits\n"
           "DMA Mask: \t 0xfffffffffffff\n"
           "Bus Location: \t %s\n"
           "Device Minor: \t %u\n"
           "GPU Firmware: \t 580.159.04\n"
           "GPU Excluded:\t No\n",
           uuid, bus, minor);
  return fake_nvidia_info(dir, bus, text);
}

/* A fresh fake proc dir under `parent`: heap path <parent>/<name>. */
static inline char *fake_nvidia_proc(const char *parent, const char *name) {
  char *dir = kyb_path_join(parent, name);
  kyb_error *err = NULL;
  if (dir != NULL) {
    kyb_remove_tree(dir, &err);
    kyb_error_clear(&err);
    cleanup_free char *gpus = kyb_path_join(dir, "gpus");
    if (gpus == NULL || kyb_mkdir_p(gpus, 0755, &err) < 0) {
      kyb_error_free(err);
      free(dir);
      return NULL;
    }
  }
  return dir;
}

#endif
