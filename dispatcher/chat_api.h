/* chat_api.h - the chat routes: chats, messages, search (applications: app_api.h). */
#ifndef SB_CHAT_API_H
#define SB_CHAT_API_H

#include "server.h"

void chat_create_chat(struct http_ctx *ctx);
void chat_list_chats(struct http_ctx *ctx);
void chat_get_chat(struct http_ctx *ctx);
void chat_create_message(struct http_ctx *ctx);
void chat_update_message(struct http_ctx *ctx);
void chat_list_messages(struct http_ctx *ctx);
void chat_get_message(struct http_ctx *ctx);
void chat_search_messages(struct http_ctx *ctx);

#endif
