/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* Misuse from C: NULL handles and outputs, zero lengths, invalid UTF-8, oversize strings, bad
 * keys and values, calls after stop, frees of NULL. Each gives an error code, never a crash, and
 * outputs stay untouched on failure. */
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common.h"

/* A socket that never reads, standing in for an engine that cannot keep up: a client's calls
 * must come back with MSRPCAST_ERR_BUSY at once once its queue is full, never wait. */
static void busy_socket(const char *dir)
{
    struct sockaddr_un a;
    msrpcast_client *c = NULL;
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0), i, busy_at = -1;
    double worst = 0.0, limit = 5.0;
    /* Under valgrind every call is many times slower: run.sh raises the limit there. */
    const char *env = getenv("MSRPCAST_MAX_CALL_MS");
    if (env != NULL && atof(env) > 0.0)
        limit = atof(env);
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s/stuck.sock", dir);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0)
        FAIL("cannot bind %s", a.sun_path);
    CHECK(msrpcast_client_open(a.sun_path, strlen(a.sun_path), &c));
    for (i = 0; i < 100000 && busy_at < 0; i++) {
        double t0 = now_ms(), dt;
        msrpcast_result r = msrpcast_client_ended(c, (uint64_t)i);
        dt = now_ms() - t0;
        if (dt > worst)
            worst = dt;
        if (r == MSRPCAST_ERR_BUSY)
            busy_at = i;
        else if (r != MSRPCAST_OK)
            FAIL("send %d: %s", i, msrpcast_result_name(r));
    }
    if (busy_at < 0)
        FAIL("the socket never filled up");
    if (worst >= limit)
        FAIL("a call took %.3f ms (limit %.1f ms)", worst, limit);
    printf("misuse: full socket -> MSRPCAST_ERR_BUSY after %d datagrams, slowest call %.3f ms\n",
           busy_at, worst);
    msrpcast_client_free(c);
    close(fd);
    unlink(a.sun_path);
}

static const char bad_utf8[] = {'c', (char)0xff, 'x'};

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : env_or_die("TEST_DIR");
    char spool[512], sock[512];
    msrpcast_config *cfg = NULL, *sentinel = (msrpcast_config *)&argc;
    msrpcast_engine *e = NULL;
    msrpcast_client *c = NULL;
    msrpcast_signal *s = NULL;
    char *json = (char *)&argc;
    size_t len = 12345;
    int fd = -7;
    const char *msg = NULL;
    char *big;
    size_t big_len = (size_t)MSRPCAST_MAX_MESSAGE_BYTES + 1;

    snprintf(spool, sizeof spool, "%s/spool", dir);
    snprintf(sock, sizeof sock, "%s/control.sock", dir);

    /* Names. */
    if (strcmp(msrpcast_result_name(MSRPCAST_ERR_BUSY), "MSRPCAST_ERR_BUSY") != 0)
        FAIL("result name");
    if (strcmp(msrpcast_result_name(77777), "MSRPCAST_UNKNOWN_RESULT") != 0)
        FAIL("unknown result name");
    if (strncmp(msrpcast_version(), "msrpcast ", 9) != 0)
        FAIL("version %s", msrpcast_version());

    /* Config. */
    EXPECT(msrpcast_config_new(NULL), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_config_set(NULL, S("chunk_bytes"), S("1024")), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_config_validate(NULL), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_config_error(NULL, &msg, &len), MSRPCAST_ERR_NULL_ARGUMENT);
    CHECK(msrpcast_config_new(&cfg));
    EXPECT(msrpcast_config_set(cfg, NULL, 11, S("1024")), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_config_set(cfg, S("chunk_bytes"), NULL, 4), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_config_set(cfg, "chunk_bytes", 0, S("1024")), MSRPCAST_ERR_UNKNOWN_KEY);
    EXPECT(msrpcast_config_set(cfg, S("chunk_bytes"), "", 0), MSRPCAST_ERR_INVALID_VALUE);
    EXPECT(msrpcast_config_set(cfg, bad_utf8, sizeof bad_utf8, S("1")),
           MSRPCAST_ERR_INVALID_UTF8);
    EXPECT(msrpcast_config_set(cfg, S("sender_uri"), bad_utf8, sizeof bad_utf8),
           MSRPCAST_ERR_INVALID_UTF8);
    EXPECT(msrpcast_config_set(cfg, S("no_such_key"), S("1")), MSRPCAST_ERR_UNKNOWN_KEY);
    EXPECT(msrpcast_config_set(cfg, S("chunk_bytes"), S("0")), MSRPCAST_ERR_INVALID_VALUE);
    CHECK(msrpcast_config_error(cfg, &msg, &len));
    if (strstr(msg, "chunk_bytes") == NULL || strlen(msg) != len)
        FAIL("config error does not name the key: %.*s", (int)len, msg);
    EXPECT(msrpcast_config_error(cfg, NULL, &len), MSRPCAST_ERR_NULL_ARGUMENT);
    /* Settings that conflict only together. */
    set_or_die(cfg, "chunk_bytes", "8192");
    set_or_die(cfg, "window_bytes", "4096");
    EXPECT(msrpcast_config_validate(cfg), MSRPCAST_ERR_INVALID_CONFIG);
    CHECK(msrpcast_config_error(cfg, &msg, &len));
    if (strstr(msg, "window_bytes") == NULL)
        FAIL("validate error does not name the key: %s", msg);
    EXPECT(msrpcast_engine_start(cfg, &e), MSRPCAST_ERR_INVALID_CONFIG);
    if (e != NULL)
        FAIL("engine written on failure");
    set_or_die(cfg, "window_bytes", "1M");
    CHECK(msrpcast_config_validate(cfg));

    /* Engine start with NULLs; outputs untouched on failure. */
    EXPECT(msrpcast_engine_start(NULL, &e), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_engine_start(cfg, NULL), MSRPCAST_ERR_NULL_ARGUMENT);
    /* A spool folder that cannot be made: MSRPCAST_ERR_START with a reason. */
    set_or_die(cfg, "spool_dir", "/proc/msrpcast-no-such-dir/spool");
    set_or_die(cfg, "msrp_listen", "127.0.0.1:0");
    set_or_die(cfg, "http_enabled", "no");
    set_or_die(cfg, "control_socket", sock);
    EXPECT(msrpcast_engine_start(cfg, &e), MSRPCAST_ERR_START);
    CHECK(msrpcast_config_error(cfg, &msg, &len));
    if (len == 0 || e != NULL)
        FAIL("start failure without a reason or with an engine");
    set_or_die(cfg, "spool_dir", spool);
    set_or_die(cfg, "log_level", "error");
    set_or_die(cfg, "upload_dir", dir);
    {
        char up[600];
        FILE *f;
        snprintf(up, sizeof up, "%s/upload.txt", dir);
        f = fopen(up, "w");
        if (f == NULL || fputs("x", f) < 0 || fclose(f) != 0)
            FAIL("cannot write %s", up);
    }
    CHECK(msrpcast_engine_start(cfg, &e));

    /* TLS reload: no TLS on is refused with a reason; NULL error output is allowed. */
    {
        char *err = (char *)"untouched";
        size_t elen = 0;
        EXPECT(msrpcast_engine_reload_tls(NULL, &err, &elen), MSRPCAST_ERR_NULL_ARGUMENT);
        EXPECT(msrpcast_engine_reload_tls(e, &err, &elen), MSRPCAST_ERR_REFUSED);
        if (err == NULL || strstr(err, "msrp_tls") == NULL || strlen(err) != elen)
            FAIL("reload refusal without its reason");
        msrpcast_string_free(err);
        EXPECT(msrpcast_engine_reload_tls(e, NULL, NULL), MSRPCAST_ERR_REFUSED);
    }

    /* NULL engine handle everywhere. */
    EXPECT(msrpcast_engine_signal_fd(NULL, &fd), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_engine_signal_fd(e, NULL), MSRPCAST_ERR_NULL_ARGUMENT);
    if (fd != -7)
        FAIL("fd written on failure");
    EXPECT(msrpcast_engine_next_signal(NULL, &s), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_engine_next_signal(e, NULL), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_engine_join(NULL, S("c"), S("p"), S("sip:p@x"), NULL, 0),
           MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_engine_leave(NULL, S("c"), S("p")), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_engine_answered(NULL, 1, S("v=0")), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_engine_rejected(NULL, 1, 486), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_engine_ended(NULL, 1), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_engine_cancel(NULL, 1), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_engine_status(NULL, MSRPCAST_STATUS_ALL, &json, &len),
           MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_engine_stats(NULL, NULL), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_engine_upload_file(NULL, S("c"), S("/etc/hostname"), NULL),
           MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_engine_stop(NULL), MSRPCAST_ERR_NULL_ARGUMENT);

    /* Bad arguments on a live engine. */
    EXPECT(msrpcast_engine_join(e, "", 0, S("p"), S("sip:p@x"), NULL, 0),
           MSRPCAST_ERR_INVALID_VALUE);
    EXPECT(msrpcast_engine_join(e, S("c"), NULL, 1, S("sip:p@x"), NULL, 0),
           MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_engine_join(e, S("c"), bad_utf8, sizeof bad_utf8, S("sip:p@x"), NULL, 0),
           MSRPCAST_ERR_INVALID_UTF8);
    EXPECT(msrpcast_engine_join(e, S("c"), S("p"), S("sip:p@x"), bad_utf8, sizeof bad_utf8),
           MSRPCAST_ERR_INVALID_UTF8);
    EXPECT(msrpcast_engine_answered(e, 1, "", 0), MSRPCAST_ERR_INVALID_VALUE);
    EXPECT(msrpcast_engine_rejected(e, 1, 200), MSRPCAST_ERR_INVALID_VALUE);
    EXPECT(msrpcast_engine_rejected(e, 1, 70000), MSRPCAST_ERR_INVALID_VALUE);
    EXPECT(msrpcast_engine_cancel(e, 424242), MSRPCAST_ERR_UNKNOWN_TRANSFER);
    len = 12345;
    EXPECT(msrpcast_engine_status(e, 99, &json, &len), MSRPCAST_ERR_INVALID_VALUE);
    EXPECT(msrpcast_engine_status(e, MSRPCAST_STATUS_ALL, NULL, &len),
           MSRPCAST_ERR_NULL_ARGUMENT);
    if (json != (char *)&argc || len != 12345)
        FAIL("status outputs written on failure");
    EXPECT(msrpcast_engine_upload_file(e, S("nobody-here"), S("upload.txt"), NULL),
           MSRPCAST_ERR_UNKNOWN_CONFERENCE);
    /* Only files inside upload_dir (issue 14 finding 9). */
    EXPECT(msrpcast_engine_upload_file(e, S("c"), S("/etc/hostname"), NULL),
           MSRPCAST_ERR_FORBIDDEN);
    EXPECT(msrpcast_engine_upload_file(e, S("c"), S("../../etc/hostname"), NULL),
           MSRPCAST_ERR_FORBIDDEN);
    EXPECT(msrpcast_engine_upload_file(e, S("c"), S("/nonexistent/file"), NULL),
           MSRPCAST_ERR_FORBIDDEN);
    EXPECT(msrpcast_engine_upload_file(e, S("c"), S("missing.txt"), NULL), MSRPCAST_ERR_IO);
    big = malloc(big_len);
    if (big == NULL)
        FAIL("malloc");
    memset(big, 'a', big_len);
    EXPECT(msrpcast_engine_answered(e, 1, big, big_len), MSRPCAST_ERR_TOO_LONG);

    /* Signals: NULL accessors are empty. */
    if (msrpcast_signal_kind(NULL) != MSRPCAST_SIGNAL_NONE || msrpcast_signal_delivery(NULL) != 0 ||
        msrpcast_signal_log_level(NULL) != MSRPCAST_LOG_NONE)
        FAIL("NULL signal accessors");
    {
        const char *p = NULL;
        size_t n = 99;
        msrpcast_signal_sdp(NULL, &p, &n);
        if (p == NULL || n != 0)
            FAIL("NULL signal sdp");
        msrpcast_signal_text(NULL, NULL, NULL);
    }
    msrpcast_signal_free(NULL);
    msrpcast_string_free(NULL);

    /* Client. */
    EXPECT(msrpcast_client_open(NULL, 5, &c), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_client_open(sock, 0, &c), MSRPCAST_ERR_INVALID_VALUE);
    EXPECT(msrpcast_client_open(sock, strlen(sock), NULL), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_client_open(big, 200, &c), MSRPCAST_ERR_INVALID_VALUE);
    if (c != NULL)
        FAIL("client written on failure");
    EXPECT(msrpcast_client_join(NULL, S("c"), S("p"), S("sip:p@x"), NULL, 0),
           MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_client_leave(NULL, S("c"), S("p")), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_client_answered(NULL, 1, S("v=0")), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_client_rejected(NULL, 1, 486), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_client_ended(NULL, 1), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_client_cancel(NULL, 1), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_client_upload_file(NULL, S("c"), S("/x")), MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_client_upload(NULL, S("c"), S("/x"), 100, &json, &len),
           MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_client_status(NULL, 1, 100, &json, &len), MSRPCAST_ERR_NULL_ARGUMENT);
    CHECK(msrpcast_client_open(sock, strlen(sock), &c));
    EXPECT(msrpcast_client_join(c, S("c"), S("p"), "", 0, NULL, 0), MSRPCAST_ERR_INVALID_VALUE);
    EXPECT(msrpcast_client_join(c, bad_utf8, sizeof bad_utf8, S("p"), S("t"), NULL, 0),
           MSRPCAST_ERR_INVALID_UTF8);
    EXPECT(msrpcast_client_answered(c, 1, big, big_len), MSRPCAST_ERR_TOO_LONG);
    /* Each string fits, the whole message does not. */
    EXPECT(msrpcast_client_join(c, big, 40000, big, 40000, S("t"), NULL, 0),
           MSRPCAST_ERR_TOO_LONG);
    EXPECT(msrpcast_client_rejected(c, 1, 99), MSRPCAST_ERR_INVALID_VALUE);
    EXPECT(msrpcast_client_status(c, MSRPCAST_STATUS_ALL, 0, &json, &len),
           MSRPCAST_ERR_INVALID_VALUE);
    EXPECT(msrpcast_client_status(c, 99, 2000, &json, &len), MSRPCAST_ERR_INVALID_VALUE);
    EXPECT(msrpcast_client_status(c, MSRPCAST_STATUS_ALL, 2000, NULL, &len),
           MSRPCAST_ERR_NULL_ARGUMENT);
    CHECK(msrpcast_client_status(c, MSRPCAST_STATUS_COUNTERS, 2000, &json, &len));
    if (strstr(json, "\"joins\"") == NULL ||
        strstr(json, "\"spool_read_ahead_peak_bytes\":") == NULL ||
        strstr(json, "\"spool_read_ahead_budget_bytes\":") == NULL)
        FAIL("counters: %s", json);
    msrpcast_string_free(json);
    json = NULL;
    /* An unknown delivery is queued and ignored by the engine. */
    CHECK(msrpcast_client_ended(c, 5));
    /* Upload through the control socket: answered, with the refusal's code and reason. */
    EXPECT(msrpcast_client_upload(c, S("c"), S("/etc/hostname"), 0, &json, &len),
           MSRPCAST_ERR_INVALID_VALUE);
    EXPECT(msrpcast_client_upload(c, S("c"), S("/etc/hostname"), 2000, NULL, &len),
           MSRPCAST_ERR_NULL_ARGUMENT);
    EXPECT(msrpcast_client_upload(c, S("nobody-here"), S("upload.txt"), 2000, &json, &len),
           MSRPCAST_ERR_UNKNOWN_CONFERENCE);
    if (json == NULL || strncmp(json, "{\"error\":\"", 10) != 0 || len != strlen(json))
        FAIL("upload refusal without its reason: %s", json ? json : "(null)");
    msrpcast_string_free(json);
    json = NULL;
    /* Outside upload_dir (issue 14 finding 9): refused, and the reason says why. */
    EXPECT(msrpcast_client_upload(c, S("c"), S("/etc/hostname"), 2000, &json, &len),
           MSRPCAST_ERR_FORBIDDEN);
    if (json == NULL || strstr(json, "outside upload_dir") == NULL)
        FAIL("forbidden upload without its reason: %s", json ? json : "(null)");
    msrpcast_string_free(json);
    json = NULL;

    busy_socket(dir);

    /* Calls after stop. */
    CHECK(msrpcast_engine_stop(e));
    CHECK(msrpcast_engine_stop(e));
    CHECK(msrpcast_engine_signal_fd(e, &fd));
    EXPECT(msrpcast_engine_next_signal(e, &s), MSRPCAST_ERR_STOPPED);
    EXPECT(msrpcast_engine_join(e, S("c"), S("p"), S("sip:p@x"), NULL, 0), MSRPCAST_ERR_STOPPED);
    EXPECT(msrpcast_engine_cancel(e, 1), MSRPCAST_ERR_STOPPED);
    EXPECT(msrpcast_engine_status(e, MSRPCAST_STATUS_ALL, &json, &len), MSRPCAST_ERR_STOPPED);
    EXPECT(msrpcast_engine_upload_file(e, S("c"), S("/etc/hostname"), NULL),
           MSRPCAST_ERR_STOPPED);
    EXPECT(msrpcast_client_join(c, S("c"), S("p"), S("sip:p@x"), NULL, 0),
           MSRPCAST_ERR_UNREACHABLE);
    EXPECT(msrpcast_client_status(c, MSRPCAST_STATUS_ALL, 100, &json, &len),
           MSRPCAST_ERR_UNREACHABLE);
    if (json != NULL)
        FAIL("status written on failure");
    EXPECT(msrpcast_client_upload(c, S("c"), S("/etc/hostname"), 100, &json, &len),
           MSRPCAST_ERR_UNREACHABLE);
    if (json != NULL)
        FAIL("upload answer written without an answer");

    /* Free, set to NULL, free again. */
    msrpcast_engine_free(e);
    e = NULL;
    msrpcast_engine_free(e);
    msrpcast_client_free(c);
    c = NULL;
    msrpcast_client_free(c);
    msrpcast_config_free(cfg);
    cfg = NULL;
    msrpcast_config_free(cfg);
    (void)sentinel;
    free(big);
    printf("misuse: every misuse answered with an error code\n");
    return 0;
}
