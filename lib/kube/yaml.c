/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The YAML-subset reader (contract in yaml.h).  Two passes: the text is cut
 * into logical lines (indentation, content, and a separate "marker" line for
 * every "- " sequence-entry prefix, so "- name: x" becomes a marker followed
 * by the mapping line "name: x" at the column of `name`); then a recursive
 * descent over those lines builds the tree by indentation alone.  Anything
 * outside the subset is refused by name rather than read differently from
 * what a real YAML parser would.
 */
#include "kube/yaml.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"

typedef struct {
  int lineno;
  int indent;
  bool marker;      /* a "- " sequence entry; text unused */
  const char *text; /* content (comment-free only for whole-line comments) */
  size_t len;       /* trailing blanks trimmed */
} yline;

typedef struct {
  const char *what;
  yline *lines;
  size_t n, cap, i;
  int depth;
  kyb_error **err;
} yparser;

/* A small growing byte buffer for quoted scalars. */
typedef struct {
  char *p;
  size_t len, cap;
} ybuf;

static int yerr(yparser *p, int lineno, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int yerr(yparser *p, int lineno, int errnum, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kyb_error_setv(p->err, errnum, fmt, ap);
  va_end(ap);
  return kyb_error_wrap(p->err, "%s:%d", p->what, lineno);
}

static int push_line(yparser *p, int lineno, int indent, bool marker, const char *text,
                     size_t len) {
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 64;
    yline *nl = realloc(p->lines, cap * sizeof(*nl));
    if (nl == NULL)
      return kyb_error_set(p->err, ENOMEM, "%s: read YAML", p->what);
    p->lines = nl;
    p->cap = cap;
  }
  p->lines[p->n++] = (yline){lineno, indent, marker, text, len};
  return 0;
}

static bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

/* One physical line into logical lines.  *state: 0 before content, 1 in the
 * document, 2 after a "..." end marker. */
static int split_line(yparser *p, int lineno, const char *s, size_t len, int *state) {
  if (memchr(s, '\0', len) != NULL)
    return yerr(p, lineno, EINVAL, "NUL byte in the text");
  while (len > 0 && (is_blank(s[len - 1]) || s[len - 1] == '\r'))
    len--;
  size_t ind = 0;
  while (ind < len && s[ind] == ' ')
    ind++;
  if (ind == len || s[ind] == '#')
    return 0; /* blank or comment */
  if (s[ind] == '\t')
    return yerr(p, lineno, EINVAL, "tab in indentation (YAML allows spaces only)");
  const char *c = s + ind;
  size_t clen = len - ind;
  if (*state == 2)
    return yerr(p, lineno, EINVAL, "content after the document end marker '...'");
  if (ind == 0 && clen >= 3 && memcmp(c, "---", 3) == 0 && (clen == 3 || is_blank(c[3]))) {
    if (*state != 0)
      return yerr(p, lineno, ENOTSUP, "several YAML documents in one file are not supported");
    if (clen > 3)
      return yerr(p, lineno, ENOTSUP, "content on the '---' line is not supported");
    *state = 1;
    return 0;
  }
  if (ind == 0 && clen == 3 && memcmp(c, "...", 3) == 0) {
    *state = 2;
    return 0;
  }
  if (c[0] == '%')
    return yerr(p, lineno, ENOTSUP, "YAML directives are not supported");
  *state = 1;
  int indent = (int)ind;
  /* "- - x" is two markers and "x"; "-x" and "-1" are plain scalars. */
  while (clen > 0 && c[0] == '-' && (clen == 1 || c[1] == ' ' || c[1] == '\t')) {
    if (push_line(p, lineno, indent, true, NULL, 0) < 0)
      return -1;
    size_t k = 1;
    while (k < clen && c[k] == ' ')
      k++;
    if (k < clen && c[k] == '\t')
      return yerr(p, lineno, EINVAL, "tab after '-' (use spaces)");
    indent += (int)k;
    c += k;
    clen -= k;
    if (clen == 0 || c[0] == '#')
      return 0;
  }
  return push_line(p, lineno, indent, false, c, clen);
}

static int buf_add(ybuf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *np = realloc(b->p, cap);
    if (np == NULL)
      return -1;
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 0;
}

static int buf_utf8(ybuf *b, uint32_t cp) {
  char o[4];
  size_t n;
  if (cp < 0x80) {
    o[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    o[0] = (char)(0xc0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3f));
    n = 2;
  } else if (cp < 0x10000) {
    o[0] = (char)(0xe0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f));
    n = 3;
  } else {
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    n = 4;
  }
  return buf_add(b, o, n);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static int dq_escape(yparser *p, int lineno, const char *s, size_t len, size_t *k, ybuf *b) {
  static const char simple_in[] = "\\\"/abtnvfre ";
  static const char simple_out[] = "\\\"/\a\b\t\n\v\f\r\x1b ";
  if (*k >= len)
    return yerr(p, lineno, ENOTSUP,
                "quoted scalar continues on the next line: multi-line scalars are not supported");
  char e = s[*k];
  /* A NUL would silently cut every C string made from the value (a token,
   * a server URL, a path) short; the JSON path refuses \u0000 the same way. */
  if (e == '0')
    return yerr(p, lineno, EINVAL, "escape '\\0' (NUL) is not allowed in a string");
  const char *hit = memchr(simple_in, e, sizeof(simple_in) - 1);
  if (hit != NULL) {
    (*k)++;
    return buf_add(b, &simple_out[hit - simple_in], 1) < 0 ? -2 : 0;
  }
  int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
  if (digits == 0)
    return yerr(p, lineno, EINVAL, "unknown escape '\\%c' in a double-quoted scalar", e);
  uint32_t cp = 0;
  for (int d = 1; d <= digits; d++) {
    int v = *k + (size_t)d < len ? hexval(s[*k + (size_t)d]) : -1;
    if (v < 0)
      return yerr(p, lineno, EINVAL, "escape '\\%c' needs %d hex digits", e, digits);
    cp = cp * 16 + (uint32_t)v;
  }
  *k += (size_t)digits + 1;
  if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return yerr(p, lineno, EINVAL, "escape '\\%c' names no Unicode character", e);
  if (cp == 0)
    return yerr(p, lineno, EINVAL, "escape '\\%c' gives a NUL, which is not allowed in a string",
                e);
  return buf_utf8(b, cp) < 0 ? -2 : 0;
}

/* A quoted scalar starting at s[0] (the quote).  On success *end is the
 * offset just past the closing quote and *out the unescaped bytes. */
static int parse_quoted(yparser *p, int lineno, const char *s, size_t len, size_t *end, ybuf *b) {
  char q = s[0];
  size_t k = 1;
  if (buf_add(b, "", 0) < 0)
    goto oom;
  while (k < len) {
    char ch = s[k];
    if (q == '\'' && ch == '\'') {
      if (k + 1 < len && s[k + 1] == '\'') { /* '' is one quote */
        if (buf_add(b, "'", 1) < 0)
          goto oom;
        k += 2;
        continue;
      }
      *end = k + 1;
      return 0;
    }
    if (q == '"' && ch == '"') {
      *end = k + 1;
      return 0;
    }
    if (q == '"' && ch == '\\') {
      k++;
      int r = dq_escape(p, lineno, s, len, &k, b);
      if (r == -2)
        goto oom;
      if (r < 0)
        return -1;
      continue;
    }
    if (buf_add(b, &ch, 1) < 0)
      goto oom;
    k++;
  }
  return yerr(p, lineno, ENOTSUP,
              "quoted scalar continues on the next line: multi-line scalars are not supported");
oom:
  return kyb_error_set(p->err, ENOMEM, "%s: read YAML", p->what);
}

/* After a scalar: only blanks, then optionally a comment. */
static bool only_comment(const char *s, size_t len) {
  size_t k = 0;
  while (k < len && is_blank(s[k]))
    k++;
  return k == len || (k > 0 && s[k] == '#');
}

/* Where a comment starts in plain text (" #"), or len. */
static size_t plain_end(const char *s, size_t len) {
  for (size_t k = 1; k < len; k++)
    if (s[k] == '#' && is_blank(s[k - 1]))
      return k;
  return len;
}

static json_t *utf8_string(yparser *p, int lineno, const char *s, size_t len) {
  json_t *j = json_stringn(s, len);
  if (j == NULL)
    yerr(p, lineno, EINVAL, "text is not valid UTF-8");
  return j;
}

static json_t *plain_value(yparser *p, int lineno, const char *s, size_t len) {
  static const char *const trues[] = {"true", "True", "TRUE"};
  static const char *const falses[] = {"false", "False", "FALSE"};
  static const char *const nulls[] = {"null", "Null", "NULL", "~"};
  for (size_t k = 0; k < 3; k++) {
    if (strlen(trues[k]) == len && memcmp(s, trues[k], len) == 0)
      return json_true();
    if (strlen(falses[k]) == len && memcmp(s, falses[k], len) == 0)
      return json_false();
  }
  for (size_t k = 0; k < 4; k++)
    if (strlen(nulls[k]) == len && memcmp(s, nulls[k], len) == 0)
      return json_null();
  return utf8_string(p, lineno, s, len);
}

/* A scalar (or {} / []) that makes up the rest of a line.  s starts at its
 * first character; len runs to the end of the line. */
static json_t *parse_scalar(yparser *p, int lineno, const char *s, size_t len) {
  if (len == 0 || s[0] == '#')
    return json_null();
  switch (s[0]) {
  case '"':
  case '\'': {
    ybuf b = {0};
    size_t end = 0;
    if (parse_quoted(p, lineno, s, len, &end, &b) < 0) {
      free(b.p);
      return NULL;
    }
    json_t *j = NULL;
    if (!only_comment(s + end, len - end))
      yerr(p, lineno, EINVAL, "unexpected text after a quoted scalar");
    else
      j = utf8_string(p, lineno, b.p, b.len);
    free(b.p);
    return j;
  }
  case '{':
  case '[': {
    char close = s[0] == '{' ? '}' : ']';
    if (len >= 2 && s[1] == close && only_comment(s + 2, len - 2))
      return s[0] == '{' ? json_object() : json_array();
    yerr(p, lineno, ENOTSUP, "flow collections other than {} and [] are not supported");
    return NULL;
  }
  case '&':
  case '*':
    yerr(p, lineno, ENOTSUP, "anchors and aliases are not supported");
    return NULL;
  case '!':
    yerr(p, lineno, ENOTSUP, "tags are not supported");
    return NULL;
  case '|':
  case '>':
    yerr(p, lineno, ENOTSUP, "block scalars ('|', '>') are not supported");
    return NULL;
  case '@':
  case '`':
  case '%':
    yerr(p, lineno, EINVAL, "a plain scalar cannot start with '%c'", s[0]);
    return NULL;
  default:
    break;
  }
  size_t n = plain_end(s, len);
  while (n > 0 && is_blank(s[n - 1]))
    n--;
  for (size_t k = 0; k < n; k++)
    if (s[k] == ':' && (k + 1 == n || is_blank(s[k + 1]))) {
      yerr(p, lineno, EINVAL, "mapping value where a scalar was expected (quote it?)");
      return NULL;
    }
  return plain_value(p, lineno, s, n);
}

/* Is this text line a "key: value" entry?  1 with *key (heap) and *rest
 * (offset of the value), 0 for a scalar line, -1 on error. */
static int split_key(yparser *p, const yline *l, char **key, size_t *rest) {
  const char *s = l->text;
  size_t len = l->len, kend = 0;
  ybuf b = {0};
  if (s[0] == '"' || s[0] == '\'') {
    size_t end = 0;
    if (parse_quoted(p, l->lineno, s, len, &end, &b) < 0) {
      free(b.p);
      return -1;
    }
    kend = end;
    while (kend < len && is_blank(s[kend]))
      kend++;
    if (kend == len || s[kend] != ':' || (kend + 1 < len && !is_blank(s[kend + 1]))) {
      free(b.p);
      return 0;
    }
  } else {
    if (s[0] == '?' && (len == 1 || is_blank(s[1])))
      return yerr(p, l->lineno, ENOTSUP, "complex keys ('? ') are not supported");
    size_t stop = plain_end(s, len);
    while (kend < stop && !(s[kend] == ':' && (kend + 1 == len || is_blank(s[kend + 1]))))
      kend++;
    if (kend == stop)
      return 0;
    if (strchr("&*!|>{[@`%", s[0]) != NULL)
      return yerr(p, l->lineno, ENOTSUP, "a key starting with '%c' is not supported", s[0]);
    size_t klen = kend;
    while (klen > 0 && is_blank(s[klen - 1]))
      klen--;
    if (klen == 0)
      return yerr(p, l->lineno, EINVAL, "empty key");
    if (buf_add(&b, s, klen) < 0)
      return kyb_error_set(p->err, ENOMEM, "%s: read YAML", p->what);
  }
  if (b.p == NULL || strlen(b.p) != b.len) {
    free(b.p);
    return yerr(p, l->lineno, EINVAL, "key contains a NUL character");
  }
  *key = b.p;
  *rest = kend + 1;
  while (*rest < len && is_blank(s[*rest]))
    (*rest)++;
  return 1;
}

static json_t *parse_block(yparser *p, int indent);

static int bad_indent(yparser *p) {
  return yerr(p, p->lines[p->i].lineno, EINVAL,
              "unexpected indentation (multi-line scalars are not supported)");
}

static json_t *parse_seq(yparser *p, int indent) {
  cleanup_json json_t *arr = json_array();
  if (arr == NULL)
    return NULL;
  while (p->i < p->n && p->lines[p->i].indent == indent && p->lines[p->i].marker) {
    p->i++;
    json_t *item = NULL;
    if (p->i < p->n && p->lines[p->i].indent > indent)
      item = parse_block(p, p->lines[p->i].indent);
    else
      item = json_null();
    if (item == NULL || json_array_append_new(arr, item) < 0)
      return NULL;
  }
  if (p->i < p->n && p->lines[p->i].indent > indent) {
    bad_indent(p);
    return NULL;
  }
  return steal_ptr(arr);
}

static json_t *map_value(yparser *p, const yline *l, int indent, size_t rest) {
  if (rest < l->len && l->text[rest] != '#') {
    json_t *v = parse_scalar(p, l->lineno, l->text + rest, l->len - rest);
    p->i++;
    if (v != NULL && p->i < p->n && p->lines[p->i].indent > indent) {
      json_decref(v);
      bad_indent(p);
      return NULL;
    }
    return v;
  }
  p->i++;
  if (p->i < p->n && p->lines[p->i].indent > indent)
    return parse_block(p, p->lines[p->i].indent);
  /* kubectl writes a key's sequence at the key's own indentation. */
  if (p->i < p->n && p->lines[p->i].indent == indent && p->lines[p->i].marker)
    return parse_seq(p, indent);
  return json_null();
}

static json_t *parse_map(yparser *p, int indent) {
  cleanup_json json_t *obj = json_object();
  if (obj == NULL)
    return NULL;
  while (p->i < p->n && p->lines[p->i].indent == indent) {
    const yline *l = &p->lines[p->i];
    if (l->marker) {
      yerr(p, l->lineno, EINVAL, "sequence entry where a mapping key was expected");
      return NULL;
    }
    cleanup_free char *key = NULL;
    size_t rest = 0;
    int r = split_key(p, l, &key, &rest);
    if (r < 0)
      return NULL;
    if (r == 0) {
      yerr(p, l->lineno, EINVAL, "expected 'key: value'");
      return NULL;
    }
    if (json_object_get(obj, key) != NULL) {
      yerr(p, l->lineno, EINVAL, "duplicate key '%s'", key);
      return NULL;
    }
    json_t *v = map_value(p, l, indent, rest);
    if (v == NULL)
      return NULL;
    if (json_object_set_new(obj, key, v) < 0) {
      yerr(p, l->lineno, EINVAL, "key is not valid UTF-8");
      return NULL;
    }
  }
  if (p->i < p->n && p->lines[p->i].indent > indent) {
    bad_indent(p);
    return NULL;
  }
  return steal_ptr(obj);
}

static json_t *parse_block(yparser *p, int indent) {
  const yline *l = &p->lines[p->i];
  if (++p->depth > KYB_YAML_MAX_DEPTH) {
    yerr(p, l->lineno, EINVAL, "nested deeper than %d levels", KYB_YAML_MAX_DEPTH);
    return NULL;
  }
  json_t *v = NULL;
  if (l->marker) {
    v = parse_seq(p, indent);
  } else {
    cleanup_free char *key = NULL;
    size_t rest = 0;
    int r = split_key(p, l, &key, &rest);
    if (r > 0) {
      v = parse_map(p, indent);
    } else if (r == 0) {
      v = parse_scalar(p, l->lineno, l->text, l->len);
      p->i++;
      if (v != NULL && p->i < p->n && p->lines[p->i].indent > indent) {
        json_decref(v);
        v = NULL;
        bad_indent(p);
      }
    }
  }
  p->depth--;
  return v;
}

static json_t *load_json(const char *text, size_t len, const char *what, kyb_error **err) {
  json_error_t jerr;
  json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (j == NULL)
    kyb_error_set(err, EINVAL, "%s:%d:%d: %s", what, jerr.line, jerr.column, jerr.text);
  return j;
}

/* The first character that is not a blank decides: '{' is JSON (which has
 * no comments, so none are skipped to find it). */
static bool looks_like_json(const char *s, size_t len) {
  size_t k = 0;
  while (k < len && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r' || s[k] == '\n'))
    k++;
  return k < len && s[k] == '{';
}

json_t *kyb_yaml_load(const char *text, size_t len, const char *what, kyb_error **err) {
  if (what == NULL)
    what = "YAML";
  if (looks_like_json(text, len))
    return load_json(text, len, what, err);
  yparser p = {.what = what, .err = err};
  int state = 0, lineno = 0;
  size_t off = 0;
  while (off < len) {
    const char *nl = memchr(text + off, '\n', len - off);
    size_t end = nl != NULL ? (size_t)(nl - text) : len;
    lineno++;
    if (split_line(&p, lineno, text + off, end - off, &state) < 0) {
      free(p.lines);
      return NULL;
    }
    off = end + 1;
  }
  json_t *root = NULL;
  if (p.n == 0) {
    root = json_null();
  } else {
    root = parse_block(&p, p.lines[0].indent);
    if (root != NULL && p.i < p.n) {
      yerr(&p, p.lines[p.i].lineno, EINVAL, "unexpected content after the top-level node");
      json_decref(root);
      root = NULL;
    }
    if (root == NULL && err != NULL && *err == NULL)
      kyb_error_set(err, ENOMEM, "%s: read YAML", what);
  }
  free(p.lines);
  return root;
}
