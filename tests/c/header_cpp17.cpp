/* SPDX-License-Identifier: MIT OR Apache-2.0 */
// The header compiles as C++17 with -Wall -Wextra -Werror -pedantic.
#include "msrpcast.h"

#include <cstdint>
#include <type_traits>

static_assert(MSRPCAST_OK == 0, "MSRPCAST_OK");
static_assert(MSRPCAST_ERR_UNREACHABLE == 2002, "MSRPCAST_ERR_UNREACHABLE");
static_assert(MSRPCAST_MAX_MESSAGE_BYTES == 65536, "MSRPCAST_MAX_MESSAGE_BYTES");
static_assert(sizeof(msrpcast_result) == sizeof(std::uint32_t), "result is 32 bits");
static_assert(std::is_standard_layout<msrpcast_stats>::value, "stats is a C struct");

int main()
{
    msrpcast_engine *e = nullptr;
    msrpcast_engine_free(e);
    return msrpcast_version() != nullptr ? 0 : 1;
}
