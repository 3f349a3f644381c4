/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* A participant that closes its connection in the middle of a file must fail that delivery,
 * not end the host. This host leaves SIGPIPE at its default action (which ends the process),
 * as a C program does unless it says otherwise: the engine's threads must not let a write to a
 * closed connection raise it. run.sh starts tests/c/hangup_peer.py, which reads part of the file,
 * then shuts its side and closes: the engine's next writes meet EPIPE. Without the engine's
 * SIGPIPE mask this process ended with signal 13 (exit 141) in 3 of 3 runs.
 *
 * Environment: TEST_DIR (a fresh folder), TEST_FILE (the file to send, several MiB), RECV_URI
 * (the receiver's MSRP URI, msrp://127.0.0.1:PORT/SESSION;tcp). */
#include <poll.h>
#include <signal.h>

#include "common.h"

/* Waits until the whole file is in the spool, so that the engine writes without pause. */
static void wait_spooled(msrpcast_engine *e)
{
    wait_for_status(e, MSRPCAST_STATUS_TRANSFERS, "\"sha1\":\"", 30000, 10,
                    "the file was not spooled in 30 s");
}

int main(void)
{
    const char *dir = env_or_die("TEST_DIR");
    const char *file = env_or_die("TEST_FILE");
    const char *uri = env_or_die("RECV_URI");
    const char *port = strrchr(uri, ':');
    char spool[512], up[512], sdp[1024], *slash;
    msrpcast_config *cfg = NULL;
    msrpcast_engine *e = NULL;
    uint64_t transfer = 0;
    int fd = -1, ended = 0;
    double t0;

    signal(SIGPIPE, SIG_DFL);
    if (port == NULL)
        FAIL("bad receiver URI %s", uri);
    snprintf(spool, sizeof spool, "%s/spool", dir);
    snprintf(up, sizeof up, "%s", file);
    slash = strrchr(up, '/');
    if (slash == NULL || slash == up)
        FAIL("TEST_FILE %s must be an absolute path in a folder", file);
    *slash = '\0';
    snprintf(sdp, sizeof sdp,
             "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
             "m=message %d TCP/MSRP *\r\na=accept-types:*\r\na=path:%s\r\na=recvonly\r\n",
             atoi(port + 1), uri);

    CHECK(msrpcast_config_new(&cfg));
    set_or_die(cfg, "spool_dir", spool);
    set_or_die(cfg, "msrp_listen", "127.0.0.1:0");
    set_or_die(cfg, "http_enabled", "no");
    set_or_die(cfg, "control_socket", "");
    set_or_die(cfg, "upload_dir", up);
    set_or_die(cfg, "resume_retries", "0");
    /* A window far larger than what the receiver takes before closing: the engine is still
     * writing when the connection goes. */
    set_or_die(cfg, "window_bytes", "16MiB");
    CHECK(msrpcast_config_validate(cfg));
    CHECK(msrpcast_engine_start(cfg, &e));
    CHECK(msrpcast_engine_signal_fd(e, &fd));
    CHECK(msrpcast_engine_join(e, S("room"), S("p"), S("sip:p@127.0.0.1"), NULL, 0));
    wait_for_status(e, MSRPCAST_STATUS_CONFERENCES, "\"p\"", 5000, 5,
                    "participant did not arrive");
    CHECK(msrpcast_engine_upload_file(e, S("room"), file, strlen(file), &transfer));

    /* Answer the OFFER; the failed delivery's session ends with a BYE. */
    t0 = now_ms();
    while (!ended) {
        struct pollfd p = {fd, POLLIN, 0};
        msrpcast_signal *s = NULL;
        if (now_ms() - t0 > 60000)
            FAIL("timed out waiting for the delivery to end");
        if (poll(&p, 1, 500) < 0)
            FAIL("poll failed");
        while (msrpcast_engine_next_signal(e, &s) == MSRPCAST_OK) {
            uint64_t d = msrpcast_signal_delivery(s);
            if (msrpcast_signal_kind(s) == MSRPCAST_SIGNAL_OFFER) {
                wait_spooled(e);
                CHECK(msrpcast_engine_answered(e, d, sdp, strlen(sdp)));
            }
            else if (msrpcast_signal_kind(s) == MSRPCAST_SIGNAL_BYE) {
                CHECK(msrpcast_engine_ended(e, d));
                ended = 1;
            }
            msrpcast_signal_free(s);
            s = NULL;
        }
    }
    {
        char *json = NULL;
        size_t len = 0;
        CHECK(msrpcast_engine_status(e, MSRPCAST_STATUS_TRANSFERS, &json, &len));
        if (strstr(json, "\"state\":\"failed\"") == NULL)
            FAIL("the delivery did not fail: %s", json);
        printf("peer_gone: the participant closed mid-file, the delivery failed, the host lives: "
               "%.200s\n",
               strstr(json, "\"deliveries\"") ? strstr(json, "\"deliveries\"") : json);
        msrpcast_string_free(json);
    }
    CHECK(msrpcast_engine_stop(e));
    msrpcast_engine_free(e);
    msrpcast_config_free(cfg);
    return 0;
}
