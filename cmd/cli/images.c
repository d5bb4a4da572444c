/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kybernate images: ls, inspect, verify, rm, cleanup over a store.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "image/image.h"
#include "store/store.h"
#include "uploader/images.h"
#include "util/cleanup.h"
#include "util/cli.h"

static void usage(FILE *out) {
  fprintf(out, "Usage: kybernate [GLOBAL OPTIONS] images ls [STORE-URI]\n"
               "       kybernate [GLOBAL OPTIONS] images inspect REF\n"
               "       kybernate [GLOBAL OPTIONS] images verify REF\n"
               "       kybernate [GLOBAL OPTIONS] images rm REF [REF...]\n"
               "       kybernate [GLOBAL OPTIONS] images cleanup [--min-age SECONDS] [STORE-URI]\n"
               "\n"
               "REF is an image name in the store given by --store, or a full reference\n"
               "such as file:///var/lib/kybernate/images/NAME or oci://REGISTRY/REPO:NAME.\n"
               "STORE-URI: file:///DIR, oci://REGISTRY[:PORT]/REPO or s3://BUCKET[/PREFIX].\n"
               "inspect and verify on a remote store fetch the image into the node cache.\n"
               "\n"
               "  ls       list the images of a store\n"
               "  inspect  print an image's manifest (JSON)\n"
               "  verify   check every file of an image against its manifest's digests\n"
               "  rm       remove images\n"
               "  cleanup  remove what crashed or killed checkpoints and deletions left\n"
               "           behind (staging directories no process holds; for s3://, parts\n"
               "           of never-published uploads) older than --min-age (default 3600)\n");
}

void cli_format_size(unsigned long long bytes, char *buf, unsigned long size) {
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = (double)bytes;
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  if (u == 0)
    snprintf(buf, size, "%llu B", bytes);
  else
    snprintf(buf, size, "%.1f %s", v, units[u]);
}

static int fail(kyb_error *err) {
  kyb_cli_report(CLI_PROGRAM, err);
  kyb_error_free(err);
  return CLI_FAILED;
}

/* Opens the store a reference points into and returns the image name. */
static int open_ref(const kyb_cli *cli, const char *ref, int flags, kyb_store **store, char **name,
                    kyb_error **err) {
  cleanup_free char *uri = NULL;
  if (kyb_image_ref_parse(ref, cli->store, &uri, name, err) < 0)
    return -1;
  return kyb_store_open(uri, flags, store, err);
}

/* With the uploader, a reference into a remote store: its full form. */
static char *via_uploader(const kyb_cli *cli, const char *ref) {
  cleanup_free char *uri = NULL, *name = NULL;
  cleanup_error kyb_error *err = NULL;
  if (cli->uploader == NULL || kyb_image_ref_parse(ref, cli->store, &uri, &name, &err) < 0 ||
      !cli_remote_uri(uri))
    return NULL;
  return kyb_image_ref_format(uri, name);
}

/* The listing as JSON (images.h's shape): from the uploader for a remote
 * store when it is given, else in-process. */
static int list_json(const kyb_cli *cli, const char *uri, json_t **out, kyb_error **err) {
  if (cli->uploader != NULL && cli_remote_uri(uri)) {
    kyb_uploader_client *c = NULL;
    json_t *answer = NULL;
    if (kyb_uploader_client_new(cli->uploader, &c, err) < 0)
      return -1;
    int r = kyb_uploader_client_list(c, uri, &answer, err);
    kyb_uploader_client_free(c);
    if (r < 0)
      return kyb_error_wrap(err, "list %s", uri);
    *out = json_incref(json_object_get(answer, "images"));
    json_decref(answer);
    return 0;
  }
  kyb_store *store = NULL;
  if (kyb_store_open(uri, 0, &store, err) < 0)
    return -1;
  kyb_image_summary *v = NULL;
  size_t n = 0;
  int r = kyb_store_list(store, &v, &n, err);
  kyb_store_close(store);
  if (r < 0)
    return -1;
  json_t *arr = json_array();
  for (size_t i = 0; arr != NULL && i < n; i++)
    json_array_append_new(arr, kyb_image_summary_json(&v[i]));
  kyb_image_summaries_free(v, n);
  *out = arr;
  return arr ? 0 : kyb_error_set(err, ENOMEM, "listing");
}

static const char *field(const json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s ? s : "";
}

static int images_ls(const kyb_cli *cli, int argc, char **argv) {
  const char *uri = argc > 1 ? argv[1] : cli->store;
  kyb_error *err = NULL;
  cleanup_json json_t *arr = NULL;
  if (list_json(cli, uri, &arr, &err) < 0)
    return fail(err);
  if (cli->json) {
    cleanup_free char *s = json_dumps(arr, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s != NULL)
      printf("%s\n", s);
    return CLI_OK;
  }
  printf("%-40s %-21s %10s  %s\n", "NAME", "CREATED", "SIZE", "SOURCE");
  size_t i;
  const json_t *im;
  json_array_foreach(arr, i, im) {
    char size[32];
    cli_format_size((unsigned long long)json_integer_value(json_object_get(im, "size")), size,
                    sizeof(size));
    const char *src = field(im, "container");
    char pod[512];
    if (*field(im, "podName")) {
      snprintf(pod, sizeof(pod), "%s/%s/%s", field(im, "podNamespace"), field(im, "podName"),
               field(im, "containerName"));
      src = pod;
    }
    if (json_is_string(json_object_get(im, "error")))
      printf("%-40s %-21s %10s  (unusable: %s)\n", field(im, "name"), "-", "-", field(im, "error"));
    else
      printf("%-40s %-21s %10s  %s\n", field(im, "name"), field(im, "created"), size, src);
  }
  return CLI_OK;
}

static int images_inspect(const kyb_cli *cli, const char *ref, bool verify_only) {
  kyb_error *err = NULL;
  kyb_store *store = NULL;
  cleanup_free char *name = NULL;
  cleanup_free char *remote = via_uploader(cli, ref);
  int flags = 0;
  if (remote != NULL) { /* the uploader fetches it into the node cache; read it there */
    kyb_upload_job job = {0};
    int r = cli_fetch(cli, remote, &job, &err);
    kyb_upload_job_clear(&job);
    if (r < 0)
      return fail(err);
    flags = KYB_STORE_LOCAL_ONLY;
  }
  if (open_ref(cli, ref, flags, &store, &name, &err) < 0)
    return fail(err);
  cleanup_free char *path = NULL;
  int rc = kyb_store_get_path(store, name, &path, &err);
  cleanup_json json_t *m = NULL;
  if (rc == 0)
    rc = verify_only ? kyb_image_verify(path, &m, &err) : kyb_image_load_manifest(path, &m, &err);
  kyb_store_close(store);
  if (rc < 0)
    return fail(err);
  if (verify_only) {
    size_t nfiles = json_array_size(json_object_get(m, "files"));
    if (cli->json)
      printf("{\"name\": \"%s\", \"verified\": true, \"files\": %zu}\n", name, nfiles);
    else
      printf("%s: ok (%zu files match their sha256)\n", name, nfiles);
    return CLI_OK;
  }
  cleanup_free char *s = json_dumps(m, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  if (s != NULL)
    printf("%s\n", s);
  return CLI_OK;
}

static int images_rm(const kyb_cli *cli, int argc, char **argv) {
  int rc = CLI_OK;
  for (int i = 1; i < argc; i++) {
    kyb_error *err = NULL;
    kyb_store *store = NULL;
    cleanup_free char *name = NULL;
    cleanup_free char *remote = via_uploader(cli, argv[i]);
    if (remote != NULL) {
      kyb_uploader_client *c = NULL;
      cleanup_free char *uri = NULL;
      if (kyb_uploader_client_new(cli->uploader, &c, &err) < 0 ||
          kyb_uploader_client_delete(c, remote, NULL, &err) < 0 ||
          kyb_image_ref_parse(remote, NULL, &uri, &name, &err) < 0)
        rc = fail(err);
      else if (!cli->json)
        printf("%s\n", name);
      kyb_uploader_client_free(c);
      continue;
    }
    if (open_ref(cli, argv[i], 0, &store, &name, &err) < 0 ||
        kyb_store_delete(store, name, &err) < 0) {
      kyb_store_close(store);
      rc = fail(err);
      continue;
    }
    kyb_store_close(store);
    if (!cli->json)
      printf("%s\n", name);
  }
  return rc;
}

static int images_cleanup(const kyb_cli *cli, int argc, char **argv) {
  unsigned long long min_age = 3600;
  const char *uri = cli->store;
  int i = 1;
  if (i < argc && strcmp(argv[i], "--min-age") == 0) {
    const char *v = i + 1 < argc ? argv[i + 1] : "";
    char *end = NULL;
    errno = 0;
    min_age = strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || v[0] == '-') {
      usage(stderr);
      return CLI_USAGE;
    }
    i += 2;
  }
  if (i < argc)
    uri = argv[i++];
  if (i != argc) {
    usage(stderr);
    return CLI_USAGE;
  }
  kyb_error *err = NULL;
  kyb_store *store = NULL;
  size_t removed = 0;
  if (kyb_store_open(uri, 0, &store, &err) < 0 ||
      kyb_store_cleanup(store, min_age, &removed, &err) < 0) {
    kyb_store_close(store);
    return fail(err);
  }
  kyb_store_close(store);
  if (cli->json)
    printf("{\"removed\": %zu}\n", removed);
  else
    printf("removed %zu leftover%s\n", removed, removed == 1 ? "" : "s");
  return CLI_OK;
}

int cmd_images(const kyb_cli *cli, int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? CLI_USAGE : CLI_OK;
  }
  const char *sub = argv[1];
  if (strcmp(sub, "ls") == 0 || strcmp(sub, "list") == 0) {
    if (argc > 3) {
      usage(stderr);
      return CLI_USAGE;
    }
    return images_ls(cli, argc - 1, argv + 1);
  }
  if ((strcmp(sub, "inspect") == 0 || strcmp(sub, "verify") == 0) && argc == 3)
    return images_inspect(cli, argv[2], strcmp(sub, "verify") == 0);
  if ((strcmp(sub, "rm") == 0 || strcmp(sub, "delete") == 0) && argc >= 3)
    return images_rm(cli, argc - 1, argv + 1);
  if (strcmp(sub, "cleanup") == 0)
    return images_cleanup(cli, argc - 1, argv + 1);
  usage(stderr);
  return CLI_USAGE;
}
