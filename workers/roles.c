/* roles.c - the worker roles and what each does with its jobs.
 *
 * Each role is a consumer group ("switchboard-<role>") over its topics, so
 * several processes of one role share the partitions and every role sees
 * every job of its topics. Jobs of types a role does not act on pass
 * through (they are another role's business on the same topic). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "indexer.h"
#include "notifier.h"
#include "persister.h"
#include "phonebook.h"
#include "worker.h"

static const char *const chat_topics[] = {"chat.commands"};
static const char *const notify_topics[] = {"notify.requests", "notify.retry"};
static const char *const phonebook_topics[] = {"phonebook.commands"};
static const char *const phonebook_types[] = {"phonebook.assign"};
static const char *const notifier_types[] = {"notify.send"};
static const char *const indexer_types[] = {"message.create", "message.update"};
static const char *const persister_types[] = {"system.ping", "chat.create", "message.create",
                                              "message.update"};

static const struct role roles[] = {
    {"persister", chat_topics, 1, persister_types, 4, true, persister_handle, NULL, NULL, NULL,
     true, NULL, NULL},
    {"indexer", chat_topics, 1, indexer_types, 2, false, indexer_handle, NULL, indexer_prepare,
     NULL, true, NULL, NULL},
    {"notifier", notify_topics, 2, notifier_types, 1, true, notifier_handle, NULL, notifier_prepare,
     notifier_finish, false /* defers retries */, notifier_revoked, notifier_turn},
    {"phonebook", phonebook_topics, 1, phonebook_types, 1, true, phonebook_handle, phonebook_tick,
     NULL, NULL, true, NULL, NULL},
};

const struct role *role_find(const char *name)
{
    for (size_t i = 0; i < SB_ARRAY_LEN(roles); i++)
        if (strcmp(roles[i].name, name) == 0)
            return &roles[i];
    return NULL;
}

const char *role_names(void)
{
    return "persister | indexer | notifier | phonebook";
}
