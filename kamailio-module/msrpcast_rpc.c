/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * msrpcast Kamailio module: RPC commands (kamcmd msrpcast.*).
 *
 * They run in RPC processes (ctl, jsonrpcs), which may wait: every command goes through this
 * process's msrpcast_client over the engine's control socket (status, upload, reload_tls: a
 * request and its reply, within msrpcast_rpc_timeout_ms; cancel: one datagram).
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dprint.h"
#include "core/mem/mem.h"
#include "core/rpc.h"
#include "core/rpc_lookup.h"

#include "msrpcast_mod.h"
#include "msrpcast_proc.h"
#include "msrpcast_rpc.h"

/* The engine answers status requests in JSON; msrpcast_json_walk turns that into RPC structures
 * (rpc->add, struct_add, array_add), so kamcmd shows them as fields and jsonrpcs as real JSON.
 * JSON null has no RPC type: such members are left out. */
/* The library's nesting limit (MSRPCAST_JSON_MAX_DEPTH in src/ffi/json.rs). */
#define RPC_WALK_MAX_DEPTH 32

struct rpc_walk
{
	rpc_t *rpc;
	void *ctx;
	int depth; /* open objects/arrays */
	void *handle[RPC_WALK_MAX_DEPTH + 1];
	int is_array[RPC_WALK_MAX_DEPTH + 1];
	char key[128];
};

/* The member name as a C string (RPC field names are NUL-terminated); 0 when too long. */
static const char *walk_key(struct rpc_walk *w, const char *key, size_t len)
{
	if(key == NULL || len >= sizeof(w->key))
		return NULL;
	memcpy(w->key, key, len);
	w->key[len] = 0;
	return w->key;
}

static int walk_begin(
		void *ud, const char *key, size_t key_len, msrpcast_json_kind kind)
{
	struct rpc_walk *w = ud;
	const char *fmt = kind == MSRPCAST_JSON_ARRAY ? "[" : "{";
	void *parent, **h;
	const char *k;
	int rc;

	if(w->depth >= RPC_WALK_MAX_DEPTH)
		return -1;
	h = &w->handle[w->depth + 1];
	if(w->depth == 0) {
		rc = w->rpc->add(w->ctx, (char *)fmt, h);
	} else {
		parent = w->handle[w->depth];
		if(w->is_array[w->depth]) {
			rc = w->rpc->array_add(parent, (char *)fmt, h);
		} else {
			if((k = walk_key(w, key, key_len)) == NULL)
				return -1;
			rc = w->rpc->struct_add(parent, (char *)fmt, k, h);
		}
	}
	if(rc < 0)
		return -1;
	w->depth++;
	w->is_array[w->depth] = kind == MSRPCAST_JSON_ARRAY;
	return 0;
}

static int walk_end(void *ud, msrpcast_json_kind kind)
{
	struct rpc_walk *w = ud;

	(void)kind;
	if(w->depth > 0)
		w->depth--;
	return 0;
}

static int walk_value(void *ud, const char *key, size_t key_len,
		msrpcast_json_kind kind, const char *text, size_t len)
{
	struct rpc_walk *w = ud;
	char num[64], *end;
	const char *k = NULL;
	void *parent;
	str sv;
	long long ll = 0;
	double d = 0;
	int b, as_int = 0;
	const char *fmt;

	if(kind == MSRPCAST_JSON_NULL)
		return 0;
	if(w->depth == 0 || w->is_array[w->depth] == 0) {
		if(w->depth > 0 && (k = walk_key(w, key, key_len)) == NULL)
			return -1;
	}
	sv.s = (char *)text;
	sv.len = (int)len;
	b = kind == MSRPCAST_JSON_TRUE;
	if(kind == MSRPCAST_JSON_NUMBER) {
		if(len >= sizeof(num))
			return -1;
		memcpy(num, text, len);
		num[len] = 0;
		errno = 0;
		ll = strtoll(num, &end, 10);
		as_int = errno == 0 && *end == 0;
		if(!as_int)
			d = strtod(num, &end);
	}
	switch(kind) {
		case MSRPCAST_JSON_STRING:
			fmt = "S";
			break;
		case MSRPCAST_JSON_NUMBER:
			fmt = as_int ? "L" : "f";
			break;
		default:
			fmt = "b";
	}
	if(w->depth == 0) {
		if(kind == MSRPCAST_JSON_STRING)
			return w->rpc->add(w->ctx, "S", &sv) < 0 ? -1 : 0;
		if(kind == MSRPCAST_JSON_NUMBER)
			return (as_int ? w->rpc->add(w->ctx, "L", ll)
						   : w->rpc->add(w->ctx, "f", d))
								   < 0
						   ? -1
						   : 0;
		return w->rpc->add(w->ctx, "b", b) < 0 ? -1 : 0;
	}
	parent = w->handle[w->depth];
	if(w->is_array[w->depth]) {
		if(kind == MSRPCAST_JSON_STRING)
			return w->rpc->array_add(parent, (char *)fmt, &sv) < 0 ? -1 : 0;
		if(kind == MSRPCAST_JSON_NUMBER)
			return (as_int ? w->rpc->array_add(parent, "L", ll)
						   : w->rpc->array_add(parent, "f", d))
								   < 0
						   ? -1
						   : 0;
		return w->rpc->array_add(parent, "b", b) < 0 ? -1 : 0;
	}
	if(kind == MSRPCAST_JSON_STRING)
		return w->rpc->struct_add(parent, (char *)fmt, k, &sv) < 0 ? -1 : 0;
	if(kind == MSRPCAST_JSON_NUMBER)
		return (as_int ? w->rpc->struct_add(parent, "L", k, ll)
					   : w->rpc->struct_add(parent, "f", k, d))
							   < 0
					   ? -1
					   : 0;
	return w->rpc->struct_add(parent, "b", k, b) < 0 ? -1 : 0;
}

static const msrpcast_json_visitor rpc_visitor = {
		.begin = walk_begin, .end = walk_end, .value = walk_value};

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
	r = msrpcast_client_status(
			c, what, (uint32_t)msrpcast_rpc_timeout_ms, &json, &len);
	if(r != MSRPCAST_OK) {
		rpc->fault(ctx, r == MSRPCAST_ERR_TIMEOUT ? 504 : 500, "%s",
				msrpcast_rc_name(r));
		return;
	}
	{
		struct rpc_walk w;

		memset(&w, 0, sizeof(w));
		w.rpc = rpc;
		w.ctx = ctx;
		r = msrpcast_json_walk(
				json ? json : "", json ? len : 0, &rpc_visitor, &w);
	}
	msrpcast_string_free(json);
	if(r != MSRPCAST_OK)
		rpc->fault(ctx, 500, "status reply: %s", msrpcast_rc_name(r));
}

static const char *msrpcast_rpc_conferences_doc[] = {
		"List the conferences and their participants: msrpcast.conferences. "
		"Returns {conferences: [{id, participants: [{key, target, display, "
		"...}]}]}.",
		0};

static void msrpcast_rpc_conferences(rpc_t *rpc, void *ctx)
{
	msrpcast_rpc_status(rpc, ctx, MSRPCAST_STATUS_CONFERENCES);
}

static const char *msrpcast_rpc_transfers_doc[] = {
		"List the transfers with the state, progress and failure code of each "
		"delivery: msrpcast.transfers. Returns {transfers: [{id, conference, "
		"name, ..., deliveries: [{participant, state, ...}]}]}.",
		0};

static void msrpcast_rpc_transfers(rpc_t *rpc, void *ctx)
{
	msrpcast_rpc_status(rpc, ctx, MSRPCAST_STATUS_TRANSFERS);
}

static const char *msrpcast_rpc_counters_doc[] = {
		"Show the engine's counters: msrpcast.counters. Returns {datagrams, "
		"malformed, joins, leaves, ..., busy_waits, spool_read_ahead_bytes, "
		"spool_read_ahead_peak_bytes, spool_read_ahead_budget_bytes}.",
		0};

static void msrpcast_rpc_counters(rpc_t *rpc, void *ctx)
{
	msrpcast_rpc_status(rpc, ctx, MSRPCAST_STATUS_COUNTERS);
}

static const char *msrpcast_rpc_cancel_doc[] = {
		"Cancel a transfer: msrpcast.cancel <transfer id>. The upload stops; "
		"deliveries in progress end with '#' and a BYE.",
		0};

static int scan_u64(
		rpc_t *rpc, void *ctx, const char *what, unsigned long long *out)
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

static const char *msrpcast_rpc_upload_doc[] = {
		"Send a file on the server's disk to every participant of a "
		"conference: msrpcast.upload <conference> <path> [<keys>]. With keys "
		"(participant keys, comma-separated) only those participants get it, "
		"and participants who join later do not. Returns {transfer: <id>}.",
		0};

/* Splits "k1, k2,k3" into the keys between commas, spaces around each trimmed, empty ones
 * skipped. The arrays are pkg_malloc'ed (free both with pkg_free); returns the number of keys,
 * 0 when there is none (nothing allocated), -1 when out of memory. */
static int split_keys(str *list, const char ***keys, size_t **lens)
{
	int n = 1, i, k = 0, start = 0;

	for(i = 0; i < list->len; i++)
		if(list->s[i] == ',')
			n++;
	*keys = pkg_malloc(sizeof(**keys) * (size_t)n);
	*lens = pkg_malloc(sizeof(**lens) * (size_t)n);
	if(*keys == NULL || *lens == NULL) {
		if(*keys)
			pkg_free(*keys);
		if(*lens)
			pkg_free(*lens);
		return -1;
	}
	for(i = 0; i <= list->len; i++) {
		int a, b;
		if(i < list->len && list->s[i] != ',')
			continue;
		a = start;
		b = i;
		while(a < b && (list->s[a] == ' ' || list->s[a] == '\t'))
			a++;
		while(b > a && (list->s[b - 1] == ' ' || list->s[b - 1] == '\t'))
			b--;
		if(b > a) {
			(*keys)[k] = list->s + a;
			(*lens)[k] = (size_t)(b - a);
			k++;
		}
		start = i + 1;
	}
	if(k == 0) {
		pkg_free(*keys);
		pkg_free(*lens);
	}
	return k;
}

/* Picks the "error" member of a refusal's {"error":"..."} answer. */
struct reply_error
{
	char text[512];
};

static int error_value(void *ud, const char *key, size_t key_len,
		msrpcast_json_kind kind, const char *text, size_t len)
{
	struct reply_error *e = ud;

	if(kind == MSRPCAST_JSON_STRING && key != NULL && key_len == 5
			&& memcmp(key, "error", 5) == 0) {
		if(len >= sizeof(e->text))
			len = sizeof(e->text) - 1;
		memcpy(e->text, text, len);
		e->text[len] = 0;
	}
	return 0;
}

static const msrpcast_json_visitor error_visitor = {.value = error_value};

/* The RPC status of a refused request through the control socket: `own` is the refusal that
 * belongs to this request (answered with own_code), the rest is the same for every request. */
static int fault_status(msrpcast_result r, msrpcast_result own, int own_code)
{
	if(r == own)
		return own_code;
	switch(r) {
		case MSRPCAST_ERR_INVALID_VALUE: /* e.g. a key that is no participant */
			return 400;
		case MSRPCAST_ERR_TIMEOUT:
			return 504;
		case MSRPCAST_ERR_UNREACHABLE:
		case MSRPCAST_ERR_BUSY:
		case MSRPCAST_ERR_STOPPED:
			return 503;
		default:
			return 500;
	}
}

/* Answers a refusal as an RPC error: the result's name and, when the engine sent
 * {"error":"..."}, its reason. Frees json (which may be NULL). */
static void reply_fault(rpc_t *rpc, void *ctx, msrpcast_result r, int code,
		char *json, size_t len)
{
	struct reply_error e;

	memset(&e, 0, sizeof(e));
	if(json != NULL)
		msrpcast_json_walk(json, len, &error_visitor, &e);
	msrpcast_string_free(json);
	if(e.text[0])
		rpc->fault(ctx, code, "%s: %s", msrpcast_rc_name(r), e.text);
	else
		rpc->fault(ctx, code, "%s", msrpcast_rc_name(r));
}

/* Turns the engine's JSON answer into the structured RPC reply (an RPC error naming `what`
 * when it does not parse). Frees json. */
static void reply_answer(
		rpc_t *rpc, void *ctx, const char *what, char *json, size_t len)
{
	struct rpc_walk walk;
	msrpcast_result w;

	memset(&walk, 0, sizeof(walk));
	walk.rpc = rpc;
	walk.ctx = ctx;
	w = msrpcast_json_walk(json, len, &rpc_visitor, &walk);
	msrpcast_string_free(json);
	if(w != MSRPCAST_OK)
		rpc->fault(ctx, 500, "%s: %s", what, msrpcast_rc_name(w));
}

/* Through the control socket like every other request: the engine opens the file, starts the
 * transfer and answers {"transfer":<id>}, which becomes the structured RPC reply. */
static void msrpcast_rpc_upload(rpc_t *rpc, void *ctx)
{
	msrpcast_client *c;
	msrpcast_result r;
	str conf = STR_NULL, path = STR_NULL, to = STR_NULL;
	char *json = NULL;
	size_t len = 0;
	int nkeys = 0, nscanned;
	const char **keys = NULL;
	size_t *key_lens = NULL;

	/* The count tells whether the optional keys came: binrpc (kamcmd) fills a missing
	 * optional string with a placeholder text rather than leaving it NULL. */
	nscanned = rpc->scan(ctx, "SS*S", &conf, &path, &to);
	if(nscanned < 2) {
		rpc->fault(ctx, 400,
				"usage: msrpcast.upload <conference> <path> [<keys>]");
		return;
	}
	if(nscanned < 3) {
		to.s = NULL;
		to.len = 0;
	}
	if(conf.len <= 0 || path.len <= 0) {
		rpc->fault(ctx, 400, "empty conference or path");
		return;
	}
	if(to.s != NULL) {
		nkeys = split_keys(&to, &keys, &key_lens);
		if(nkeys < 0) {
			rpc->fault(ctx, 500, "out of memory");
			return;
		}
		if(nkeys == 0) {
			rpc->fault(ctx, 400, "empty recipient list (keys)");
			return;
		}
	}
	c = msrpcast_client_get();
	if(c == NULL) {
		if(nkeys > 0) {
			pkg_free(keys);
			pkg_free(key_lens);
		}
		rpc->fault(ctx, 503, "msrpcast engine unreachable");
		return;
	}
	if(nkeys > 0) {
		r = msrpcast_client_upload_to(c, conf.s, (size_t)conf.len, path.s,
				(size_t)path.len, keys, key_lens, (size_t)nkeys,
				(uint32_t)msrpcast_rpc_timeout_ms, &json, &len);
		pkg_free(keys);
		pkg_free(key_lens);
	} else {
		r = msrpcast_client_upload(c, conf.s, (size_t)conf.len, path.s,
				(size_t)path.len, (uint32_t)msrpcast_rpc_timeout_ms, &json,
				&len);
	}
	if(r != MSRPCAST_OK) {
		reply_fault(rpc, ctx, r,
				fault_status(r, MSRPCAST_ERR_UNKNOWN_CONFERENCE, 404), json,
				len);
		return;
	}
	LM_INFO("msrpcast.upload of %.*s to conference %.*s: %.*s\n", path.len,
			path.s, conf.len, conf.s, (int)len, json);
	reply_answer(rpc, ctx, "upload reply", json, len);
}

static const char *msrpcast_rpc_reload_tls_doc[] = {
		"Re-read the TLS certificates and keys (tls_cert, tls_key, tls_ca for "
		"MSRP; http_tls_cert, http_tls_key for HTTPS) without a restart: "
		"msrpcast.reload_tls. Returns {result: MSRPCAST_OK, msrp, https, "
		"fingerprint} (what was re-read; the SHA-256 fingerprint of the MSRP "
		"certificate now in use); a failure is an RPC error with the result "
		"code and the reason naming the file, and the previous certificate "
		"stays in use.",
		0};

/* Through the control socket like msrpcast.upload: the engine process re-reads the files and
 * answers with the outcome, which becomes the RPC reply (or its error). */
static void msrpcast_rpc_reload_tls(rpc_t *rpc, void *ctx)
{
	msrpcast_client *c;
	msrpcast_result r;
	char *json = NULL;
	size_t len = 0;

	c = msrpcast_client_get();
	if(c == NULL) {
		rpc->fault(ctx, 503, "msrpcast engine unreachable");
		return;
	}
	r = msrpcast_client_reload_tls(
			c, (uint32_t)msrpcast_rpc_timeout_ms, &json, &len);
	if(r != MSRPCAST_OK) {
		reply_fault(rpc, ctx, r, fault_status(r, MSRPCAST_ERR_REFUSED, 400),
				json, len);
		return;
	}
	LM_INFO("msrpcast.reload_tls: %.*s\n", (int)len, json);
	reply_answer(rpc, ctx, "reload reply", json, len);
}

/* clang-format off */
static rpc_export_t msrpcast_rpc_cmds[] = {
	{"msrpcast.conferences", msrpcast_rpc_conferences, msrpcast_rpc_conferences_doc, 0},
	{"msrpcast.transfers",   msrpcast_rpc_transfers,   msrpcast_rpc_transfers_doc,   0},
	{"msrpcast.counters",    msrpcast_rpc_counters,    msrpcast_rpc_counters_doc,    0},
	{"msrpcast.cancel",      msrpcast_rpc_cancel,      msrpcast_rpc_cancel_doc,      0},
	{"msrpcast.upload",      msrpcast_rpc_upload,      msrpcast_rpc_upload_doc,      0},
	{"msrpcast.reload_tls",  msrpcast_rpc_reload_tls,  msrpcast_rpc_reload_tls_doc,  0},
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
