/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Restore outcomes to the node agent (report.h).
 */
#define KYB_LOG_MODULE "runtime"

#include "runtime/report.h"

#include <stdlib.h>
#include <string.h>

#include "agent/client.h"
#include "runtime/decide.h"
#include "util/cleanup.h"
#include "util/log.h"

/* What the agent takes (lib/agent/report.h: 8 KiB of reason, 1 KiB of
 * reference): the reason is cut below that, a longer reference left out. */
#define REASON_MAX 4096
#define REF_MAX 1024

static const char *ann(const json_t *annotations, const char *key) {
  const char *v = json_string_value(json_object_get(annotations, key));
  return v != NULL && *v != '\0' ? v : NULL;
}

/* The reason as one line of valid UTF-8 the agent accepts: control
 * characters (CRIU's log lines come with newlines) become blanks, and when
 * the text is not UTF-8 its non-ASCII bytes become '?'; cut at REASON_MAX
 * on a character boundary. */
static json_t *reason_string(const char *reason) {
  size_t n = strlen(reason);
  if (n > REASON_MAX) {
    n = REASON_MAX;
    while (n > 0 && ((unsigned char)reason[n] & 0xC0) == 0x80)
      n--;
  }
  cleanup_free char *s = strndup(reason, n);
  if (s == NULL)
    return NULL;
  for (char *p = s; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      *p = ' ';
  json_t *j = json_string(s);
  if (j != NULL)
    return j;
  for (char *p = s; *p; p++)
    if ((unsigned char)*p >= 0x80)
      *p = '?';
  return json_string(s);
}

json_t *kyb_rt_report_body(const json_t *annotations, bool cold, const char *reason,
                           const char *ref) {
  const char *ns = ann(annotations, KYB_ANN_CRI_SANDBOX_NAMESPACE);
  const char *pod = ann(annotations, KYB_ANN_CRI_SANDBOX_NAME);
  const char *uid = ann(annotations, KYB_ANN_CRI_SANDBOX_UID);
  const char *container = ann(annotations, KYB_ANN_CRI_CONTAINER_NAME);
  if (ns == NULL || pod == NULL || uid == NULL || container == NULL)
    return NULL;
  json_t *b = json_pack("{s:s, s:s, s:s, s:s, s:s}", "podNamespace", ns, "podName", pod, "podUID",
                        uid, "container", container, "outcome", cold ? "cold" : "restored");
  if (b == NULL)
    return NULL;
  if (reason != NULL && *reason != '\0' &&
      json_object_set_new(b, "reason", reason_string(reason)) < 0)
    goto fail;
  if (cold && json_object_get(b, "reason") == NULL &&
      json_object_set_new(b, "reason", json_string("(no reason given)")) < 0)
    goto fail;
  if (ref != NULL && *ref != '\0' && strlen(ref) <= REF_MAX &&
      json_object_set_new(b, "imageRef", reason_string(ref)) < 0)
    goto fail;
  return b;
fail:
  json_decref(b);
  return NULL;
}

void kyb_rt_report_outcome(const char *socket, const json_t *annotations, bool cold,
                           const char *reason, const char *ref) {
  cleanup_json json_t *body = kyb_rt_report_body(annotations, cold, reason, ref);
  if (body == NULL) {
    log_debug("restore outcome not reported: not a pod's container");
    return;
  }
  if (socket == NULL || *socket == '\0') {
    log_debug("restore outcome not reported: no agent socket configured");
    return;
  }
  cleanup_error kyb_error *err = NULL;
  kyb_agent_client *c = NULL;
  if (kyb_agent_client_new(socket, &c, &err) == 0)
    (void)kyb_agent_client_report_outcome(c, body, &err);
  kyb_agent_client_free(c);
  if (err != NULL)
    log_warn_chain(err, "restore outcome (%s) not reported, the container starts anyway",
                   cold ? "cold" : "restored");
  else
    log_info("restore outcome (%s) reported to the agent at %s", cold ? "cold" : "restored",
             socket);
}
