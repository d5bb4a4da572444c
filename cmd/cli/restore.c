/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kybernate restore: an image into a NEW container, through containerd.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ops/restore.h"
#include "util/cleanup.h"
#include "util/cli.h"

static void usage(FILE *out) {
  fprintf(out, "Usage: kybernate [GLOBAL OPTIONS] restore REF --name NEW [OPTIONS]\n"
               "\n"
               "Restores a checkpoint image into a new container NEW: containerd creates the\n"
               "container from the image's recorded spec with kybernate-runc as its runtime,\n"
               "which verifies the image, applies its rootfs diff and restores the processes.\n"
               "Prints the new container's id and pid. On failure nothing is left behind.\n"
               "\n"
               "REF is an image name in the store given by --store, or <store-uri>/<name>\n"
               "(oci://registry/repo:<name> for a registry). An image in a remote store is\n"
               "fetched into the node cache and restored from there: by kybernate-agent with\n"
               "--agent, by kybernate-uploader with --uploader, else by this process.\n"
               "\n"
               "Options:\n"
               "  --name NEW           id of the new container (required)\n"
               "  --log FILE           append the container's stdout and stderr to FILE\n"
               "  --runtime PATH       kybernate-runc to use (default: beside this program)\n"
               "  --runc-root DIR      runc state root for the new container\n"
               "  --gpus LIST          give the new container these GPUs instead of the\n"
               "                       recorded ones: indices (nvidia-smi order) and GPU\n"
               "                       UUIDs separated by commas, or none (only for an\n"
               "                       image without GPU state). Its GPU state is restored\n"
               "                       onto them (same model, at least as much memory)\n"
               "  -h, --help           show this help\n");
}

/* With the agent (else the uploader), an image of a remote store is
 * fetched into the node cache first; the restore then reads the cache
 * alone. */
static int fetch_first(const kyb_cli *cli, kyb_restore_opts *o, kyb_error **err) {
  cleanup_free char *uri = NULL, *name = NULL;
  if ((cli->agent == NULL && cli->uploader == NULL) ||
      kyb_image_ref_parse(o->ref, o->store_uri, &uri, &name, err) < 0 || !cli_remote_uri(uri)) {
    kyb_error_clear(err); /* kyb_restore reports a bad reference in its words */
    return 0;
  }
  cleanup_free char *ref = kyb_image_ref_format(uri, name);
  if (ref == NULL)
    return kyb_error_set(err, ENOMEM, "reference");
  int r;
  if (cli->agent != NULL) {
    r = cli_agent_fetch(cli, ref, err);
  } else {
    kyb_upload_job job = {0};
    r = cli_fetch(cli, ref, &job, err);
    kyb_upload_job_clear(&job);
  }
  if (r < 0)
    return kyb_error_wrap(err, "restore %s", o->ref);
  o->store_flags = KYB_STORE_LOCAL_ONLY;
  return 0;
}

int cmd_restore(const kyb_cli *cli, int argc, char **argv) {
  enum { O_NAME = 256, O_LOG, O_RUNTIME, O_RUNC_ROOT, O_GPUS };
  static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                       {"name", required_argument, NULL, O_NAME},
                                       {"log", required_argument, NULL, O_LOG},
                                       {"runtime", required_argument, NULL, O_RUNTIME},
                                       {"runc-root", required_argument, NULL, O_RUNC_ROOT},
                                       {"gpus", required_argument, NULL, O_GPUS},
                                       {NULL, 0, NULL, 0}};
  kyb_restore_opts o = {
      .address = cli->address, .namespace_ = cli->namespace_, .store_uri = cli->store};
  char logbuf[PATH_MAX];
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'h':
      usage(stdout);
      return CLI_OK;
    case O_NAME:
      o.name = optarg;
      break;
    case O_LOG:
      /* The shim opens it: it must be absolute. */
      if (optarg[0] != '/') {
        if (realpath(".", logbuf) == NULL ||
            strlen(logbuf) + 1 + strlen(optarg) >= sizeof(logbuf)) {
          fprintf(stderr, "kybernate restore: cannot make --log %s absolute\n", optarg);
          return CLI_USAGE;
        }
        strcat(logbuf, "/");
        strcat(logbuf, optarg);
        o.log_path = logbuf;
      } else {
        o.log_path = optarg;
      }
      break;
    case O_RUNTIME:
      o.runtime_binary = optarg;
      break;
    case O_RUNC_ROOT:
      o.runc_root = optarg;
      break;
    case O_GPUS:
      o.gpus = optarg;
      break;
    default:
      usage(stderr);
      return CLI_USAGE;
    }
  }
  if (optind + 1 != argc || o.name == NULL) {
    usage(stderr);
    return CLI_USAGE;
  }
  o.ref = argv[optind];
  kyb_restore_result r = {0};
  kyb_error *err = NULL;
  cli_bar bar = {.verb = "fetching"};
  if (cli->progress) {
    o.transfer_progress = cli_bar_store_progress;
    o.transfer_progress_ud = &bar;
  }
  if (fetch_first(cli, &o, &err) < 0 || kyb_restore(&o, &r, &err) < 0) {
    cli_bar_end(&bar);
    kyb_cli_report(CLI_PROGRAM, err);
    kyb_error_free(err);
    return CLI_FAILED;
  }
  cli_bar_end(&bar);
  if (cli->json) {
    cleanup_json json_t *j =
        json_pack("{s:s, s:I, s:s, s:I}", "container", r.container_id, "pid", (json_int_t)r.pid,
                  "ref", r.ref, "totalMs", (json_int_t)r.total_ms);
    cleanup_free char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (s != NULL)
      printf("%s\n", s);
  } else {
    printf("%s %u\n", r.container_id, r.pid);
  }
  kyb_restore_result_clear(&r);
  return CLI_OK;
}
