/* Fuzz target: the HTTP request parser. Any client may send any bytes;
 * httpparse_feed must answer DONE, MORE or BAD (with a status and a
 * reason) without reading or writing outside the input, and must reach the
 * same answer whether the input arrives at once or a byte at a time. The
 * input is parsed as a pipeline: each request after the one before. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "httpparse.h"

#define MAX_HEAD 1024
#define MAX_BODY 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Exact-size copies, so ASan sees any read past the input. */
    char *whole = malloc(size ? size : 1), *trickle = malloc(size ? size : 1);
    if (whole == NULL || trickle == NULL)
        abort();
    memcpy(whole, data, size);
    size_t off = 0;
    for (int n = 0; n < 8 && off < size; n++) {
        struct httpparse_req a, b;
        httpparse_reset(&a);
        enum httpparse_result ra = httpparse_feed(&a, whole + off, size - off, MAX_HEAD, MAX_BODY);
        if (ra == HTTPPARSE_BAD && (a.status < 400 || a.status > 599 || a.reason == NULL))
            abort();
        if (ra == HTTPPARSE_DONE && (a.total_len == 0 || a.total_len > size - off ||
                                     a.body_len > MAX_BODY || a.method == NULL || a.target == NULL))
            abort();
        /* The same request, one more byte per call. */
        httpparse_reset(&b);
        enum httpparse_result rb = HTTPPARSE_MORE;
        size_t got = 0;
        while (rb == HTTPPARSE_MORE && got < size - off) {
            trickle[got] = (char)data[off + got];
            got++;
            rb = httpparse_feed(&b, trickle, got, MAX_HEAD, MAX_BODY);
        }
        if (rb != ra)
            abort();
        if (ra == HTTPPARSE_BAD && a.status != b.status)
            abort();
        if (ra == HTTPPARSE_DONE &&
            (a.total_len != b.total_len || a.body_len != b.body_len ||
             memcmp(a.body, b.body, a.body_len) != 0 || strcmp(a.target, b.target) != 0 ||
             a.nheaders != b.nheaders || a.keep_alive != b.keep_alive))
            abort();
        if (ra != HTTPPARSE_DONE)
            break;
        off += a.total_len;
    }
    free(whole);
    free(trickle);
    return 0;
}
