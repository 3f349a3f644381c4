/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * msrpcast Kamailio module: the file sessions' SIP signalling through tm.
 *
 * One file session per delivery: an INVITE carrying the engine's SDP offer, the ACK (sent by tm
 * for a 2xx to a local INVITE), and a BYE when the engine says the transfer is over.
 *
 * Who touches what:
 * - The engine process sends the INVITE and the BYE, and keeps a table delivery -> call (pkg).
 * - The final reply is seen by tm's callback in whichever process received it (a UDP or TCP
 *   worker, or the timer for a timeout). That callback runs under tm locks: it only updates the
 *   shm dialog (dlg_response_uac on a 2xx) and forwards (delivery, code, SDP) to the engine
 *   process over the reply socketpair, without blocking.
 * - The call (shm) is reached from both sides, so its state and the dialog are guarded by one
 *   shm lock, never held while calling into tm. A participant may leave before the answer: the
 *   engine's BYE then waits for the final reply and goes out after a late 2xx.
 */

#include <errno.h>
#include <string.h>
#include <stdio.h>

#include "core/dprint.h"
#include "core/locking.h"
#include "core/mem/mem.h"
#include "core/mem/shm_mem.h"
#include "core/parser/msg_parser.h"
#include "core/socket_info.h"
#include "modules/tm/dlg.h"
#include "modules/tm/t_hooks.h"
#include "modules/tm/tm_load.h"
#include "modules/tm/uac.h"

#include "msrpcast_mod.h"
#include "msrpcast_proc.h"
#include "msrpcast_sip.h"

struct tm_binds msrpcast_tmb;

/*
 * The state of one file session, guarded by msrpcast_call_lock.
 *
 *   PENDING --2xx--> CONFIRMED --engine BYE--> DONE (BYE sent)
 *   PENDING --engine BYE--> BYE_WANTED --2xx--> DONE (BYE sent at once)
 *   PENDING --non-2xx--> FAILED;  any --table_remove--> DONE
 */
typedef enum call_state
{
	CALL_PENDING = 0, /* INVITE sent, no final reply yet */
	CALL_BYE_WANTED,  /* the engine said BYE before the final reply */
	CALL_CONFIRMED,	  /* 2xx received, dialog confirmed */
	CALL_FAILED,	  /* non-2xx final reply */
	CALL_DONE,		  /* BYE sent or nothing more to do */
} call_state_t;

/* The state's name, for logs. */
static const char *call_state_name(call_state_t s)
{
	switch(s) {
		case CALL_PENDING:
			return "pending";
		case CALL_BYE_WANTED:
			return "bye-wanted";
		case CALL_CONFIRMED:
			return "confirmed";
		case CALL_FAILED:
			return "failed";
		case CALL_DONE:
			return "done";
	}
	return "?";
}

/* One file session, in shm: referenced by the engine process's table and by tm's callback. */
struct msrpcast_call
{
	uint64_t delivery;
	dlg_t *dlg;
	call_state_t state;
	int refs; /* 2 at start: the table and tm (released on TMCB_DESTROY) */
	int final_seen;
};

/* The engine process's table (pkg), chained by delivery. */
struct call_entry
{
	struct msrpcast_call *call;
	struct call_entry *next;
};

#define CALL_BUCKETS 1024
static struct call_entry *calls[CALL_BUCKETS];
static unsigned int calls_count;

static gen_lock_t *msrpcast_call_lock;

static str method_invite = str_init("INVITE");
static str method_bye = str_init("BYE");

int msrpcast_sip_init(void)
{
	if(load_tm_api(&msrpcast_tmb) < 0) {
		LM_ERR("cannot bind the tm module: load tm.so before msrpcast.so\n");
		return -1;
	}
	msrpcast_call_lock = lock_alloc();
	if(msrpcast_call_lock == NULL || lock_init(msrpcast_call_lock) == NULL) {
		SHM_MEM_ERROR;
		return -1;
	}
	return 0;
}

void msrpcast_sip_destroy(void)
{
	/* The lock is deliberately kept: modules are destroyed before tm's shutdown, which still
	 * runs the TMCB_DESTROY callbacks (invite_cb) of file-session transactions left in its
	 * table, and those take this lock. Shared memory goes with the process anyway. */
}

unsigned int msrpcast_sip_count(void)
{
	return calls_count;
}

/* Drops one reference; frees the call on the last. Called with the lock NOT held. */
static void call_unref(struct msrpcast_call *c)
{
	int last;

	lock_get(msrpcast_call_lock);
	last = (--c->refs == 0);
	lock_release(msrpcast_call_lock);
	if(last)
		shm_free(c);
}

static struct msrpcast_call *table_find(uint64_t delivery)
{
	struct call_entry *it;

	for(it = calls[delivery % CALL_BUCKETS]; it; it = it->next)
		if(it->call->delivery == delivery)
			return it->call;
	return NULL;
}

static int table_add(struct msrpcast_call *c)
{
	struct call_entry *e = pkg_malloc(sizeof(*e));

	if(e == NULL) {
		PKG_MEM_ERROR;
		return -1;
	}
	e->call = c;
	e->next = calls[c->delivery % CALL_BUCKETS];
	calls[c->delivery % CALL_BUCKETS] = e;
	calls_count++;
	return 0;
}

/* Removes the delivery from the table, frees its dialog and drops the table's reference. */
static void table_remove(uint64_t delivery)
{
	struct call_entry **pp, *e;
	dlg_t *dlg;

	for(pp = &calls[delivery % CALL_BUCKETS]; *pp; pp = &(*pp)->next) {
		if((*pp)->call->delivery != delivery)
			continue;
		e = *pp;
		*pp = e->next;
		calls_count--;
		lock_get(msrpcast_call_lock);
		dlg = e->call->dlg;
		e->call->dlg = NULL;
		e->call->state = CALL_DONE;
		lock_release(msrpcast_call_lock);
		/* Nobody else reads the dialog once the final reply was processed (or never will be:
		 * the engine process only removes a pending call when t_uac failed). */
		if(dlg)
			msrpcast_tmb.free_dlg(dlg);
		call_unref(e->call);
		pkg_free(e);
		return;
	}
}

/* Forwards a final reply to the engine process. Runs in any process, under tm locks. */
static void msrpcast_forward_reply(
		uint64_t delivery, unsigned int code, const char *sdp, int sdp_len)
{
	struct msrpcast_ipc_hdr h;

	memset(&h, 0, sizeof(h));
	h.kind = MSRPCAST_IPC_REPLY;
	h.code = code;
	h.delivery = delivery;
	if(sdp_len < 0 || sizeof(h) + (size_t)sdp_len > MSRPCAST_IPC_MAX) {
		LM_ERR("delivery %llu: answer SDP of %d bytes too large, reporting "
			   "488\n",
				(unsigned long long)delivery, sdp_len);
		h.code = 488;
		sdp_len = 0;
	}
	h.len1 = (uint32_t)sdp_len;
	if(msrpcast_ipc_send(&h, sdp, NULL) < 0)
		LM_ERR("delivery %llu: cannot forward reply %u to the engine process: "
			   "%s\n",
				(unsigned long long)delivery, code, strerror(errno));
}

/* tm callback of the file INVITE (TMCB_LOCAL_COMPLETED | TMCB_DESTROY). */
static void invite_cb(struct cell *t, int type, struct tmcb_params *ps)
{
	struct msrpcast_call *c;
	struct sip_msg *rpl;
	char *body = NULL;
	int body_len = 0;
	unsigned int code;
	uint64_t delivery;

	if(ps->param == NULL || *ps->param == NULL || msrpcast_call_lock == NULL)
		return;
	c = (struct msrpcast_call *)*ps->param;

	if(type & TMCB_DESTROY) {
		lock_get(msrpcast_call_lock);
		delivery = c->delivery;
		code = c->final_seen ? 0 : 500;
		c->final_seen = 1;
		lock_release(msrpcast_call_lock);
		if(code) {
			/* Destroyed without a final reply: tell the engine process all the same. */
			msrpcast_forward_reply(delivery, code, NULL, 0);
		}
		*ps->param = NULL;
		call_unref(c);
		return;
	}
	if(!(type & TMCB_LOCAL_COMPLETED))
		return;

	rpl = ps->rpl;
	code = (unsigned int)ps->code;
	lock_get(msrpcast_call_lock);
	if(c->final_seen) {
		lock_release(msrpcast_call_lock);
		return;
	}
	c->final_seen = 1;
	delivery = c->delivery;
	if(code >= 200 && code < 300 && rpl != NULL && rpl != FAKED_REPLY) {
		if(c->dlg
				&& msrpcast_tmb.dlg_response_uac(c->dlg, rpl, IS_TARGET_REFRESH)
						   < 0) {
			LM_ERR("delivery %llu: cannot update the dialog with the %u "
				   "reply\n",
					(unsigned long long)delivery, code);
		}
		if(c->state == CALL_PENDING)
			c->state = CALL_CONFIRMED;
		/* CALL_BYE_WANTED stays: the engine process sends the BYE on this reply. */
		body = get_body(rpl);
		if(body != NULL)
			body_len = (int)(rpl->buf + rpl->len - body);
	} else if(c->state == CALL_PENDING) {
		c->state = CALL_FAILED;
	}
	lock_release(msrpcast_call_lock);

	LM_DBG("delivery %llu: final reply %u (%d bytes of body)\n",
			(unsigned long long)delivery, code, body_len);
	msrpcast_forward_reply(delivery, code, body, body_len);
}

void msrpcast_sip_offer(msrpcast_engine *e, uint64_t delivery, str *target,
		str *sdp, str *sender)
{
	struct msrpcast_call *c;
	uac_req_t uac_r;
	dlg_t *dlg = NULL;
	str callid, fromtag, hdrs;
	char hbuf[1024];
	int n, ret;
	msrpcast_result r;

	if(table_find(delivery) != NULL) {
		LM_ERR("delivery %llu: offer for a delivery already signalled, "
			   "ignored\n",
				(unsigned long long)delivery);
		return;
	}
	n = snprintf(hbuf, sizeof(hbuf),
			"Contact: <%.*s>\r\nContent-Type: application/sdp\r\n",
			msrpcast_contact.len, msrpcast_contact.s);
	if(n <= 0 || n >= (int)sizeof(hbuf)) {
		LM_ERR("delivery %llu: contact too long\n",
				(unsigned long long)delivery);
		goto refuse;
	}
	hdrs.s = hbuf;
	hdrs.len = n;

	c = shm_malloc(sizeof(*c));
	if(c == NULL) {
		SHM_MEM_ERROR;
		goto refuse;
	}
	memset(c, 0, sizeof(*c));
	c->delivery = delivery;
	c->state = CALL_PENDING;
	c->refs = 2;

	msrpcast_tmb.generate_callid(&callid);
	msrpcast_tmb.generate_fromtag(&fromtag, &callid, target);
	if(msrpcast_tmb.new_dlg_uac(&callid, &fromtag, 1, sender, target, &dlg)
			< 0) {
		LM_ERR("delivery %llu: cannot create the dialog to %.*s\n",
				(unsigned long long)delivery, target->len, target->s);
		shm_free(c);
		goto refuse;
	}
	if(msrpcast_tmb.set_dlg_target(dlg, target,
			   msrpcast_outbound_proxy.len > 0 ? &msrpcast_outbound_proxy
											   : NULL)
			< 0) {
		LM_ERR("delivery %llu: cannot set the dialog target %.*s\n",
				(unsigned long long)delivery, target->len, target->s);
		msrpcast_tmb.free_dlg(dlg);
		shm_free(c);
		goto refuse;
	}
	c->dlg = dlg;
	if(table_add(c) < 0) {
		msrpcast_tmb.free_dlg(dlg);
		shm_free(c);
		goto refuse;
	}

	set_uac_req(&uac_r, &method_invite, &hdrs, sdp, dlg,
			TMCB_LOCAL_COMPLETED | TMCB_DESTROY, invite_cb, c);
	ret = msrpcast_tmb.t_uac(&uac_r);
	if(ret <= 0) {
		/* tm registered no callback (t_uac_prepare registers it last): the call is ours. */
		LM_ERR("delivery %llu: t_uac INVITE to %.*s failed (%d)\n",
				(unsigned long long)delivery, target->len, target->s, ret);
		lock_get(msrpcast_call_lock);
		c->refs--; /* tm's reference */
		lock_release(msrpcast_call_lock);
		table_remove(delivery);
		goto refuse;
	}
	LM_DBG("delivery %llu: INVITE to %.*s sent (call-id %.*s)\n",
			(unsigned long long)delivery, target->len, target->s, callid.len,
			callid.s);
	return;

refuse:
	r = msrpcast_engine_rejected(e, delivery, 500);
	if(r != MSRPCAST_OK)
		LM_ERR("delivery %llu: engine refused the failure: %s\n",
				(unsigned long long)delivery, msrpcast_rc_name(r));
}

/* Sends the BYE of a confirmed call. Engine process; the lock is not held. */
static void send_bye(struct msrpcast_call *c)
{
	uac_req_t uac_r;
	int ret;

	set_uac_req(&uac_r, &method_bye, NULL, NULL, c->dlg, 0, NULL, NULL);
	ret = msrpcast_tmb.t_request_within(&uac_r);
	if(ret < 0)
		LM_ERR("delivery %llu: BYE failed (%d)\n",
				(unsigned long long)c->delivery, ret);
	else
		LM_DBG("delivery %llu: BYE sent\n", (unsigned long long)c->delivery);
}

void msrpcast_sip_bye(msrpcast_engine *e, uint64_t delivery)
{
	struct msrpcast_call *c = table_find(delivery);
	call_state_t state;

	(void)e;
	if(c == NULL) {
		LM_DBG("delivery %llu: BYE for a session that is gone\n",
				(unsigned long long)delivery);
		return;
	}
	lock_get(msrpcast_call_lock);
	state = c->state;
	if(state == CALL_PENDING)
		c->state = CALL_BYE_WANTED;
	else if(state == CALL_CONFIRMED)
		c->state = CALL_DONE;
	lock_release(msrpcast_call_lock);

	switch(state) {
		case CALL_PENDING:
			LM_DBG("delivery %llu: BYE before the answer, sent after a 2xx\n",
					(unsigned long long)delivery);
			return;
		case CALL_CONFIRMED:
			/* The callback never touches a confirmed dialog again: no lock needed. */
			send_bye(c);
			table_remove(delivery);
			return;
		case CALL_BYE_WANTED: /* a second BYE from the engine: the first one stands */
		case CALL_FAILED: /* no dialog to end; the failure reply removes the call */
		case CALL_DONE:
			return;
	}
}

void msrpcast_sip_reply(
		msrpcast_engine *e, uint64_t delivery, unsigned int code, str *sdp)
{
	struct msrpcast_call *c = table_find(delivery);
	msrpcast_result r;
	call_state_t state;

	if(c == NULL) {
		LM_DBG("delivery %llu: reply %u for a session that is gone\n",
				(unsigned long long)delivery, code);
		return;
	}
	lock_get(msrpcast_call_lock);
	state = c->state;
	if(state == CALL_BYE_WANTED && code >= 200 && code < 300)
		c->state = CALL_DONE;
	lock_release(msrpcast_call_lock);

	if(code >= 200 && code < 300) {
		if(state == CALL_BYE_WANTED) {
			LM_INFO("delivery %llu: answered after the engine ended it, "
					"sending BYE\n",
					(unsigned long long)delivery);
			send_bye(c);
			table_remove(delivery);
			return;
		}
		if(state != CALL_CONFIRMED) {
			LM_ERR("delivery %llu: 2xx in state %s\n",
					(unsigned long long)delivery, call_state_name(state));
			return;
		}
		r = msrpcast_engine_answered(e, delivery, sdp->s, (size_t)sdp->len);
		if(r != MSRPCAST_OK) {
			LM_ERR("delivery %llu: engine refused the answer (%s), sending "
				   "BYE\n",
					(unsigned long long)delivery, msrpcast_rc_name(r));
			lock_get(msrpcast_call_lock);
			c->state = CALL_DONE;
			lock_release(msrpcast_call_lock);
			send_bye(c);
			table_remove(delivery);
		}
		return;
	}

	/* A failure: the session is over on the SIP side. */
	if(state != CALL_BYE_WANTED) {
		r = msrpcast_engine_rejected(e, delivery, code);
		if(r != MSRPCAST_OK)
			LM_ERR("delivery %llu: engine refused the failure %u: %s\n",
					(unsigned long long)delivery, code, msrpcast_rc_name(r));
	}
	table_remove(delivery);
}
