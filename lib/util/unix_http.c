/* SPDX-License-Identifier: Apache-2.0 */
/* JSON requests to a local daemon over its unix socket (unix_http.h). */
#include "util/unix_http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void kyb_unix_http_answer_clear(kyb_unix_http_answer *a) {
  free(a->buf);
  memset(a, 0, sizeof(*a));
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  kyb_unix_http_answer *a = ud;
  size_t len = size * n;
  if (a->len + len > KYB_UNIX_HTTP_ANSWER_MAX) {
    a->over = true;
    return 0;
  }
  char *nb = realloc(a->buf, a->len + len + 1);
  if (nb == NULL)
    return 0;
  memcpy(nb + a->len, p, len);
  a->buf = nb;
  a->len += len;
  a->buf[a->len] = '\0';
  return len;
}

CURLcode kyb_unix_http_call(CURL *h, const kyb_unix_http_request *r, kyb_unix_http_answer *a,
                            char errbuf[CURL_ERROR_SIZE], long *status) {
  *status = 0;
  char *url = NULL;
  if (asprintf(&url, "http://localhost%s", r->path) < 0)
    return CURLE_OUT_OF_MEMORY;
  curl_easy_reset(h);
  /* No "Expect: 100-continue" round trip for the small bodies these APIs take. */
  struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
  struct curl_slist *h2 = hdrs ? curl_slist_append(hdrs, "Expect:") : NULL;
  if (h2 == NULL) {
    curl_slist_free_all(hdrs);
    free(url);
    return CURLE_OUT_OF_MEMORY;
  }
  hdrs = h2;
  errbuf[0] = '\0';
  bool bad = curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, r->socket) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_WRITEDATA, a) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, r->timeout_ms) != CURLE_OK;
  if (r->connect_timeout_ms > 0)
    bad |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, r->connect_timeout_ms) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
  if (r->body != NULL) {
    bad |= curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body)) != CURLE_OK;
  }
  CURLcode rc = bad ? CURLE_FAILED_INIT : curl_easy_perform(h);
  curl_slist_free_all(hdrs);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
  free(url);
  if (rc == CURLE_OK)
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
  return rc;
}

int kyb_unix_http_errno(long status) {
  switch (status) {
  case 400:
    return EINVAL;
  case 403:
    return EPERM;
  case 404:
    return ENOENT;
  case 405:
    return ENOTSUP;
  case 409:
    return EEXIST;
  case 413:
    return EMSGSIZE;
  case 503:
    return EAGAIN;
  default:
    return EIO;
  }
}
