/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * msrpcast Kamailio module: RPC commands (kamcmd msrpcast.*).
 *
 * They run in RPC processes (ctl, jsonrpcs), which may wait: status and cancel go through this
 * process's msrpcast_client; msrpcast.upload asks the engine process over the reply socketpair
 * and waits for its answer on this process's own reply socket.
 */

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/dprint.h"
#include "core/rpc.h"
#include "core/rpc_lookup.h"

#include "msrpcast_mod.h"
#include "msrpcast_proc.h"
#include "msrpcast_rpc.h"

static void msrpcast_rpc_status(rpc_t *rpc, void *ctx, uint32_t what)
{
	msrpcast_client *c = msrpcast_client_get();
	msrpcast_result r;
	char *json = NULL;
	size_t len = 0;

	if(c == NULL) {
		rpc->fault(ctx, 503, "msrpcast engine unreachable");
		return;
	}
	r = msrpcast_client_status(c, what, (uint32_t)msrpcast_rpc_timeout_ms, &json, &len);
	if(r != MSRPCAST_OK) {
		rpc->fault(ctx, r == MSRPCAST_ERR_TIMEOUT ? 504 : 500, "%s", msrpcast_rc_name(r));
		return;
	}
	rpc->add(ctx, "s", json ? json : "");
	msrpcast_string_free(json);
}

static const char *rpc_conferences_doc[] = {
	"Conferences and their participants, as JSON.", 0};

static void msrpcast_rpc_conferences(rpc_t *rpc, void *ctx)
{
	msrpcast_rpc_status(rpc, ctx, MSRPCAST_STATUS_CONFERENCES);
}

static const char *rpc_transfers_doc[] = {
	"Transfers with the state and progress of each delivery, as JSON.", 0};

static void msrpcast_rpc_transfers(rpc_t *rpc, void *ctx)
{
	msrpcast_rpc_status(rpc, ctx, MSRPCAST_STATUS_TRANSFERS);
}

static const char *msrpcast_rpc_cancel_doc[] = {
	"Cancel a transfer: msrpcast.cancel <transfer id>. Deliveries in progress end with '#'.",
	0};

static int scan_u64(rpc_t *rpc, void *ctx, const char *what, unsigned long long *out)
{
	str s = STR_NULL;
	char buf[32], *end;

	if(rpc->scan(ctx, "S", &s) < 1) {
		rpc->fault(ctx, 400, "missing %s", what);
		return -1;
	}
	if(s.len <= 0 || s.len >= (int)sizeof(buf)) {
		rpc->fault(ctx, 400, "invalid %s", what);
		return -1;
	}
	memcpy(buf, s.s, s.len);
	buf[s.len] = 0;
	errno = 0;
	*out = strtoull(buf, &end, 10);
	if(errno != 0 || *end != 0 || buf[0] == '-') {
		rpc->fault(ctx, 400, "invalid %s: %s", what, buf);
		return -1;
	}
	return 0;
}

static void msrpcast_rpc_cancel(rpc_t *rpc, void *ctx)
{
	msrpcast_client *c;
	msrpcast_result r;
	unsigned long long transfer;

	if(scan_u64(rpc, ctx, "transfer id", &transfer) < 0)
		return;
	c = msrpcast_client_get();
	if(c == NULL) {
		rpc->fault(ctx, 503, "msrpcast engine unreachable");
		return;
	}
	r = msrpcast_client_cancel(c, (uint64_t)transfer);
	if(r != MSRPCAST_OK) {
		rpc->fault(ctx, r == MSRPCAST_ERR_UNKNOWN_TRANSFER ? 404 : 500, "%s",
				msrpcast_rc_name(r));
		return;
	}
	rpc->rpl_printf(ctx, "transfer %llu cancelled", transfer);
}

/* This process's socket for the engine process's answers (abstract name with our pid). */
static int answer_sock = -1;
static uint32_t answer_seq = 0;

static int answer_socket(void)
{
	struct sockaddr_un a;
	socklen_t alen;

	if(answer_sock >= 0)
		return answer_sock;
	answer_sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if(answer_sock < 0)
		return -1;
	alen = msrpcast_ipc_reply_name(getpid(), &a);
	if(bind(answer_sock, (struct sockaddr *)&a, alen) < 0) {
		close(answer_sock);
		answer_sock = -1;
		return -1;
	}
	return answer_sock;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *rpc_upload_doc[] = {
	"Send a file on the server's disk to every participant of a conference: "
	"msrpcast.upload <conference> <path>. Returns the transfer id.",
	0};

static void msrpcast_rpc_upload(rpc_t *rpc, void *ctx)
{
	struct msrpcast_ipc_hdr h;
	struct msrpcast_ipc_answer a;
	struct pollfd pfd;
	str conf = STR_NULL, path = STR_NULL;
	long long deadline, left;
	ssize_t n;
	int fd;

	if(rpc->scan(ctx, "SS", &conf, &path) < 2) {
		rpc->fault(ctx, 400, "usage: msrpcast.upload <conference> <path>");
		return;
	}
	if(conf.len <= 0 || path.len <= 0) {
		rpc->fault(ctx, 400, "empty conference or path");
		return;
	}
	fd = answer_socket();
	if(fd < 0) {
		rpc->fault(ctx, 500, "reply socket: %s", strerror(errno));
		return;
	}
	/* Discard answers to earlier requests that timed out. */
	while(recv(fd, &a, sizeof(a), MSG_DONTWAIT) > 0)
		;
	memset(&h, 0, sizeof(h));
	h.kind = MSRPCAST_IPC_UPLOAD;
	h.len1 = (uint32_t)conf.len;
	h.len2 = (uint32_t)path.len;
	h.reply_pid = getpid();
	h.reply_seq = ++answer_seq;
	if(msrpcast_ipc_send(&h, conf.s, path.s) < 0) {
		rpc->fault(ctx, 503, "cannot reach the engine process: %s", strerror(errno));
		return;
	}
	deadline = now_ms() + msrpcast_rpc_timeout_ms;
	for(;;) {
		left = deadline - now_ms();
		if(left <= 0) {
			rpc->fault(ctx, 504, "no answer from the engine process");
			return;
		}
		pfd.fd = fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		if(poll(&pfd, 1, (int)left) <= 0)
			continue;
		n = recv(fd, &a, sizeof(a), MSG_DONTWAIT);
		if(n != (ssize_t)sizeof(a) || a.seq != answer_seq)
			continue;
		break;
	}
	if(a.result != MSRPCAST_OK) {
		a.error[sizeof(a.error) - 1] = 0;
		rpc->fault(ctx, 500, "%s", a.error);
		return;
	}
	rpc->rpl_printf(ctx, "%llu", (unsigned long long)a.transfer);
}

/* clang-format off */
static rpc_export_t msrpcast_rpc_cmds[] = {
	{"msrpcast.conferences", msrpcast_rpc_conferences, rpc_conferences_doc, 0},
	{"msrpcast.transfers",   msrpcast_rpc_transfers,   rpc_transfers_doc,   0},
	{"msrpcast.cancel",      msrpcast_rpc_cancel,      msrpcast_rpc_cancel_doc,      0},
	{"msrpcast.upload",      msrpcast_rpc_upload,      rpc_upload_doc,      0},
	{0, 0, 0, 0}
};
/* clang-format on */

int msrpcast_rpc_init(void)
{
	if(rpc_register_array(msrpcast_rpc_cmds) != 0) {
		LM_ERR("failed to register the RPC commands\n");
		return -1;
	}
	return 0;
}
