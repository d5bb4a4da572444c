/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kybernate recover: the way out after a checkpoint whose process died
 * without its rollback (SIGKILL, the OOM killer, the shell's node gone).
 * The checkpoint rolls back by itself on any failure and on SIGINT, SIGTERM
 * and SIGHUP; only a process killed outright leaves the container paused,
 * its CUDA processes locked or checkpointed and a staging directory in the
 * store.  This redoes that rollback from outside, from what containerd, the
 * CUDA driver and the store say now: the agent's recovery (agent/recover.h).
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/recover.h"
#include "cli.h"
#include "util/cleanup.h"
#include "util/cli.h"

static void usage(FILE *out) {
  fprintf(out, "Usage: kybernate [GLOBAL OPTIONS] recover CONTAINER [OPTIONS]\n"
               "       kybernate [GLOBAL OPTIONS] recover --pod NAMESPACE/NAME --container NAME "
               "[OPTIONS]\n"
               "\n"
               "Undoes what a checkpoint that was killed (SIGKILL, out of memory, its shell's\n"
               "session gone) left behind, from what containerd, the CUDA driver and the store\n"
               "say now: a paused task is resumed (a CRIU dump still in flight ends first), then\n"
               "CUDA processes left locked or checkpointed are restored and unlocked, then the\n"
               "staging directories in the store (--store) that no live process holds are\n"
               "removed. A container that needs none of it is left alone. Do not run it while\n"
               "a checkpoint of that container is still running: it would resume the container\n"
               "under that checkpoint.\n"
               "\n"
               "It prints one line saying what was done (an object with --json). It runs in\n"
               "this process, also with --agent; only a file:// store is cleaned.\n"
               "\n"
               "Options:\n"
               "  --pod NS/NAME        a Kubernetes pod's container (namespace k8s.io), with\n"
               "  --container NAME     the container's name in the pod\n"
               "  --stop               end the task instead of resuming it: the image was\n"
               "                       published and the container was to stop (a checkpoint\n"
               "                       without --leave-running killed after its publish)\n"
               "  --no-cleanup         leave the store's staging directories alone\n"
               "  -h, --help           show this help\n"
               "\n"
               "Exit status: 0 the container runs (stopped with --stop) or nothing needed\n"
               "doing, 1 it was not found or a step failed (the error says what is left, e.g.\n"
               "still paused), 2 bad command line.\n");
}

/* What the command saw and did, for either output. */
typedef struct {
  const kyb_agent_recover_target *t;
  kyb_agent_recover_report rep;
  const char *store; /* cleaned store, NULL when not cleaned */
  size_t removed;    /* staging leftovers removed from it */
  kyb_error *err;    /* the failure, NULL on success */
} outcome;

/* Stopped, gone, or (without --stop) running: no step left to do. */
static bool settled(const outcome *o) {
  const char *st = o->rep.status_after;
  if (!o->rep.found || !o->rep.had_task)
    return true;
  if (strcmp(st, "stopped") == 0 || strcmp(st, "gone") == 0)
    return true;
  return !o->t->stop && strcmp(st, "running") == 0;
}

static bool nothing_done(const outcome *o) {
  return !o->rep.resumed && !o->rep.stopped && o->rep.gpu_restored == 0 && o->removed == 0;
}

static void describe(const outcome *o, const char *what, char *buf, size_t size) {
  if (!o->rep.found) {
    snprintf(buf, size, "%s: not found", what);
    return;
  }
  kyb_agent_recover_describe(&o->rep, what, buf, size);
  size_t n = strlen(buf);
  if (o->removed > 0 && n < size)
    n += (size_t)snprintf(buf + n, size - n, "; %zu staging leftover(s) removed from %s",
                          o->removed, o->store);
  if (o->err == NULL && nothing_done(o) && n < size)
    snprintf(buf + n, size - n, "; nothing needed doing");
}

static void print_json(const outcome *o, const char *line) {
  const kyb_agent_recover_target *t = o->t;
  cleanup_free char *pod = NULL;
  if (t->pod_name != NULL && asprintf(&pod, "%s/%s", t->pod_namespace, t->pod_name) < 0)
    pod = NULL;
  json_t *removed = o->store != NULL ? json_integer((json_int_t)o->removed) : json_null();
  cleanup_json json_t *j = json_pack(
      "{s:s?, s:s?, s:s?, s:s?, s:b, s:b, s:b, s:b, s:I, s:I, s:s?, s:s?, s:o, s:b, s:b, s:s, "
      "s:s?}",
      "container", t->container_id, "pod", pod, "containerName", t->container_name, "namespace",
      t->pod_name != NULL ? "k8s.io" : t->namespace_, "found", o->rep.found, "hadTask",
      o->rep.had_task, "resumed", o->rep.resumed, "stopped", o->rep.stopped, "gpuProcesses",
      (json_int_t)o->rep.gpu_processes, "gpuRestored", (json_int_t)o->rep.gpu_restored, "status",
      o->rep.status_after[0] ? o->rep.status_after : NULL, "store", o->store, "stagingRemoved",
      removed, "nothingToDo", o->err == NULL && nothing_done(o), "ok", o->err == NULL, "message",
      line, "error", o->err != NULL ? kyb_error_message(o->err) : NULL);
  cleanup_free char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
  if (s != NULL)
    printf("%s\n", s);
}

static int parse_pod(char *pod, kyb_agent_recover_target *t) {
  char *slash = strchr(pod, '/');
  if (slash == NULL || slash == pod || slash[1] == '\0' || t->container_name == NULL)
    return -1;
  *slash = '\0';
  t->pod_namespace = pod;
  t->pod_name = slash + 1;
  return 0;
}

int cmd_recover(const kyb_cli *cli, int argc, char **argv) {
  enum { O_POD = 256, O_CONTAINER, O_STOP, O_NO_CLEANUP };
  static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                       {"pod", required_argument, NULL, O_POD},
                                       {"container", required_argument, NULL, O_CONTAINER},
                                       {"stop", no_argument, NULL, O_STOP},
                                       {"no-cleanup", no_argument, NULL, O_NO_CLEANUP},
                                       {NULL, 0, NULL, 0}};
  kyb_agent_recover_target t = {.address = cli->address, .namespace_ = cli->namespace_};
  cleanup_free char *pod = NULL;
  bool cleanup = true;
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'h':
      usage(stdout);
      return CLI_OK;
    case O_POD:
      free(pod);
      pod = strdup(optarg);
      break;
    case O_CONTAINER:
      t.container_name = optarg;
      break;
    case O_STOP:
      t.stop = true;
      break;
    case O_NO_CLEANUP:
      cleanup = false;
      break;
    default:
      usage(stderr);
      return CLI_USAGE;
    }
  }
  if (pod != NULL) {
    if (optind < argc || parse_pod(pod, &t) < 0) {
      fprintf(stderr, "kybernate recover: --pod takes NAMESPACE/NAME together with "
                      "--container NAME, and no CONTAINER argument\n");
      return CLI_USAGE;
    }
  } else if (optind + 1 == argc && t.container_name == NULL) {
    t.container_id = argv[optind];
  } else {
    usage(stderr);
    return CLI_USAGE;
  }

  outcome o = {.t = &t};
  char what[256];
  if (t.container_id != NULL)
    snprintf(what, sizeof(what), "container %s", t.container_id);
  else
    snprintf(what, sizeof(what), "container %s of pod %s/%s", t.container_name, t.pod_namespace,
             t.pod_name);

  int r = kyb_agent_recover_container(&t, &o.rep, &o.err);
  if (r == 0 && !o.rep.found) {
    if (t.container_id != NULL)
      kyb_error_set(&o.err, 0, "container %s not found in namespace %s", t.container_id,
                    t.namespace_);
    else
      kyb_error_set(&o.err, 0, "no container %s in pod %s/%s in containerd namespace k8s.io",
                    t.container_name, t.pod_namespace, t.pod_name);
    kyb_error_wrap(&o.err, "recover");
  } else if (r == 0 && !settled(&o)) {
    kyb_error_set(&o.err, 0, "recover %s: its task is still %s", what, o.rep.status_after);
  }
  /* Staging directories: once the container is settled, no dump of it can
   * still write into one; a task still held may be under a dump still in
   * flight, whose files are left alone (a later run removes them). */
  if (cleanup && o.rep.found && (o.err == NULL || settled(&o))) {
    if (cli_remote_uri(cli->store)) {
      fprintf(stderr,
              "kybernate recover: note: %s is a remote store: its staging leftovers are the "
              "uploader's to remove\n",
              cli->store);
    } else {
      o.store = cli->store;
      o.removed = kyb_agent_store_cleanup(cli->store);
    }
  } else if (cleanup && o.rep.found) {
    fprintf(stderr,
            "kybernate recover: note: staging directories in %s left alone while the task "
            "may still be under a dump; run recover again once it runs\n",
            cli->store);
  }

  char line[1024];
  describe(&o, what, line, sizeof(line));
  if (cli->json)
    print_json(&o, line);
  else if (o.rep.found)
    printf("%s\n", line);
  int rc = CLI_OK;
  if (o.err != NULL) {
    kyb_cli_report(CLI_PROGRAM, o.err);
    kyb_error_free(o.err);
    rc = CLI_FAILED;
  }
  return rc;
}
