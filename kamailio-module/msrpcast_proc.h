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
enum msrpcast_ipc_kind
{
	/* A final reply to a file INVITE: code, delivery, payload = answer SDP (2xx only). */
	MSRPCAST_IPC_REPLY = 1,
};

struct msrpcast_ipc_hdr
{
	uint32_t kind;
	uint32_t code;
	uint64_t delivery;
	uint32_t len1;
	uint32_t len2;
};

/* Sends one datagram to the engine process without blocking; 0 or -1 (errno set). */
int msrpcast_ipc_send(
		const struct msrpcast_ipc_hdr *h, const char *p1, const char *p2);

/* Body of the engine process: starts the engine and never returns. */
void msrpcast_proc_run(void);

#endif
