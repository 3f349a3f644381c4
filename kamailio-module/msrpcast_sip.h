/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * msrpcast Kamailio module: the file sessions' SIP signalling through tm.
 */

#ifndef _MSRPCAST_SIP_H_
#define _MSRPCAST_SIP_H_

#include <stdint.h>

#include "core/str.h"

#include "msrpcast.h"

/* mod_init: binds tm, allocates the shm lock. 0 or -1. */
int msrpcast_sip_init(void);
/* mod_destroy (main process). */
void msrpcast_sip_destroy(void);

/* Engine process only. */

/* Sends the file INVITE of `delivery`; on failure tells the engine (rejected 500). */
void msrpcast_sip_offer(msrpcast_engine *e, uint64_t delivery, str *target,
		str *sdp, str *sender);
/* Ends the file session of `delivery`: BYE when answered, at the answer when still pending. */
void msrpcast_sip_bye(msrpcast_engine *e, uint64_t delivery);
/* A final reply to the INVITE of `delivery`, forwarded by the process that received it. */
void msrpcast_sip_reply(
		msrpcast_engine *e, uint64_t delivery, unsigned int code, str *sdp);
/* Number of file sessions the engine process tracks (for logs). */
unsigned int msrpcast_sip_count(void);

#endif
