/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What a registry and the node's credentials file hand the oci:// store:
 * the first line of the input is a response header value (parsed both as a
 * WWW-Authenticate challenge and as a Link header), the rest is a docker
 * config.json looked up for two hosts.  A challenge accepted has a known
 * scheme, a Bearer one an http(s) realm; a next link is a /v2/ path; a
 * lookup that finds an entry gives a user and a password.
 */
#include "fuzz.h"
#include "store/oci.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_quiet_log();
  return 0;
}

static void lookup(const char *cfg, size_t len, const char *host) {
  kyb_error *err = NULL;
  char *user = NULL, *password = NULL;
  int rc = kyb_oci_auth_lookup(cfg, len, host, &user, &password, &err);
  fuzz_check_rc(rc, &err);
  FUZZ_ASSERT(rc >= -1 && rc <= 1);
  if (rc == 1)
    FUZZ_ASSERT(user != NULL && password != NULL);
  else
    FUZZ_ASSERT(user == NULL && password == NULL);
  free(user);
  free(password);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *nl = memchr(data, '\n', size);
  size_t hlen = nl != NULL ? (size_t)((const uint8_t *)nl - data) : size;
  char *header = fuzz_strndup(data, hlen);
  const char *cfg = nl != NULL ? nl + 1 : "";
  size_t cfg_len = nl != NULL ? size - hlen - 1 : 0;

  kyb_error *err = NULL;
  kyb_oci_challenge c;
  memset(&c, 0, sizeof(c));
  int rc = kyb_oci_challenge_parse(header, &c, &err);
  fuzz_check_rc(rc, &err);
  if (rc == 0) {
    FUZZ_ASSERT(c.scheme != NULL);
    FUZZ_ASSERT(strcmp(c.scheme, "basic") == 0 || strcmp(c.scheme, "bearer") == 0);
    if (strcmp(c.scheme, "bearer") == 0)
      FUZZ_ASSERT(c.realm != NULL &&
                  (strncmp(c.realm, "http://", 7) == 0 || strncmp(c.realm, "https://", 8) == 0));
  }
  kyb_oci_challenge_clear(&c);

  char *next = kyb_oci_link_next(header);
  if (next != NULL)
    FUZZ_ASSERT(strncmp(next, "/v2/", 4) == 0 && strlen(next) <= 4096);
  free(next);
  free(header);

  lookup(cfg, cfg_len, "reg.example:5000");
  lookup(cfg, cfg_len, "127.0.0.1");
  return 0;
}
