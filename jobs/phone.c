/* phone.c - see phone.h. */
#include "phone.h"

#include <stdio.h>
#include <string.h>

bool phone_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 9 || n > PHONE_MAX || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return false;
    for (size_t i = 2; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

bool area_code_valid_n(const char *s, size_t n)
{
    return n == 3 && s[0] >= '2' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' &&
           s[2] <= '9';
}

bool area_code_valid(const char *s)
{
    return area_code_valid_n(s, strlen(s));
}

void area_pool_key(const char *area_code, char out[PB_POOL_KEY_LEN])
{
    snprintf(out, PB_POOL_KEY_LEN, "pb:pool:%.3s", area_code);
}

void phone_pool_key(const char *phone, char out[PB_POOL_KEY_LEN])
{
    area_pool_key(phone + 2, out);
}
