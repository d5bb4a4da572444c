/* SPDX-License-Identifier: Apache-2.0 */
/*
 * AWS's SigV4 test suite, as test data for test_sigv4.c.
 *
 * Copied from awslabs/aws-c-auth (Apache-2.0), tests/aws-signing-test-suite/v4/,
 * commit 495329c2433034bd8fd53fc6ba9e0202d3fac876: for each case its request.txt, the context's
 * normalize / sign_body / session token, header-canonical-request.txt and
 * header-signature.txt.  Every case uses access key AKIDEXAMPLE, secret
 * wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, region us-east-1, service
 * "service", time 2015-08-30T12:36:00Z.  Left out: post-sts-header-after
 * (a session token sent but not signed, which this signer never does).
 * Generated, not edited by hand.
 */
#ifndef KYB_TEST_SIGV4_VECTORS_H
#define KYB_TEST_SIGV4_VECTORS_H

#include <stdbool.h>

typedef struct {
  const char *name;
  const char *request;
  const char *token;
  bool normalize;
  bool sign_body;
  const char *canonical;
  const char *signature;
} sigv4_vector;

static const sigv4_vector sigv4_vectors[] = {
    {"get-header-key-duplicate",
     "GET / HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "My-Header1:value2\n"
     "My-Header1:value2\n"
     "My-Header1:value1\n"
     "",
     NULL, true, false,
     "GET\n"
     "/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "my-header1:value2,value2,value1\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;my-header1;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"},
    {"get-header-value-multiline",
     "GET / HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "My-Header1:value1\n"
     "  value2\n"
     "     value3\n"
     "",
     NULL, true, false,
     "GET\n"
     "/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "my-header1:value1 value2 value3\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;my-header1;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "cfd34249e4b1c8d6b91ef74165d41a32e5fab3306300901bb65a51a73575eefd"},
    {"get-header-value-order",
     "GET / HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "My-Header1:value4\n"
     "My-Header1:value1\n"
     "My-Header1:value3\n"
     "My-Header1:value2\n"
     "",
     NULL, true, false,
     "GET\n"
     "/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "my-header1:value4,value1,value3,value2\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;my-header1;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"},
    {"get-header-value-trim",
     "GET / HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "My-Header1: value1\n"
     "My-Header2: \"a   b   c\"\n"
     "",
     NULL, true, false,
     "GET\n"
     "/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "my-header1:value1\n"
     "my-header2:\"a b c\"\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;my-header1;my-header2;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"},
    {"get-relative-normalized",
     "GET /example/.. HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, true, false,
     "GET\n"
     "/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-relative-relative-normalized",
     "GET /example1/example2/../.. HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, true, false,
     "GET\n"
     "/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-relative-relative-unnormalized",
     "GET /example1/example2/../.. HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, false, false,
     "GET\n"
     "/example1/example2/../..\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "dc33e0856fd4baca4d7aa2146c38958283844764f38c74252a333df5e613003b"},
    {"get-relative-unnormalized",
     "GET /example/.. HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, false, false,
     "GET\n"
     "/example/..\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "eca7ead57bb5aa5c8e28007acd4ff04e1ff9a0ff3b237ec1554a184887ff9282"},
    {"get-slash-dot-slash-normalized",
     "GET /./ HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, true, false,
     "GET\n"
     "/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-slash-dot-slash-unnormalized",
     "GET /./ HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, false, false,
     "GET\n"
     "/./\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "68714168e6557f8f2de0ef956fc24dc2593a4bd2961f8df51898d8a134695145"},
    {"get-slash-normalized",
     "GET // HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, true, false,
     "GET\n"
     "/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-slash-pointless-dot-normalized",
     "GET /./example HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, true, false,
     "GET\n"
     "/example\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5"},
    {"get-slash-pointless-dot-unnormalized",
     "GET /./example HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, false, false,
     "GET\n"
     "/./example\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "beb03f223f7deae4146464f06e29eebbee9c8afbe15c290cf07aa8b119e14cff"},
    {"get-slash-unnormalized",
     "GET // HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, false, false,
     "GET\n"
     "//\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "c88bcd3d312d75078c0cd961d6deae3f4c754924b01669efcfcb439fd5e5b76e"},
    {"get-slashes-normalized",
     "GET //example// HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, true, false,
     "GET\n"
     "/example/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84"},
    {"get-slashes-unnormalized",
     "GET //example// HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, false, false,
     "GET\n"
     "//example//\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "87cca117541a147f6df867677d98a7d80dff226d2bfca9e4ffa899665623c7e5"},
    {"get-space-normalized",
     "GET /example space/ HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, true, false,
     "GET\n"
     "/example%20space/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"},
    {"get-space-unnormalized",
     "GET /example space/ HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, false, false,
     "GET\n"
     "/example%20space/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"},
    {"get-unreserved",
     "GET /-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, true, false,
     "GET\n"
     "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"},
    {"get-utf8",
     "GET /\341\210\264 HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, true, false,
     "GET\n"
     "/%E1%88%B4\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"},
    {"get-vanilla-empty-query-key",
     "GET /?Param1=value1 HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, true, false,
     "GET\n"
     "/\n"
     "Param1=value1\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"},
    {"get-vanilla-query-order-encoded",
     "GET /?Param-3=Value3&Param=Value2&%E1%88%B4=Value1 HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, true, false,
     "GET\n"
     "/\n"
     "%E1%88%B4=Value1&Param=Value2&Param-3=Value3\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac"},
    {"get-vanilla-query-order-key-case",
     "GET /?Param2=value2&Param1=value1 HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, true, false,
     "GET\n"
     "/\n"
     "Param1=value1&Param2=value2\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
    {"get-vanilla-query-unreserved",
     "GET "
     "/?-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~"
     "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, true, false,
     "GET\n"
     "/\n"
     "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~"
     "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"},
    {"get-vanilla-query",
     "GET / HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, true, false,
     "GET\n"
     "/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-vanilla-utf8-query",
     "GET /?\341\210\264=bar HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, true, false,
     "GET\n"
     "/\n"
     "%E1%88%B4=bar\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"},
    {"get-vanilla-with-session-token",
     "GET / HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267", true, false,
     "GET\n"
     "/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "x-amz-security-token:6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267\n"
     "\n"
     "host;x-amz-date;x-amz-security-token\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"},
    {"get-vanilla",
     "GET / HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, true, false,
     "GET\n"
     "/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"post-header-key-case",
     "POST / HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, true, false,
     "POST\n"
     "/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
    {"post-header-key-sort",
     "POST / HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "My-Header1:value1\n"
     "",
     NULL, true, false,
     "POST\n"
     "/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "my-header1:value1\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;my-header1;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c"},
    {"post-header-value-case",
     "POST / HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "My-Header1:VALUE1\n"
     "",
     NULL, true, false,
     "POST\n"
     "/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "my-header1:VALUE1\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;my-header1;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"},
    {"post-sts-header-before",
     "POST / HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     "AQoDYXdzEPT//////////"
     "wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthA"
     "x7mSEI/qkPpKPi/"
     "kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHN"
     "VXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+"
     "scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==",
     true, false,
     "POST\n"
     "/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "x-amz-security-token:AQoDYXdzEPT//////////"
     "wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthA"
     "x7mSEI/qkPpKPi/"
     "kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHN"
     "VXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+"
     "scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==\n"
     "\n"
     "host;x-amz-date;x-amz-security-token\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"},
    {"post-vanilla-empty-query-value",
     "POST /?Param1=value1 HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, true, false,
     "POST\n"
     "/\n"
     "Param1=value1\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"},
    {"post-vanilla-query",
     "POST /?Param1=value1 HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, true, false,
     "POST\n"
     "/\n"
     "Param1=value1\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"},
    {"post-vanilla",
     "POST / HTTP/1.1\n"
     "Host:example.amazonaws.com\n"
     "",
     NULL, true, false,
     "POST\n"
     "/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
    {"post-x-www-form-urlencoded-parameters",
     "POST / HTTP/1.1\n"
     "Content-Type:application/x-www-form-urlencoded; charset=utf-8\n"
     "Host:example.amazonaws.com\n"
     "Content-Length:13\n"
     "\n"
     "Param1=value1",
     NULL, true, true,
     "POST\n"
     "/\n"
     "\n"
     "content-length:13\n"
     "content-type:application/x-www-form-urlencoded; charset=utf-8\n"
     "host:example.amazonaws.com\n"
     "x-amz-content-sha256:9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "content-length;content-type;host;x-amz-content-sha256;x-amz-date\n"
     "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
     "328d1b9eaadca9f5818ef05e8392801e091653bafec24fcab71e7344e7f51422"},
    {"post-x-www-form-urlencoded",
     "POST / HTTP/1.1\n"
     "Content-Type:application/x-www-form-urlencoded\n"
     "Host:example.amazonaws.com\n"
     "Content-Length:13\n"
     "\n"
     "Param1=value1",
     NULL, true, true,
     "POST\n"
     "/\n"
     "\n"
     "content-length:13\n"
     "content-type:application/x-www-form-urlencoded\n"
     "host:example.amazonaws.com\n"
     "x-amz-content-sha256:9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "content-length;content-type;host;x-amz-content-sha256;x-amz-date\n"
     "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
     "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b"},
};

#endif
