/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * msrpcast Kamailio module: state shared by the module's files.
 *
 * Processes (see README.md):
 * - the main process parses the modparams into one msrpcast_config (before any fork);
 * - the engine process (forked in child_init(PROC_MAIN)) owns the Rust engine and its threads
 *   and is the only process that calls tm;
 * - SIP workers, timers and RPC processes talk to the engine with a msrpcast_client (joins,
 *   leaves, status) and forward tm replies to the engine process over the reply socketpair.
 */

#ifndef _MSRPCAST_MOD_H_
#define _MSRPCAST_MOD_H_

#include <stdint.h>

#include "core/str.h"
#include "modules/tm/tm_load.h"

#include "msrpcast.h"

/* The engine settings as set by modparams; read-only after mod_init. */
extern msrpcast_config *msrpcast_cfg;
/* Path of the engine's control socket (the `control_socket` setting or its default). */
extern str msrpcast_control_socket;
/* Contact header value (a SIP URI) of the file INVITEs; derived in mod_init when unset. */
extern str msrpcast_contact;
/* Optional next hop (SIP URI) for the file INVITEs; empty when unset. */
extern str msrpcast_outbound_proxy;
/* Milliseconds an RPC command waits for the engine's answer. */
extern int msrpcast_rpc_timeout_ms;

extern struct tm_binds msrpcast_tmb;

/* The reply socketpair: any process writes to [1], the engine process reads [0]. */
extern int msrpcast_ipc_fd[2];

/* pid of the engine process (in shm, set by the main process after the fork). */
extern int *msrpcast_engine_pid;

/*
 * The client of this process, opened on first use (the engine may start after this process).
 * NULL when the engine cannot be reached; the reason is logged.
 */
msrpcast_client *msrpcast_client_get(void);

/* A result code as text, for logs and RPC faults. */
static inline const char *msrpcast_rc_name(msrpcast_result r)
{
	const char *n = msrpcast_result_name(r);
	return n ? n : "?";
}

#endif
