/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GPU UUID text and the restore-time GPU map.  See gpumap.h for the rules.
 */
#include "cuda/gpumap.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"

void kyb_cuda_uuid_format(const kyb_cu_uuid *uuid, char out[KYB_CUDA_UUID_STRLEN + 1]) {
  static const char hex[] = "0123456789abcdef";
  char *p = out;
  memcpy(p, "GPU-", 4);
  p += 4;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      *p++ = '-';
    *p++ = hex[uuid->bytes[i] >> 4];
    *p++ = hex[uuid->bytes[i] & 0xf];
  }
  *p = '\0';
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = (char)tolower((unsigned char)c);
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

int kyb_cuda_uuid_parse(const char *text, kyb_cu_uuid *out, kyb_error **err) {
  const char *p = text;
  if (strncmp(p, "GPU-", 4) == 0)
    p += 4;
  kyb_cu_uuid u;
  size_t pos = 0; /* index into the 36-character 8-4-4-4-12 body */
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) {
      if (p[pos] != '-')
        return kyb_error_set(err, EINVAL, "GPU UUID '%.64s' is malformed (want GPU-%s)", text,
                             "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx");
      pos++;
    }
    int hi = p[pos] != '\0' ? hex_value(p[pos]) : -1;
    int lo = hi >= 0 && p[pos + 1] != '\0' ? hex_value(p[pos + 1]) : -1;
    if (hi < 0 || lo < 0)
      return kyb_error_set(err, EINVAL, "GPU UUID '%.64s' is malformed (want GPU-%s)", text,
                           "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx");
    u.bytes[i] = (unsigned char)(hi << 4 | lo);
    pos += 2;
  }
  if (p[pos] != '\0')
    return kyb_error_set(err, EINVAL, "GPU UUID '%.64s' has trailing characters", text);
  *out = u;
  return 0;
}

static bool uuid_equal(const kyb_cu_uuid *a, const kyb_cu_uuid *b) {
  return memcmp(a->bytes, b->bytes, sizeof(a->bytes)) == 0;
}

/* A present GPU can take a recorded one: same model, enough memory (0 means
 * "not recorded" and is not compared). */
static bool fits(const kyb_cuda_gpu *rec, const kyb_cuda_gpu *cand) {
  if (strcmp(rec->model, cand->model) != 0)
    return false;
  return rec->memory_bytes == 0 || cand->memory_bytes == 0 ||
         cand->memory_bytes >= rec->memory_bytes;
}

/* "2 x NVIDIA H200, 1 x NVIDIA H100" for error messages; static-sized. */
static void describe_models(const kyb_cuda_gpu *gpus, size_t n, char *buf, size_t cap) {
  size_t used = 0;
  buf[0] = '\0';
  if (n == 0) {
    snprintf(buf, cap, "none");
    return;
  }
  for (size_t i = 0; i < n; i++) {
    bool seen = false;
    for (size_t j = 0; j < i && !seen; j++)
      seen = strcmp(gpus[i].model, gpus[j].model) == 0;
    if (seen)
      continue;
    size_t count = 0;
    for (size_t j = i; j < n; j++)
      count += strcmp(gpus[i].model, gpus[j].model) == 0;
    int w =
        snprintf(buf + used, cap - used, "%s%zu x %s", used > 0 ? ", " : "", count, gpus[i].model);
    if (w < 0 || (size_t)w >= cap - used)
      return; /* truncated: the message stays readable without the tail */
    used += (size_t)w;
  }
}

int kyb_cuda_gpu_map(const kyb_cuda_gpu *recorded, size_t nrecorded, const kyb_cuda_gpu *present,
                     size_t npresent, kyb_cu_gpu_pair **pairs, kyb_error **err) {
  *pairs = NULL;
  if (nrecorded == 0)
    return 0;
  char have[512], want[512];
  describe_models(recorded, nrecorded, want, sizeof(want));
  describe_models(present, npresent, have, sizeof(have));
  if (npresent < nrecorded)
    return kyb_error_set(err, 0,
                         "the checkpoint was taken with %zu GPU(s) (%s) and only %zu are here "
                         "(%s): the driver restores only with every GPU paired",
                         nrecorded, want, npresent, have);
  for (size_t i = 0; i < nrecorded; i++)
    for (size_t j = i + 1; j < nrecorded; j++)
      if (uuid_equal(&recorded[i].uuid, &recorded[j].uuid)) {
        char u[KYB_CUDA_UUID_STRLEN + 1];
        kyb_cuda_uuid_format(&recorded[i].uuid, u);
        return kyb_error_set(err, EINVAL, "recorded GPU list names %s twice", u);
      }

  cleanup_free kyb_cu_gpu_pair *out = calloc(nrecorded, sizeof(*out));
  cleanup_free bool *taken = calloc(npresent, sizeof(*taken));
  cleanup_free bool *mapped = calloc(nrecorded, sizeof(*mapped));
  if (out == NULL || taken == NULL || mapped == NULL)
    return kyb_error_set(err, ENOMEM, "build GPU map");

  /* First the GPUs that are still here: restoring in place is the cheapest
   * and the only kind an older driver can do. */
  for (size_t i = 0; i < nrecorded; i++)
    for (size_t j = 0; j < npresent && !mapped[i]; j++)
      if (!taken[j] && uuid_equal(&recorded[i].uuid, &present[j].uuid) &&
          fits(&recorded[i], &present[j])) {
        out[i].old_uuid = recorded[i].uuid;
        out[i].new_uuid = present[j].uuid;
        taken[j] = mapped[i] = true;
      }
  /* Then the rest, each onto the first free GPU of the same model, in
   * driver order so the result does not depend on anything else. */
  for (size_t i = 0; i < nrecorded; i++) {
    for (size_t j = 0; j < npresent && !mapped[i]; j++)
      if (!taken[j] && fits(&recorded[i], &present[j])) {
        out[i].old_uuid = recorded[i].uuid;
        out[i].new_uuid = present[j].uuid;
        taken[j] = mapped[i] = true;
      }
    if (!mapped[i]) {
      char u[KYB_CUDA_UUID_STRLEN + 1];
      kyb_cuda_uuid_format(&recorded[i].uuid, u);
      bool same_model = false;
      for (size_t j = 0; j < npresent; j++)
        same_model = same_model || strcmp(recorded[i].model, present[j].model) == 0;
      if (same_model)
        return kyb_error_set(err, 0,
                             "no free GPU here for recorded %s (%s, %" PRIu64
                             " bytes): every %s present is taken or has less memory "
                             "(present: %s)",
                             u, recorded[i].model, recorded[i].memory_bytes, recorded[i].model,
                             have);
      return kyb_error_set(err, 0,
                           "GPU model mismatch: the checkpoint ran on %s (%s) and no GPU here is "
                           "that model (present: %s); a CUDA checkpoint restores only onto the "
                           "same GPU model",
                           u, recorded[i].model, have);
    }
  }
  *pairs = steal_ptr(out);
  return 0;
}
