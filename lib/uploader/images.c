/* SPDX-License-Identifier: Apache-2.0 */
/*
 * List and delete through the uploader (images.h).
 */
#include "uploader/images.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"

json_t *kyb_image_summary_json(const kyb_image_summary *s) {
  return json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:s?}", "name", s->name, "created",
                   s->created ? s->created : "", "size", (json_int_t)s->size, "container",
                   s->container_id ? s->container_id : "", "containerName",
                   s->container_name ? s->container_name : "", "podNamespace",
                   s->pod_namespace ? s->pod_namespace : "", "podName",
                   s->pod_name ? s->pod_name : "", "error", s->error);
}

int kyb_images_list(const kyb_job_policy *pol, const char *store_uri, json_t **out,
                    kyb_error **err) {
  cleanup_free char *uri = NULL;
  if (store_uri == NULL || *store_uri == '\0')
    return kyb_error_set(err, EINVAL, "the store=<URI> query parameter is missing");
  if (kyb_job_store_parse(pol, "store", store_uri, &uri, err) < 0)
    return -1;
  kyb_store *s = NULL;
  if (kyb_store_open(uri, 0, &s, err) < 0)
    return -1;
  kyb_image_summary *v = NULL;
  size_t n = 0;
  int r = kyb_store_list(s, &v, &n, err);
  kyb_store_close(s);
  if (r < 0)
    return -1;
  json_t *arr = json_array();
  for (size_t i = 0; arr != NULL && i < n; i++)
    if (json_array_append_new(arr, kyb_image_summary_json(&v[i])) < 0) {
      json_decref(arr);
      arr = NULL;
    }
  kyb_image_summaries_free(v, n);
  *out = arr ? json_pack("{s:s, s:o}", "store", uri, "images", arr) : NULL;
  return *out ? 0 : kyb_error_set(err, ENOMEM, "listing");
}

int kyb_images_delete(const kyb_job_policy *pol, const char *ref, json_t **out, kyb_error **err) {
  if (ref == NULL || *ref == '\0')
    return kyb_error_set(err, EINVAL, "the ref=<image reference> query parameter is missing");
  if (strstr(ref, "://") == NULL)
    return kyb_error_set(err, EINVAL, "ref \"%.200s\" is not a full image reference", ref);
  cleanup_free char *store = NULL, *name = NULL, *checked = NULL;
  if (kyb_image_ref_parse(ref, NULL, &store, &name, err) < 0 ||
      kyb_job_store_parse(pol, "ref", store, &checked, err) < 0)
    return -1;
  kyb_store *s = NULL;
  if (kyb_store_open(checked, 0, &s, err) < 0)
    return -1;
  int r = kyb_store_delete(s, name, err);
  cleanup_free char *full = r == 0 ? kyb_image_ref_format(kyb_store_uri(s), name) : NULL;
  kyb_store_close(s);
  if (r < 0)
    return -1;
  *out = full ? json_pack("{s:s}", "deleted", full) : NULL;
  return *out ? 0 : kyb_error_set(err, ENOMEM, "answer");
}
