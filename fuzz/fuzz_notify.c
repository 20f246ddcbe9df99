/* Fuzz target: the rules a notification's fields must pass before they
 * reach SMTP, a provider or Kafka (note_msg_check), and the phone number
 * and area code checks. The input is split at NUL bytes into channel, to,
 * from, title and body. Must never crash; an accepted email recipient or
 * title must hold no CR or LF (header injection). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "notify.h"
#include "phone.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 6);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    memset(buf + size, 0, 6);
    const char *part[5];
    size_t at = 0;
    for (int i = 0; i < 5; i++) {
        part[i] = buf + (at < size ? at : size);
        at += strlen(part[i]) + 1;
    }
    struct note_msg m = {(enum note_channel)((unsigned char)part[0][0] % CH_COUNT), part[1],
                         part[2], part[3], part[4]};
    char err[ERRBUF_LEN], fp[NOTE_FP_LEN + 1];
    if (note_msg_check(&m, "events,audit", err, sizeof err)) {
        if (strpbrk(m.title, "\r\n") || (m.channel == CH_EMAIL && strpbrk(m.to, "\r\n")))
            abort();
        if (m.channel == CH_SMS && !phone_valid(m.to))
            abort();
    }
    note_fingerprint(&m, fp);
    (void)area_code_valid(part[1]);
    free(buf);
    return 0;
}
