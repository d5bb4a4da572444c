/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Listing and hashing image files.  See files.h for the contract.
 */
#include "image/files.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/image.h"
#include "util/cleanup.h"

/* An image is shallow (criu/ is one level); a deep tree is not one of ours. */
#define LIST_MAX_DEPTH 16
#define HASH_BUF_SIZE (1u << 20)

void kyb_hex_lower(const unsigned char *md, size_t len, char *hex) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < len; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  hex[2 * len] = '\0';
}

static void md_ctx_freep(EVP_MD_CTX **c) {
  EVP_MD_CTX_free(*c);
  *c = NULL;
}

int kyb_sha256_fd(int fd, bool do_fsync, char hex[KYB_SHA256_HEX_LEN + 1], uint64_t *size,
                  kyb_error **err) {
  __attribute__((cleanup(md_ctx_freep))) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (ctx == NULL)
    return kyb_error_set(err, ENOMEM, "sha256");
  if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
    return kyb_error_set(err, EIO, "sha256: OpenSSL digest init failed");
  cleanup_free unsigned char *buf = malloc(HASH_BUF_SIZE);
  if (buf == NULL)
    return kyb_error_set(err, ENOMEM, "sha256");
  uint64_t total = 0;
  for (;;) {
    ssize_t n = read(fd, buf, HASH_BUF_SIZE);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return kyb_error_errno(err, "read");
    if (n == 0)
      break;
    if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1)
      return kyb_error_set(err, EIO, "sha256: OpenSSL digest update failed");
    total += (uint64_t)n;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != KYB_SHA256_HEX_LEN / 2)
    return kyb_error_set(err, EIO, "sha256: OpenSSL digest final failed");
  if (do_fsync && fsync(fd) < 0)
    return kyb_error_errno(err, "fsync");
  kyb_hex_lower(md, mdlen, hex);
  if (size != NULL)
    *size = total;
  return 0;
}

void kyb_sha256_buf(const void *data, size_t len, char hex[KYB_SHA256_HEX_LEN + 1]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  /* EVP_Digest only fails on allocation failure in the provider; an empty
   * digest then makes any comparison fail rather than pass. */
  if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1) {
    hex[0] = '\0';
    return;
  }
  kyb_hex_lower(md, mdlen, hex);
}

int kyb_read_fd_bounded(int fd, size_t max, char **out, size_t *len, kyb_error **err) {
  struct stat st;
  if (fstat(fd, &st) < 0)
    return kyb_error_errno(err, "stat");
  if (!S_ISREG(st.st_mode))
    return kyb_error_set(err, EINVAL, "not a regular file");
  if ((uint64_t)st.st_size > max)
    return kyb_error_set(err, EFBIG, "%lld bytes, more than the %zu allowed", (long long)st.st_size,
                         max);
  /* One byte more than stat said tells a file that changed under us. */
  size_t cap = (size_t)st.st_size + 1;
  cleanup_free char *buf = malloc(cap + 1);
  if (buf == NULL)
    return kyb_error_set(err, ENOMEM, "read");
  size_t n = 0;
  while (n < cap) {
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return kyb_error_errno(err, "read");
    if (r == 0)
      break;
    n += (size_t)r;
  }
  if (n == cap)
    return kyb_error_set(err, EAGAIN, "file grew while it was read");
  buf[n] = '\0';
  *len = n;
  *out = steal_ptr(buf);
  return 0;
}

typedef struct {
  char **v;
  size_t n, cap;
} strlist;

static int strlist_push(strlist *l, char *s) {
  if (l->n + 1 >= l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    char **nv = realloc(l->v, cap * sizeof(char *));
    if (nv == NULL) {
      free(s);
      return -1;
    }
    l->v = nv;
    l->cap = cap;
  }
  l->v[l->n++] = s;
  l->v[l->n] = NULL;
  return 0;
}

static int list_dir(int dirfd, const char *prefix, int depth, strlist *out, kyb_error **err) {
  if (depth > LIST_MAX_DEPTH)
    return kyb_error_set(err, ELOOP, "%s: directories nested deeper than %d levels", prefix,
                         LIST_MAX_DEPTH);
  int dupfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
  if (dupfd < 0)
    return kyb_error_errno(err, "dup");
  cleanup_dir DIR *d = fdopendir(dupfd);
  if (d == NULL) {
    close(dupfd);
    return kyb_error_errno(err, "opendir %s", prefix[0] ? prefix : ".");
  }
  struct dirent *de;
  while ((errno = 0, de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (depth == 0 && strcmp(de->d_name, KYB_IMAGE_MANIFEST) == 0)
      continue;
    cleanup_free char *rel = NULL;
    if (asprintf(&rel, "%s%s%s", prefix, prefix[0] ? "/" : "", de->d_name) < 0)
      return kyb_error_set(err, ENOMEM, "list image files");
    struct stat st;
    if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
      return kyb_error_errno(err, "stat %s", rel);
    if (S_ISDIR(st.st_mode)) {
      cleanup_close int sub =
          openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0)
        return kyb_error_errno(err, "open %s", rel);
      if (list_dir(sub, rel, depth + 1, out, err) < 0)
        return -1;
      continue;
    }
    if (!S_ISREG(st.st_mode))
      return kyb_error_set(
          err, EINVAL, "%s is not a regular file or directory; an image holds nothing else", rel);
    if (strlist_push(out, steal_ptr(rel)) < 0)
      return kyb_error_set(err, ENOMEM, "list image files");
  }
  if (errno != 0)
    return kyb_error_errno(err, "readdir %s", prefix[0] ? prefix : ".");
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int kyb_image_list_files(int dirfd, char ***out, size_t *n, kyb_error **err) {
  strlist l = {0};
  if (list_dir(dirfd, "", 0, &l, err) < 0) {
    kyb_strvp(&l.v);
    return -1;
  }
  if (l.v == NULL && (l.v = calloc(1, sizeof(char *))) == NULL) /* an empty list is still a list */
    return kyb_error_set(err, ENOMEM, "list image files");
  qsort(l.v, l.n, sizeof(char *), cmp_str);
  *out = l.v;
  *n = l.n;
  return 0;
}
