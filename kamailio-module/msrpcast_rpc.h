/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * msrpcast Kamailio module: RPC commands (kamcmd msrpcast.*).
 */

#ifndef _MSRPCAST_RPC_H_
#define _MSRPCAST_RPC_H_

/* mod_init: registers the commands. 0 or -1. */
int msrpcast_rpc_init(void);

#endif
