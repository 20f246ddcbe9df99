/* phone.h - phone number rules shared by the API, the jobs and the seed.
 *
 * Numbers are E.164: '+', a first digit 1-9, 8 to 15 digits in all. Area
 * codes are North American style: three digits, the first 2-9. Redis keys
 * of the phonebook live here too, since the dispatcher, the phonebook
 * worker and the seed all touch them. */
#ifndef SB_PHONE_H
#define SB_PHONE_H

#include <stdbool.h>
#include <stddef.h>

#define PHONE_MAX 16 /* '+' and 15 digits */
#define PB_POOL_LOADED_KEY "pb:loaded"
/* Counts the additions of numbers to MySQL (seeds). An adder bumps it and
 * drops pb:loaded in one step; a rebuild sets pb:loaded only if it is
 * unchanged since the rebuild began reading MySQL, so a seed that lands
 * mid-rebuild is never marked as loaded without its numbers. */
#define PB_POOL_GEN_KEY "pb:gen"
/* Hash of the numbers taken by assignments: number -> state.
 *   P  an assign in flight (Kafka has not acknowledged it): not assigned yet;
 *   A  acknowledged, MySQL not yet written (the worker may still refuse it);
 *   C  MySQL holds it as assigned: true for good, so loops may cache it.
 * Every state keeps the number out of the pools (pbpool.c). */
#define PB_HELD_KEY "pb:held"
/* "pb:user:<user id>" -> the number an assign gave or is giving the user,
 * so a second concurrent assign for the user is refused (409) before it is
 * enqueued. Expires after PB_USER_CLAIM_TTL_S: by then MySQL has it. */
#define PB_USER_KEY_PREFIX "pb:user:"
#define PB_USER_CLAIM_TTL_S 86400
/* "pb:absent:<number>": MySQL said a moment ago that nobody has the
 * number (for find_negative_ttl_ms). Read only when pb:held has nothing
 * for the number, and written only if it still has nothing, so an assign
 * outranks it on every dispatcher at once. */
#define PB_ABSENT_KEY_PREFIX "pb:absent:"
#define PB_EXPIRY_KEY "pb:expiry"

/* Redis set of the free numbers of one area code: "pb:pool:<ac>". */
#define PB_POOL_KEY_LEN 16

bool phone_valid(const char *s);
/* The pool key of an area code (three digits; the Lua scripts of
 * phonebook_api.c and workers/phonebook.c spell it "pb:pool:" .. ac). */
void area_pool_key(const char *area_code, char out[PB_POOL_KEY_LEN]);
/* The pool key of a valid phone number: its area code is the three digits
 * after "+" and the first digit. */
void phone_pool_key(const char *phone, char out[PB_POOL_KEY_LEN]);
bool area_code_valid_n(const char *s, size_t n);
bool area_code_valid(const char *s);

#endif
