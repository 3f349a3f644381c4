/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * msrpcast Kamailio module: files from participants to the room (msrpcast_offer_in).
 */

#ifndef _MSRPCAST_OFFERIN_H_
#define _MSRPCAST_OFFERIN_H_

#include "core/parser/msg_parser.h"
#include "core/str.h"

/*
 * On an INVITE carrying a participant's RFC 5547 push offer: asks the engine and answers the
 * INVITE statefully, 200 with the SDP answer or the engine's refusal. 1 answered 200, 2
 * answered with a refusal, 0 a retransmission (absorbed), negative when nothing was sent.
 */
int msrpcast_offer_in(sip_msg_t *msg, str *conf, str *participant);
/* On the BYE of such a dialog: the engine ends a file still arriving. 1, or negative. */
int msrpcast_offer_in_end(sip_msg_t *msg);

/* cfg wrappers (fixup_spve_all). */
int w_msrpcast_offer_in(sip_msg_t *msg, char *conf, char *participant);
int w_msrpcast_offer_in_end(sip_msg_t *msg, char *p1, char *p2);

#endif
