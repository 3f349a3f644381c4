/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* The whole signalling port from C: start an engine, join two participants through a client
 * handle, spool a file, drain the signal descriptor with poll(), answer each OFFER with an SDP
 * pointing at an `msrpcast receive` started by run.sh, end each session on BYE, and check the
 * deliveries are done. run.sh then compares the receivers' files with the source (SHA-1).
 *
 * Environment: TEST_DIR (a fresh folder), TEST_FILE (the file to send), RECV1_URI and RECV2_URI
 * (the receivers' MSRP URIs, msrp://127.0.0.1:PORT/SESSION;tcp). */
#include <poll.h>

#include "common.h"

static void sdp_for(const char *uri, char *out, size_t cap)
{
    /* uri = msrp://127.0.0.1:PORT/SESSION;tcp */
    const char *port = strrchr(uri, ':');
    int n;
    if (port == NULL)
        FAIL("bad receiver URI %s", uri);
    n = snprintf(out, cap,
                 "v=0\r\n"
                 "o=- 1 1 IN IP4 127.0.0.1\r\n"
                 "s=-\r\n"
                 "c=IN IP4 127.0.0.1\r\n"
                 "t=0 0\r\n"
                 "m=message %d TCP/MSRP *\r\n"
                 "a=accept-types:*\r\n"
                 "a=path:%s\r\n"
                 "a=recvonly\r\n",
                 atoi(port + 1), uri);
    if (n <= 0 || (size_t)n >= cap)
        FAIL("SDP too long");
}

int main(void)
{
    const char *dir = env_or_die("TEST_DIR");
    const char *file = env_or_die("TEST_FILE");
    const char *uri1 = env_or_die("RECV1_URI");
    const char *uri2 = env_or_die("RECV2_URI");
    char spool[512], sock[512], sdp[1024];
    msrpcast_config *cfg = NULL;
    msrpcast_engine *e = NULL;
    msrpcast_client *c = NULL;
    int fd = -1, offers = 0, byes = 0, logs = 0;
    uint64_t transfer = 0;
    double t0;

    snprintf(spool, sizeof spool, "%s/spool", dir);
    snprintf(sock, sizeof sock, "%s/run/control.sock", dir);

    CHECK(msrpcast_config_new(&cfg));
    set_or_die(cfg, "spool_dir", spool);
    set_or_die(cfg, "msrp_listen", "127.0.0.1:0");
    set_or_die(cfg, "http_enabled", "no");
    set_or_die(cfg, "control_socket", sock);
    set_or_die(cfg, "io_threads", "2");
    set_or_die(cfg, "log_level", "debug");
    set_or_die(cfg, "sender_uri", "sip:files@127.0.0.1");
    {
        /* upload_file sends only files inside upload_dir: the folder of TEST_FILE. */
        char up[512];
        char *slash;
        snprintf(up, sizeof up, "%s", file);
        slash = strrchr(up, '/');
        if (slash == NULL || slash == up)
            FAIL("TEST_FILE %s must be an absolute path in a folder", file);
        *slash = '\0';
        set_or_die(cfg, "upload_dir", up);
    }
    CHECK(msrpcast_config_validate(cfg));
    CHECK(msrpcast_engine_start(cfg, &e));
    CHECK(msrpcast_engine_signal_fd(e, &fd));
    if (fd < 0)
        FAIL("bad signal fd %d", fd);

    /* A client as a SIP worker would hold one, reaching the engine over the control socket. */
    CHECK(msrpcast_client_open(sock, strlen(sock), &c));
    CHECK(msrpcast_client_join(c, S("room"), S("alice"), S("sip:alice@127.0.0.1"), S("Alice")));
    CHECK(msrpcast_client_join(c, S("room"), S("bob"), S("sip:bob@127.0.0.1"), NULL, 0));

    /* Joins are queued: wait until the roster shows both, asking once through the client. */
    t0 = now_ms();
    for (;;) {
        char *json = NULL;
        size_t len = 0;
        int both;
        CHECK(msrpcast_client_status(c, MSRPCAST_STATUS_CONFERENCES, 2000, &json, &len));
        both = strstr(json, "\"alice\"") != NULL && strstr(json, "\"bob\"") != NULL;
        msrpcast_string_free(json);
        if (both)
            break;
        if (now_ms() - t0 > 5000)
            FAIL("participants did not arrive");
        sleep_ms(5);
    }

    /* Chosen recipients (issue 13): a key that is not a participant is refused, directly and
     * through the client (with the key named in the reply); no transfer is made. */
    {
        const char *keys[2] = {"alice", "carol"};
        size_t lens[2] = {5, 5};
        char *json = NULL;
        size_t len = 0;
        uint64_t none = 0;
        EXPECT(msrpcast_engine_upload_file_to(e, S("room"), file, strlen(file), keys, lens, 2,
                                              &none),
               MSRPCAST_ERR_INVALID_VALUE);
        EXPECT(msrpcast_engine_upload_file_to(e, S("room"), file, strlen(file), keys, lens, 0,
                                              &none),
               MSRPCAST_ERR_INVALID_VALUE);
        EXPECT(msrpcast_engine_upload_file_to(e, S("room"), file, strlen(file), NULL, lens, 1,
                                              &none),
               MSRPCAST_ERR_NULL_ARGUMENT);
        if (none != 0)
            FAIL("transfer id written on a refusal");
        EXPECT(msrpcast_client_upload_to(c, S("room"), file, strlen(file), keys, lens, 2, 2000,
                                         &json, &len),
               MSRPCAST_ERR_INVALID_VALUE);
        if (json == NULL || strstr(json, "carol") == NULL)
            FAIL("refusal does not name the key: %s", json ? json : "(none)");
        msrpcast_string_free(json);
    }

    CHECK(msrpcast_engine_upload_file(e, S("room"), file, strlen(file), &transfer));
    if (transfer == 0)
        FAIL("no transfer id");
    fprintf(stderr, "transfer %llu started\n", (unsigned long long)transfer);

    /* The host's loop: poll the descriptor, then take signals until EMPTY. */
    t0 = now_ms();
    while (byes < 2) {
        struct pollfd p = {fd, POLLIN, 0};
        msrpcast_signal *s = NULL;
        msrpcast_result r;
        if (now_ms() - t0 > 60000)
            FAIL("timed out: %d offers, %d byes", offers, byes);
        if (poll(&p, 1, 500) < 0)
            FAIL("poll failed");
        while ((r = msrpcast_engine_next_signal(e, &s)) == MSRPCAST_OK) {
            const char *ptr;
            size_t len;
            uint64_t d = msrpcast_signal_delivery(s);
            switch (msrpcast_signal_kind(s)) {
            case MSRPCAST_SIGNAL_OFFER:
                offers++;
                msrpcast_signal_target(s, &ptr, &len);
                fprintf(stderr, "OFFER delivery %llu to %.*s\n", (unsigned long long)d, (int)len,
                        ptr);
                sdp_for(strncmp(ptr, "sip:alice@", 10) == 0 ? uri1 : uri2, sdp, sizeof sdp);
                msrpcast_signal_sdp(s, &ptr, &len);
                if (len == 0 || strstr(ptr, "m=message") == NULL)
                    FAIL("offer without an MSRP media line");
                msrpcast_signal_sender(s, &ptr, &len);
                if (len != strlen("sip:files@127.0.0.1") || memcmp(ptr, "sip:files@", 10) != 0)
                    FAIL("offer sender is %.*s", (int)len, ptr);
                CHECK(msrpcast_client_answered(c, d, sdp, strlen(sdp)));
                break;
            case MSRPCAST_SIGNAL_BYE:
                byes++;
                fprintf(stderr, "BYE delivery %llu\n", (unsigned long long)d);
                CHECK(msrpcast_client_ended(c, d));
                break;
            case MSRPCAST_SIGNAL_LOG:
                logs++;
                msrpcast_signal_text(s, &ptr, &len);
                fprintf(stderr, "log[%u] %.*s\n", (unsigned)msrpcast_signal_log_level(s),
                        (int)len, ptr);
                break;
            default:
                FAIL("unknown signal kind %u", (unsigned)msrpcast_signal_kind(s));
            }
            msrpcast_signal_free(s);
            s = NULL;
        }
        if (r != MSRPCAST_EMPTY)
            FAIL("next_signal returned %s", msrpcast_result_name(r));
    }
    if (offers != 2)
        FAIL("%d offers, expected 2", offers);
    if (logs == 0)
        FAIL("no log record reached the host");

    {
        char *json = NULL;
        size_t len = 0;
        int done;
        CHECK(msrpcast_engine_status(e, MSRPCAST_STATUS_TRANSFERS, &json, &len));
        if (json == NULL || strlen(json) != len)
            FAIL("status string and length disagree");
        done = count_of(json, "\"state\":\"done\"");
        if (done != 2)
            FAIL("expected 2 done deliveries: %s", json);
        msrpcast_string_free(json);
    }
    {
        msrpcast_stats st;
        memset(&st, 0xff, sizeof st);
        /* The last ENDED may still be in the control socket. */
        t0 = now_ms();
        do {
            CHECK(msrpcast_engine_stats(e, &st));
            if (st.ended == 2)
                break;
            sleep_ms(2);
        } while (now_ms() - t0 < 5000);
        if (st.joins != 2 || st.answered != 2 || st.ended != 2 || st.uploads != 1 ||
            st.malformed != 0 || st.dropped != 0)
            FAIL("stats: joins %llu answered %llu ended %llu uploads %llu malformed %llu",
                 (unsigned long long)st.joins, (unsigned long long)st.answered,
                 (unsigned long long)st.ended, (unsigned long long)st.uploads,
                 (unsigned long long)st.malformed);
    }

    /* Stop: the control socket goes away, the handle stays usable for errors only. */
    CHECK(msrpcast_engine_stop(e));
    EXPECT(msrpcast_client_join(c, S("room"), S("carol"), S("sip:carol@x"), NULL, 0),
           MSRPCAST_ERR_UNREACHABLE);
    EXPECT(msrpcast_engine_join(e, S("room"), S("carol"), S("sip:carol@x"), NULL, 0),
           MSRPCAST_ERR_STOPPED);
    msrpcast_client_free(c);
    msrpcast_engine_free(e);
    msrpcast_config_free(cfg);
    printf("engine_roundtrip: 2 offers answered, 2 deliveries done, 2 byes, %d log records\n",
           logs);
    return 0;
}
