/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the oci:// store.
 *
 * Without a registry: store URIs and image references, plain-http hosts,
 * WWW-Authenticate challenges, docker config.json credentials, the registry
 * manifest (build, parse, every rejection, match against manifest.json) and
 * tag-list paging.
 *
 * With a real registry (Debian's docker-registry, started here on a free
 * loopback port with storage in a temp dir; the live tests are skipped when
 * /usr/bin/docker-registry is missing): push in chunks, no overwrite, list,
 * stat, pull into the node cache and reuse of the cached copy, delete, a
 * flipped byte in a stored blob refused with nothing left in the cache, and
 * a file changed after its manifest refused at push with no tag visible,
 * unchanged parts not sent twice (the blob memo) and a lying memo caught at
 * pull. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "image/image.h"
#include "ops/nodeconf.h"
#include "store/http.h"
#include "store/oci.h"
#include "store/store.h"
#include "util/cleanup.h"
#include "util/fs.h"

#define REGISTRY_BIN "/usr/bin/docker-registry"

static const char D1[] = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
static const char D2[] = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
static const char D3[] = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

/* ---- URIs and references ---------------------------------------------------- */

static void test_uri_parse(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  struct {
    const char *in, *host, *repo;
  } ok[] = {
      {"127.0.0.1:5000/kyb/test", "127.0.0.1:5000", "kyb/test"},
      {"Registry.Example.COM/a/b-c__d.e/", "registry.example.com", "a/b-c__d.e"},
      {"[::1]:5000/x", "[::1]:5000", "x"},
      {"reg/a--b/c_d", "reg", "a--b/c_d"},
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    cleanup_free char *h = NULL, *r = NULL;
    assert_int_equal(kyb_oci_uri_parse(ok[i].in, &h, &r, &err), 0);
    assert_string_equal(h, ok[i].host);
    assert_string_equal(r, ok[i].repo);
  }
  const char *bad[] = {"reg",     "reg/",      "reg/Upper", "reg/a//b",   "reg/a-",
                       "reg/_a",  "reg/a:tag", "reg/a@sha", "h:0/x",      "h:99999/x",
                       "h:/x",    "-h/x",      "/x",        "h:50x/x",    "[::1/x",
                       "h/a___b", "h/a..b",    "h/a.-b",    "h^x:5000/y", "h/a b"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cleanup_free char *h = NULL, *r = NULL;
    if (kyb_oci_uri_parse(bad[i], &h, &r, &err) != -1)
      fail_msg("accepted oci://%s", bad[i]);
    assert_int_equal(kyb_error_code(err), EINVAL);
    kyb_error_clear(&err);
  }
}

static void test_refs(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  struct {
    const char *ref, *uri, *name;
  } ok[] = {
      {"oci://127.0.0.1:5000/kyb/test:web-1", "oci://127.0.0.1:5000/kyb/test", "web-1"},
      {"oci://Reg.Example/team/cp:web-1-20261201-120000", "oci://reg.example/team/cp",
       "web-1-20261201-120000"},
      {"oci://reg/x:a.b_c", "oci://reg/x", "a.b_c"},
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    cleanup_free char *uri = NULL, *name = NULL;
    assert_int_equal(kyb_image_ref_parse(ok[i].ref, NULL, &uri, &name, &err), 0);
    assert_string_equal(uri, ok[i].uri);
    assert_string_equal(name, ok[i].name);
    cleanup_free char *back = kyb_image_ref_format(uri, name);
    cleanup_free char *u2 = NULL, *n2 = NULL;
    assert_int_equal(kyb_image_ref_parse(back, NULL, &u2, &n2, &err), 0);
    assert_string_equal(u2, uri);
    assert_string_equal(n2, name);
  }
  cleanup_free char *f = kyb_image_ref_format("file:///data", "x");
  assert_string_equal(f, "file:///data/x");
  const struct {
    const char *ref;
    int code;
  } bad[] = {
      {"oci://reg/x", EINVAL},
      {"oci://reg/x:", EINVAL},
      {"oci://reg:5000", EINVAL},
      {"oci://reg/x:Web", EINVAL},
      {"oci://reg/x:-a", EINVAL},
      {"oci://reg/X:a", EINVAL},
      {"oci://reg/x@sha256:1111", ENOTSUP},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cleanup_free char *uri = NULL, *name = NULL;
    if (kyb_image_ref_parse(bad[i].ref, NULL, &uri, &name, &err) != -1)
      fail_msg("accepted %s", bad[i].ref);
    assert_int_equal(kyb_error_code(err), bad[i].code);
    kyb_error_clear(&err);
  }
  /* a store URI opens without a registry (nothing is contacted yet) */
  kyb_store *s = NULL;
  assert_int_equal(kyb_store_open("oci://127.0.0.1:1/kyb/x/", 0, &s, &err), 0);
  assert_string_equal(kyb_store_uri(s), "oci://127.0.0.1:1/kyb/x");
  assert_non_null(strstr(kyb_store_local_dir(s), "/oci/127.0.0.1_1/kyb/x"));
  kyb_store_close(s);
}

static void test_plain_http(void **state) {
  (void)state;
  assert_true(kyb_oci_plain_http("127.0.0.1:5000", NULL));
  assert_true(kyb_oci_plain_http("localhost", NULL));
  assert_true(kyb_oci_plain_http("[::1]:443", NULL));
  assert_false(kyb_oci_plain_http("127.0.0.10:5000", NULL));
  assert_false(kyb_oci_plain_http("registry.example:5000", NULL));
  assert_false(kyb_oci_plain_http("localhost.example.com", NULL));
  assert_true(kyb_oci_plain_http("registry.example:5000", "other, registry.example:5000"));
  assert_true(kyb_oci_plain_http("registry.example:5000", "registry.example"));
  assert_false(kyb_oci_plain_http("registry.example:5000", "registry.example:5001"));
  assert_false(kyb_oci_plain_http("registry.example", "registry.example:5000"));
  assert_false(kyb_oci_plain_http("registry.example", "registry.ex"));
}

/* The node config lists registries kybernate-runc may restore from, under
 * the names the stores give themselves. */
static void test_nodeconf_oci_stores(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  const char *conf = "{\"stores\": [\"oci://Reg.Example:5000/team/cp/\", \"oci://reg/x\"]}";
  kyb_nodeconf c = {0};
  assert_int_equal(kyb_nodeconf_parse(conf, strlen(conf), &c, &err), 0);
  assert_int_equal(c.nstores, 3); /* the default first */
  assert_string_equal(c.stores[1], "oci://reg.example:5000/team/cp");
  assert_string_equal(c.stores[2], "oci://reg/x");
  kyb_nodeconf_clear(&c);
  cleanup_free char *uri = NULL, *name = NULL;
  assert_int_equal(
      kyb_image_ref_parse("oci://REG.example:5000/team/cp:web-1", NULL, &uri, &name, &err), 0);
  assert_string_equal(uri, "oci://reg.example:5000/team/cp"); /* what the config holds */
  const char *bad = "{\"stores\": [\"oci://reg/x:tag\"]}";
  assert_int_equal(kyb_nodeconf_parse(bad, strlen(bad), &c, &err), -1);
  assert_int_equal(kyb_error_code(err), EINVAL);
  kyb_nodeconf_clear(&c);
}

/* ---- auth ------------------------------------------------------------------- */

static void test_challenges(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  kyb_oci_challenge c = {0};
  assert_int_equal(
      kyb_oci_challenge_parse("Bearer realm=\"https://auth.example/token\",service=\"reg.example\","
                              "scope=\"repository:a/b:pull,push\"",
                              &c, &err),
      0);
  assert_string_equal(c.scheme, "bearer");
  assert_string_equal(c.realm, "https://auth.example/token");
  assert_string_equal(c.service, "reg.example");
  assert_string_equal(c.scope, "repository:a/b:pull,push");
  kyb_oci_challenge_clear(&c);
  /* any order, blanks, token values, unknown and escaped parameters */
  assert_int_equal(kyb_oci_challenge_parse("  bearer  scope=\"x:y\" , error=\"insufficient_scope\","
                                           " realm=http://127.0.0.1:9/t, extra=\"a\\\"b,c\"",
                                           &c, &err),
                   0);
  assert_string_equal(c.realm, "http://127.0.0.1:9/t");
  assert_string_equal(c.scope, "x:y");
  assert_null(c.service);
  kyb_oci_challenge_clear(&c);
  assert_int_equal(kyb_oci_challenge_parse("Basic realm=\"kybernate-test\"", &c, &err), 0);
  assert_string_equal(c.scheme, "basic");
  assert_string_equal(c.realm, "kybernate-test");
  kyb_oci_challenge_clear(&c);
  assert_int_equal(kyb_oci_challenge_parse("Basic", &c, &err), 0);
  kyb_oci_challenge_clear(&c);

  const struct {
    const char *h;
    int code;
  } bad[] = {
      {"", EINVAL},
      {"Bearer service=\"x\"", EINVAL},
      {"Bearer realm=\"file:///etc/passwd\"", EINVAL},
      {"Bearer realm=\"https://x/t", EINVAL},
      {"Negotiate abc", ENOTSUP},
      {"Digest realm=\"x\"", ENOTSUP},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (kyb_oci_challenge_parse(bad[i].h, &c, &err) != -1)
      fail_msg("accepted challenge %s", bad[i].h);
    assert_int_equal(kyb_error_code(err), bad[i].code);
    assert_null(c.scheme);
    kyb_error_clear(&err);
  }
}

static void test_auth_lookup(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  /* "alice:s3cr:et" */
  const char *cfg = "{\"auths\": {"
                    "\"https://reg.example:5000/v1/\": {\"auth\": \"YWxpY2U6czNjcjpldA==\"},"
                    "\"other.example\": {\"username\": \"bob\", \"password\": \"pw\"},"
                    "\"broken.example\": {\"auth\": \"!!!\"},"
                    "\"empty.example\": {}},"
                    "\"credsStore\": \"ignored\"}";
  char *u = NULL, *p = NULL;
  assert_int_equal(kyb_oci_auth_lookup(cfg, strlen(cfg), "reg.example:5000", &u, &p, &err), 1);
  assert_string_equal(u, "alice");
  assert_string_equal(p, "s3cr:et");
  free(u);
  free(p);
  assert_int_equal(kyb_oci_auth_lookup(cfg, strlen(cfg), "other.example", &u, &p, &err), 1);
  assert_string_equal(u, "bob");
  assert_string_equal(p, "pw");
  free(u);
  free(p);
  assert_int_equal(kyb_oci_auth_lookup(cfg, strlen(cfg), "reg.example", &u, &p, &err), 0);
  assert_int_equal(kyb_oci_auth_lookup(cfg, strlen(cfg), "broken.example", &u, &p, &err), -1);
  assert_non_null(strstr(kyb_error_message(err), "not base64"));
  kyb_error_clear(&err);
  assert_int_equal(kyb_oci_auth_lookup(cfg, strlen(cfg), "empty.example", &u, &p, &err), -1);
  kyb_error_clear(&err);
  assert_int_equal(kyb_oci_auth_lookup("[1]", 3, "x", &u, &p, &err), -1);
  kyb_error_clear(&err);
  assert_int_equal(kyb_oci_auth_lookup("{", 1, "x", &u, &p, &err), -1);
  kyb_error_clear(&err);
  assert_int_equal(kyb_oci_auth_lookup("{}", 2, "x", &u, &p, &err), 0);
}

/* ---- manifests -------------------------------------------------------------- */

static kyb_oci_layer layer(const char *path, const char *blob, const char *file, uint64_t size) {
  kyb_oci_layer l = {.path = (char *)path, .blob_size = size / 2 + 1, .file_size = size};
  strcpy(l.blob_digest, blob);
  strcpy(l.file_digest, file);
  return l;
}

static char *sample_manifest(size_t *len) {
  kyb_oci_layer ls[] = {layer("criu/pages-1.img", D1, D2, 4096),
                        layer("rootfs-diff.tar", D2, D3, 10240)};
  kyb_oci_manifest m = {.layers = ls, .nlayers = 2, .config_size = 321, .name = "web-1"};
  strcpy(m.config_digest, D3);
  cleanup_error kyb_error *err = NULL;
  char *s = kyb_oci_manifest_build(&m, "2026-12-01T12:00:00Z", len, &err);
  assert_non_null(s);
  return s;
}

static void test_manifest_roundtrip(void **state) {
  (void)state;
  cleanup_error kyb_error *err = NULL;
  size_t len = 0;
  cleanup_free char *s = sample_manifest(&len);
  assert_non_null(strstr(s, "\"artifactType\":\"" KYB_OCI_ARTIFACT_TYPE "\""));
  assert_non_null(strstr(s, "\"mediaType\":\"" KYB_OCI_MEDIA_MANIFEST "\""));
  assert_non_null(strstr(s, "\"io.kybernate.part.size\":\"4096\""));
  kyb_oci_manifest m = {0};
  assert_int_equal(kyb_oci_manifest_parse(s, len, &m, &err), 0);
  assert_string_equal(m.config_digest, D3);
  assert_int_equal(m.config_size, 321);
  assert_int_equal(m.nlayers, 2);
  assert_string_equal(m.layers[0].path, "criu/pages-1.img");
  assert_string_equal(m.layers[0].blob_digest, D1);
  assert_string_equal(m.layers[0].file_digest, D2);
  assert_int_equal(m.layers[0].file_size, 4096);
  assert_int_equal(m.layers[0].blob_size, 2049);
  assert_string_equal(m.layers[1].path, "rootfs-diff.tar");
  assert_string_equal(m.name, "web-1");

  /* against the image manifest it describes */
  cleanup_json json_t *im =
      json_pack("{s:[{s:s, s:I, s:s}, {s:s, s:I, s:s}]}", "files", "path", "criu/pages-1.img",
                "size", (json_int_t)4096, "sha256", D2 + 7, "path", "rootfs-diff.tar", "size",
                (json_int_t)10240, "sha256", D3 + 7);
  assert_int_equal(kyb_oci_manifest_match(&m, im, &err), 0);
  json_object_set_new(json_array_get(json_object_get(im, "files"), 1), "size", json_integer(1));
  assert_int_equal(kyb_oci_manifest_match(&m, im, &err), -1);
  assert_int_equal(kyb_error_code(err), EBADMSG);
  assert_non_null(strstr(kyb_error_message(err), "rootfs-diff.tar"));
  kyb_error_clear(&err);
  json_array_remove(json_object_get(im, "files"), 1);
  assert_int_equal(kyb_oci_manifest_match(&m, im, &err), -1);
  kyb_error_clear(&err);
  kyb_oci_manifest_clear(&m);
}

/* The sample manifest with `from` replaced by `to` must be refused. */
static void refused(const char *from, const char *to, int code) {
  size_t len = 0;
  cleanup_free char *s = sample_manifest(&len);
  char *at = strstr(s, from);
  if (at == NULL)
    fail_msg("sample manifest lacks %s", from);
  cleanup_free char *mut = NULL;
  assert_true(asprintf(&mut, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from)) > 0);
  kyb_oci_manifest m = {0};
  cleanup_error kyb_error *err = NULL;
  if (kyb_oci_manifest_parse(mut, strlen(mut), &m, &err) != -1)
    fail_msg("accepted a manifest with %s -> %s", from, to);
  assert_int_equal(kyb_error_code(err), code);
  assert_int_equal(m.nlayers, 0);
}

static void test_manifest_rejections(void **state) {
  (void)state;
  refused("\"schemaVersion\":2", "\"schemaVersion\":1", EBADMSG);
  refused("\"artifactType\":\"application/vnd.kybernate.checkpoint.v1\"",
          "\"artifactType\":\"application/vnd.example\"", ENOTSUP);
  refused("\"mediaType\":\"application/vnd.kybernate.checkpoint.manifest.v1+json\"",
          "\"mediaType\":\"application/vnd.oci.image.config.v1+json\"", ENOTSUP);
  refused("\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\"",
          "\"mediaType\":\"application/vnd.oci.image.index.v1+json\"", ENOTSUP);
  refused("criu/pages-1.img", "../etc/passwd", EBADMSG);
  refused("criu/pages-1.img", "/etc/passwd", EBADMSG);
  refused("criu/pages-1.img", "manifest.json", EBADMSG);
  refused("criu/pages-1.img", "rootfs-diff.tar", EBADMSG); /* listed twice */
  refused("\"io.kybernate.part.size\":\"4096\"", "\"io.kybernate.part.size\":\"-1\"", EBADMSG);
  refused("\"io.kybernate.part.size\":\"4096\"", "\"io.kybernate.part.size\":4096", EBADMSG);
  refused("\"io.kybernate.part.size\":\"4096\"",
          "\"io.kybernate.part.size\":\"99999999999999999999999\"", EBADMSG);
  refused("\"size\":2049", "\"size\":-5", EBADMSG);
  refused("\"size\":321", "\"size\":99999999999", EBADMSG); /* a config beyond 16 MiB */
  refused(D1, "sha256:1111", EBADMSG);
  refused(D1, "sha512:1111111111111111111111111111111111111111111111111111111111111111", EBADMSG);
  refused("application/vnd.kybernate.checkpoint.part.v1+zstd",
          "application/vnd.oci.image.layer.v1.tar", EBADMSG);
  refused("\"layers\":[", "\"layers\":{\"x\":[", EBADMSG);
  refused("{", "[", EBADMSG);
  refused("\"schemaVersion\":2", "\"schemaVersion\":2,\"schemaVersion\":2", EBADMSG);

  kyb_oci_manifest m = {0};
  cleanup_error kyb_error *err = NULL;
  cleanup_free char *big = malloc(KYB_OCI_MANIFEST_MAX + 2);
  memset(big, ' ', KYB_OCI_MANIFEST_MAX + 1);
  assert_int_equal(kyb_oci_manifest_parse(big, KYB_OCI_MANIFEST_MAX + 1, &m, &err), -1);
  assert_int_equal(kyb_error_code(err), EFBIG);
}

static void test_link_next(void **state) {
  (void)state;
  cleanup_free char *n = kyb_oci_link_next("</v2/kyb/x/tags/list?last=b&n=2>; rel=\"next\"");
  assert_string_equal(n, "/v2/kyb/x/tags/list?last=b&n=2");
  assert_null(kyb_oci_link_next("<https://evil.example/v2/x>; rel=\"next\""));
  assert_null(kyb_oci_link_next("</v2/x>; rel=\"prev\""));
  assert_null(kyb_oci_link_next("/v2/x"));
  assert_null(kyb_oci_link_next(NULL));
}

/* ---- against a real registry ------------------------------------------------ */

static char tmpdir[] = "/tmp/kyb-test-oci-XXXXXX";
static pid_t registry_pid;
static int registry_port;
static char store_uri[128];

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(sa);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  close(fd);
  return ntohs(sa.sin_port);
}

static bool registry_answers(void) {
  kyb_http_opts o = {.retries = -1, .connect_timeout_ms = 1000};
  kyb_http *h = NULL;
  kyb_error *err = NULL;
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/v2/", registry_port);
  kyb_http_req rq = {.method = "GET", .url = url};
  kyb_http_resp rs = {0};
  bool ok =
      kyb_http_new(&o, &h, &err) == 0 && kyb_http_do(h, &rq, &rs, &err) == 0 && rs.status == 200;
  kyb_http_resp_clear(&rs);
  kyb_http_free(h);
  kyb_error_free(err);
  return ok;
}

static int live_setup(void **state) {
  (void)state;
  if (access(REGISTRY_BIN, X_OK) != 0)
    return 0; /* the live tests skip */
  if (mkdtemp(tmpdir) == NULL)
    return -1;
  registry_port = free_port();
  char cfg[256], cache[256];
  snprintf(cfg, sizeof(cfg), "%s/config.yml", tmpdir);
  snprintf(cache, sizeof(cache), "%s/cache", tmpdir);
  FILE *f = fopen(cfg, "w");
  if (f == NULL || registry_port <= 0)
    return -1;
  fprintf(f,
          "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
          "storage:\n  filesystem:\n    rootdirectory: %s/data\n  delete:\n    enabled: true\n"
          "http:\n  addr: 127.0.0.1:%d\n  secret: unit-test-secret\n",
          tmpdir, registry_port);
  fclose(f);
  setenv("KYBERNATE_IMAGE_CACHE", cache, 1);
  snprintf(store_uri, sizeof(store_uri), "oci://127.0.0.1:%d/kyb/unit", registry_port);
  registry_pid = fork();
  if (registry_pid == 0) {
    char log[256];
    snprintf(log, sizeof(log), "%s/registry.log", tmpdir);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execl(REGISTRY_BIN, REGISTRY_BIN, "serve", cfg, (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 600; i++) { /* 30 s */
    if (registry_answers())
      return 0;
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
  }
  return -1;
}

static int live_teardown(void **state) {
  (void)state;
  if (registry_pid > 0) {
    kill(registry_pid, SIGTERM);
    waitpid(registry_pid, NULL, 0);
  }
  if (tmpdir[strlen(tmpdir) - 1] != 'X') {
    kyb_error *err = NULL;
    kyb_remove_tree(tmpdir, &err);
    kyb_error_free(err);
  }
  return 0;
}

#define NEED_REGISTRY()                                                                            \
  do {                                                                                             \
    if (registry_pid <= 0)                                                                         \
      skip();                                                                                      \
  } while (0)

/* Writes an image `name` into a fresh staging dir of s: a big page file
 * (more than one upload chunk, half compressible), a small one, an empty
 * one and a rootfs diff. */
static kyb_staging *stage_image(kyb_store *s, const char *name, size_t big) {
  cleanup_error kyb_error *err = NULL;
  kyb_staging *st = NULL;
  assert_int_equal(kyb_store_stage(s, name, &st, &err), 0);
  const char *dir = kyb_staging_path(st);
  cleanup_free char *criu = kyb_path_join(dir, "criu");
  assert_int_equal(kyb_mkdir_p(criu, 0700, &err), 0);
  cleanup_free char *buf = malloc(big);
  unsigned x = 12345;
  for (size_t i = 0; i < big; i++) {
    x = x * 1103515245u + 12345u;
    buf[i] = (i / 4096) % 2 ? (char)(x >> 16) : (char)(i & 7);
  }
  cleanup_free char *p1 = kyb_path_join(criu, "pages-1.img");
  assert_int_equal(kyb_write_file_atomic(p1, buf, big, 0600, &err), 0);
  cleanup_free char *p2 = kyb_path_join(criu, "core-1.img");
  assert_int_equal(kyb_write_file_atomic(p2, "core", 4, 0600, &err), 0);
  cleanup_free char *p3 = kyb_path_join(criu, "empty.img");
  assert_int_equal(kyb_write_file_atomic(p3, "", 0, 0600, &err), 0);
  kyb_image_builder *b = kyb_image_builder_new(dir, name, &err);
  assert_non_null(b);
  kyb_image_source src = {.container_id = "c0ffee",
                          .pod_name = "web-1",
                          .pod_namespace = "shop",
                          .container_name = "app"};
  assert_int_equal(kyb_image_builder_set_source(b, &src, &err), 0);
  cleanup_json json_t *spec = json_object();
  assert_int_equal(kyb_image_builder_set_runtime(b, spec, "runc", "runc", &err), 0);
  assert_int_equal(kyb_image_builder_finish(b, NULL, &err), 0);
  kyb_image_builder_free(b);
  return st;
}

static void push(kyb_store *s, const char *name, size_t big) {
  cleanup_error kyb_error *err = NULL;
  kyb_staging *st = stage_image(s, name, big);
  cleanup_free char *dir = strdup(kyb_staging_path(st));
  if (kyb_store_put(s, st, &err) < 0)
    fail_msg("push %s: %s", name, kyb_error_message(err));
  kyb_staging_free(st);
  struct stat sb;
  assert_int_equal(stat(dir, &sb), -1); /* the local staging copy is gone */
}

/* No .staging-* or half image left in the cache dir of the store. */
static void assert_cache_clean(kyb_store *s, const char *name) {
  const char *dir = kyb_store_local_dir(s);
  cleanup_free char *img = kyb_path_join(dir, name);
  struct stat sb;
  assert_int_equal(lstat(img, &sb), -1);
  DIR *d = opendir(dir);
  if (d == NULL)
    return;
  struct dirent *de;
  while ((de = readdir(d)) != NULL)
    if (strncmp(de->d_name, ".staging-", 9) == 0)
      fail_msg("left behind: %s/%s", dir, de->d_name);
  closedir(d);
}

static void test_live_push_pull(void **state) {
  (void)state;
  NEED_REGISTRY();
  cleanup_error kyb_error *err = NULL;
  kyb_store *s = NULL;
  assert_int_equal(kyb_store_open(store_uri, 0, &s, &err), 0);
  kyb_image_summary *v = NULL;
  size_t n = 9;
  assert_int_equal(kyb_store_list(s, &v, &n, &err), 0); /* no repository yet */
  assert_int_equal(n, 0);
  push(s, "img-a", 20u << 20); /* two PATCH chunks and a final PUT */

  kyb_staging *st = NULL;
  assert_int_equal(kyb_store_stage(s, "img-a", &st, &err), -1);
  assert_int_equal(kyb_error_code(err), EEXIST);
  kyb_error_clear(&err);

  assert_int_equal(kyb_store_list(s, &v, &n, &err), 0);
  assert_int_equal(n, 1);
  assert_string_equal(v[0].name, "img-a");
  assert_string_equal(v[0].pod_namespace, "shop");
  assert_null(v[0].error);
  assert_true(v[0].size > (20u << 20));
  kyb_image_summaries_free(v, n);

  cleanup_free char *path = NULL;
  assert_int_equal(kyb_store_get_path(s, "img-a", &path, &err), 0);
  cleanup_free char *want = kyb_path_join(kyb_store_local_dir(s), "img-a");
  assert_string_equal(path, want);
  cleanup_json json_t *m = NULL;
  if (kyb_image_verify(path, &m, &err) < 0)
    fail_msg("%s", kyb_error_message(err));
  assert_string_equal(json_string_value(json_object_get(m, "name")), "img-a");
  struct stat a, b;
  cleanup_free char *pages = kyb_path_join(path, "criu/pages-1.img");
  assert_int_equal(stat(pages, &a), 0);
  assert_int_equal(a.st_size, 20u << 20);
  assert_int_equal(a.st_mode & 0777, 0600);
  /* a second get uses the cached copy */
  cleanup_free char *again = NULL;
  assert_int_equal(kyb_store_get_path(s, "img-a", &again, &err), 0);
  assert_int_equal(stat(pages, &b), 0);
  assert_int_equal(a.st_ino, b.st_ino);
  /* a stale cached copy (another image under the name) is replaced */
  cleanup_free char *core = kyb_path_join(path, "criu/core-1.img");
  cleanup_free char *mf = kyb_path_join(path, "manifest.json");
  assert_int_equal(kyb_write_file_atomic(mf, "{}", 2, 0600, &err), 0);
  cleanup_free char *third = NULL;
  assert_int_equal(kyb_store_get_path(s, "img-a", &third, &err), 0);
  assert_int_equal(kyb_image_verify(third, NULL, &err), 0);

  kyb_image_summary one = {0};
  assert_int_equal(kyb_store_stat(s, "img-a", &one, &err), 0);
  assert_string_equal(one.container_id, "c0ffee");
  kyb_image_summary_release(&one);

  assert_int_equal(kyb_store_delete(s, "img-a", &err), 0);
  assert_int_equal(kyb_store_stat(s, "img-a", &one, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
  kyb_error_clear(&err);
  assert_cache_clean(s, "img-a"); /* the cached copy went with it */
  assert_int_equal(kyb_store_delete(s, "img-a", &err), -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
  kyb_error_clear(&err);
  assert_int_equal(kyb_store_get_path(s, "img-a", &path, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
  kyb_error_clear(&err);
  assert_int_equal(kyb_store_list(s, &v, &n, &err), 0);
  assert_int_equal(n, 0);
  kyb_store_close(s);
}

/* The stored blob of `path` in image `name`, as the registry keeps it. */
static char *blob_file(const char *name, const char *path) {
  cleanup_free char *url = NULL;
  assert_true(asprintf(&url, "http://127.0.0.1:%d/v2/kyb/unit/manifests/%s", registry_port, name) >
              0);
  kyb_http *h = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_http_new(NULL, &h, &err), 0);
  const char *hdrs[] = {"Accept: " KYB_OCI_MEDIA_MANIFEST, NULL};
  kyb_http_req rq = {.method = "GET", .url = url, .headers = hdrs};
  kyb_http_resp rs = {0};
  assert_int_equal(kyb_http_do(h, &rq, &rs, &err), 0);
  assert_int_equal(rs.status, 200);
  kyb_oci_manifest m = {0};
  assert_int_equal(kyb_oci_manifest_parse(rs.body, rs.body_len, &m, &err), 0);
  char *out = NULL;
  for (size_t i = 0; i < m.nlayers; i++)
    if (strcmp(m.layers[i].path, path) == 0)
      assert_true(asprintf(&out, "%s/data/docker/registry/v2/blobs/sha256/%.2s/%s/data", tmpdir,
                           m.layers[i].blob_digest + 7, m.layers[i].blob_digest + 7) > 0);
  kyb_oci_manifest_clear(&m);
  kyb_http_resp_clear(&rs);
  kyb_http_free(h);
  assert_non_null(out);
  return out;
}

static void flip_byte(const char *file, off_t at) {
  int fd = open(file, O_RDWR);
  assert_true(fd >= 0);
  unsigned char c;
  assert_int_equal(pread(fd, &c, 1, at), 1);
  c ^= 0x01;
  assert_int_equal(pwrite(fd, &c, 1, at), 1);
  close(fd);
}

static void test_live_flipped_byte(void **state) {
  (void)state;
  NEED_REGISTRY();
  cleanup_error kyb_error *err = NULL;
  kyb_store *s = NULL;
  assert_int_equal(kyb_store_open(store_uri, 0, &s, &err), 0);
  push(s, "img-b", 3u << 20);
  cleanup_free char *blob = blob_file("img-b", "criu/pages-1.img");
  struct stat sb;
  assert_int_equal(stat(blob, &sb), 0);
  off_t spots[] = {0, sb.st_size / 2, sb.st_size - 1};
  for (size_t i = 0; i < sizeof(spots) / sizeof(spots[0]); i++) {
    flip_byte(blob, spots[i]);
    cleanup_free char *path = NULL;
    assert_int_equal(kyb_store_get_path(s, "img-b", &path, &err), -1);
    assert_int_equal(kyb_error_code(err), EBADMSG);
    assert_non_null(strstr(kyb_error_message(err), "criu/pages-1.img"));
    kyb_error_clear(&err);
    assert_cache_clean(s, "img-b");
    flip_byte(blob, spots[i]); /* back */
  }
  cleanup_free char *path = NULL;
  assert_int_equal(kyb_store_get_path(s, "img-b", &path, &err), 0);
  assert_int_equal(kyb_store_delete(s, "img-b", &err), 0);
  kyb_store_close(s);
}

static void test_live_changed_file_refused(void **state) {
  (void)state;
  NEED_REGISTRY();
  cleanup_error kyb_error *err = NULL;
  kyb_store *s = NULL;
  assert_int_equal(kyb_store_open(store_uri, 0, &s, &err), 0);
  kyb_staging *st = stage_image(s, "img-c", 1u << 20);
  /* pages-1.img changes after the manifest was written (same size); its
   * content was never pushed, so no memo can stand in for it */
  cleanup_free char *p = kyb_path_join(kyb_staging_path(st), "criu/pages-1.img");
  flip_byte(p, 4096 + 17);
  assert_int_equal(kyb_store_put(s, st, &err), -1);
  assert_int_equal(kyb_error_code(err), EBADMSG);
  assert_non_null(strstr(kyb_error_message(err), "criu/pages-1.img"));
  kyb_error_clear(&err);
  kyb_staging_free(st);
  kyb_image_summary one = {0};
  assert_int_equal(kyb_store_stat(s, "img-c", &one, &err), -1);
  assert_int_equal(kyb_error_code(err), ENOENT);
  kyb_store_close(s);
}

/* The registry manifest of image `name` in kyb/unit. */
static void registry_manifest(const char *name, kyb_oci_manifest *m) {
  cleanup_free char *url = NULL;
  assert_true(asprintf(&url, "http://127.0.0.1:%d/v2/kyb/unit/manifests/%s", registry_port, name) >
              0);
  kyb_http *h = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_http_new(NULL, &h, &err), 0);
  const char *hdrs[] = {"Accept: " KYB_OCI_MEDIA_MANIFEST, NULL};
  kyb_http_req rq = {.method = "GET", .url = url, .headers = hdrs};
  kyb_http_resp rs = {0};
  assert_int_equal(kyb_http_do(h, &rq, &rs, &err), 0);
  assert_int_equal(rs.status, 200);
  assert_int_equal(kyb_oci_manifest_parse(rs.body, rs.body_len, m, &err), 0);
  kyb_http_resp_clear(&rs);
  kyb_http_free(h);
}

static const kyb_oci_layer *layer_of(const kyb_oci_manifest *m, const char *path) {
  for (size_t i = 0; i < m->nlayers; i++)
    if (strcmp(m->layers[i].path, path) == 0)
      return &m->layers[i];
  fail_msg("no layer %s", path);
  return NULL;
}

/* Parts the registry has already are not sent again (the blob memo); a
 * memo that lies is caught at pull. */
static void test_live_blob_memo(void **state) {
  (void)state;
  NEED_REGISTRY();
  cleanup_error kyb_error *err = NULL;
  kyb_store *s = NULL;
  assert_int_equal(kyb_store_open(store_uri, 0, &s, &err), 0);
  push(s, "img-d", 1u << 20);
  kyb_oci_manifest m = {0};
  registry_manifest("img-d", &m);
  const kyb_oci_layer *pages = layer_of(&m, "criu/pages-1.img");
  const kyb_oci_layer *core = layer_of(&m, "criu/core-1.img");
  cleanup_free char *memo = NULL;
  assert_true(asprintf(&memo, "%s/cache/oci/blobs/%s", tmpdir, pages->file_digest + 7) > 0);
  cleanup_free char *line = NULL;
  size_t len = 0;
  assert_int_equal(kyb_read_file(memo, 128, &line, &len, &err), 0);
  assert_non_null(strstr(line, pages->blob_digest));

  /* the same files again: pushed from the memo, and they pull fine */
  push(s, "img-e", 1u << 20);
  cleanup_free char *path = NULL;
  assert_int_equal(kyb_store_get_path(s, "img-e", &path, &err), 0);
  assert_int_equal(kyb_image_verify(path, NULL, &err), 0);

  /* a memo that names the wrong blob: the push trusts it (the registry has
   * that blob), the pull refuses the image */
  char lie[128];
  int n = snprintf(lie, sizeof(lie), "%s %llu\n", core->blob_digest,
                   (unsigned long long)core->blob_size);
  assert_int_equal(kyb_write_file_atomic(memo, lie, (size_t)n, 0600, &err), 0);
  push(s, "img-f", 1u << 20);
  cleanup_free char *bad = NULL;
  assert_int_equal(kyb_store_get_path(s, "img-f", &bad, &err), -1);
  assert_int_equal(kyb_error_code(err), EBADMSG);
  assert_non_null(strstr(kyb_error_message(err), "criu/pages-1.img"));
  kyb_error_clear(&err);
  assert_cache_clean(s, "img-f");
  kyb_oci_manifest_clear(&m);
  kyb_store_close(s);
}

/* An image deleted in the registry while the node still has a cached copy:
 * a new image of that name can be pushed, and a pull replaces the copy. */
static void test_live_cached_copy_does_not_block(void **state) {
  (void)state;
  NEED_REGISTRY();
  cleanup_error kyb_error *err = NULL;
  kyb_store *s = NULL;
  assert_int_equal(kyb_store_open(store_uri, 0, &s, &err), 0);
  push(s, "img-g", 4096);
  cleanup_free char *path = NULL;
  assert_int_equal(kyb_store_get_path(s, "img-g", &path, &err), 0);
  /* deleted behind the node's back: straight through the registry API */
  cleanup_free char *url = NULL;
  assert_true(asprintf(&url, "http://127.0.0.1:%d/v2/kyb/unit/manifests/img-g", registry_port) > 0);
  kyb_http *h = NULL;
  assert_int_equal(kyb_http_new(NULL, &h, &err), 0);
  const char *hdrs[] = {"Accept: " KYB_OCI_MEDIA_MANIFEST, NULL};
  kyb_http_req rq = {.method = "HEAD", .url = url, .headers = hdrs};
  kyb_http_resp rs = {0};
  assert_int_equal(kyb_http_do(h, &rq, &rs, &err), 0);
  cleanup_free char *del = NULL;
  assert_true(asprintf(&del, "http://127.0.0.1:%d/v2/kyb/unit/manifests/%s", registry_port,
                       kyb_http_resp_header(&rs, "Docker-Content-Digest")) > 0);
  kyb_http_req dq = {.method = "DELETE", .url = del};
  assert_int_equal(kyb_http_do(h, &dq, &rs, &err), 0);
  assert_int_equal(rs.status, 202);
  kyb_http_resp_clear(&rs);
  kyb_http_free(h);
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0); /* the node still has it */

  kyb_staging *st = stage_image(s, "img-g", 8192); /* another image, same name */
  assert_int_equal(kyb_store_put(s, st, &err), 0);
  kyb_staging_free(st);
  cleanup_free char *again = NULL;
  assert_int_equal(kyb_store_get_path(s, "img-g", &again, &err), 0);
  cleanup_free char *pages = kyb_path_join(again, "criu/pages-1.img");
  assert_int_equal(stat(pages, &sb), 0);
  assert_int_equal(sb.st_size, 8192); /* the new one */
  assert_int_equal(kyb_store_delete(s, "img-g", &err), 0);
  kyb_store_close(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_uri_parse),
      cmocka_unit_test(test_refs),
      cmocka_unit_test(test_plain_http),
      cmocka_unit_test(test_nodeconf_oci_stores),
      cmocka_unit_test(test_challenges),
      cmocka_unit_test(test_auth_lookup),
      cmocka_unit_test(test_manifest_roundtrip),
      cmocka_unit_test(test_manifest_rejections),
      cmocka_unit_test(test_link_next),
      cmocka_unit_test(test_live_push_pull),
      cmocka_unit_test(test_live_flipped_byte),
      cmocka_unit_test(test_live_changed_file_refused),
      cmocka_unit_test(test_live_blob_memo),
      cmocka_unit_test(test_live_cached_copy_does_not_block),
  };
  return cmocka_run_group_tests(tests, live_setup, live_teardown);
}
