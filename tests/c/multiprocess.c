/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* Many processes, one engine: the children are forked first (as Kamailio forks its workers),
 * the parent then starts the engine; each of 8 children opens its own client handle and sends
 * 1000 join/leave pairs. A full socket answers MSRPCAST_ERR_BUSY at once: the child retries and
 * counts it. Every call is timed; a call that was not descheduled must take under 5 ms (a very
 * few exceptions tolerated, see the end of main). The parent checks that the engine counted all
 * 16000 events. */
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#define CHILDREN 8
#define PAIRS 1000
#define MAX_CALL_MS 5.0
#define PAUSE_US 20

struct report {
    unsigned long long calls, busy, blocked, preempted;
    unsigned long long slow; /* calls not descheduled that still took MAX_CALL_MS or more */
    double max_ms;           /* slowest call that ran without being descheduled */
    double max_preempted_ms; /* slowest call the scheduler preempted */
    int failed;
};

/* Each call is timed by the wall clock and checked with the process's context switches: a call
 * that waited for anything (a lock, a full socket) makes a voluntary switch, and counts as
 * blocked. A call the scheduler preempted (an involuntary switch: 8 processes share 2 cores
 * with the engine and whatever else runs) is timed separately, since its time is the run
 * queue's, not the library's. */
struct probe {
    double t;
    long nvcsw, nivcsw;
};

static struct probe probe_start(void)
{
    struct rusage u;
    struct probe p;
    getrusage(RUSAGE_SELF, &u);
    p.nvcsw = u.ru_nvcsw;
    p.nivcsw = u.ru_nivcsw;
    p.t = now_ms();
    return p;
}

static msrpcast_result probe_end(msrpcast_result r, struct probe p, struct report *rep)
{
    double dt = now_ms() - p.t;
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    rep->calls++;
    if (u.ru_nvcsw != p.nvcsw)
        rep->blocked++;
    if (u.ru_nivcsw != p.nivcsw) {
        rep->preempted++;
        if (dt > rep->max_preempted_ms)
            rep->max_preempted_ms = dt;
    } else {
        if (dt > rep->max_ms)
            rep->max_ms = dt;
        if (dt >= MAX_CALL_MS)
            rep->slow++;
    }
    return r;
}

static void child(int id, int go_fd, int report_fd, const char *sock)
{
    struct report rep = {0, 0, 0, 0, 0, 0.0, 0.0, 0};
    msrpcast_client *c = NULL;
    char conf[32], part[32], target[64], go;
    int i;

    if (read(go_fd, &go, 1) != 1)
        _exit(2);
    if (msrpcast_client_open(sock, strlen(sock), &c) != MSRPCAST_OK)
        _exit(3);
    snprintf(conf, sizeof conf, "conf-%d", id);
    for (i = 0; i < PAIRS; i++) {
        msrpcast_result r;
        snprintf(part, sizeof part, "p%d", i);
        snprintf(target, sizeof target, "sip:p%d-%d@127.0.0.1", id, i);
        for (;;) {
            struct probe p = probe_start();
            r = probe_end(msrpcast_client_join(c, conf, strlen(conf), part, strlen(part), target,
                                               strlen(target), NULL, 0),
                          p, &rep);
            if (r != MSRPCAST_ERR_BUSY)
                break;
            rep.busy++;
            usleep(200);
        }
        if (r != MSRPCAST_OK) {
            fprintf(stderr, "child %d: join: %s\n", id, msrpcast_result_name(r));
            rep.failed++;
        }
        for (;;) {
            struct probe p = probe_start();
            r = probe_end(msrpcast_client_leave(c, conf, strlen(conf), part, strlen(part)), p,
                          &rep);
            if (r != MSRPCAST_ERR_BUSY)
                break;
            rep.busy++;
            usleep(200);
        }
        if (r != MSRPCAST_OK) {
            fprintf(stderr, "child %d: leave: %s\n", id, msrpcast_result_name(r));
            rep.failed++;
        }
        /* A SIP worker does other work between two dialogs; a short pause keeps 8 processes
         * from monopolising 2 cores, so the timings measure the calls, not the run queue. */
        usleep(PAUSE_US);
    }
    msrpcast_client_free(c);
    if (write(report_fd, &rep, sizeof rep) != (ssize_t)sizeof rep)
        _exit(4);
    _exit(rep.failed ? 1 : 0);
}

int main(void)
{
    const char *dir = env_or_die("TEST_DIR");
    char spool[512], sock[512];
    int go[2], reports[2], i, status;
    pid_t pids[CHILDREN];
    msrpcast_config *cfg = NULL;
    msrpcast_engine *e = NULL;
    msrpcast_stats st;
    struct report total = {0, 0, 0, 0, 0, 0.0, 0.0, 0};
    double t0;

    snprintf(spool, sizeof spool, "%s/spool", dir);
    snprintf(sock, sizeof sock, "%s/control.sock", dir);
    if (pipe(go) != 0 || pipe(reports) != 0)
        FAIL("pipe");
    for (i = 0; i < CHILDREN; i++) {
        pids[i] = fork();
        if (pids[i] < 0)
            FAIL("fork");
        if (pids[i] == 0) {
            close(go[1]);
            close(reports[0]);
            child(i, go[0], reports[1], sock);
        }
    }
    close(go[0]);
    close(reports[1]);

    CHECK(msrpcast_config_new(&cfg));
    set_or_die(cfg, "spool_dir", spool);
    set_or_die(cfg, "msrp_listen", "127.0.0.1:0");
    set_or_die(cfg, "http_enabled", "false");
    set_or_die(cfg, "control_socket", sock);
    set_or_die(cfg, "io_threads", "1");
    set_or_die(cfg, "log_level", "warn");
    CHECK(msrpcast_engine_start(cfg, &e));

    t0 = now_ms();
    for (i = 0; i < CHILDREN; i++)
        if (write(go[1], "g", 1) != 1)
            FAIL("write go");
    for (i = 0; i < CHILDREN; i++) {
        struct report rep;
        if (read(reports[0], &rep, sizeof rep) != (ssize_t)sizeof rep)
            FAIL("a child died without a report");
        total.calls += rep.calls;
        total.busy += rep.busy;
        total.blocked += rep.blocked;
        total.preempted += rep.preempted;
        total.slow += rep.slow;
        if (rep.max_preempted_ms > total.max_preempted_ms)
            total.max_preempted_ms = rep.max_preempted_ms;
        total.failed += rep.failed;
        if (rep.max_ms > total.max_ms)
            total.max_ms = rep.max_ms;
    }
    for (i = 0; i < CHILDREN; i++) {
        if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0)
            FAIL("child %d failed (status %d)", i, status);
    }
    /* The last datagrams may still be in the socket: wait until the engine has counted them. */
    for (;;) {
        CHECK(msrpcast_engine_stats(e, &st));
        if (st.joins + st.leaves + st.dropped + st.refused + st.malformed >= 2 * CHILDREN * PAIRS)
            break;
        if (now_ms() - t0 > 30000)
            break;
        sleep_ms(2);
    }
    printf("multiprocess: %d children x %d join/leave pairs in %.0f ms: joins %llu leaves %llu "
           "(dropped %llu refused %llu malformed %llu), %llu calls, %llu BUSY retries, "
           "engine busy waits %llu, slowest call %.3f ms (%llu at %.1f ms or more), "
           "calls that blocked %llu, preempted %llu (slowest %.3f ms)\n",
           CHILDREN, PAIRS, now_ms() - t0, (unsigned long long)st.joins,
           (unsigned long long)st.leaves, (unsigned long long)st.dropped,
           (unsigned long long)st.refused, (unsigned long long)st.malformed, total.calls,
           total.busy, (unsigned long long)st.busy_waits, total.max_ms, total.slow, MAX_CALL_MS,
           total.blocked,
           total.preempted, total.max_preempted_ms);
    if (total.failed)
        FAIL("%d calls failed", total.failed);
    if (st.joins != CHILDREN * PAIRS || st.leaves != CHILDREN * PAIRS)
        FAIL("events lost: joins %llu leaves %llu, expected %d each",
             (unsigned long long)st.joins, (unsigned long long)st.leaves, CHILDREN * PAIRS);
    if (st.dropped || st.refused || st.malformed)
        FAIL("dropped, refused or malformed requests");
    /* A call that waits on the engine (a full socket, a lock) blocks on every call while the
     * engine is behind, so such a bug shows as hundreds of blocked calls. One voluntary switch
     * in ~17,000 calls, with the slowest call still far under MAX_CALL_MS, was seen on a quiet
     * machine: the kernel's own (e.g. a page fault served under a sleeping lock), not a wait on
     * the engine. So up to one blocked call per 5,000 is tolerated; more fails. */
    if (total.blocked * 5000 > total.calls)
        FAIL("%llu of %llu client calls blocked", total.blocked, total.calls);
    /* The same rule for slow calls. A virtual machine's vCPU can be stopped by its host for
     * milliseconds, and the guest sees no context switch: the project's CI once saw one call of
     * 21,538 take 8.1 ms while 330 preempted calls (slowest 20.7 ms) showed the host was busy. A
     * library call that spins or waits is slow on every call made while the engine is behind,
     * i.e. hundreds, and still fails here. */
    if (total.slow * 5000 > total.calls)
        FAIL("%llu of %llu client calls took %.1f ms or more (slowest %.3f ms)", total.slow,
             total.calls, MAX_CALL_MS, total.max_ms);
    msrpcast_engine_free(e);
    msrpcast_config_free(cfg);
    return 0;
}
