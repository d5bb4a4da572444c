/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the recorded pod template and the restore pod built from it
 * (docs/api.md, "The pod the operator creates"): controller-owned labels
 * and our own keys dropped, the Restore's labels/annotations over the
 * recorded ones, nodeName and the API server's token volume gone,
 * runtimeClassName kybernate (another class refused), restore-from and
 * fallback set, nodeName or nodeSelector, no ownerReferences; a Restore
 * from an imageRef; the GPU model rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "operator/fields.h"
#include "operator/podspec.h"
#include "util/cleanup.h"

static json_t *parse(const char *s) {
  json_error_t e;
  json_t *j = json_loads(s, 0, &e);
  if (j == NULL)
    fail_msg("bad JSON in test: %s (line %d)", e.text, e.line);
  return j;
}

/* A pod of a ReplicaSet as the API server hands it out. */
static const char *const POD =
    "{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"llm-5d4f-abcde\","
    " \"namespace\": \"inference\", \"uid\": \"u-1\", \"resourceVersion\": \"77\","
    " \"labels\": {\"app\": \"llm\", \"pod-template-hash\": \"5d4f\", \"kybernate.io/restore\":"
    " \"older\", \"batch.kubernetes.io/job-name\": \"j\"},"
    " \"annotations\": {\"team\": \"a\", \"kybernate.io/restore-from\": \"server=old\","
    " \"kybernate.io/restore-fallback\": \"cold\", \"kybernate.io/note\": \"kept\"},"
    " \"ownerReferences\": [{\"apiVersion\": \"apps/v1\", \"kind\": \"ReplicaSet\","
    " \"name\": \"llm-5d4f\", \"uid\": \"rs\", \"controller\": true}]},"
    " \"spec\": {\"nodeName\": \"gpu-a\", \"priority\": 0, \"preemptionPolicy\":"
    " \"PreemptLowerPriority\", \"nodeSelector\": {\"pool\": \"gpu\"},"
    " \"containers\": [{\"name\": \"server\", \"image\": \"llm:1.4\", \"volumeMounts\": ["
    "  {\"name\": \"kube-api-access-x7k2p\", \"mountPath\": \"/var/run/secrets/kubernetes.io/"
    "serviceaccount\", \"readOnly\": true}, {\"name\": \"data\", \"mountPath\": \"/data\"}]}],"
    " \"initContainers\": [{\"name\": \"init\", \"image\": \"busybox\", \"volumeMounts\": ["
    "  {\"name\": \"kube-api-access-x7k2p\", \"mountPath\": \"/var/run/secrets\"}]}],"
    " \"ephemeralContainers\": [{\"name\": \"debug\", \"image\": \"busybox\"}],"
    " \"volumes\": [{\"name\": \"kube-api-access-x7k2p\", \"projected\": {\"sources\": []}},"
    "  {\"name\": \"data\", \"hostPath\": {\"path\": \"/srv\"}}]},"
    " \"status\": {\"phase\": \"Running\"}}";

static const char *const RESTORE =
    "{\"apiVersion\": \"kybernate.io/v1alpha1\", \"kind\": \"Restore\", \"metadata\": {\"name\":"
    " \"llm-wake\", \"namespace\": \"inference\", \"uid\": \"r-1\"}, \"spec\": {\"checkpointName\":"
    " \"llm-warm\", \"fallback\": \"Cold\", %s \"podTemplate\": {\"name\": \"llm-0b\", \"labels\":"
    " {\"restored\": \"true\", \"app\": \"llm2\"}, \"annotations\": {\"team\": \"b\"}}}}";

static json_t *restore_with(const char *extra) {
  char buf[2048];
  snprintf(buf, sizeof(buf), RESTORE, extra);
  return parse(buf);
}

static void test_template_records_metadata_and_spec(void **state) {
  (void)state;
  cleanup_json json_t *pod = parse(POD);
  cleanup_json json_t *t = kyb_op_pod_template(pod);
  assert_non_null(t);
  assert_string_equal(kyb_op_str(t, "metadata", "labels", "app", NULL), "llm");
  assert_string_equal(kyb_op_str(t, "metadata", "annotations", "team", NULL), "a");
  assert_string_equal(kyb_op_str(t, "spec", "nodeName", NULL), "gpu-a");
  /* Only labels, annotations and spec: no uid, owner, status. */
  assert_int_equal(json_object_size(json_object_get(t, "metadata")), 2);
  assert_null(json_object_get(t, "status"));
  assert_int_equal(json_object_size(t), 2);
}

static void test_restore_pod_from_template(void **state) {
  (void)state;
  cleanup_json json_t *pod = parse(POD);
  cleanup_json json_t *t = kyb_op_pod_template(pod);
  cleanup_json json_t *r = restore_with("");
  kyb_op_restore_pod_in in = {
      .restore = r, .tmpl = t, .restore_from = "server=file:///s/img-1", .node_name = "gpu-b"};
  cleanup_json json_t *out = NULL;
  cleanup_free char *msg = NULL;
  const char *reason = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_op_restore_pod(&in, &out, &reason, &msg, &err), 0);
  assert_string_equal(kyb_op_str(out, "apiVersion", NULL), "v1");
  assert_string_equal(kyb_op_str(out, "kind", NULL), "Pod");
  assert_string_equal(kyb_op_str(out, "metadata", "name", NULL), "llm-0b");
  assert_string_equal(kyb_op_str(out, "metadata", "namespace", NULL), "inference");
  assert_null(kyb_op_get(out, "metadata", "ownerReferences", NULL));
  assert_null(kyb_op_get(out, "metadata", "uid", NULL));
  /* Labels: controller-owned gone, the Restore's win, ours set. */
  json_t *labels = kyb_op_get(out, "metadata", "labels", NULL);
  assert_null(json_object_get(labels, "pod-template-hash"));
  assert_null(json_object_get(labels, "batch.kubernetes.io/job-name"));
  assert_string_equal(kyb_op_str(labels, "app", NULL), "llm2");
  assert_string_equal(kyb_op_str(labels, "restored", NULL), "true");
  assert_string_equal(kyb_op_str(labels, "kybernate.io/restore", NULL), "llm-wake");
  assert_int_equal(json_object_size(labels), 3);
  /* Annotations: the old restore keys replaced, other kybernate.io keys kept. */
  json_t *ann = kyb_op_get(out, "metadata", "annotations", NULL);
  assert_string_equal(kyb_op_str(ann, "team", NULL), "b");
  assert_string_equal(kyb_op_str(ann, "kybernate.io/note", NULL), "kept");
  assert_string_equal(kyb_op_str(ann, "kybernate.io/restore-from", NULL), "server=file:///s/img-1");
  assert_string_equal(kyb_op_str(ann, "kybernate.io/restore-fallback", NULL), "cold");
  /* Spec: our node and runtime class, the API server's parts gone. */
  json_t *spec = kyb_op_get(out, "spec", NULL);
  assert_string_equal(kyb_op_str(spec, "nodeName", NULL), "gpu-b");
  assert_string_equal(kyb_op_str(spec, "runtimeClassName", NULL), "kybernate");
  assert_null(json_object_get(spec, "ephemeralContainers"));
  assert_null(json_object_get(spec, "priority"));
  assert_null(json_object_get(spec, "preemptionPolicy"));
  json_t *vols = json_object_get(spec, "volumes");
  assert_int_equal(json_array_size(vols), 1);
  assert_string_equal(kyb_op_str(json_array_get(vols, 0), "name", NULL), "data");
  json_t *mounts =
      kyb_op_get(json_array_get(json_object_get(spec, "containers"), 0), "volumeMounts", NULL);
  assert_int_equal(json_array_size(mounts), 1);
  assert_string_equal(kyb_op_str(json_array_get(mounts, 0), "name", NULL), "data");
  json_t *imounts =
      kyb_op_get(json_array_get(json_object_get(spec, "initContainers"), 0), "volumeMounts", NULL);
  assert_int_equal(json_array_size(imounts), 0);
  assert_string_equal(kyb_op_str(spec, "nodeSelector", "pool", NULL), "gpu");
  /* The template was not changed. */
  assert_string_equal(kyb_op_str(t, "spec", "nodeName", NULL), "gpu-a");
  assert_int_equal(json_array_size(kyb_op_get(t, "spec", "volumes", NULL)), 2);
}

static void test_restore_pod_selector_and_defaults(void **state) {
  (void)state;
  cleanup_json json_t *pod = parse(POD);
  cleanup_json json_t *t = kyb_op_pod_template(pod);
  cleanup_json json_t *r =
      parse("{\"metadata\": {\"name\": \"wake\", \"namespace\": \"inference\"}, \"spec\": "
            "{\"checkpointName\": \"c\", \"nodeSelector\": {\"nvidia.com/gpu.product\": "
            "\"NVIDIA-H200\", \"pool\": \"h200\"}}}");
  kyb_op_restore_pod_in in = {.restore = r, .tmpl = t, .restore_from = "server=img"};
  cleanup_json json_t *out = NULL;
  cleanup_free char *msg = NULL;
  const char *reason = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_op_restore_pod(&in, &out, &reason, &msg, &err), 0);
  /* The Restore's name; no nodeName; selectors merged, the Restore's win. */
  assert_string_equal(kyb_op_str(out, "metadata", "name", NULL), "wake");
  assert_null(kyb_op_get(out, "spec", "nodeName", NULL));
  assert_string_equal(kyb_op_str(out, "spec", "nodeSelector", "pool", NULL), "h200");
  assert_string_equal(kyb_op_str(out, "spec", "nodeSelector", "nvidia.com/gpu.product", NULL),
                      "NVIDIA-H200");
  /* Fallback None by default. */
  assert_string_equal(
      kyb_op_str(out, "metadata", "annotations", "kybernate.io/restore-fallback", NULL), "none");
}

static void test_runtime_class_conflict_and_empty(void **state) {
  (void)state;
  cleanup_json json_t *t = parse("{\"metadata\": {}, \"spec\": {\"runtimeClassName\": \"gvisor\","
                                 " \"containers\": [{\"name\": \"a\"}]}}");
  cleanup_json json_t *r = restore_with("");
  kyb_op_restore_pod_in in = {.restore = r, .tmpl = t, .restore_from = "a=img"};
  cleanup_json json_t *out = NULL;
  cleanup_free char *msg = NULL;
  const char *reason = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_op_restore_pod(&in, &out, &reason, &msg, &err), 1);
  assert_null(out);
  assert_string_equal(reason, "RuntimeClassConflict");
  assert_non_null(strstr(msg, "gvisor"));
  /* Our own class is fine. */
  json_object_set_new(json_object_get(t, "spec"), "runtimeClassName", json_string("kybernate"));
  free(msg);
  msg = NULL;
  assert_int_equal(kyb_op_restore_pod(&in, &out, &reason, &msg, &err), 0);
  json_decref(out);
  out = NULL;
  /* No containers: refused. */
  cleanup_json json_t *empty = parse("{\"metadata\": {}, \"spec\": {\"containers\": []}}");
  in.tmpl = empty;
  assert_int_equal(kyb_op_restore_pod(&in, &out, &reason, &msg, &err), 1);
  assert_string_equal(reason, "CreateFailed");
}

static void test_restore_from_image_ref(void **state) {
  (void)state;
  cleanup_json json_t *r =
      parse("{\"metadata\": {\"name\": \"from-reg\", \"namespace\": \"default\"}, \"spec\": "
            "{\"imageRef\": \"oci://reg.example.com/k/counter:c-1\", \"nodeName\": \"node-b\","
            " \"podTemplate\": {\"name\": \"counter-restored\", \"spec\": {\"containers\": ["
            "{\"name\": \"counter\", \"image\": \"counter:1\"}, {\"name\": \"side\", \"image\": "
            "\"s\"}]}}}}");
  cleanup_json json_t *t = kyb_op_image_template(r);
  cleanup_free char *from = NULL, *msg = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_op_image_restore_from(r, &from, &msg, &err), 0);
  assert_string_equal(from, "counter=oci://reg.example.com/k/counter:c-1");
  kyb_op_restore_pod_in in = {.restore = r, .tmpl = t, .restore_from = from, .node_name = "node-b"};
  cleanup_json json_t *out = NULL;
  const char *reason = NULL;
  assert_int_equal(kyb_op_restore_pod(&in, &out, &reason, &msg, &err), 0);
  assert_string_equal(kyb_op_str(out, "metadata", "name", NULL), "counter-restored");
  assert_string_equal(kyb_op_str(out, "spec", "nodeName", NULL), "node-b");
  assert_string_equal(kyb_op_str(out, "metadata", "labels", "kybernate.io/restore", NULL),
                      "from-reg");
  /* No container to name: refused. */
  cleanup_json json_t *bad = parse("{\"spec\": {\"imageRef\": \"x\", \"podTemplate\": {\"spec\":"
                                   " {\"containers\": []}}}}");
  cleanup_free char *from2 = NULL, *msg2 = NULL;
  assert_int_equal(kyb_op_image_restore_from(bad, &from2, &msg2, &err), 1);
  assert_non_null(msg2);
}

static void test_controller_owned_keys(void **state) {
  (void)state;
  const char *owned[] = {"pod-template-hash",
                         "controller-revision-hash",
                         "statefulset.kubernetes.io/pod-name",
                         "apps.kubernetes.io/pod-index",
                         "batch.kubernetes.io/controller-uid",
                         "job-name",
                         "controller-uid"};
  for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++)
    assert_true(kyb_op_controller_owned_key(owned[i]));
  assert_false(kyb_op_controller_owned_key("app"));
  assert_false(kyb_op_controller_owned_key("batch.kubernetes.io"));
}

static void test_gpu_model(void **state) {
  (void)state;
  assert_true(kyb_op_gpu_model_matches("NVIDIA H200", "NVIDIA-H200"));
  assert_true(kyb_op_gpu_model_matches("NVIDIA H200", "nvidia-h200"));
  assert_true(kyb_op_gpu_model_matches("NVIDIA H200", "NVIDIA-H200-SHARED"));
  assert_true(
      kyb_op_gpu_model_matches("NVIDIA A100-SXM4-40GB", "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"));
  assert_false(kyb_op_gpu_model_matches("NVIDIA H200", "NVIDIA-H100-80GB-HBM3"));
  assert_false(kyb_op_gpu_model_matches("NVIDIA H200", "NVIDIA-H200X"));
  assert_false(kyb_op_gpu_model_matches("", "NVIDIA-H200"));

  cleanup_json json_t *ck = parse("{\"status\": {\"gpus\": [{\"uuid\": \"GPU-1\", \"model\":"
                                  " \"NVIDIA H200\"}]}}");
  cleanup_json json_t *h100 = parse("{\"metadata\": {\"name\": \"n1\", \"labels\": "
                                    "{\"nvidia.com/gpu.product\": \"NVIDIA-H100-80GB-HBM3\"}}}");
  cleanup_json json_t *h200 = parse("{\"metadata\": {\"name\": \"n2\", \"labels\": "
                                    "{\"nvidia.com/gpu.product\": \"NVIDIA-H200\"}}}");
  cleanup_json json_t *unlabelled = parse("{\"metadata\": {\"name\": \"n3\"}}");
  cleanup_json json_t *nogpu = parse("{\"status\": {\"gpuCount\": 0}}");
  cleanup_free char *m1 = NULL, *m2 = NULL, *m3 = NULL, *m4 = NULL;
  cleanup_error kyb_error *err = NULL;
  assert_int_equal(kyb_op_gpu_check(ck, h100, &m1, &err), 1);
  assert_non_null(strstr(m1, "NVIDIA H200"));
  assert_non_null(strstr(m1, "n1"));
  assert_int_equal(kyb_op_gpu_check(ck, h200, &m2, &err), 0);
  assert_int_equal(kyb_op_gpu_check(ck, unlabelled, &m3, &err), 0);
  assert_int_equal(kyb_op_gpu_check(nogpu, h100, &m4, &err), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_template_records_metadata_and_spec),
      cmocka_unit_test(test_restore_pod_from_template),
      cmocka_unit_test(test_restore_pod_selector_and_defaults),
      cmocka_unit_test(test_runtime_class_conflict_and_empty),
      cmocka_unit_test(test_restore_from_image_ref),
      cmocka_unit_test(test_controller_owned_keys),
      cmocka_unit_test(test_gpu_model),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
