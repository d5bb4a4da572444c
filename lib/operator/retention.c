/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which Checkpoints retention deletes (contract in retention.h).  Pure.
 */
#include "operator/retention.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "operator/fields.h"
#include "util/cleanup.h"

typedef struct {
  const json_t *obj;
  int64_t completed, created;
  const char *name;
} entry;

/* Newest first. */
static int newer_first(const void *a, const void *b) {
  const entry *x = a, *y = b;
  if (x->completed != y->completed)
    return x->completed > y->completed ? -1 : 1;
  if (x->created != y->created)
    return x->created > y->created ? -1 : 1;
  return -strcmp(x->name, y->name);
}

static bool counted(const json_t *c, const char *pod) {
  return strcmp(kyb_op_str0(c, "status", "phase", NULL), "Completed") == 0 &&
         strcmp(kyb_op_str0(c, "spec", "podName", NULL), pod) == 0 &&
         kyb_op_str(c, "metadata", "deletionTimestamp", NULL) == NULL;
}

json_t *kyb_op_retention_victims(const json_t *items, const json_t *just, long default_keep) {
  cleanup_json json_t *victims = json_array();
  if (victims == NULL)
    return NULL;
  const char *pod = kyb_op_str0(just, "spec", "podName", NULL);
  const char *uid = kyb_op_str0(just, "metadata", "uid", NULL);
  long keep = (long)kyb_op_int(default_keep, just, "spec", "retention", "keepLast", NULL);
  if (keep <= 0 || !counted(just, pod))
    return steal_ptr(victims);
  size_t n = json_array_size(items) + 1, k = 0, i;
  cleanup_free entry *es = calloc(n, sizeof(*es));
  if (es == NULL)
    return NULL;
  es[k++] = (entry){just, kyb_op_time(just, "status", "completedAt", NULL),
                    kyb_op_time(just, "metadata", "creationTimestamp", NULL),
                    kyb_op_str0(just, "metadata", "name", NULL)};
  json_t *c;
  json_array_foreach(items, i, c) {
    if (strcmp(kyb_op_str0(c, "metadata", "uid", NULL), uid) == 0 || !counted(c, pod))
      continue;
    es[k++] = (entry){c, kyb_op_time(c, "status", "completedAt", NULL),
                      kyb_op_time(c, "metadata", "creationTimestamp", NULL),
                      kyb_op_str0(c, "metadata", "name", NULL)};
  }
  qsort(es, k, sizeof(*es), newer_first);
  if (es[0].obj != just) /* a newer one completed: its keepLast governs */
    return steal_ptr(victims);
  for (size_t j = (size_t)keep; j < k; j++) {
    json_t *v = json_pack("{s:s, s:s}", "name", es[j].name, "uid",
                          kyb_op_str0(es[j].obj, "metadata", "uid", NULL));
    if (v == NULL || json_array_append_new(victims, v) < 0)
      return NULL;
  }
  return steal_ptr(victims);
}
