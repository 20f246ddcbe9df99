/* routes.c - the dispatcher's route table. The first route whose pattern
 * and method match wins, so literal segments ("search") come before a
 * {parameter} in the same position. The name labels the route's metrics. */
#include "chat_api.h"
#include "notify_api.h"
#include "ops_api.h"
#include "phonebook_api.h"
#include "sms_api.h"

#define APP "/api/v1/applications/{token}"
#define CHAT APP "/chats/{chat}"

#define R(method, path, fn, name) {method, path, fn, name, NULL, NULL, NULL, NULL}

struct route dispatcher_routes[] = {
    R("GET", "/healthz", ops_healthz, "healthz"),
    R("GET", "/readyz", ops_readyz, "readyz"),
    R("GET", "/metrics", ops_metrics, "metrics"),
    R("POST", "/ops/ping", ops_ping, "ops_ping"),
    R("POST", "/api/v1/applications", chat_create_app, "app_create"),
    R("GET", "/api/v1/applications", chat_list_apps, "app_list"),
    R("GET", APP, chat_get_app, "app_get"),
    R("PUT", APP, chat_rename_app, "app_update"),
    R("POST", APP "/chats", chat_create_chat, "chat_create"),
    R("GET", APP "/chats", chat_list_chats, "chat_list"),
    R("GET", CHAT, chat_get_chat, "chat_get"),
    R("POST", CHAT "/messages/search", chat_search_messages, "message_search"),
    R("GET", CHAT "/messages/search", chat_search_messages, "message_search"),
    R("POST", CHAT "/messages", chat_create_message, "message_create"),
    R("GET", CHAT "/messages", chat_list_messages, "message_list"),
    R("GET", CHAT "/messages/{message}", chat_get_message, "message_get"),
    R("PUT", CHAT "/messages/{message}", chat_update_message, "message_update"),
    R("GET", "/phonebook/find/{phone}", pb_find, "phonebook_find"),
    R("POST", "/phonebook/reserve", pb_reserve, "phonebook_reserve"),
    R("POST", "/phonebook/assign", pb_assign, "phonebook_assign"),
    R("POST", "/sms/send/one", sms_send_one, "sms_send_one"),
    R("POST", "/sms/send/many", sms_send_many, "sms_send_many"),
    R("GET", "/sms/requests/{tracking}", sms_request_get, "sms_request_get"),
    R("POST", "/v1/messages", notify_create, "notify_create"),
    R("GET", "/v1/messages/{id}", notify_get, "notify_get"),
};
const size_t dispatcher_nroutes = sizeof dispatcher_routes / sizeof dispatcher_routes[0];
