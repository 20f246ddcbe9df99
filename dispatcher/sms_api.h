/* sms_api.h - the SMS routes (see sms_api.c). */
#ifndef SB_SMS_API_H
#define SB_SMS_API_H

#include "server.h"

#define SMS_CONTENT_MAX 1600 /* characters: ten concatenated segments */

void sms_send_one(struct http_ctx *ctx);
void sms_send_many(struct http_ctx *ctx);
void sms_request_get(struct http_ctx *ctx);

#endif
