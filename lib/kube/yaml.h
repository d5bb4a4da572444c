/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small, strict reader for the subset of YAML that kubeconfig files use,
 * turned into jansson values so the kubeconfig code reads one tree whether
 * the file was YAML or JSON.
 *
 * What it reads (all that kubectl, kind, k3s, MicroK8s and cloud CLIs write):
 *  - block mappings and block sequences, nested by indentation (spaces only);
 *    a sequence may sit at the same indentation as its key (`clusters:\n- …`,
 *    kubectl's style) or deeper;
 *  - plain scalars, 'single-quoted' and "double-quoted" ones (escapes \\ \"
 *    \/ \a \b \t \n \v \f \r \e \xXX \uXXXX \UXXXXXXXX; none may give a NUL:
 *    \0, \x00 and \u0000 are refused, as JSON's \u0000 is), on one line each;
 *  - the empty flow collections {} and [];
 *  - comments, a leading `---`, a trailing `...`.
 * Plain `true/false` (any of the three YAML cases) become JSON booleans;
 * `null`, `~` and an empty value become null; every other scalar, numbers
 * included, stays a string (kubeconfig has no numeric fields).
 *
 * What it refuses, each with "<what>:<line>: <reason>": tabs in indentation,
 * anchors, aliases, tags, block scalars (| and >), non-empty flow
 * collections, multi-line scalars, complex keys, duplicate keys, several
 * documents, directives, invalid UTF-8, nesting deeper than 64.
 *
 * A document whose first character (after blanks and comments) is `{` is
 * JSON and goes to jansson instead (JSON is YAML; a kubeconfig may be JSON).
 */
#ifndef KYB_KUBE_YAML_H
#define KYB_KUBE_YAML_H

#include <jansson.h>
#include <stddef.h>

#include "util/error.h"

#define KYB_YAML_MAX_DEPTH 64

/* Parses text (len bytes, need not be NUL-terminated).  `what` names the
 * input in messages (a file name).  Returns a new reference, or NULL with
 * err set (EINVAL for syntax, ENOTSUP for YAML the subset leaves out). */
json_t *kyb_yaml_load(const char *text, size_t len, const char *what, kyb_error **err);

#endif
