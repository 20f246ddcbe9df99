/* routes.c - the dispatcher's route table. The first route whose pattern
 * and method match wins, so literal segments ("search") come before a
 * {parameter} in the same position. The name labels the route's metrics. */
#include "app_api.h"
#include "chat_api.h"
#include "envelope.h"
#include "notify.h"
#include "notify_api.h"
#include "ops_api.h"
#include "callbacks_api.h"
#include "console.h"
#include "deadletter_api.h"
#include "phone.h"
#include "suppress_api.h"
#include "phonebook_api.h"
#include "sms_api.h"
#include "wsconn.h"

#define APP "/api/v1/applications/{token}"
#define CHAT APP "/chats/{chat}"

/* Body limits, from the fields' limits: a client may write any character
 * as a JSON escape, and one outside the BMP as two ("\ud83d\ude00": 12
 * bytes for one character), so a text field of N characters may take 12 N
 * bytes; a field bounded in bytes, 6 per byte ("\u00e9"). Python's json
 * module writes exactly that by default. */
#define ESC_CHAR 12
#define ESC_BYTE 6
#define SMALL ROUTE_BODY_SMALL /* no field beyond a few hundred characters */
#define MESSAGE (ESC_CHAR * MESSAGE_BODY_MAX + 1024)
#define SMS_ITEM (ESC_CHAR * SMS_CONTENT_MAX + ESC_BYTE * (NOTE_IDEM_MAX + 2 * PHONE_MAX) + 512)
#define NOTIFY (ESC_CHAR * (NOTE_BODY_MAX + NOTE_TITLE_MAX) + ESC_BYTE * (2 * NOTE_TO_MAX + NOTE_IDEM_MAX) + 1024)

#define R(method, path, fn, name, access, body) RQ(method, path, fn, name, access, body, NULL)
/* A route that takes query parameters: ",limit,after," */
#define RQ(method, path, fn, name, access, body, query) \
    {method, path, fn, name, access, body, query, NULL, NULL, NULL, NULL}

struct route dispatcher_routes[] = {
    R("GET", "/healthz", ops_healthz, "healthz", ACCESS_OPEN, SMALL),
    R("GET", "/readyz", ops_readyz, "readyz", ACCESS_OPEN, SMALL),
    R("GET", "/metrics", ops_metrics, "metrics", ACCESS_OPEN, SMALL),
    R("POST", "/ops/ping", ops_ping, "ops_ping", ACCESS_ADMIN, SMALL),
    R("GET", "/ops/console", console_page_get, "ops_console", ACCESS_OPEN, SMALL), /* the page; data needs the key */
    R("GET", "/ops/v1/overview", ops_overview, "ops_overview", ACCESS_READ, SMALL),
    RQ("GET", "/ops/v1/dead-letters", deadletter_list, "dead_letters", ACCESS_READ, SMALL,
       ",topic,reason,cause,type,application,since,until,limit,state,letters,"),
    RQ("POST", "/ops/v1/dead-letters/redrive", deadletter_redrive, "dead_letters_redrive", ACCESS_ADMIN, SMALL,
       ",topic,reason,cause,type,application,since,until,letters,"),
    RQ("POST", "/ops/v1/dead-letters/discard", deadletter_discard, "dead_letters_discard", ACCESS_ADMIN, SMALL,
       ",topic,reason,cause,type,application,since,until,letters,"),
    R("POST", "/api/v1/applications", app_create, "app_create", ACCESS_ADMIN, SMALL),
    RQ("GET", "/api/v1/applications", app_list, "app_list", ACCESS_ADMIN, SMALL, ",limit,after,"),
    R("GET", APP, app_get, "app_get", ACCESS_APP, SMALL),
    R("PUT", APP, app_rename, "app_update", ACCESS_ADMIN, SMALL),
    R("POST", APP "/chats", chat_create_chat, "chat_create", ACCESS_APP, SMALL),
    RQ("GET", APP "/chats", chat_list_chats, "chat_list", ACCESS_APP, SMALL, ",limit,after,"),
    R("GET", CHAT, chat_get_chat, "chat_get", ACCESS_APP, SMALL),
    RQ("POST", CHAT "/messages/search", chat_search_messages, "message_search", ACCESS_APP, SMALL, ",limit,page,"),
    RQ("GET", CHAT "/messages/search", chat_search_messages, "message_search", ACCESS_APP, SMALL, ",q,limit,page,"),
    R("POST", CHAT "/messages", chat_create_message, "message_create", ACCESS_APP, MESSAGE),
    RQ("GET", CHAT "/messages", chat_list_messages, "message_list", ACCESS_APP, SMALL, ",limit,after,"),
    R("GET", CHAT "/messages/{message}", chat_get_message, "message_get", ACCESS_APP, SMALL),
    R("PUT", CHAT "/messages/{message}", chat_update_message, "message_update", ACCESS_APP, MESSAGE),
    R("GET", "/phonebook/find/{phone}", pb_find, "phonebook_find", ACCESS_ADMIN, SMALL),
    R("POST", "/phonebook/reserve", pb_reserve, "phonebook_reserve", ACCESS_ADMIN, SMALL),
    R("POST", "/phonebook/assign", pb_assign, "phonebook_assign", ACCESS_ADMIN, SMALL),
    R("POST", "/sms/send/one", sms_send_one, "sms_send_one", ACCESS_ADMIN, SMS_ITEM),
    R("POST", "/sms/send/many", sms_send_many, "sms_send_many", ACCESS_ADMIN, ROUTE_BODY_PER_SMS),
    R("GET", "/sms/requests/{tracking}", sms_request_get, "sms_request_get", ACCESS_READ, SMALL),
    R("GET", "/ws", ws_commands, "ws", ACCESS_OPEN, SMALL), /* authenticates itself (wsconn.c) */
    R("GET", "/ws/echo", ws_echo, "ws_echo", ACCESS_OPEN, SMALL),
    R("POST", "/v1/messages", notify_create, "notify_create", ACCESS_ADMIN, NOTIFY),
    /* A provider's: its signature is the credential (callbacks_api.h). */
    R("POST", "/v1/callbacks/sms/{id}", callbacks_sms, "callbacks_sms", ACCESS_OPEN, SMALL),
    R("POST", "/v1/inbound/sms", callbacks_inbound_sms, "inbound_sms", ACCESS_OPEN, SMALL),
    R("POST", "/v1/callbacks/email", callbacks_email, "callbacks_email", ACCESS_OPEN, NOTIFY), /* with headers */
    RQ("GET", "/v1/suppressions", suppress_list_get, "suppress_list", ACCESS_READ, SMALL, ",address,limit,"),
    R("POST", "/v1/suppressions", suppress_add_post, "suppress_add", ACCESS_ADMIN, SMALL),
    RQ("DELETE", "/v1/suppressions", suppress_remove_delete, "suppress_remove", ACCESS_ADMIN, SMALL,
       ",channel,address,scope,"),
    RQ("GET", "/v1/messages", notify_find, "notify_find", ACCESS_READ, SMALL, ",idempotencyKey,"),
    R("GET", "/v1/webhooks/secret", notify_webhook_secret, "webhook_secret", ACCESS_ADMIN, SMALL),
    R("POST", "/v1/messages/{id}/cancel", notify_cancel, "notify_cancel", ACCESS_ADMIN, SMALL),
    R("GET", "/v1/messages/{id}", notify_get, "notify_get", ACCESS_READ, SMALL),
};
const size_t dispatcher_nroutes = sizeof dispatcher_routes / sizeof dispatcher_routes[0];
const size_t route_sms_item_body = SMS_ITEM;
