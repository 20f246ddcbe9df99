/* routes.c - the dispatcher's route table. The first route whose pattern
 * and method match wins, so literal segments ("search") come before a
 * {parameter} in the same position. The name labels the route's metrics. */
#include "app_api.h"
#include "chat_api.h"
#include "notify_api.h"
#include "ops_api.h"
#include "phonebook_api.h"
#include "sms_api.h"

#define APP "/api/v1/applications/{token}"
#define CHAT APP "/chats/{chat}"

#define R(method, path, fn, name, access) {method, path, fn, name, access, NULL, NULL, NULL, NULL}

struct route dispatcher_routes[] = {
    R("GET", "/healthz", ops_healthz, "healthz", ACCESS_OPEN),
    R("GET", "/readyz", ops_readyz, "readyz", ACCESS_OPEN),
    R("GET", "/metrics", ops_metrics, "metrics", ACCESS_OPEN),
    R("POST", "/ops/ping", ops_ping, "ops_ping", ACCESS_ADMIN),
    R("POST", "/api/v1/applications", app_create, "app_create", ACCESS_ADMIN),
    R("GET", "/api/v1/applications", app_list, "app_list", ACCESS_ADMIN),
    R("GET", APP, app_get, "app_get", ACCESS_APP),
    R("PUT", APP, app_rename, "app_update", ACCESS_ADMIN),
    R("POST", APP "/chats", chat_create_chat, "chat_create", ACCESS_APP),
    R("GET", APP "/chats", chat_list_chats, "chat_list", ACCESS_APP),
    R("GET", CHAT, chat_get_chat, "chat_get", ACCESS_APP),
    R("POST", CHAT "/messages/search", chat_search_messages, "message_search", ACCESS_APP),
    R("GET", CHAT "/messages/search", chat_search_messages, "message_search", ACCESS_APP),
    R("POST", CHAT "/messages", chat_create_message, "message_create", ACCESS_APP),
    R("GET", CHAT "/messages", chat_list_messages, "message_list", ACCESS_APP),
    R("GET", CHAT "/messages/{message}", chat_get_message, "message_get", ACCESS_APP),
    R("PUT", CHAT "/messages/{message}", chat_update_message, "message_update", ACCESS_APP),
    R("GET", "/phonebook/find/{phone}", pb_find, "phonebook_find", ACCESS_ADMIN),
    R("POST", "/phonebook/reserve", pb_reserve, "phonebook_reserve", ACCESS_ADMIN),
    R("POST", "/phonebook/assign", pb_assign, "phonebook_assign", ACCESS_ADMIN),
    R("POST", "/sms/send/one", sms_send_one, "sms_send_one", ACCESS_ADMIN),
    R("POST", "/sms/send/many", sms_send_many, "sms_send_many", ACCESS_ADMIN),
    R("GET", "/sms/requests/{tracking}", sms_request_get, "sms_request_get", ACCESS_ADMIN),
    R("POST", "/v1/messages", notify_create, "notify_create", ACCESS_ADMIN),
    R("GET", "/v1/messages/{id}", notify_get, "notify_get", ACCESS_ADMIN),
};
const size_t dispatcher_nroutes = sizeof dispatcher_routes / sizeof dispatcher_routes[0];
