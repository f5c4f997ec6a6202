/* test_sigv4: the SigV4 signer against AWS's published examples.
 *
 * Header signing: cases of the aws-sig-v4-test-suite (credentials AKIDEXAMPLE, region us-east-1,
 * service "service", 20150830T123600Z); for each, the canonical request (.creq), the string to
 * sign (.sts) and the Authorization header (.authz) as published. S3: the GET Object (Range),
 * PUT Object, GET Bucket lifecycle and ListObjects examples of "Signature Calculations for the
 * Authorization Header", and the presigned URL of "Authenticating Requests: Using Query
 * Parameters" (examplebucket, 20130524T000000Z, 86400 s). The suite's path-normalization cases are
 * left out on purpose: S3 does not normalize paths, and neither does the signer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "infra/sigv4.h"

#define DATE "20150830T123600Z"
#define HOST "example.amazonaws.com"
#define SCOPE "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
#define STS "AWS4-HMAC-SHA256\n" DATE "\n20150830/us-east-1/service/aws4_request\n"

static const sigv4_creds_t suite_creds = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1",
                                          "service"};

typedef struct suite_case {
    const char *name, *method, *path;
    sigv4_pair_t query[2];
    sigv4_pair_t headers[6];
    const char *body;
    const char *creq; /* NULL: the published .creq disagrees with its own .sts (see below) */
    const char *sts_hash, *authz;
} suite_case_t;

static const suite_case_t suite[] = {
    {"get-vanilla", "GET", "/", {{0}}, {{"Host", HOST}, {"X-Amz-Date", DATE}}, "",
     "GET\n/\n\nhost:" HOST "\nx-amz-date:" DATE "\n\nhost;x-amz-date\n" SIGV4_EMPTY_SHA256,
     "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
     SCOPE "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-vanilla-query-order-key-case", "GET", "/", {{"Param2", "value2"}, {"Param1", "value1"}},
     {{"Host", HOST}, {"X-Amz-Date", DATE}}, "",
     "GET\n/\nParam1=value1&Param2=value2\nhost:" HOST "\nx-amz-date:" DATE "\n\nhost;x-amz-date\n" SIGV4_EMPTY_SHA256,
     "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
     SCOPE "SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
    {"get-vanilla-query-order-key", "GET", "/", {{"Param1", "value2"}, {"Param1", "Value1"}},
     {{"Host", HOST}, {"X-Amz-Date", DATE}}, "",
     "GET\n/\nParam1=Value1&Param1=value2\nhost:" HOST "\nx-amz-date:" DATE "\n\nhost;x-amz-date\n" SIGV4_EMPTY_SHA256,
     "704b4cef673542d84cdff252633f065e8daeba5f168b77116f8b1bcaf3d38f89",
     SCOPE "SignedHeaders=host;x-amz-date, Signature=eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1"},
    {"get-vanilla-query-unreserved", "GET", "/",
     {{"-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
       "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"}},
     {{"Host", HOST}, {"X-Amz-Date", DATE}}, "",
     "GET\n/\n-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
     "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\nhost:" HOST "\nx-amz-date:" DATE
     "\n\nhost;x-amz-date\n" SIGV4_EMPTY_SHA256,
     "c30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177",
     SCOPE "SignedHeaders=host;x-amz-date, Signature=9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"},
    {"get-vanilla-utf8-query", "GET", "/", {{"\xe1\x88\xb4", "bar"}}, {{"Host", HOST}, {"X-Amz-Date", DATE}}, "",
     "GET\n/\n%E1%88%B4=bar\nhost:" HOST "\nx-amz-date:" DATE "\n\nhost;x-amz-date\n" SIGV4_EMPTY_SHA256,
     "eb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073",
     SCOPE "SignedHeaders=host;x-amz-date, Signature=2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"},
    {"get-unreserved", "GET", "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", {{0}},
     {{"Host", HOST}, {"X-Amz-Date", DATE}}, "",
     "GET\n/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n\nhost:" HOST "\nx-amz-date:" DATE
     "\n\nhost;x-amz-date\n" SIGV4_EMPTY_SHA256,
     "6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9",
     SCOPE "SignedHeaders=host;x-amz-date, Signature=07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"},
    {"get-space", "GET", "/example space/", {{0}}, {{"Host", HOST}, {"X-Amz-Date", DATE}}, "",
     "GET\n/example%20space/\n\nhost:" HOST "\nx-amz-date:" DATE "\n\nhost;x-amz-date\n" SIGV4_EMPTY_SHA256,
     "63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706ee9390d86",
     SCOPE "SignedHeaders=host;x-amz-date, Signature=652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"},
    {"get-header-key-duplicate", "GET", "/", {{0}},
     {{"Host", HOST},
      {"My-Header1", "value2"},
      {"My-Header1", "value2"},
      {"My-Header1", "value1"},
      {"X-Amz-Date", DATE}},
     "",
     "GET\n/\n\nhost:" HOST "\nmy-header1:value2,value2,value1\nx-amz-date:" DATE
     "\n\nhost;my-header1;x-amz-date\n" SIGV4_EMPTY_SHA256,
     "dc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b15527fbe966c",
     SCOPE "SignedHeaders=host;my-header1;x-amz-date, "
           "Signature=c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"},
    {"get-header-value-order", "GET", "/", {{0}},
     {{"Host", HOST}, {"My-Header1", "value4"}, {"My-Header1", "value1"}, {"My-Header1", "value3"},
      {"My-Header1", "value2"}, {"X-Amz-Date", DATE}},
     "",
     "GET\n/\n\nhost:" HOST "\nmy-header1:value4,value1,value3,value2\nx-amz-date:" DATE
     "\n\nhost;my-header1;x-amz-date\n" SIGV4_EMPTY_SHA256,
     "31ce73cd3f3d9f66977ad3dd957dc47af14df92fcd8509f59b349e9137c58b86",
     SCOPE "SignedHeaders=host;my-header1;x-amz-date, "
           "Signature=08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"},
    {"get-header-value-trim", "GET", "/", {{0}},
     {{"Host", HOST}, {"My-Header1", " value1"}, {"My-Header2", " \"a   b   c\""}, {"X-Amz-Date", DATE}}, "",
     "GET\n/\n\nhost:" HOST "\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:" DATE
     "\n\nhost;my-header1;my-header2;x-amz-date\n" SIGV4_EMPTY_SHA256,
     "a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
     SCOPE "SignedHeaders=host;my-header1;my-header2;x-amz-date, "
           "Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"},
    {"post-vanilla", "POST", "/", {{0}}, {{"Host", HOST}, {"X-Amz-Date", DATE}}, "",
     "POST\n/\n\nhost:" HOST "\nx-amz-date:" DATE "\n\nhost;x-amz-date\n" SIGV4_EMPTY_SHA256,
     "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
     SCOPE "SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
    {"post-vanilla-query", "POST", "/", {{"Param1", "value1"}}, {{"Host", HOST}, {"X-Amz-Date", DATE}}, "",
     "POST\n/\nParam1=value1\nhost:" HOST "\nx-amz-date:" DATE "\n\nhost;x-amz-date\n" SIGV4_EMPTY_SHA256,
     "9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd",
     SCOPE "SignedHeaders=host;x-amz-date, Signature=28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"},
    {"post-header-key-sort", "POST", "/", {{0}}, {{"Host", HOST}, {"My-Header1", "value1"}, {"X-Amz-Date", DATE}}, "",
     "POST\n/\n\nhost:" HOST "\nmy-header1:value1\nx-amz-date:" DATE "\n\nhost;my-header1;x-amz-date\n"
     SIGV4_EMPTY_SHA256,
     "9368318c2967cf6de74404b30c65a91e8f6253e0a8659d6d5319f1a812f87d65",
     SCOPE "SignedHeaders=host;my-header1;x-amz-date, "
           "Signature=c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c"},
    {"post-header-value-case", "POST", "/", {{0}}, {{"Host", HOST}, {"My-Header1", "VALUE1"}, {"X-Amz-Date", DATE}}, "",
     "POST\n/\n\nhost:" HOST "\nmy-header1:VALUE1\nx-amz-date:" DATE "\n\nhost;my-header1;x-amz-date\n"
     SIGV4_EMPTY_SHA256,
     "d51ced243e649e3de6ef63afbbdcbca03131a21a7103a1583706a64618606a93",
     SCOPE "SignedHeaders=host;my-header1;x-amz-date, "
           "Signature=cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"},
    /* The suite's .creq for this case also lists content-length, but its own .sts and .authz (below)
     * sign only Content-Type, Host and X-Amz-Date; those two are checked. */
    {"post-x-www-form-urlencoded", "POST", "/", {{0}},
     {{"Content-Type", "application/x-www-form-urlencoded"}, {"Host", HOST}, {"X-Amz-Date", DATE}}, "Param1=value1",
     NULL, "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281",
     SCOPE "SignedHeaders=content-type;host;x-amz-date, "
           "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"},
    {"post-sts-header-before", "POST", "/", {{0}},
     {{"Host", HOST},
      {"X-Amz-Date", DATE},
      {"X-Amz-Security-Token",
       "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUu"
       "wthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQc"
       "HNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/o"
       "LxBA=="}},
     "", NULL, "c237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6",
     SCOPE "SignedHeaders=host;x-amz-date;x-amz-security-token, "
           "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"},
};

static size_t count_pairs(const sigv4_pair_t *p, size_t max)
{
    size_t n = 0;
    while (n < max && p[n].name)
        n++;
    return n;
}

static void check_case(const suite_case_t *t, const char *date, const sigv4_creds_t *creds)
{
    char payload[65];
    sigv4_sha256_hex(t->body, strlen(t->body), payload);
    sigv4_request_t r = {.method = t->method, .path = t->path, .query = t->query, .nquery = count_pairs(t->query, 2),
                         .headers = t->headers, .nheaders = count_pairs(t->headers, 6), .payload_hash = payload,
                         .amz_date = date};
    buf_t creq, sts, authz, want_sts;
    buf_init(&creq);
    buf_init(&sts);
    buf_init(&authz);
    buf_init(&want_sts);
    sigv4_canonical_request(&creq, &r);
    if (t->creq && strcmp(creq.data, t->creq) != 0)
        fail_msg("%s: canonical request\n%s\nexpected\n%s", t->name, creq.data, t->creq);
    sigv4_string_to_sign(&sts, date, creds, creq.data, creq.len);
    buf_printf(&want_sts, "AWS4-HMAC-SHA256\n%s\n%.8s/%s/%s/aws4_request\n%s", date, date, creds->region,
               creds->service, t->sts_hash);
    if (strcmp(sts.data, want_sts.data) != 0)
        fail_msg("%s: string to sign\n%s\nexpected\n%s", t->name, sts.data, want_sts.data);
    assert_true(sigv4_authorization(&authz, &r, creds));
    if (strcmp(authz.data, t->authz) != 0)
        fail_msg("%s: authorization\n%s\nexpected\n%s", t->name, authz.data, t->authz);
    buf_free(&creq);
    buf_free(&sts);
    buf_free(&authz);
    buf_free(&want_sts);
}

static void aws_test_suite(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof suite / sizeof suite[0]; i++)
        check_case(&suite[i], DATE, &suite_creds);
}

/* ---------------------------------------------------------------- S3 documentation examples */

#define S3_DATE "20130524T000000Z"
#define S3_HOST "examplebucket.s3.amazonaws.com"
#define S3_SCOPE "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "

static const sigv4_creds_t s3_creds = {"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                                       "us-east-1", "s3"};

static const suite_case_t s3_examples[] = {
    {"GET Object", "GET", "/test.txt", {{0}},
     {{"Host", S3_HOST}, {"Range", "bytes=0-9"}, {"x-amz-content-sha256", SIGV4_EMPTY_SHA256}, {"x-amz-date", S3_DATE}},
     "",
     "GET\n/test.txt\n\nhost:" S3_HOST "\nrange:bytes=0-9\nx-amz-content-sha256:" SIGV4_EMPTY_SHA256
     "\nx-amz-date:" S3_DATE "\n\nhost;range;x-amz-content-sha256;x-amz-date\n" SIGV4_EMPTY_SHA256,
     "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
     S3_SCOPE "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
              "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"},
    {"PUT Object", "PUT", "/test$file.text", {{0}},
     {{"Host", S3_HOST},
      {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
      {"x-amz-date", S3_DATE},
      {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
      {"x-amz-content-sha256", "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"}},
     "Welcome to Amazon S3.",
     "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\nhost:" S3_HOST
     "\nx-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\nx-amz-date:" S3_DATE
     "\nx-amz-storage-class:REDUCED_REDUNDANCY\n\ndate;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n"
     "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
     "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d",
     S3_SCOPE "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
              "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"},
    {"GET Bucket lifecycle", "GET", "/", {{"lifecycle", ""}},
     {{"Host", S3_HOST}, {"x-amz-content-sha256", SIGV4_EMPTY_SHA256}, {"x-amz-date", S3_DATE}}, "",
     "GET\n/\nlifecycle=\nhost:" S3_HOST "\nx-amz-content-sha256:" SIGV4_EMPTY_SHA256 "\nx-amz-date:" S3_DATE
     "\n\nhost;x-amz-content-sha256;x-amz-date\n" SIGV4_EMPTY_SHA256,
     "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca",
     S3_SCOPE "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
              "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"},
    {"GET Bucket (List Objects)", "GET", "/", {{"prefix", "J"}, {"max-keys", "2"}},
     {{"Host", S3_HOST}, {"x-amz-content-sha256", SIGV4_EMPTY_SHA256}, {"x-amz-date", S3_DATE}}, "",
     "GET\n/\nmax-keys=2&prefix=J\nhost:" S3_HOST "\nx-amz-content-sha256:" SIGV4_EMPTY_SHA256 "\nx-amz-date:" S3_DATE
     "\n\nhost;x-amz-content-sha256;x-amz-date\n" SIGV4_EMPTY_SHA256,
     "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7",
     S3_SCOPE "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
              "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"},
};

static void s3_header_examples(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof s3_examples / sizeof s3_examples[0]; i++)
        check_case(&s3_examples[i], S3_DATE, &s3_creds);
}

static void s3_presigned_url(void **state)
{
    (void)state;
    buf_t url;
    buf_init(&url);
    assert_true(sigv4_presign(&url, "https://examplebucket.s3.amazonaws.com", S3_HOST, "/test.txt", 86400, S3_DATE,
                              &s3_creds));
    assert_string_equal(url.data,
                        "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
                        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
                        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    /* The published canonical request of the example hashes to 3bfa2928... (its string to sign). */
    const sigv4_pair_t q[] = {{"X-Amz-Algorithm", "AWS4-HMAC-SHA256"},
                              {"X-Amz-Credential", "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"},
                              {"X-Amz-Date", S3_DATE},
                              {"X-Amz-Expires", "86400"},
                              {"X-Amz-SignedHeaders", "host"}};
    const sigv4_pair_t h[] = {{"host", S3_HOST}};
    sigv4_request_t r = {.method = "GET", .path = "/test.txt", .query = q, .nquery = 5, .headers = h, .nheaders = 1,
                         .payload_hash = SIGV4_UNSIGNED_PAYLOAD, .amz_date = S3_DATE};
    buf_t creq;
    buf_init(&creq);
    sigv4_canonical_request(&creq, &r);
    char hash[65];
    sigv4_sha256_hex(creq.data, creq.len, hash);
    assert_string_equal(hash, "3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04");
    /* Expiry outside 1 s .. 7 days is clamped. */
    buf_reset(&url);
    assert_true(sigv4_presign(&url, "http://127.0.0.1:9000", "127.0.0.1:9000", "/b/k", 10000000, S3_DATE, &s3_creds));
    assert_non_null(strstr(url.data, "X-Amz-Expires=604800&"));
    assert_true(strncmp(url.data, "http://127.0.0.1:9000/b/k?X-Amz-Algorithm=", 42) == 0);
    buf_free(&creq);
    buf_free(&url);
}

static void encoding(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b);
    const char *s = "a b/c+d~e%f\xc3\xa9";
    sigv4_uri_encode(&b, s, strlen(s), true);
    assert_string_equal(b.data, "a%20b/c%2Bd~e%25f%C3%A9");
    buf_reset(&b);
    sigv4_uri_encode(&b, s, strlen(s), false);
    assert_string_equal(b.data, "a%20b%2Fc%2Bd~e%25f%C3%A9");
    buf_reset(&b);
    const sigv4_pair_t q[] = {{"uploadId", "x/y=z"}, {"partNumber", "2"}, {"uploads", NULL}};
    sigv4_canonical_query(&b, q, 3);
    assert_string_equal(b.data, "partNumber=2&uploadId=x%2Fy%3Dz&uploads=");
    char date[17];
    sigv4_amz_date(1369353600, date);
    assert_string_equal(date, S3_DATE);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(aws_test_suite),
        cmocka_unit_test(s3_header_examples),
        cmocka_unit_test(s3_presigned_url),
        cmocka_unit_test(encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
