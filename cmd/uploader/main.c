/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kybernate-uploader: the uploader sidecar: moves finished images between the node and storage
 * (file://, oci://, s3://), and is the only process that holds storage credentials.  Jobs come
 * over a unix socket (lib/uploader, docs/uploader.md).
 *
 * SIGTERM or SIGINT: no new jobs (503), queued ones cancelled, running ones get --grace seconds
 * to finish (the API keeps answering meanwhile), then they are stopped; exit 0.
 */
#define KYB_LOG_MODULE "uploader"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ops/nodeconf.h"
#include "store/oci.h"
#include "uploader/server.h"
#include "uploader/transfer.h"
#include "util/cli.h"

static const char *const program = "kybernate-uploader";

static void usage(FILE *out) {
  fprintf(out,
          "Usage: %s [OPTIONS]\n"
          "\n"
          "Kybernate uploader sidecar: moves checkpoint images between this node and storage\n"
          "(oci://, s3://, file://) as jobs given over a unix socket; the only process that holds\n"
          "storage credentials. API and credentials: docs/uploader.md.\n"
          "\n"
          "Options:\n"
          "  --socket PATH        where to listen (default $%s, else %s)\n"
          "  --workers N          jobs run at once (default 2, at most 16)\n"
          "  --retries N          further attempts of a job after a transient failure\n"
          "                       (default 3; 0: none)\n"
          "  --backoff-ms MS      wait before the first retry, doubled per retry (default 2000)\n"
          "  --grace SECONDS      on SIGTERM, how long running jobs may finish (default 90)\n"
          "  --config FILE        node configuration: its file:// stores are the local ones jobs\n"
          "                       may use (default $KYBERNATE_CONFIG, else %s)\n"
          "  --log-level LEVEL    error, warn, info (default), debug, trace\n"
          "  --log-format FORMAT  json (default for daemons) or text\n"
          "  -h, --help           show this help\n"
          "  -V, --version        show the version\n",
          program, KYB_UPLOADER_SOCKET_ENV, KYB_UPLOADER_SOCKET_DEFAULT, KYB_NODECONF_DEFAULT_PATH);
}

typedef struct {
  const char *socket;
  const char *config;
  const char *level, *format;
  kyb_uploader_opts jobs;
  long grace_s;
} options;

static bool parse_long(const char *s, long lo, long hi, long *out) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
    return false;
  *out = v;
  return true;
}

/* 0 to run, else the exit code. */
static int parse_args(int argc, char **argv, options *o) {
  enum { O_SOCKET = 256, O_WORKERS, O_RETRIES, O_BACKOFF, O_GRACE, O_CONFIG, O_LEVEL, O_FORMAT };
  static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                       {"version", no_argument, NULL, 'V'},
                                       {"socket", required_argument, NULL, O_SOCKET},
                                       {"workers", required_argument, NULL, O_WORKERS},
                                       {"retries", required_argument, NULL, O_RETRIES},
                                       {"backoff-ms", required_argument, NULL, O_BACKOFF},
                                       {"grace", required_argument, NULL, O_GRACE},
                                       {"config", required_argument, NULL, O_CONFIG},
                                       {"log-level", required_argument, NULL, O_LEVEL},
                                       {"log-format", required_argument, NULL, O_FORMAT},
                                       {NULL, 0, NULL, 0}};
  int c;
  long v = 0;
  while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
    switch (c) {
    case 'h':
      usage(stdout);
      return 0x100;
    case 'V':
      kyb_cli_print_version(stdout, program);
      return 0x100;
    case O_SOCKET:
      o->socket = optarg;
      break;
    case O_WORKERS:
      if (!parse_long(optarg, 1, 16, &v))
        goto bad;
      o->jobs.workers = (int)v;
      break;
    case O_RETRIES:
      if (!parse_long(optarg, 0, 100, &v))
        goto bad;
      o->jobs.retries = v == 0 ? -1 : (int)v;
      break;
    case O_BACKOFF:
      if (!parse_long(optarg, 1, 3600000, &v))
        goto bad;
      o->jobs.backoff_ms = v;
      break;
    case O_GRACE:
      if (!parse_long(optarg, 0, 86400, &v))
        goto bad;
      o->grace_s = v;
      break;
    case O_CONFIG:
      o->config = optarg;
      break;
    case O_LEVEL:
      o->level = optarg;
      break;
    case O_FORMAT:
      o->format = optarg;
      break;
    default:
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "%s: unexpected argument '%s'\n", program, argv[optind]);
    return 2;
  }
  return 0;
bad:
  fprintf(stderr, "%s: %s: invalid value '%s' (see --help)\n", program, argv[optind - 1], optarg);
  return 2;
}

/* Where credentials would come from: paths and presence, never contents. */
static void log_credentials(void) {
  static const char *const files[] = {KYB_OCI_AUTH_ENV, "KYBERNATE_S3_CREDENTIALS"};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    const char *p = getenv(files[i]);
    struct stat sb;
    if (p != NULL && *p != '\0')
      log_info("credentials: $%s = %s (%s)", files[i], p,
               stat(p, &sb) == 0 ? "present" : "missing: stores needing it will be refused");
  }
  if (getenv("AWS_ACCESS_KEY_ID") != NULL)
    log_info("credentials: AWS_ACCESS_KEY_ID set in the environment");
  if (getenv(KYB_OCI_USER_ENV) != NULL)
    log_info("credentials: $%s set in the environment", KYB_OCI_USER_ENV);
}

static int run(const options *o, const kyb_nodeconf *conf, sigset_t *sigs, kyb_error **err) {
  const char *locals[64];
  size_t n = 0;
  for (size_t i = 0; i < conf->nstores && n < 64; i++)
    if (strncmp(conf->stores[i], "file://", 7) == 0)
      locals[n++] = conf->stores[i];
  kyb_job_policy pol = {.default_store = conf->default_store, .locals = locals, .nlocals = n};
  kyb_uploader *u = NULL;
  kyb_uploader_opts jo = o->jobs;
  jo.run = kyb_transfer_run;
  if (kyb_uploader_new(&jo, &u, err) < 0)
    return -1;
  kyb_uploader_server *srv = NULL;
  if (kyb_uploader_server_start(o->socket, u, &pol, &srv, err) < 0) {
    kyb_uploader_free(u);
    return -1;
  }
  const char *cache = getenv("KYBERNATE_IMAGE_CACHE");
  log_info("ready: %zu local store(s), default %s; node cache %s", n, conf->default_store,
           cache && *cache ? cache : "/var/lib/kybernate/cache");
  log_credentials();
  int sig = 0;
  while (sigwait(sigs, &sig) != 0)
    ;
  log_info("%s: no new jobs; running ones get %ld s", strsignal(sig), o->grace_s);
  bool all = kyb_uploader_shutdown(u, o->grace_s * 1000, 5000);
  kyb_uploader_server_stop(srv);
  if (all)
    kyb_uploader_free(u);
  log_info("stopped%s", all ? "" : " (transfers cut short: nothing of them is visible)");
  return 0;
}

int main(int argc, char **argv) {
  options o = {.grace_s = 90};
  int rc = parse_args(argc, argv, &o);
  if (rc != 0)
    return rc == 0x100 ? 0 : rc;
  if (o.socket == NULL)
    o.socket = getenv(KYB_UPLOADER_SOCKET_ENV);
  if (o.socket == NULL || *o.socket == '\0')
    o.socket = KYB_UPLOADER_SOCKET_DEFAULT;
  kyb_error *err = NULL;
  if (kyb_cli_setup_logging(program, KYB_LOG_JSON, o.level, o.format, &err) < 0) {
    kyb_cli_report(program, err);
    kyb_error_free(err);
    return 2;
  }
  /* Before any thread: libcurl's global state, and the signals only sigwait takes. */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    log_error("libcurl initialisation failed");
    return 1;
  }
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);
  kyb_nodeconf conf = {0};
  rc = 0;
  if (kyb_nodeconf_load(o.config, &conf, &err) < 0 || run(&o, &conf, &sigs, &err) < 0) {
    log_error_chain(err, "kybernate-uploader");
    kyb_error_free(err);
    rc = 1;
  }
  kyb_nodeconf_clear(&conf);
  curl_global_cleanup();
  return rc;
}
