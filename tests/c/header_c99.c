/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* The header compiles as C99 with -Wall -Wextra -Werror -pedantic, and its constants and
 * signatures are the contract's. */
#include "msrpcast.h"

/* Compile-time checks of a few values of the contract (C99 has no static_assert). */
typedef char check_ok[MSRPCAST_OK == 0 ? 1 : -1];
typedef char check_empty[MSRPCAST_EMPTY == 1 ? 1 : -1];
typedef char check_busy[MSRPCAST_ERR_BUSY == 2000 ? 1 : -1];
typedef char check_panic[MSRPCAST_ERR_PANIC == 3001 ? 1 : -1];
typedef char check_offer[MSRPCAST_SIGNAL_OFFER == 1 ? 1 : -1];
typedef char check_bye[MSRPCAST_SIGNAL_BYE == 2 ? 1 : -1];
typedef char check_log[MSRPCAST_SIGNAL_LOG == 3 ? 1 : -1];
typedef char check_all[MSRPCAST_STATUS_ALL == 3 ? 1 : -1];
typedef char check_max[MSRPCAST_MAX_MESSAGE_BYTES == 65536 ? 1 : -1];
typedef char check_size[sizeof(msrpcast_result) == 4 ? 1 : -1];

int main(void)
{
    msrpcast_result (*join)(msrpcast_client *, const char *, size_t, const char *, size_t,
                            const char *, size_t, const char *, size_t) = msrpcast_client_join;
    msrpcast_result (*status)(msrpcast_client *, uint32_t, uint32_t, char **, size_t *) =
        msrpcast_client_status;
    (void)join;
    (void)status;
    return msrpcast_version() != NULL ? 0 : 1;
}
