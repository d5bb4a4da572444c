/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's process: configuration, the host lock, the work queue, the
 * informer on this node's CheckpointRequests, the worker thread and the
 * shutdown (agent.h).
 */
#define KYB_LOG_MODULE "agent"

#include "agent/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "agent/internal.h"
#include "agent/recover.h"
#include "agent/report.h"
#include "kube/watch.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"

static const kyb_kube_resource requests_res = {"kybernate.io", "v1alpha1", "checkpointrequests",
                                               true};

/* ---- configuration --------------------------------------------------------------------- */

static void from_env(const char **field, const char *name) {
  const char *v = getenv(name);
  if (*field == NULL && v != NULL && *v != '\0')
    *field = v;
}

void kyb_agent_config_from_env(kyb_agent_config *cfg) {
  from_env(&cfg->node, "NODE_NAME");
  from_env(&cfg->pod_name, "POD_NAME");
  from_env(&cfg->pod_uid, "POD_UID");
  from_env(&cfg->containerd, "KYBERNATE_CONTAINERD_ADDRESS");
  from_env(&cfg->socket, "KYBERNATE_AGENT_SOCKET");
  from_env(&cfg->uploader, "KYBERNATE_UPLOADER_SOCKET");
  from_env(&cfg->config_path, "KYBERNATE_CONFIG");
  from_env(&cfg->store, "KYBERNATE_STORE");
}

int kyb_agent_config_check(const kyb_agent_config *cfg, kyb_error **err) {
  if (!cfg->standalone && (cfg->node == NULL || *cfg->node == '\0'))
    return kyb_error_set(err, EINVAL,
                         "no node name: --node or NODE_NAME (the DaemonSet sets it "
                         "from spec.nodeName), or --standalone");
  if (cfg->node != NULL && !kyb_agent_dns_subdomain_valid(cfg->node))
    return kyb_error_set(err, EINVAL, "node name \"%s\" is not a DNS subdomain", cfg->node);
  const char *paths[][2] = {{"--state-dir", cfg->state_dir}, {"--containerd", cfg->containerd}};
  for (size_t i = 0; i < 2; i++)
    if (paths[i][1] != NULL && paths[i][1][0] != '/')
      return kyb_error_set(err, EINVAL, "%s %s: an absolute path, please", paths[i][0],
                           paths[i][1]);
  if (cfg->socket != NULL && *cfg->socket && strcmp(cfg->socket, "none") != 0 &&
      cfg->socket[0] != '/')
    return kyb_error_set(err, EINVAL, "--socket %s: an absolute path, please", cfg->socket);
  if (cfg->store != NULL && !kyb_agent_store_uri_valid(cfg->store))
    return kyb_error_set(err, EINVAL, "--store %s is not a store URI", cfg->store);
  return 0;
}

/* ---- the host lock --------------------------------------------------------------------- */

int kyb_agent_lock(const char *state_dir, kyb_error **err) {
  if (kyb_mkdir_p(state_dir, 0700, err) < 0)
    return -1;
  cleanup_free char *path = kyb_path_join(state_dir, KYB_AGENT_LOCK_NAME);
  if (path == NULL)
    return kyb_error_set(err, ENOMEM, "lock path");
  /* O_CLOEXEC: a checkpoint worker must not keep the node locked. */
  cleanup_close int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return kyb_error_errno(err, "open %s", path);
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    int e = errno;
    char holder[32] = "";
    ssize_t n = pread(fd, holder, sizeof(holder) - 1, 0);
    holder[n > 0 ? n : 0] = '\0';
    holder[strcspn(holder, "\n")] = '\0';
    if (e == EWOULDBLOCK)
      return kyb_error_set(err, EWOULDBLOCK,
                           "another kybernate-agent holds %s (pid %s): one agent per node", path,
                           holder[0] ? holder : "?");
    errno = e;
    return kyb_error_errno(err, "lock %s", path);
  }
  char pid[32];
  int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
  if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)len, 0) != len)
    log_warn("could not write the pid into %s: %s", path, strerror(errno));
  return steal_fd(&fd);
}

/* ---- queue ----------------------------------------------------------------------------- */

bool kyb_agent_stopping(kyb_agent *a) {
  return a->stop_self != 0 || (a->stop_flag != NULL && *a->stop_flag != 0);
}

static void item_free(kyb_agent_item *it) {
  if (it != NULL) {
    free(it->key);
    free(it);
  }
}

static int enqueue(kyb_agent *a, kyb_agent_item *it) {
  pthread_mutex_lock(&a->mu);
  if (it->key != NULL)
    for (kyb_agent_item *q = a->head; q != NULL; q = q->next)
      if (q->key != NULL && strcmp(q->key, it->key) == 0) {
        pthread_mutex_unlock(&a->mu);
        item_free(it);
        return 0;
      }
  if (a->tail != NULL)
    a->tail->next = it;
  else
    a->head = it;
  a->tail = it;
  a->queued++;
  pthread_cond_signal(&a->cv);
  pthread_mutex_unlock(&a->mu);
  return 0;
}

int kyb_agent_enqueue_key(kyb_agent *a, const char *key) {
  kyb_agent_item *it = calloc(1, sizeof(*it));
  if (it == NULL || (it->key = strdup(key)) == NULL) {
    free(it);
    return -1;
  }
  return enqueue(a, it);
}

int kyb_agent_enqueue_local(kyb_agent *a, kyb_agent_local *l) {
  if (kyb_agent_stopping(a))
    return -1;
  kyb_agent_item *it = calloc(1, sizeof(*it));
  if (it == NULL)
    return -1;
  it->local = l;
  return enqueue(a, it);
}

static kyb_agent_item *dequeue(kyb_agent *a) {
  pthread_mutex_lock(&a->mu);
  while (a->head == NULL && !kyb_agent_stopping(a)) {
    /* The signal handler cannot signal a condition variable: look at the
     * stop flag twice a second. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 500 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&a->cv, &a->mu, &ts);
  }
  kyb_agent_item *it = NULL;
  if (!kyb_agent_stopping(a) && a->head != NULL) {
    it = a->head;
    a->head = it->next;
    if (a->head == NULL)
      a->tail = NULL;
    a->queued--;
    it->next = NULL;
    free(a->current);
    a->current = it->key ? strdup(it->key) : strdup("local checkpoint");
  }
  pthread_mutex_unlock(&a->mu);
  return it;
}

/* What is left when stopping: requests stay Pending for the next agent,
 * local callers hear that the agent is going. */
static void drain(kyb_agent *a) {
  pthread_mutex_lock(&a->mu);
  kyb_agent_item *it = a->head;
  a->head = a->tail = NULL;
  a->queued = 0;
  pthread_mutex_unlock(&a->mu);
  while (it != NULL) {
    kyb_agent_item *next = it->next;
    if (it->local != NULL)
      kyb_agent_local_finish(
          it->local, 503,
          json_pack("{s:{s:i, s:s}}", "error", "status", 503, "message", "the agent is stopping"));
    item_free(it);
    it = next;
  }
}

static void *worker_thread(void *ud) {
  kyb_agent *a = ud;
  kyb_agent_item *it;
  while ((it = dequeue(a)) != NULL) {
    if (it->local != NULL) {
      kyb_agent_handle_local(a, it->local);
    } else {
      char *slash = strchr(it->key, '/');
      if (slash != NULL) {
        *slash = '\0';
        kyb_agent_handle_request(a, it->key, slash + 1);
      }
    }
    item_free(it);
    pthread_mutex_lock(&a->mu);
    free(a->current);
    a->current = NULL;
    pthread_mutex_unlock(&a->mu);
  }
  drain(a);
  return NULL;
}

/* ---- the informer ---------------------------------------------------------------------- */

/* Queues a request that may need work; the worker decides (claim.h). */
static void consider(kyb_agent *a, const json_t *obj) {
  const json_t *m = json_object_get(obj, "metadata");
  const char *ns = json_string_value(json_object_get(m, "namespace"));
  const char *name = json_string_value(json_object_get(m, "name"));
  const char *phase = json_string_value(json_object_get(json_object_get(obj, "status"), "phase"));
  if (ns == NULL || name == NULL)
    return;
  if (phase != NULL && (strcmp(phase, "Completed") == 0 || strcmp(phase, "Failed") == 0))
    return;
  cleanup_free char *key = NULL;
  if (asprintf(&key, "%s/%s", ns, name) < 0 || kyb_agent_enqueue_key(a, key) < 0)
    log_error("out of memory queueing %s/%s", ns, name);
}

static int on_sync(void *ud, json_t *items, const char *rv, kyb_error **err) {
  (void)err;
  kyb_agent *a = ud;
  for (size_t i = 0; i < json_array_size(items); i++)
    consider(a, json_array_get(items, i));
  pthread_mutex_lock(&a->mu);
  bool first = !a->watching;
  a->watching = true;
  pthread_mutex_unlock(&a->mu);
  if (first)
    log_info("watching CheckpointRequests of node %s: %zu listed (resourceVersion %s)",
             a->cfg->node, json_array_size(items), rv ? rv : "?");
  return 0;
}

static int on_event(void *ud, kyb_kube_event_type type, json_t *obj, kyb_error **err) {
  (void)err;
  if (type == KYB_KUBE_ADDED || type == KYB_KUBE_MODIFIED)
    consider(ud, obj);
  return 0;
}

static int watch_requests(kyb_agent *a, kyb_error **err) {
  cleanup_free char *selector = NULL;
  const char *pairs[] = {KYB_AGENT_NODE_LABEL, a->cfg->node, NULL};
  if (kyb_kube_label_selector(pairs, &selector, err) < 0)
    return -1;
  kyb_kube_informer_opts io = {.res = &requests_res,
                               .ns = "",
                               .label_selector = selector,
                               .on_sync = on_sync,
                               .on_event = on_event,
                               .ud = a};
  int r = kyb_kube_informer_run(a->watch_kc, &io, err);
  if (r < 0 && kyb_error_code(*err) == ECANCELED) {
    kyb_error_clear(err);
    return 0;
  }
  return r;
}

static void wait_for_stop(kyb_agent *a) {
  while (!kyb_agent_stopping(a)) {
    struct pollfd p = {.fd = a->stop_fd, .events = POLLIN};
    poll(&p, a->stop_fd >= 0 ? 1 : 0, 500);
  }
}

/* ---- setup and teardown ---------------------------------------------------------------- */

static int kube_setup(kyb_agent *a, kyb_error **err) {
  kyb_kube_config kc = {0};
  if (kyb_kube_config_load(a->cfg->kubeconfig, NULL, &kc, err) < 0)
    return kyb_error_wrap(err, "Kubernetes configuration");
  int r = kyb_kube_client_new(&kc, NULL, &a->watch_kc, err);
  if (r == 0)
    r = kyb_kube_client_new(&kc, NULL, &a->work_kc, err);
  /* A report holds up a container's create: it must not wait long. */
  kyb_kube_client_opts ro_opts = {.timeout_ms = KYB_AGENT_REPORT_KUBE_TIMEOUT_MS};
  if (r == 0)
    r = kyb_kube_client_new(&kc, &ro_opts, &a->report_kc, err);
  if (r == 0)
    log_info("Kubernetes API %s (%s)", kc.server, kc.source ? kc.source : "?");
  kyb_kube_config_clear(&kc);
  if (r < 0)
    return -1;
  kyb_kube_client_set_cancel(a->watch_kc, a->stop_fd, a->stop_flag);
  kyb_kube_recorder_opts ro = {.component = "kybernate-agent", .instance = a->cfg->node};
  if (kyb_kube_recorder_new(&ro, &a->rec, err) < 0)
    return -1;
  return kyb_kube_recorder_new(&ro, &a->report_rec, err);
}

static int setup(kyb_agent *a, const kyb_agent_config *cfg, kyb_error **err) {
  a->cfg = cfg;
  a->state_dir = cfg->state_dir ? cfg->state_dir : KYB_AGENT_DEFAULT_STATE_DIR;
  a->exe = cfg->exe ? cfg->exe : "/proc/self/exe";
  if (kyb_nodeconf_load(cfg->config_path, &a->nodeconf, err) < 0)
    return -1;
  a->default_store = cfg->store ? cfg->store : a->nodeconf.default_store;
  /* Remote checkpoints are staged in a local store the uploader reads from:
   * the node's own file:// stores only (docs/uploader.md). */
  if (strncmp(a->default_store, "file://", 7) == 0)
    a->local_uri = a->default_store;
  for (size_t i = 0; a->local_uri == NULL && i < a->nodeconf.nstores; i++)
    if (strncmp(a->nodeconf.stores[i], "file://", 7) == 0)
      a->local_uri = a->nodeconf.stores[i];
  size_t k = 0;
  if (cfg->log_level != NULL) {
    a->worker_args[k++] = strdup("--log-level");
    a->worker_args[k++] = strdup(cfg->log_level);
  }
  if (cfg->log_format != NULL) {
    a->worker_args[k++] = strdup("--log-format");
    a->worker_args[k++] = strdup(cfg->log_format);
  }
  for (size_t i = 0; i < k; i++)
    if (a->worker_args[i] == NULL)
      return kyb_error_set(err, ENOMEM, "worker arguments");
  static char host[256];
  if (gethostname(host, sizeof(host) - 1) < 0)
    snprintf(host, sizeof(host), "kybernate-agent");
  static char uid[32];
  snprintf(uid, sizeof(uid), "pid-%d", (int)getpid());
  a->me.pod_name = cfg->pod_name ? cfg->pod_name : host;
  a->me.pod_uid = cfg->pod_uid ? cfg->pod_uid : uid;
  if (pthread_mutex_init(&a->mu, NULL) != 0 || pthread_cond_init(&a->cv, NULL) != 0 ||
      pthread_mutex_init(&a->report_mu, NULL) != 0)
    return kyb_error_set(err, ENOMEM, "agent locks");
  if (!cfg->standalone && kube_setup(a, err) < 0)
    return -1;
  return 0;
}

static void teardown(kyb_agent *a) {
  kyb_kube_recorder_free(a->rec);
  kyb_kube_recorder_free(a->report_rec);
  kyb_kube_client_free(a->report_kc);
  kyb_kube_client_free(a->watch_kc);
  kyb_kube_client_free(a->work_kc);
  kyb_nodeconf_clear(&a->nodeconf);
  free(a->current);
  for (size_t i = 0; i < sizeof(a->worker_args) / sizeof(a->worker_args[0]); i++)
    free(a->worker_args[i]);
  pthread_mutex_destroy(&a->mu);
  pthread_mutex_destroy(&a->report_mu);
  pthread_cond_destroy(&a->cv);
}

int kyb_agent_run(const kyb_agent_config *cfg, int stop_fd, volatile sig_atomic_t *stop_flag,
                  kyb_error **err) {
  if (kyb_agent_config_check(cfg, err) < 0)
    return -1;
  const char *state_dir = cfg->state_dir ? cfg->state_dir : KYB_AGENT_DEFAULT_STATE_DIR;
  /* First of all: only one agent per node may claim anything. */
  cleanup_close int lock = kyb_agent_lock(state_dir, err);
  if (lock < 0)
    return -1;
  kyb_agent a = {.stop_fd = stop_fd, .stop_flag = stop_flag};
  int r = setup(&a, cfg, err);
  kyb_agent_api *api = NULL;
  /* The threads must not take SIGTERM: the main thread's handler does. */
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  const char *sock = cfg->socket ? cfg->socket : KYB_AGENT_DEFAULT_SOCKET;
  if (r == 0 && *sock != '\0' && strcmp(sock, "none") != 0)
    r = kyb_agent_api_start(&a, sock, &api, err);
  pthread_t worker;
  bool worker_started = false;
  if (r == 0) {
    /* Staging directories of checkpoints that died with an earlier agent. */
    kyb_agent_store_cleanup(a.default_store);
    if (pthread_create(&worker, NULL, worker_thread, &a) != 0)
      r = kyb_error_set(err, EAGAIN, "start the worker thread");
    else
      worker_started = true;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r == 0) {
    log_info("kybernate-agent on node %s as %s (%s), default store %s%s%s",
             cfg->node ? cfg->node : "(standalone)", a.me.pod_name, a.me.pod_uid, a.default_store,
             cfg->uploader ? ", uploader " : "", cfg->uploader ? cfg->uploader : "");
    r = cfg->standalone ? (wait_for_stop(&a), 0) : watch_requests(&a, err);
  }
  a.stop_self = 1; /* whatever ended the loop: the worker ends too */
  if (worker_started) {
    pthread_mutex_lock(&a.mu);
    bool busy = a.current != NULL;
    pthread_mutex_unlock(&a.mu);
    log_info("stopping: %s", busy ? "finishing the work in progress" : "idle");
    pthread_cond_broadcast(&a.cv);
    pthread_join(worker, NULL);
  }
  kyb_agent_api_stop(api);
  teardown(&a);
  log_info("stopped");
  return r;
}
