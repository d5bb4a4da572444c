/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3:// configuration: URI parsing, endpoint and region from the
 * environment, credentials from the environment or a shared-credentials
 * file.  See s3.h for the variables.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/s3.h"
#include "util/cleanup.h"
#include "util/fs.h"

#define CREDS_FILE_MAX (64u << 10)
#define PREFIX_MAX 512u

void kyb_s3_config_clear(kyb_s3_config *c) {
  if (c == NULL)
    return;
  free(c->endpoint);
  free(c->region);
  free(c->access_key_id);
  if (c->secret_access_key != NULL) {
    /* not a secret-erasing guarantee (copies exist in libc buffers), but
     * no plain secret is left behind in freed memory by us */
    memset(c->secret_access_key, 0, strlen(c->secret_access_key));
    free(c->secret_access_key);
  }
  free(c->session_token);
  free(c->creds_source);
  memset(c, 0, sizeof(*c));
}

static bool bucket_valid(const char *b, size_t n) {
  if (n < 3 || n > 63)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = b[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && ((c != '.' && c != '-') || i == 0 || i == n - 1))
      return false;
  }
  return true;
}

static bool prefix_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

int kyb_s3_uri_parse(const char *rest, char **bucket, char **prefix, kyb_error **err) {
  size_t bl = strcspn(rest, "/");
  if (!bucket_valid(rest, bl))
    return kyb_error_set(err, EINVAL,
                         "s3 URI \"s3://%.200s\": bucket must be 3-63 characters of a-z 0-9 . - "
                         "(s3://bucket/prefix)",
                         rest);
  const char *p = rest + bl;
  while (*p == '/')
    p++;
  size_t pl = strlen(p);
  while (pl > 0 && p[pl - 1] == '/')
    pl--;
  if (pl > PREFIX_MAX)
    return kyb_error_set(err, EINVAL, "s3 URI: prefix longer than %u bytes", PREFIX_MAX);
  /* components of [A-Za-z0-9._-], none empty, "." or ".." */
  for (size_t i = 0; i < pl;) {
    size_t cl = 0;
    while (i + cl < pl && p[i + cl] != '/') {
      if (!prefix_char(p[i + cl]))
        return kyb_error_set(err, EINVAL,
                             "s3 URI \"s3://%.200s\": prefix may only hold A-Z a-z 0-9 . _ - and "
                             "'/' between components",
                             rest);
      cl++;
    }
    if (cl == 0 || (cl == 1 && p[i] == '.') || (cl == 2 && p[i] == '.' && p[i + 1] == '.'))
      return kyb_error_set(err, EINVAL,
                           "s3 URI \"s3://%.200s\": empty, \".\" or \"..\" prefix component", rest);
    i += cl + 1;
  }
  *bucket = strndup(rest, bl);
  *prefix = strndup(p, pl);
  if (*bucket == NULL || *prefix == NULL) {
    free(*bucket);
    free(*prefix);
    *bucket = *prefix = NULL;
    return kyb_error_set(err, ENOMEM, "s3 URI");
  }
  return 0;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
    s[--n] = '\0';
  return s;
}

int kyb_s3_credentials_parse(const char *text, const char *profile, kyb_s3_config *out,
                             kyb_error **err) {
  cleanup_free char *buf = strdup(text);
  if (buf == NULL)
    return kyb_error_set(err, ENOMEM, "credentials");
  bool in_profile = false, seen_profile = false;
  cleanup_free char *ak = NULL, *sk = NULL, *tok = NULL;
  int lineno = 0;
  for (char *line = buf, *next = NULL; line != NULL; line = next) {
    next = strchr(line, '\n');
    if (next != NULL)
      *next++ = '\0';
    lineno++;
    char *l = trim(line);
    if (*l == '\0' || *l == '#' || *l == ';')
      continue;
    if (*l == '[') {
      char *end = strchr(l, ']');
      if (end == NULL)
        return kyb_error_set(err, EINVAL, "credentials: line %d: malformed section", lineno);
      *end = '\0';
      char *name = trim(l + 1);
      /* the config file's form "[profile x]" is accepted too */
      if (strncmp(name, "profile ", 8) == 0)
        name = trim(name + 8);
      in_profile = strcmp(name, profile) == 0;
      seen_profile = seen_profile || in_profile;
      continue;
    }
    char *eq = strchr(l, '=');
    if (eq == NULL)
      /* the line is not quoted: it may hold a secret */
      return kyb_error_set(err, EINVAL, "credentials: line %d has no '='", lineno);
    if (!in_profile)
      continue;
    *eq = '\0';
    char *key = trim(l), *val = trim(eq + 1);
    char **slot = strcmp(key, "aws_access_key_id") == 0       ? &ak
                  : strcmp(key, "aws_secret_access_key") == 0 ? &sk
                  : strcmp(key, "aws_session_token") == 0     ? &tok
                                                              : NULL;
    if (slot == NULL)
      continue; /* region, output, ...: not ours */
    free(*slot);
    if ((*slot = strdup(val)) == NULL)
      return kyb_error_set(err, ENOMEM, "credentials");
  }
  if (!seen_profile)
    return kyb_error_set(err, ENOENT, "credentials: no profile [%s]", profile);
  if (ak == NULL || *ak == '\0' || sk == NULL || *sk == '\0')
    return kyb_error_set(err, EINVAL,
                         "credentials: profile [%s] lacks aws_access_key_id or "
                         "aws_secret_access_key",
                         profile);
  out->access_key_id = steal_ptr(ak);
  out->secret_access_key = steal_ptr(sk);
  out->session_token = (tok && *tok) ? steal_ptr(tok) : NULL;
  return 0;
}

static int load_credentials(kyb_s3_config *c, kyb_error **err) {
  const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
  if (ak && *ak && sk && *sk) {
    const char *tok = getenv("AWS_SESSION_TOKEN");
    c->access_key_id = strdup(ak);
    c->secret_access_key = strdup(sk);
    c->session_token = (tok && *tok) ? strdup(tok) : NULL;
    c->creds_source = strdup("environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)");
    if (!c->access_key_id || !c->secret_access_key || !c->creds_source ||
        (tok && *tok && !c->session_token))
      return kyb_error_set(err, ENOMEM, "s3 credentials");
    return 0;
  }
  const char *path = getenv("KYBERNATE_S3_CREDENTIALS");
  if (path == NULL || *path == '\0')
    return kyb_error_set(err, EACCES,
                         "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                         "KYBERNATE_S3_CREDENTIALS to a credentials file");
  const char *profile = getenv("AWS_PROFILE");
  if (profile == NULL || *profile == '\0')
    profile = "default";
  cleanup_free char *text = NULL;
  size_t len = 0;
  if (kyb_read_file(path, CREDS_FILE_MAX, &text, &len, err) < 0)
    return kyb_error_wrap(err, "S3 credentials file (KYBERNATE_S3_CREDENTIALS)");
  if (kyb_s3_credentials_parse(text, profile, c, err) < 0)
    return kyb_error_wrap(err, "S3 credentials file %s", path);
  if (asprintf(&c->creds_source, "file %s [%s]", path, profile) < 0) {
    c->creds_source = NULL;
    return kyb_error_set(err, ENOMEM, "s3 credentials");
  }
  return 0;
}

static int load_endpoint(kyb_s3_config *c, kyb_error **err) {
  const char *ep = getenv("KYBERNATE_S3_ENDPOINT");
  if (ep == NULL || *ep == '\0') {
    if (asprintf(&c->endpoint, "https://s3.%s.amazonaws.com", c->region) < 0) {
      c->endpoint = NULL;
      return kyb_error_set(err, ENOMEM, "s3 endpoint");
    }
    return 0;
  }
  size_t sl = strncmp(ep, "http://", 7) == 0 ? 7 : strncmp(ep, "https://", 8) == 0 ? 8 : 0;
  if (sl == 0 || ep[sl] == '\0' || strlen(ep) > 1024)
    return kyb_error_set(err, EINVAL,
                         "KYBERNATE_S3_ENDPOINT \"%.200s\" is not http(s)://host[:port]", ep);
  for (const char *p = ep + sl; *p; p++)
    if (*p <= ' ' || *p >= 0x7f || *p == '?' || *p == '#' || *p == '@')
      return kyb_error_set(err, EINVAL,
                           "KYBERNATE_S3_ENDPOINT \"%.200s\" is not http(s)://host[:port]", ep);
  c->endpoint = strdup(ep);
  if (c->endpoint == NULL)
    return kyb_error_set(err, ENOMEM, "s3 endpoint");
  size_t n = strlen(c->endpoint);
  while (n > sl && c->endpoint[n - 1] == '/')
    c->endpoint[--n] = '\0';
  if (strchr(c->endpoint + sl, '/') != NULL)
    return kyb_error_set(err, EINVAL,
                         "KYBERNATE_S3_ENDPOINT \"%.200s\": a path is not supported (requests are "
                         "path-style: <endpoint>/<bucket>/<key>)",
                         ep);
  return 0;
}

int kyb_s3_config_load(kyb_s3_config *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  const char *region = getenv("KYBERNATE_S3_REGION");
  if (region == NULL || *region == '\0')
    region = "us-east-1";
  for (const char *p = region; *p; p++)
    if (!(isalnum((unsigned char)*p) || *p == '-') || p - region > 64) {
      return kyb_error_set(err, EINVAL, "KYBERNATE_S3_REGION \"%.80s\" is not a region name",
                           region);
    }
  out->region = strdup(region);
  if (out->region == NULL) {
    kyb_s3_config_clear(out);
    return kyb_error_set(err, ENOMEM, "s3 config");
  }
  out->part_size = KYB_S3_PART_DEFAULT;
  const char *ps = getenv("KYBERNATE_S3_PART_SIZE");
  if (ps != NULL && *ps != '\0') {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(ps, &end, 10);
    if (errno != 0 || *end != '\0' || v < KYB_S3_PART_MIN || v > KYB_S3_PART_MAX) {
      kyb_s3_config_clear(out);
      return kyb_error_set(err, EINVAL, "KYBERNATE_S3_PART_SIZE \"%.40s\": bytes, %u to %u", ps,
                           KYB_S3_PART_MIN, KYB_S3_PART_MAX);
    }
    out->part_size = (size_t)v;
  }
  const char *cm = getenv("KYBERNATE_S3_COPY_MAX");
  if (cm != NULL && *cm != '\0') {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(cm, &end, 10);
    if (errno != 0 || *end != '\0' || v < KYB_S3_PART_MIN || v > KYB_S3_COPY_MAX) {
      kyb_s3_config_clear(out);
      return kyb_error_set(err, EINVAL, "KYBERNATE_S3_COPY_MAX \"%.40s\": bytes, %u to %llu", cm,
                           KYB_S3_PART_MIN, KYB_S3_COPY_MAX);
    }
    out->copy_max = v;
  }
  if (load_endpoint(out, err) < 0 || load_credentials(out, err) < 0) {
    kyb_s3_config_clear(out);
    return -1;
  }
  return 0;
}
