/* The WebSocket handshake's accept key (dispatcher/wsconn.c), RFC 6455
 * 1.3's example and keys that are not 16 bytes of base64. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "wsconn.h"

static void test_accept_key(void **state)
{
    (void)state;
    char out[29];
    assert_true(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out));
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_false(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=", out));     /* 23 characters */
    assert_false(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==x", out));   /* 25 */
    assert_false(ws_accept_key("dGhlIHNhbXBsZSBub25jZQAA", out));    /* 18 bytes, not 16 */
    assert_false(ws_accept_key("dGhlIHNhbXBsZSBub25j!Q==", out));    /* not base64 */
    assert_false(ws_accept_key("", out));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
