/* Fuzz target: WebSocket command lines (dispatcher/wscmd.c). A client may
 * send any text; wscmd_parse must take a command or say why not, never
 * crash, and its plain way (fields read without a tree) must give exactly
 * what the general way (a cJSON tree of the line) gives, for both body
 * limits (a short line hands its body over parsed, a long one as text). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wscmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t limits[] = {ROUTE_BODY_SMALL, 24};
    const char *line = (const char *)data;
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        struct wscmd plain, general;
        char err[ERRBUF_LEN];
        bool g = wscmd_parse_general(line, size, limits[i], "", &general, err, sizeof err);
        if (!g && err[0] == '\0')
            abort(); /* a refusal always says why */
        if (wscmd_parse_plain(line, size, limits[i], "", &plain)) {
            if (!g || !wscmd_same(&plain, &general))
                abort(); /* the plain way took what the general way reads otherwise */
            wscmd_clear(&plain);
        }
        if (g)
            wscmd_clear(&general);
    }
    return 0;
}
