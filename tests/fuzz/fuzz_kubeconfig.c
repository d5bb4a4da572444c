/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kubeconfig files: the YAML subset reader (kube/yaml.c) and the
 * kubeconfig loader on top of it (kube/kubeconfig.c), from text in memory.
 * A document the YAML reader accepts is a JSON value; written out as JSON
 * and read again (JSON goes through jansson) it must come back equal.  A
 * config the loader accepts passes kyb_kube_config_validate and has a
 * server, a namespace and a source.
 */
#include <jansson.h>

#include "fuzz.h"
#include "kube/config.h"
#include "kube/yaml.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_quiet_log();
  return 0;
}

static void yaml(const char *text, size_t len) {
  kyb_error *err = NULL;
  json_t *v = kyb_yaml_load(text, len, "fuzz", &err);
  fuzz_check_rc(v != NULL ? 0 : -1, &err);
  if (v == NULL)
    return;
  /* A mapping round-trips through the JSON path (a document starting with
   * '{' is JSON). */
  if (json_is_object(v)) {
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    FUZZ_ASSERT(s != NULL);
    json_t *again = kyb_yaml_load(s, strlen(s), "fuzz", &err);
    FUZZ_ASSERT(again != NULL && err == NULL);
    FUZZ_ASSERT(json_equal(v, again));
    json_decref(again);
    free(s);
  }
  json_decref(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *text = (const char *)data;
  yaml(text, size);

  kyb_error *err = NULL;
  kyb_kube_config cfg;
  int rc = kyb_kube_config_kubeconfig_text(text, size, "fuzz", "/fuzz", NULL, &cfg, &err);
  fuzz_check_rc(rc, &err);
  if (rc == 0) {
    FUZZ_ASSERT(cfg.server != NULL && cfg.ns != NULL && cfg.source != NULL);
    FUZZ_ASSERT(kyb_kube_config_validate(&cfg, &err) == 0 && err == NULL);
    /* decoded *-data is NUL-terminated; relative paths were made absolute */
    FUZZ_ASSERT(cfg.ca_data == NULL || cfg.ca_data[cfg.ca_data_len] == '\0');
    FUZZ_ASSERT(cfg.cert_data == NULL || cfg.cert_data[cfg.cert_data_len] == '\0');
    FUZZ_ASSERT(cfg.key_data == NULL || cfg.key_data[cfg.key_data_len] == '\0');
    FUZZ_ASSERT(cfg.token_file == NULL || cfg.token_file[0] == '/' || cfg.token_file[0] == '\0');
  }
  kyb_kube_config_clear(&cfg);
  return 0;
}
