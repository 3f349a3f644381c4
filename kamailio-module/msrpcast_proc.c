/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * msrpcast Kamailio module: the engine process.
 *
 * Forked once in child_init(PROC_MAIN) (see msrpcast_mod.c). It starts the Rust engine, whose
 * threads live only here and never call Kamailio, and runs a poll() loop over
 * - the engine's signal fd: OFFER (send a file INVITE), BYE (end a file session), LOG (engine
 *   log records, written with LM_* from this thread only);
 * - the reply socketpair: final replies to file INVITEs forwarded by the processes where tm saw
 *   them. (Everything else — joins, leaves, msrpcast.* RPC commands — reaches the engine over
 *   its control socket.)
 * This process is the only one that calls tm for the file sessions.
 */

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/cfg/cfg_struct.h"
#include "core/dprint.h"
#include "core/str.h"

#include "msrpcast_mod.h"
#include "msrpcast_proc.h"
#include "msrpcast_sip.h"

/* Work done per wake-up before polling again, so neither source starves the other. */
#define MSRPCAST_BATCH 256

/* Longest engine log record written to Kamailio's log; longer ones are cut. */
#define MSRPCAST_LOG_MAX_TEXT 4096

/* Set by SIGTERM: Kamailio is shutting down. */
static volatile sig_atomic_t stop_requested = 0;

static void on_sigterm(int signo)
{
	(void)signo;
	stop_requested = 1;
}

int msrpcast_ipc_send(
		const struct msrpcast_ipc_hdr *h, const char *p1, const char *p2)
{
	struct iovec iov[3];
	struct msghdr m;
	int n = 1;

	memset(&m, 0, sizeof(m));
	iov[0].iov_base = (void *)h;
	iov[0].iov_len = sizeof(*h);
	if(h->len1 > 0) {
		iov[n].iov_base = (void *)p1;
		iov[n++].iov_len = h->len1;
	}
	if(h->len2 > 0) {
		iov[n].iov_base = (void *)p2;
		iov[n++].iov_len = h->len2;
	}
	if(sizeof(*h) + (size_t)h->len1 + h->len2 > MSRPCAST_IPC_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	m.msg_iov = iov;
	m.msg_iovlen = n;
	if(sendmsg(msrpcast_ipc_fd[1], &m, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		return -1;
	return 0;
}

/* Writes an engine log record with the LM_* macro of its level (engine process only). */
static void log_signal(msrpcast_signal *s)
{
	const char *p = NULL;
	size_t len = 0;
	int l;

	msrpcast_signal_text(s, &p, &len);
	l = len > MSRPCAST_LOG_MAX_TEXT ? MSRPCAST_LOG_MAX_TEXT : (int)len;
	switch(msrpcast_signal_log_level(s)) {
		case MSRPCAST_LOG_ERROR:
			LM_ERR("%.*s\n", l, p);
			break;
		case MSRPCAST_LOG_WARN:
			LM_WARN("%.*s\n", l, p);
			break;
		case MSRPCAST_LOG_INFO:
			LM_INFO("%.*s\n", l, p);
			break;
		case MSRPCAST_LOG_DEBUG:
		default:
			LM_DBG("%.*s\n", l, p);
			break;
	}
}

static void drain_signals(msrpcast_engine *e)
{
	msrpcast_signal *s;
	msrpcast_result r;
	str target, sdp, sender;
	const char *p;
	size_t len;

	for(;;) {
		s = NULL;
		r = msrpcast_engine_next_signal(e, &s);
		if(r == MSRPCAST_EMPTY)
			return;
		if(r != MSRPCAST_OK) {
			LM_ERR("engine_next_signal: %s\n", msrpcast_rc_name(r));
			return;
		}
		switch(msrpcast_signal_kind(s)) {
			case MSRPCAST_SIGNAL_OFFER:
				msrpcast_signal_target(s, &p, &len);
				target.s = (char *)p;
				target.len = (int)len;
				msrpcast_signal_sdp(s, &p, &len);
				sdp.s = (char *)p;
				sdp.len = (int)len;
				msrpcast_signal_sender(s, &p, &len);
				sender.s = (char *)p;
				sender.len = (int)len;
				msrpcast_sip_offer(
						e, msrpcast_signal_delivery(s), &target, &sdp, &sender);
				break;
			case MSRPCAST_SIGNAL_BYE:
				msrpcast_sip_bye(e, msrpcast_signal_delivery(s));
				break;
			case MSRPCAST_SIGNAL_LOG:
				log_signal(s);
				break;
			default:
				LM_ERR("unknown engine signal kind %u\n",
						msrpcast_signal_kind(s));
				break;
		}
		msrpcast_signal_free(s);
	}
}

static void drain_ipc(msrpcast_engine *e, char *buf)
{
	struct msrpcast_ipc_hdr h;
	ssize_t n;
	str sdp;
	int i;

	for(i = 0; i < MSRPCAST_BATCH; i++) {
		n = recv(msrpcast_ipc_fd[0], buf, MSRPCAST_IPC_MAX, MSG_DONTWAIT);
		if(n < 0) {
			if(errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				LM_ERR("reply socket: %s\n", strerror(errno));
			return;
		}
		if((size_t)n < sizeof(h)) {
			LM_ERR("short datagram (%zd bytes) on the reply socket\n", n);
			continue;
		}
		memcpy(&h, buf, sizeof(h));
		if(sizeof(h) + (size_t)h.len1 + h.len2 != (size_t)n) {
			LM_ERR("malformed datagram (%zd bytes) on the reply socket\n", n);
			continue;
		}
		switch(h.kind) {
			case MSRPCAST_IPC_REPLY:
				sdp.s = buf + sizeof(h);
				sdp.len = (int)h.len1;
				msrpcast_sip_reply(e, h.delivery, h.code, &sdp);
				break;
			default:
				LM_ERR("unknown datagram kind %u on the reply socket\n",
						h.kind);
				break;
		}
	}
}

void msrpcast_proc_run(void)
{
	msrpcast_engine *e = NULL;
	msrpcast_result r;
	struct pollfd pfd[2];
	struct sigaction sa;
	sigset_t all, old;
	const char *msg;
	size_t mlen;
	char *buf;
	int sigfd = -1, n, rc;

	buf = malloc(MSRPCAST_IPC_MAX);
	if(buf == NULL) {
		LM_CRIT("engine process: out of memory\n");
		exit(-1);
	}

	/* The engine's threads inherit this mask: Kamailio's signals stay with this thread. Without
	 * it a Kamailio signal handler could run on an engine thread: refuse to start instead. */
	sigfillset(&all);
	rc = pthread_sigmask(SIG_BLOCK, &all, &old);
	if(rc != 0) {
		LM_CRIT("cannot block signals for the engine threads: %s\n",
				strerror(rc));
		exit(-1);
	}
	r = msrpcast_engine_start(msrpcast_cfg, &e);
	rc = pthread_sigmask(SIG_SETMASK, &old, NULL);
	if(rc != 0)
		LM_ERR("cannot unblock signals: %s; SIGTERM will not stop the "
			   "engine cleanly\n",
				strerror(rc));
	if(r != MSRPCAST_OK) {
		msg = NULL;
		mlen = 0;
		if(msrpcast_config_error(msrpcast_cfg, &msg, &mlen) != MSRPCAST_OK
				|| msg == NULL) {
			msg = "";
			mlen = 0;
		}
		LM_CRIT("the msrpcast engine did not start: %s %.*s\n",
				msrpcast_rc_name(r), (int)mlen, msg);
		exit(-1);
	}
	r = msrpcast_engine_signal_fd(e, &sigfd);
	if(r != MSRPCAST_OK) {
		LM_CRIT("engine signal fd: %s\n", msrpcast_rc_name(r));
		exit(-1);
	}
	LM_INFO("%s engine started (pid %d, control socket %.*s)\n",
			msrpcast_version(), getpid(), msrpcast_control_socket.len,
			msrpcast_control_socket.s);

	/* Kamailio's children _exit(0) on SIGTERM; this one first stops the engine, so running
	 * deliveries end with '#', partial uploads and the control socket are removed (complete
	 * files stay with their records for the next start: spool_persist). No
	 * SA_RESTART: poll() returns EINTR. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigterm;
	sigemptyset(&sa.sa_mask);
	if(sigaction(SIGTERM, &sa, NULL) < 0)
		LM_ERR("SIGTERM handler not installed: %s; at shutdown the engine "
			   "is not stopped (partial uploads stay until the next start)\n",
				strerror(errno));

	for(;;) {
		pfd[0].fd = sigfd;
		pfd[0].events = POLLIN;
		pfd[0].revents = 0;
		pfd[1].fd = msrpcast_ipc_fd[0];
		pfd[1].events = POLLIN;
		pfd[1].revents = 0;
		n = poll(pfd, 2, 1000);
		if(stop_requested) {
			LM_INFO("stopping the msrpcast engine\n");
			msrpcast_engine_stop(e);
			_exit(0);
		}
		cfg_update();
		if(n < 0) {
			if(errno != EINTR)
				LM_ERR("poll: %s\n", strerror(errno));
			continue;
		}
		/* Cheap when empty; also covers a wake-up lost between two drains. */
		drain_signals(e);
		if(n > 0 && pfd[1].revents)
			drain_ipc(e, buf);
	}
}
