/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* Helpers shared by the C tests of msrpcast's C ABI. */
#ifndef MSRPCAST_TEST_COMMON_H
#define MSRPCAST_TEST_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "msrpcast.h"

#define S(lit) (lit), (sizeof(lit) - 1)

#define FAIL(...)                                                                              \
    do {                                                                                       \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                        \
        fprintf(stderr, __VA_ARGS__);                                                          \
        fprintf(stderr, "\n");                                                                 \
        exit(1);                                                                               \
    } while (0)

/* Expects a call to return `want`. */
#define EXPECT(call, want)                                                                     \
    do {                                                                                       \
        msrpcast_result r_ = (call);                                                           \
        if (r_ != (msrpcast_result)(want))                                                     \
            FAIL("%s returned %s, expected %s", #call, msrpcast_result_name(r_),               \
                 msrpcast_result_name(want));                                                  \
    } while (0)

#define CHECK(call) EXPECT(call, MSRPCAST_OK)

static inline void set_or_die(msrpcast_config *cfg, const char *key, const char *value)
{
    msrpcast_result r = msrpcast_config_set(cfg, key, strlen(key), value, strlen(value));
    if (r != MSRPCAST_OK) {
        const char *msg = "";
        size_t len = 0;
        msrpcast_config_error(cfg, &msg, &len);
        FAIL("config %s=%s: %s: %.*s", key, value, msrpcast_result_name(r), (int)len, msg);
    }
}

static inline const char *env_or_die(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0')
        FAIL("environment variable %s is not set", name);
    return v;
}

static inline double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Counts non-overlapping occurrences of `needle` in `hay`. */
static inline int count_of(const char *hay, const char *needle)
{
    int n = 0;
    size_t off = 0, l = strlen(needle), total = strlen(hay);
    while (off < total) {
        const char *p = strstr(hay + off, needle);
        if (p == NULL)
            break;
        n++;
        off = (size_t)(p - hay) + l;
    }
    return n;
}

/* Waits until the engine's status `what` (MSRPCAST_STATUS_*) contains `needle`, asking every
 * `every_ms`; fails saying `why` after `timeout_ms`. */
static inline void wait_for_status(msrpcast_engine *e, uint32_t what, const char *needle,
                                   double timeout_ms, long every_ms, const char *why)
{
    double t0 = now_ms();
    for (;;) {
        char *json = NULL;
        size_t len = 0;
        int there;
        CHECK(msrpcast_engine_status(e, what, &json, &len));
        there = strstr(json, needle) != NULL;
        msrpcast_string_free(json);
        if (there)
            return;
        if (now_ms() - t0 > timeout_ms)
            FAIL("%s (no %s in the status after %.0f ms)", why, needle, timeout_ms);
        sleep_ms(every_ms);
    }
}

#endif
