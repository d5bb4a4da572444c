/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kybernate checkpoint: one container into one image, through containerd.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ops/checkpoint.h"
#include "ops/interrupt.h"
#include "util/cleanup.h"
#include "util/cli.h"

static void usage(FILE *out) {
  fprintf(out,
          "Usage: kybernate [GLOBAL OPTIONS] checkpoint CONTAINER [OPTIONS]\n"
          "       kybernate [GLOBAL OPTIONS] checkpoint --pod NAMESPACE/NAME --container NAME "
          "[OPTIONS]\n"
          "\n"
          "Checkpoints a running container (containerd task checkpoint: runc + CRIU) into an\n"
          "image in a store and prints the image's reference. The container is paused for the\n"
          "dump, then stopped (default) or resumed (--leave-running). If anything fails the\n"
          "container keeps running and no image appears in the store.\n"
          "\n"
          "SIGINT (Ctrl-C), SIGTERM or SIGHUP before the image is published stop the\n"
          "checkpoint the same way: the step under way (e.g. the CRIU dump) ends, then the\n"
          "container is resumed, its CUDA processes are restored and unlocked, nothing is\n"
          "published, and the exit status is 128 + the signal's number (130 for SIGINT,\n"
          "143 for SIGTERM, 129 for SIGHUP). Further signals wait for that rollback. A\n"
          "signal after the publish lets the checkpoint finish (exit 0); with --uploader\n"
          "the push to a remote store is then skipped (128 + N, the local image stays).\n"
          "\n"
          "With the global --agent SOCK (or $KYBERNATE_AGENT_SOCKET) the checkpoint runs in\n"
          "kybernate-agent (its queue, its uploader for remote stores; --store/--to are\n"
          "passed when given, else the agent's default store is used); interrupting this\n"
          "command then does not stop it.\n"
          "\n"
          "Options:\n"
          "  --to URI             store to write to (default: the global --store):\n"
          "                       file:///DIR, oci://REGISTRY[:PORT]/REPO (the image name\n"
          "                       is the tag) or s3://BUCKET[/PREFIX]. With --uploader, a\n"
          "                       remote store's image is made in the local store (--store,\n"
          "                       if file://) and pushed by kybernate-uploader\n"
          "  --keep-local         with --uploader, keep that local image after the push\n"
          "  --name NAME          image name (default: <container>-<date>-<time>)\n"
          "  --leave-running      keep the container running after the checkpoint\n"
          "  --pod NS/NAME        a Kubernetes pod's container (namespace k8s.io), with\n"
          "  --container NAME     the container's name in the pod\n"
          "  --tcp-established    checkpoint established TCP connections\n"
          "  --file-locks         checkpoint file locks\n"
          "  --ext-unix-sk        allow external unix sockets\n"
          "  --timeout SECONDS    limit for the CRIU dump (default 1800)\n"
          "  --gpu-lock-timeout SECONDS\n"
          "                       limit for locking the container's CUDA processes before\n"
          "                       their GPU state is saved (default 10; decimals allowed)\n"
          "  -h, --help           show this help\n"
          "\n"
          "Exit status: 0 published, 1 failed, 2 bad command line, 128+N stopped by\n"
          "signal N; after 1 or 128+N everything was rolled back unless the error says\n"
          "otherwise.\n");
}

static void on_progress(void *ud, const char *phase, bool done, uint64_t ms) {
  (void)ud;
  if (!done)
    fprintf(stderr, "kybernate: %-12s ...\n", phase);
  else
    fprintf(stderr, "kybernate: %-12s done in %llu ms\n", phase, (unsigned long long)ms);
}

static void print_result(const kyb_cli *cli, const kyb_checkpoint_result *r, const char *job) {
  if (!cli->json) {
    printf("%s\n", r->ref);
    return;
  }
  cleanup_json json_t *o =
      json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s*}", "container", r->container_id, "name",
                r->name, "ref", r->ref, "digest", r->digest ? r->digest : "", "size",
                (json_int_t)r->size, "totalMs", (json_int_t)r->total_ms, "uploadJob", job);
  cleanup_free char *s = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
  if (s != NULL)
    printf("%s\n", s);
}

/* The local image r->ref to the remote store through the uploader; the
 * local copy goes once the push is done (unless keep_local). */
static int push(const kyb_cli *cli, const char *remote, bool keep_local, kyb_checkpoint_result *r) {
  kyb_upload_job job = {0};
  kyb_error *err = NULL;
  if (cli_upload(cli, r->ref, remote, &job, &err) < 0) {
    kyb_error_wrap(&err, "push %s to %s (the checkpoint stays at %s)", r->name, remote, r->ref);
    kyb_cli_report(CLI_PROGRAM, err);
    kyb_error_free(err);
    kyb_upload_job_clear(&job);
    return CLI_FAILED;
  }
  if (!keep_local) {
    kyb_store *s = NULL;
    cleanup_free char *uri = NULL, *name = NULL;
    if (kyb_image_ref_parse(r->ref, NULL, &uri, &name, &err) < 0 ||
        kyb_store_open(uri, 0, &s, &err) < 0 || kyb_store_delete(s, name, &err) < 0) {
      kyb_error_wrap(&err, "remove the local copy %s (pushed as %s)", r->ref, job.ref);
      kyb_cli_report(CLI_PROGRAM, err);
      kyb_error_clear(&err);
    }
    kyb_store_close(s);
  }
  char *ref = job.ref ? strdup(job.ref) : NULL;
  if (ref != NULL) {
    free(r->ref);
    r->ref = ref;
  }
  print_result(cli, r, job.id);
  kyb_upload_job_clear(&job);
  return CLI_OK;
}

/* The checkpoint by the agent's worker; the same output as in-process. */
static int through_agent(const kyb_cli *cli, const kyb_checkpoint_opts *o, bool store_given,
                         bool keep_local, bool timeout_given) {
  if (keep_local || timeout_given)
    fprintf(stderr, "kybernate checkpoint: warning: %s has no effect through the agent\n",
            keep_local ? "--keep-local" : "--timeout");
  kyb_checkpoint_result r = {0};
  kyb_error *err = NULL;
  if (cli_agent_checkpoint(cli, o, store_given, &r, &err) < 0) {
    kyb_cli_report(CLI_PROGRAM, err);
    kyb_error_free(err);
    return CLI_FAILED;
  }
  print_result(cli, &r, NULL);
  kyb_checkpoint_result_clear(&r);
  return CLI_OK;
}

int cmd_checkpoint(const kyb_cli *cli, int argc, char **argv) {
  enum {
    O_TO = 256,
    O_NAME,
    O_LEAVE,
    O_POD,
    O_CONTAINER,
    O_TCP,
    O_LOCKS,
    O_UNIX,
    O_TIMEOUT,
    O_GPU,
    O_KEEP
  };
  static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                       {"to", required_argument, NULL, O_TO},
                                       {"name", required_argument, NULL, O_NAME},
                                       {"leave-running", no_argument, NULL, O_LEAVE},
                                       {"pod", required_argument, NULL, O_POD},
                                       {"container", required_argument, NULL, O_CONTAINER},
                                       {"tcp-established", no_argument, NULL, O_TCP},
                                       {"file-locks", no_argument, NULL, O_LOCKS},
                                       {"ext-unix-sk", no_argument, NULL, O_UNIX},
                                       {"timeout", required_argument, NULL, O_TIMEOUT},
                                       {"gpu-lock-timeout", required_argument, NULL, O_GPU},
                                       {"keep-local", no_argument, NULL, O_KEEP},
                                       {NULL, 0, NULL, 0}};
  kyb_checkpoint_opts o = {
      .address = cli->address, .namespace_ = cli->namespace_, .store_uri = cli->store};
  cleanup_free char *pod = NULL;
  bool keep_local = false, to_given = false, timeout_given = false;
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'h':
      usage(stdout);
      return CLI_OK;
    case O_TO:
      o.store_uri = optarg;
      to_given = true;
      break;
    case O_NAME:
      o.name = optarg;
      break;
    case O_LEAVE:
      o.leave_running = true;
      break;
    case O_KEEP:
      keep_local = true;
      break;
    case O_POD:
      free(pod);
      pod = strdup(optarg);
      break;
    case O_CONTAINER:
      o.container_name = optarg;
      break;
    case O_TCP:
      o.open_tcp = true;
      break;
    case O_LOCKS:
      o.file_locks = true;
      break;
    case O_UNIX:
      o.external_unix_sockets = true;
      break;
    case O_TIMEOUT: {
      char *end = NULL;
      long s = strtol(optarg, &end, 10);
      if (end == optarg || *end != '\0' || s <= 0) {
        fprintf(stderr, "kybernate checkpoint: --timeout needs a positive number of seconds\n");
        return CLI_USAGE;
      }
      o.timeout_ms = (int64_t)s * 1000;
      timeout_given = true;
      break;
    }
    case O_GPU: {
      char *end = NULL;
      double s = strtod(optarg, &end);
      /* At least 1 ms, at most a day: the workload's CUDA calls wait meanwhile. */
      if (end == optarg || *end != '\0' || !(s >= 0.001 && s <= 86400)) {
        fprintf(stderr, "kybernate checkpoint: --gpu-lock-timeout needs a number of seconds "
                        "between 0.001 and 86400\n");
        return CLI_USAGE;
      }
      o.gpu_lock_timeout_ms = (unsigned int)(s * 1000 + 0.5);
      break;
    }
    default:
      usage(stderr);
      return CLI_USAGE;
    }
  }
  if (pod != NULL) {
    char *slash = strchr(pod, '/');
    if (slash == NULL || slash == pod || slash[1] == '\0' || o.container_name == NULL ||
        optind < argc) {
      fprintf(stderr, "kybernate checkpoint: --pod takes NAMESPACE/NAME together with "
                      "--container NAME, and no CONTAINER argument\n");
      return CLI_USAGE;
    }
    *slash = '\0';
    o.pod_namespace = pod;
    o.pod_name = slash + 1;
  } else if (optind + 1 == argc && o.container_name == NULL) {
    o.container = argv[optind];
  } else {
    usage(stderr);
    return CLI_USAGE;
  }
  if (cli->agent != NULL)
    return through_agent(cli, &o, to_given || cli->store_given, keep_local, timeout_given);
  cli_bar bar = {.verb = "pushing"};
  if (cli->progress) {
    o.progress = on_progress;
    o.transfer_progress = cli_bar_store_progress;
    o.transfer_progress_ud = &bar;
  }
  /* Through the uploader: into a local store first, then a push job. */
  const char *remote = NULL;
  if (cli->uploader != NULL && cli_remote_uri(o.store_uri)) {
    remote = o.store_uri;
    o.store_uri = cli_remote_uri(cli->store) ? KYB_STORE_DEFAULT_URI : cli->store;
  }
  kyb_checkpoint_result r = {0};
  kyb_error *err = NULL;
  /* Ctrl-C and friends roll the checkpoint back instead of killing this
   * process with the container paused (ops/interrupt.h). */
  kyb_interrupt intr = {0};
  if (kyb_interrupt_catch(&intr, CLI_PROGRAM, &err) < 0) {
    kyb_cli_report(CLI_PROGRAM, err);
    kyb_error_free(err);
    return CLI_FAILED;
  }
  o.interrupted = kyb_interrupt_flag();
  int rc = kyb_checkpoint(&o, &r, &err);
  kyb_interrupt_release(&intr);
  int sig = kyb_interrupt_signal();
  cli_bar_end(&bar);
  if (rc < 0) {
    kyb_cli_report(CLI_PROGRAM, err);
    kyb_error_free(err);
    if (r.ref != NULL)
      print_result(cli, &r, NULL); /* published, though stopping the container failed */
    bool interrupted = sig != 0 && r.ref == NULL; /* stopped before the publish */
    kyb_checkpoint_result_clear(&r);
    return interrupted ? 128 + sig : CLI_FAILED;
  }
  if (sig != 0 && remote != NULL) {
    fprintf(stderr,
            "kybernate checkpoint: interrupted by %s after the image was published in the "
            "local store: not pushed to %s; the checkpoint stays at %s\n",
            kyb_interrupt_name(sig), remote, r.ref);
    print_result(cli, &r, NULL);
    kyb_checkpoint_result_clear(&r);
    return 128 + sig;
  }
  if (sig != 0)
    fprintf(stderr,
            "kybernate checkpoint: warning: %s came after the image was published; the "
            "checkpoint was finished\n",
            kyb_interrupt_name(sig));
  rc = CLI_OK;
  if (remote != NULL)
    rc = push(cli, remote, keep_local, &r);
  else
    print_result(cli, &r, NULL);
  kyb_checkpoint_result_clear(&r);
  return rc;
}
