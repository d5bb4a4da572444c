/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OCI distribution pieces of the oci:// store: URIs, auth challenges,
 * docker config.json credentials and the registry manifest.  No I/O here;
 * see oci.h for the contract and store_oci.c for the protocol.
 */
#include "store/oci.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "image/image.h"
#include "image/safepath.h"
#include "util/cleanup.h"

#define ANNOTATION_MAX 4096u

/* ---- URIs ----------------------------------------------------------------- */

static bool lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* One path component of a repository name (distribution's grammar):
 * [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* */
static bool repo_component_ok(const char *s, size_t n) {
  size_t i = 0;
  for (;;) {
    size_t start = i;
    while (i < n && lower_alnum(s[i]))
      i++;
    if (i == start)
      return false;
    if (i == n)
      return true;
    if (s[i] == '.') {
      i++;
    } else if (s[i] == '_') {
      i++;
      if (i < n && s[i] == '_')
        i++;
    } else if (s[i] == '-') {
      while (i < n && s[i] == '-')
        i++;
    } else {
      return false;
    }
  }
}

static int repo_check(const char *repo, kyb_error **err) {
  size_t n = strlen(repo);
  if (n == 0)
    return kyb_error_set(err, EINVAL, "no repository after the registry (oci://HOST/REPO)");
  if (n > KYB_OCI_REPO_MAX)
    return kyb_error_set(err, EINVAL, "repository name longer than %u bytes", KYB_OCI_REPO_MAX);
  for (const char *p = repo;;) {
    const char *slash = strchr(p, '/');
    size_t len = slash ? (size_t)(slash - p) : strlen(p);
    if (!repo_component_ok(p, len))
      return kyb_error_set(err, EINVAL,
                           "repository \"%s\": each component must be lower-case letters and "
                           "digits, joined by '.', '_', '__' or dashes",
                           repo);
    if (slash == NULL)
      return 0;
    p = slash + 1;
  }
}

static int host_check(const char *host, kyb_error **err) {
  size_t n = strlen(host);
  if (n == 0 || n > KYB_OCI_HOST_MAX)
    return kyb_error_set(err, EINVAL, "registry host missing or longer than %u bytes",
                         KYB_OCI_HOST_MAX);
  const char *p = host;
  if (*p == '[') { /* [IPv6] */
    const char *close = strchr(p, ']');
    if (close == NULL || close == p + 1)
      return kyb_error_set(err, EINVAL, "registry host \"%s\": unclosed '['", host);
    for (const char *q = p + 1; q < close; q++)
      if (!isxdigit((unsigned char)*q) && *q != ':' && *q != '.')
        return kyb_error_set(err, EINVAL, "registry host \"%s\": not an IPv6 address", host);
    p = close + 1;
  } else {
    const char *start = p;
    while (*p && (isalnum((unsigned char)*p) || *p == '.' || *p == '-'))
      p++;
    if (p == start || *start == '.' || *start == '-')
      return kyb_error_set(err, EINVAL, "registry host \"%s\" is not a host name", host);
  }
  if (*p == '\0')
    return 0;
  if (*p != ':')
    return kyb_error_set(err, EINVAL, "registry host \"%s\": unexpected '%c'", host, *p);
  char *end = NULL;
  errno = 0;
  unsigned long port = strtoul(p + 1, &end, 10);
  if (p[1] < '0' || p[1] > '9' || *end != '\0' || errno != 0 || port == 0 || port > 65535)
    return kyb_error_set(err, EINVAL, "registry host \"%s\": bad port", host);
  return 0;
}

int kyb_oci_uri_parse(const char *rest, char **host, char **repo, kyb_error **err) {
  const char *slash = strchr(rest, '/');
  if (slash == NULL)
    return kyb_error_set(err, EINVAL, "oci://%s: expected oci://HOST[:PORT]/REPOSITORY", rest);
  cleanup_free char *h = strndup(rest, (size_t)(slash - rest));
  cleanup_free char *r = strdup(slash + 1);
  if (h == NULL || r == NULL)
    return kyb_error_set(err, ENOMEM, "oci URI");
  for (size_t l = strlen(r); l > 0 && r[l - 1] == '/'; l--)
    r[l - 1] = '\0';
  for (char *p = h; *p; p++)
    *p = (char)tolower((unsigned char)*p);
  if (strpbrk(r, ":@") != NULL)
    return kyb_error_set(err, EINVAL,
                         "oci://%s: a store URI names a repository, not a tag or digest", rest);
  if (host_check(h, err) < 0 || repo_check(r, err) < 0)
    return kyb_error_wrap(err, "oci://%s", rest);
  *host = steal_ptr(h);
  *repo = steal_ptr(r);
  return 0;
}

int kyb_oci_ref_split(const char *rest, char **store_rest, char **tag, kyb_error **err) {
  if (strchr(rest, '@') != NULL)
    return kyb_error_set(err, ENOTSUP,
                         "oci://%s: references by digest are not supported; use the tag", rest);
  const char *slash = strrchr(rest, '/');
  const char *colon = slash ? strchr(slash, ':') : NULL;
  if (slash == NULL || colon == NULL || colon[1] == '\0')
    return kyb_error_set(err, EINVAL, "oci://%s: expected oci://HOST[:PORT]/REPOSITORY:TAG", rest);
  char *s = strndup(rest, (size_t)(colon - rest));
  char *t = strdup(colon + 1);
  if (s == NULL || t == NULL) {
    free(s);
    free(t);
    return kyb_error_set(err, ENOMEM, "oci reference");
  }
  *store_rest = s;
  *tag = t;
  return 0;
}

/* host without ":port" compared to a list entry with or without a port. */
static bool host_matches(const char *host, const char *entry, size_t elen) {
  if (strlen(host) == elen && strncasecmp(host, entry, elen) == 0)
    return true;
  if (memchr(entry, ':', elen) != NULL && entry[0] != '[')
    return false;
  const char *colon = host[0] == '[' ? strstr(host, "]:") : strrchr(host, ':');
  size_t hlen = colon ? (size_t)(colon - host) + (host[0] == '[' ? 1 : 0) : strlen(host);
  return hlen == elen && strncasecmp(host, entry, elen) == 0;
}

bool kyb_oci_plain_http(const char *host, const char *insecure_list) {
  static const char *const loopback[] = {"127.0.0.1", "localhost", "[::1]"};
  for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++)
    if (host_matches(host, loopback[i], strlen(loopback[i])))
      return true;
  for (const char *p = insecure_list; p != NULL && *p;) {
    while (*p == ',' || *p == ' ')
      p++;
    size_t n = strcspn(p, ", ");
    if (n > 0 && host_matches(host, p, n))
      return true;
    p += n;
  }
  return false;
}

/* ---- auth ----------------------------------------------------------------- */

void kyb_oci_challenge_clear(kyb_oci_challenge *c) {
  if (c == NULL)
    return;
  free(c->scheme);
  free(c->realm);
  free(c->service);
  free(c->scope);
  memset(c, 0, sizeof(*c));
}

static bool token_char(char c) {
  return c > 0x20 && c < 0x7f && strchr("\"(),/:;<=>?@[\\]{}", c) == NULL;
}

/* One value: a quoted-string (with \-escapes) or a token; *pp moves past it. */
static char *parse_value(const char **pp) {
  const char *p = *pp;
  size_t cap = strlen(p) + 1;
  char *out = malloc(cap);
  if (out == NULL)
    return NULL;
  size_t k = 0;
  if (*p == '"') {
    p++;
    while (*p && *p != '"') {
      if (*p == '\\' && p[1])
        p++;
      out[k++] = *p++;
    }
    if (*p != '"') {
      free(out);
      return NULL;
    }
    p++;
  } else { /* a token; leniently, anything up to ',' or a blank (unquoted URLs) */
    while (*p > 0x20 && *p < 0x7f && *p != ',' && *p != '"')
      out[k++] = *p++;
  }
  out[k] = '\0';
  *pp = p;
  return out;
}

int kyb_oci_challenge_parse(const char *header, kyb_oci_challenge *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  const char *p = header;
  while (*p == ' ')
    p++;
  size_t sl = 0;
  while (token_char(p[sl]))
    sl++;
  if (sl == 0 || (p[sl] != ' ' && p[sl] != '\0'))
    return kyb_error_set(err, EINVAL, "WWW-Authenticate \"%.200s\": no auth scheme", header);
  out->scheme = strndup(p, sl);
  if (out->scheme == NULL)
    return kyb_error_set(err, ENOMEM, "challenge");
  for (char *s = out->scheme; *s; s++)
    *s = (char)tolower((unsigned char)*s);
  p += sl;
  for (;;) {
    while (*p == ' ' || *p == ',')
      p++;
    if (*p == '\0')
      break;
    size_t kl = 0;
    while (token_char(p[kl]))
      kl++;
    const char *key = p;
    p += kl;
    while (*p == ' ')
      p++;
    if (kl == 0 || *p != '=') /* the next challenge, or garbage: stop here */
      break;
    p++;
    while (*p == ' ')
      p++;
    char *val = parse_value(&p);
    if (val == NULL) {
      kyb_oci_challenge_clear(out);
      return kyb_error_set(err, EINVAL, "WWW-Authenticate \"%.200s\": unterminated value", header);
    }
    char **slot = NULL;
    if (kl == 5 && strncasecmp(key, "realm", 5) == 0)
      slot = &out->realm;
    else if (kl == 7 && strncasecmp(key, "service", 7) == 0)
      slot = &out->service;
    else if (kl == 5 && strncasecmp(key, "scope", 5) == 0)
      slot = &out->scope;
    if (slot != NULL && *slot == NULL)
      *slot = val;
    else
      free(val);
  }
  if (strcmp(out->scheme, "bearer") == 0) {
    if (out->realm == NULL ||
        (strncmp(out->realm, "https://", 8) != 0 && strncmp(out->realm, "http://", 7) != 0)) {
      kyb_oci_challenge_clear(out);
      return kyb_error_set(err, EINVAL,
                           "WWW-Authenticate \"%.200s\": a Bearer challenge needs an http(s) realm",
                           header);
    }
  } else if (strcmp(out->scheme, "basic") != 0) {
    int r = kyb_error_set(err, ENOTSUP,
                          "registry asks for auth scheme \"%s\" (only Basic and "
                          "Bearer are supported)",
                          out->scheme);
    kyb_oci_challenge_clear(out);
    return r;
  }
  return 0;
}

static int b64val(unsigned char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  return -1;
}

/* Strict base64 (padding optional) into a NUL-terminated string; NULL on
 * bad input or a NUL byte inside. */
static char *b64decode(const char *s) {
  size_t n = strlen(s);
  while (n > 0 && s[n - 1] == '=')
    n--;
  char *out = malloc(n * 3 / 4 + 2);
  if (out == NULL)
    return NULL;
  size_t k = 0;
  unsigned acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64val((unsigned char)s[i]);
    if (v < 0) {
      free(out);
      return NULL;
    }
    acc = (acc << 6) | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      char c = (char)((acc >> bits) & 0xff);
      if (c == '\0') {
        free(out);
        return NULL;
      }
      out[k++] = c;
    }
  }
  out[k] = '\0';
  return out;
}

/* "https://Host:5000/v1/" -> "host:5000" into buf. */
static void auth_key_host(const char *key, char *buf, size_t size) {
  if (strncasecmp(key, "https://", 8) == 0)
    key += 8;
  else if (strncasecmp(key, "http://", 7) == 0)
    key += 7;
  size_t n = strcspn(key, "/");
  if (n >= size)
    n = size - 1;
  for (size_t i = 0; i < n; i++)
    buf[i] = (char)tolower((unsigned char)key[i]);
  buf[n] = '\0';
}

int kyb_oci_auth_lookup(const char *config_json, size_t len, const char *host, char **user,
                        char **password, kyb_error **err) {
  json_error_t je;
  cleanup_json json_t *root = json_loadb(config_json, len, JSON_REJECT_DUPLICATES, &je);
  if (!json_is_object(root))
    return kyb_error_set(err, EINVAL, "registry credentials: not a JSON object (%s, line %d)",
                         root ? "wrong type" : je.text, je.line);
  json_t *auths = json_object_get(root, "auths");
  if (auths == NULL)
    return 0;
  if (!json_is_object(auths))
    return kyb_error_set(err, EINVAL, "registry credentials: \"auths\" is not an object");
  const char *key;
  json_t *entry;
  json_object_foreach(auths, key, entry) {
    char kh[KYB_OCI_HOST_MAX + 1];
    auth_key_host(key, kh, sizeof(kh));
    if (strcasecmp(kh, host) != 0)
      continue;
    if (!json_is_object(entry))
      return kyb_error_set(err, EINVAL, "registry credentials for %s: not an object", key);
    const char *a = json_string_value(json_object_get(entry, "auth"));
    const char *u = json_string_value(json_object_get(entry, "username"));
    const char *p = json_string_value(json_object_get(entry, "password"));
    cleanup_free char *dec = NULL;
    if (a != NULL && *a) {
      dec = b64decode(a);
      char *colon = dec ? strchr(dec, ':') : NULL;
      if (colon == NULL)
        return kyb_error_set(err, EINVAL,
                             "registry credentials for %s: \"auth\" is not base64 of user:password",
                             key);
      *colon = '\0';
      u = dec;
      p = colon + 1;
    }
    if (u == NULL || p == NULL || *u == '\0')
      return kyb_error_set(err, EINVAL,
                           "registry credentials for %s: need \"auth\" or \"username\" and "
                           "\"password\" (identity tokens are not supported)",
                           key);
    *user = strdup(u);
    *password = strdup(p);
    if (*user == NULL || *password == NULL) {
      free(*user);
      free(*password);
      return kyb_error_set(err, ENOMEM, "registry credentials");
    }
    return 1;
  }
  return 0;
}

/* ---- manifests ------------------------------------------------------------ */

void kyb_oci_manifest_clear(kyb_oci_manifest *m) {
  if (m == NULL)
    return;
  for (size_t i = 0; m->layers != NULL && i < m->nlayers; i++)
    free(m->layers[i].path);
  free(m->layers);
  free(m->name);
  memset(m, 0, sizeof(*m));
}

char *kyb_oci_manifest_build(const kyb_oci_manifest *m, const char *created, size_t *len,
                             kyb_error **err) {
  cleanup_json json_t *layers = json_array();
  for (size_t i = 0; layers != NULL && i < m->nlayers; i++) {
    const kyb_oci_layer *l = &m->layers[i];
    char size[24];
    snprintf(size, sizeof(size), "%llu", (unsigned long long)l->file_size);
    json_t *d = json_pack("{s:s, s:s, s:I, s:{s:s, s:s, s:s}}", "mediaType", KYB_OCI_MEDIA_PART,
                          "digest", l->blob_digest, "size", (json_int_t)l->blob_size, "annotations",
                          KYB_OCI_ANN_TITLE, l->path, KYB_OCI_ANN_PART_SHA256, l->file_digest,
                          KYB_OCI_ANN_PART_SIZE, size);
    if (d == NULL || json_array_append_new(layers, d) < 0) {
      kyb_error_set(err, ENOMEM, "registry manifest");
      return NULL;
    }
  }
  cleanup_json json_t *root =
      json_pack("{s:i, s:s, s:s, s:{s:s, s:s, s:I}, s:O, s:{s:s, s:s}}", "schemaVersion", 2,
                "mediaType", KYB_OCI_MEDIA_MANIFEST, "artifactType", KYB_OCI_ARTIFACT_TYPE,
                "config", "mediaType", KYB_OCI_MEDIA_CONFIG, "digest", m->config_digest, "size",
                (json_int_t)m->config_size, "layers", layers, "annotations", KYB_OCI_ANN_NAME,
                m->name ? m->name : "", KYB_OCI_ANN_CREATED, created ? created : "");
  char *s = root ? json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  if (s == NULL) {
    kyb_error_set(err, ENOMEM, "registry manifest");
    return NULL;
  }
  *len = strlen(s);
  return s;
}

static int bad(kyb_error **err, const char *fmt, const char *what) {
  return kyb_error_set(err, EBADMSG, fmt, what);
}

/* A descriptor's digest and size. */
static int descriptor(const json_t *d, const char *what, char digest[KYB_DIGEST_LEN + 1],
                      uint64_t *size, kyb_error **err) {
  const char *dg = json_string_value(json_object_get(d, "digest"));
  const json_t *sz = json_object_get(d, "size");
  if (!json_is_object(d))
    return bad(err, "registry manifest: %s is not an object", what);
  if (dg == NULL || !kyb_digest_valid(dg))
    return bad(err, "registry manifest: %s has no valid sha256 digest", what);
  if (!json_is_integer(sz) || json_integer_value(sz) < 0)
    return bad(err, "registry manifest: %s has no valid size", what);
  memcpy(digest, dg, KYB_DIGEST_LEN + 1);
  *size = (uint64_t)json_integer_value(sz);
  return 0;
}

static int parse_u64(const char *s, uint64_t *out) {
  if (s == NULL || *s < '0' || *s > '9' || strlen(s) > 20)
    return -1;
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end != '\0' || errno != 0)
    return -1;
  *out = v;
  return 0;
}

static int parse_layer(const json_t *d, size_t i, json_t *seen, kyb_oci_layer *l, kyb_error **err) {
  char what[48];
  snprintf(what, sizeof(what), "layer %zu", i);
  if (descriptor(d, what, l->blob_digest, &l->blob_size, err) < 0)
    return -1;
  const char *mt = json_string_value(json_object_get(d, "mediaType"));
  if (mt == NULL || strcmp(mt, KYB_OCI_MEDIA_PART) != 0)
    return kyb_error_set(err, EBADMSG, "registry manifest: %s has media type \"%.100s\", not %s",
                         what, mt ? mt : "", KYB_OCI_MEDIA_PART);
  const json_t *ann = json_object_get(d, "annotations");
  const char *title = json_string_value(json_object_get(ann, KYB_OCI_ANN_TITLE));
  const char *fd = json_string_value(json_object_get(ann, KYB_OCI_ANN_PART_SHA256));
  const char *fs = json_string_value(json_object_get(ann, KYB_OCI_ANN_PART_SIZE));
  if (title == NULL || strlen(title) > ANNOTATION_MAX)
    return bad(err, "registry manifest: %s has no file path (" KYB_OCI_ANN_TITLE ")", what);
  if (kyb_relpath_check(title, err) < 0 || strcmp(title, KYB_IMAGE_MANIFEST) == 0) {
    kyb_error_clear(err);
    return kyb_error_set(err, EBADMSG, "registry manifest: %s: path \"%.200s\" is not allowed",
                         what, title);
  }
  if (json_object_get(seen, title) != NULL)
    return kyb_error_set(err, EBADMSG, "registry manifest: path \"%s\" listed twice", title);
  if (fd == NULL || !kyb_digest_valid(fd))
    return bad(err, "registry manifest: %s has no valid " KYB_OCI_ANN_PART_SHA256, what);
  if (parse_u64(fs, &l->file_size) < 0)
    return bad(err, "registry manifest: %s has no valid " KYB_OCI_ANN_PART_SIZE, what);
  memcpy(l->file_digest, fd, KYB_DIGEST_LEN + 1);
  if ((l->path = strdup(title)) == NULL || json_object_set_new(seen, title, json_true()) < 0)
    return kyb_error_set(err, ENOMEM, "registry manifest");
  return 0;
}

int kyb_oci_manifest_parse(const char *data, size_t len, kyb_oci_manifest *out, kyb_error **err) {
  memset(out, 0, sizeof(*out));
  if (len > KYB_OCI_MANIFEST_MAX)
    return kyb_error_set(err, EFBIG, "registry manifest is %zu bytes, more than %u", len,
                         KYB_OCI_MANIFEST_MAX);
  json_error_t je;
  cleanup_json json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
  if (!json_is_object(root))
    return kyb_error_set(err, EBADMSG, "registry manifest is not a JSON object (%s)",
                         root ? "wrong type" : je.text);
  const json_t *sv = json_object_get(root, "schemaVersion");
  const char *mt = json_string_value(json_object_get(root, "mediaType"));
  const char *at = json_string_value(json_object_get(root, "artifactType"));
  const json_t *cfg = json_object_get(root, "config");
  const char *cmt = json_string_value(json_object_get(cfg, "mediaType"));
  if (!json_is_integer(sv) || json_integer_value(sv) != 2)
    return kyb_error_set(err, EBADMSG, "registry manifest: schemaVersion is not 2");
  if (mt != NULL && strcmp(mt, KYB_OCI_MEDIA_MANIFEST) != 0)
    return kyb_error_set(err, ENOTSUP, "registry manifest has media type \"%.100s\", not %s", mt,
                         KYB_OCI_MEDIA_MANIFEST);
  if ((at != NULL && strcmp(at, KYB_OCI_ARTIFACT_TYPE) != 0) || cmt == NULL ||
      strcmp(cmt, KYB_OCI_MEDIA_CONFIG) != 0)
    return kyb_error_set(err, ENOTSUP,
                         "not a Kybernate checkpoint (artifactType \"%.100s\", config media type "
                         "\"%.100s\")",
                         at ? at : "", cmt ? cmt : "");
  if (descriptor(cfg, "config", out->config_digest, &out->config_size, err) < 0)
    return -1;
  if (out->config_size > KYB_IMAGE_MANIFEST_MAX_BYTES)
    return kyb_error_set(err, EBADMSG, "registry manifest: config of %llu bytes, more than %u",
                         (unsigned long long)out->config_size, KYB_IMAGE_MANIFEST_MAX_BYTES);
  const json_t *layers = json_object_get(root, "layers");
  if (!json_is_array(layers))
    return kyb_error_set(err, EBADMSG, "registry manifest: \"layers\" is not an array");
  size_t n = json_array_size(layers);
  if (n > KYB_IMAGE_MAX_FILES)
    return kyb_error_set(err, EBADMSG, "registry manifest: %zu layers, more than %u", n,
                         KYB_IMAGE_MAX_FILES);
  const char *name =
      json_string_value(json_object_get(json_object_get(root, "annotations"), KYB_OCI_ANN_NAME));
  if (name != NULL && (out->name = strdup(name)) == NULL)
    return kyb_error_set(err, ENOMEM, "registry manifest");
  out->layers = n ? calloc(n, sizeof(*out->layers)) : NULL;
  cleanup_json json_t *seen = json_object();
  if ((n && out->layers == NULL) || seen == NULL) {
    kyb_oci_manifest_clear(out);
    return kyb_error_set(err, ENOMEM, "registry manifest");
  }
  for (size_t i = 0; i < n; i++) {
    out->nlayers = i + 1;
    if (parse_layer(json_array_get(layers, i), i, seen, &out->layers[i], err) < 0) {
      kyb_oci_manifest_clear(out);
      return -1;
    }
  }
  return 0;
}

int kyb_oci_manifest_match(const kyb_oci_manifest *m, const json_t *image_manifest,
                           kyb_error **err) {
  const json_t *files = json_object_get(image_manifest, "files");
  size_t nf = json_array_size(files);
  if (nf != m->nlayers)
    return kyb_error_set(err, EBADMSG,
                         "the registry manifest lists %zu parts, the image manifest %zu files",
                         m->nlayers, nf);
  cleanup_json json_t *index = json_object();
  if (index == NULL)
    return kyb_error_set(err, ENOMEM, "match");
  for (size_t i = 0; i < m->nlayers; i++)
    if (json_object_set_new(index, m->layers[i].path, json_integer((json_int_t)i)) < 0)
      return kyb_error_set(err, ENOMEM, "match");
  size_t i;
  const json_t *f;
  json_array_foreach(files, i, f) {
    const char *path = json_string_value(json_object_get(f, "path"));
    const json_t *at = json_object_get(index, path);
    if (at == NULL)
      return kyb_error_set(err, EBADMSG, "file %s of the image has no part in the registry", path);
    const kyb_oci_layer *l = &m->layers[json_integer_value(at)];
    const char *hex = json_string_value(json_object_get(f, "sha256"));
    uint64_t size = (uint64_t)json_integer_value(json_object_get(f, "size"));
    if (size != l->file_size || strncmp(l->file_digest, "sha256:", 7) != 0 ||
        strcmp(l->file_digest + 7, hex) != 0)
      return kyb_error_set(err, EBADMSG,
                           "file %s: the registry manifest says %llu bytes %s, the image manifest "
                           "%llu bytes sha256:%s",
                           path, (unsigned long long)l->file_size, l->file_digest,
                           (unsigned long long)size, hex);
  }
  return 0;
}

char *kyb_oci_link_next(const char *link) {
  if (link == NULL || link[0] != '<')
    return NULL;
  const char *close = strchr(link, '>');
  if (close == NULL || strstr(close, "rel=\"next\"") == NULL)
    return NULL;
  size_t n = (size_t)(close - link - 1);
  if (n < 4 || n > 4096 || strncmp(link + 1, "/v2/", 4) != 0)
    return NULL;
  return strndup(link + 1, n);
}
