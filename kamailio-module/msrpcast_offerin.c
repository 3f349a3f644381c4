/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * msrpcast Kamailio module: files from participants to the room.
 *
 * msrpcast_offer_in(conference, participant), in request_route on an INVITE whose SDP is an
 * RFC 5547 push offer (m=message, a=sendonly, a=file-selector): the SIP worker hands the SDP to
 * the engine through its client handle and waits for the decision (at most rpc_timeout_ms; the
 * engine answers from its control thread without any network wait), then answers the INVITE
 * statefully (tm): 200 with the engine's SDP answer, our Contact and a to-tag, or the engine's
 * refusal (403, 413, 415, 486, 488, 503). The dialog's Call-ID is the engine's key of the
 * session. The ACK needs nothing; msrpcast_offer_in_end() on the dialog's BYE ends a file still
 * arriving (the cfg then replies 200).
 */

#include <string.h>

#include "core/dprint.h"
#include "core/mod_fix.h"
#include "core/parser/msg_parser.h"
#include "core/parser/parse_content.h"
#include "core/sr_module.h"
#include "core/trim.h"
#include "core/ut.h"
#include "modules/tm/tm_load.h"

#include "msrpcast_mod.h"
#include "msrpcast_offerin.h"

/* The reason phrase of a final response the engine chose. */
static char *phrase(unsigned int code)
{
	switch(code) {
		case 200:
			return "OK";
		case 400:
			return "Bad Request";
		case 403:
			return "Forbidden";
		case 413:
			return "Request Entity Too Large";
		case 415:
			return "Unsupported Media Type";
		case 486:
			return "Busy Here";
		case 488:
			return "Not Acceptable Here";
		case 500:
			return "Server Internal Error";
		default:
			return "Service Unavailable";
	}
}

/* The Call-ID of msg, trimmed; -1 when it has none. */
static int call_id(sip_msg_t *msg, str *out)
{
	if(parse_headers(msg, HDR_CALLID_F, 0) < 0 || msg->callid == NULL) {
		LM_ERR("msrpcast_offer_in: no Call-ID\n");
		return -1;
	}
	*out = msg->callid->body;
	trim(out);
	return out->len > 0 ? 0 : -1;
}

/* Answers the transaction T with code (no body). 1 when sent, -1 otherwise. */
static int refuse(sip_msg_t *msg, unsigned int code)
{
	if(msrpcast_tmb.t_reply(msg, code, phrase(code)) < 0) {
		LM_ERR("msrpcast_offer_in: cannot send %u\n", code);
		return -1;
	}
	return 1;
}

int msrpcast_offer_in(sip_msg_t *msg, str *conf, str *participant)
{
	msrpcast_client *c;
	msrpcast_result r;
	str callid = STR_NULL, sdp = STR_NULL, totag = STR_NULL;
	str text, hdrs, reason = str_init("OK");
	char *body = NULL, hbuf[512];
	size_t body_len = 0;
	uint16_t status = 0;
	uint64_t transfer = 0;
	struct cell *t;
	int n, ret;

	if(msg == NULL || msg->first_line.type != SIP_REQUEST
			|| msg->first_line.u.request.method_value != METHOD_INVITE) {
		LM_ERR("msrpcast_offer_in: only for INVITE requests\n");
		return -1;
	}
	if(conf == NULL || participant == NULL || conf->len <= 0
			|| participant->len <= 0) {
		LM_ERR("msrpcast_offer_in: conference and participant must not be "
			   "empty\n");
		return -1;
	}
	if(call_id(msg, &callid) < 0)
		return -1;
	/* A retransmission of an INVITE being handled is absorbed by tm: 0. */
	n = msrpcast_tmb.t_newtran(msg);
	if(n == 0)
		return 0;
	if(n < 0) {
		LM_ERR("msrpcast_offer_in: cannot create the transaction\n");
		return -1;
	}
	sdp.s = get_body(msg);
	if(sdp.s != NULL)
		sdp.len = (int)(msg->buf + msg->len - sdp.s);
	if(sdp.s == NULL || sdp.len <= 0) {
		LM_INFO("msrpcast_offer_in %.*s: INVITE without SDP\n", callid.len,
				callid.s);
		return refuse(msg, 488);
	}
	c = msrpcast_client_get();
	if(c == NULL) {
		LM_ERR("msrpcast_offer_in %.*s: engine unreachable\n", callid.len,
				callid.s);
		return refuse(msg, 503);
	}
	r = msrpcast_client_offer_in(c, conf->s, (size_t)conf->len, participant->s,
			(size_t)participant->len, callid.s, (size_t)callid.len, sdp.s,
			(size_t)sdp.len,
			(uint32_t)(msrpcast_rpc_timeout_ms > 0 ? msrpcast_rpc_timeout_ms
												   : 5000),
			&status, &body, &body_len, &transfer);
	if(r != MSRPCAST_OK) {
		LM_ERR("msrpcast_offer_in %.*s: engine did not answer: %s\n",
				callid.len, callid.s, msrpcast_rc_name(r));
		return refuse(msg, 503);
	}
	if(status != 200) {
		LM_INFO("msrpcast_offer_in %.*s: %.*s/%.*s refused with %u: %.*s\n",
				callid.len, callid.s, conf->len, conf->s, participant->len,
				participant->s, (unsigned)status, (int)body_len,
				body ? body : "");
		msrpcast_string_free(body);
		return refuse(msg, status) > 0 ? 2 : -1;
	}
	t = msrpcast_tmb.t_gett();
	if(t == NULL || t == T_UNDEFINED
			|| msrpcast_tmb.t_get_reply_totag(msg, &totag) < 0) {
		LM_ERR("msrpcast_offer_in %.*s: no transaction or to-tag\n", callid.len,
				callid.s);
		msrpcast_string_free(body);
		msrpcast_client_offer_in_ended(c, callid.s, (size_t)callid.len);
		return refuse(msg, 500);
	}
	n = snprintf(hbuf, sizeof(hbuf),
			"Contact: <%.*s>\r\nContent-Type: application/sdp\r\n",
			msrpcast_contact.len, msrpcast_contact.s);
	if(n <= 0 || n >= (int)sizeof(hbuf)) {
		msrpcast_string_free(body);
		msrpcast_client_offer_in_ended(c, callid.s, (size_t)callid.len);
		return refuse(msg, 500);
	}
	hdrs.s = hbuf;
	hdrs.len = n;
	text.s = body;
	text.len = (int)body_len;
	ret = msrpcast_tmb.t_reply_with_body(t, 200, &reason, &text, &hdrs, &totag);
	msrpcast_string_free(body);
	if(ret < 0) {
		LM_ERR("msrpcast_offer_in %.*s: cannot send the 200\n", callid.len,
				callid.s);
		msrpcast_client_offer_in_ended(c, callid.s, (size_t)callid.len);
		return -1;
	}
	LM_INFO("msrpcast_offer_in %.*s: file from %.*s to conference %.*s "
			"accepted (transfer %llu)\n",
			callid.len, callid.s, participant->len, participant->s, conf->len,
			conf->s, (unsigned long long)transfer);
	return 1;
}

int msrpcast_offer_in_end(sip_msg_t *msg)
{
	msrpcast_client *c;
	msrpcast_result r;
	str callid;

	if(call_id(msg, &callid) < 0)
		return -1;
	c = msrpcast_client_get();
	if(c == NULL) {
		LM_ERR("msrpcast_offer_in_end %.*s: engine unreachable\n", callid.len,
				callid.s);
		return -2;
	}
	r = msrpcast_client_offer_in_ended(c, callid.s, (size_t)callid.len);
	if(r != MSRPCAST_OK) {
		LM_ERR("msrpcast_offer_in_end %.*s: %s\n", callid.len, callid.s,
				msrpcast_rc_name(r));
		return -1;
	}
	return 1;
}

int w_msrpcast_offer_in(sip_msg_t *msg, char *conf, char *participant)
{
	str v[2];

	if(fixup_get_svalue(msg, (gparam_t *)conf, &v[0]) != 0
			|| fixup_get_svalue(msg, (gparam_t *)participant, &v[1]) != 0) {
		LM_ERR("msrpcast_offer_in: cannot evaluate the parameters\n");
		return -1;
	}
	return msrpcast_offer_in(msg, &v[0], &v[1]);
}

int w_msrpcast_offer_in_end(sip_msg_t *msg, char *p1, char *p2)
{
	return msrpcast_offer_in_end(msg);
}
