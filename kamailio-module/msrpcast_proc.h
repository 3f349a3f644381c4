/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * msrpcast Kamailio module: the engine process and the messages other processes send it.
 */

#ifndef _MSRPCAST_PROC_H_
#define _MSRPCAST_PROC_H_

#include <stdint.h>
#include <sys/types.h>

/* Largest datagram on the reply socketpair (header + payload). */
#define MSRPCAST_IPC_MAX 65536

/* Kinds of datagrams the engine process reads from msrpcast_ipc_fd[0]. */
enum msrpcast_ipc_kind {
	/* A final reply to a file INVITE: code, delivery, payload = answer SDP (2xx only). */
	MSRPCAST_IPC_REPLY = 1,
	/* msrpcast.upload: payload = conference (len1 bytes) then path (len2 bytes); the engine
	 * process answers with a struct msrpcast_ipc_answer to the caller's reply socket. */
	MSRPCAST_IPC_UPLOAD = 2,
	/* msrpcast.reload_tls: no payload; answered like MSRPCAST_IPC_UPLOAD (transfer unused). */
	MSRPCAST_IPC_RELOAD_TLS = 3,
};

struct msrpcast_ipc_hdr {
	uint32_t kind;
	uint32_t code;
	uint64_t delivery;
	uint32_t len1;
	uint32_t len2;
	/* MSRPCAST_IPC_UPLOAD, MSRPCAST_IPC_RELOAD_TLS: pid and sequence number of the asking process (names its reply
	 * socket, see msrpcast_ipc_reply_name). */
	int32_t reply_pid;
	uint32_t reply_seq;
};

/* The engine process's answer to an MSRPCAST_IPC_UPLOAD or MSRPCAST_IPC_RELOAD_TLS. */
struct msrpcast_ipc_answer {
	uint32_t seq;
	uint32_t result; /* msrpcast_result */
	uint64_t transfer;
	char error[200]; /* NUL-terminated reason when result != MSRPCAST_OK */
};

/* Sends one datagram to the engine process without blocking; 0 or -1 (errno set). */
int msrpcast_ipc_send(const struct msrpcast_ipc_hdr *h, const char *p1, const char *p2);

/* Fills `buf` with the abstract AF_UNIX name of the reply socket of process `pid`; returns the
 * address length for bind/sendto. */
socklen_t msrpcast_ipc_reply_name(int pid, void *sockaddr_un_out);

/* Body of the engine process: starts the engine and never returns. */
void msrpcast_proc_run(void);

#endif
