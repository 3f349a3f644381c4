/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * mod_msrpcast: push files uploaded on msrpcast's page to every member of a FreeSWITCH conference
 * over MSRP (RFC 4975 / RFC 5547).
 *
 * Thin C over msrpcast's C ABI (include/msrpcast.h): every decision is made in Rust
 * (src/freeswitch/, src/ffi/freeswitch.rs); this file makes the FreeSWITCH API calls.
 *
 *  - load: msrpcast.conf.xml -> msrpcast_fs_config_set per <param>, engine started in this
 *    process (no control socket), CUSTOM conference::maintenance bound (join/leave), CHANNEL_ANSWER
 *    and CHANNEL_HANGUP_COMPLETE bound (outcomes of our file legs), the dialplan application and
 *    the API command `msrpcast` added, one thread started that drains the engine's signals.
 *  - OFFER: an outgoing sofia leg (switch_core_session_outgoing_channel) with sip_enable_soa=false,
 *    CF_PROXY_MODE and the engine's SDP in switch_m_sdp, so sofia sends it verbatim; the leg is
 *    parked by the inline dialplan (park is a no-media application, so no re-INVITE). Its
 *    Unique-ID is msrpcast-<load id>-<delivery>, which is how answers, hangups and BYE requests
 *    find it again without a table.
 *  - answer: switch_r_sdp of the CHANNEL_ANSWER event -> msrpcast_engine_answered;
 *    hangup before an answer -> msrpcast_engine_rejected(SIP code of sip_term_status or the
 *    cause); after an answer or a BYE request -> msrpcast_engine_ended.
 *  - BYE: the leg is located by its Unique-ID and hung up (BYE, or CANCEL before the answer).
 *  - LOG: switch_log_printf.
 *
 * No leg references this module's memory (no state handlers or hooks): unload hangs the legs up
 * and can return while they finish.
 */

#include <switch.h>

#include <poll.h>

#include "msrpcast.h"

SWITCH_MODULE_LOAD_FUNCTION(mod_msrpcast_load);
SWITCH_MODULE_SHUTDOWN_FUNCTION(mod_msrpcast_shutdown);
SWITCH_MODULE_DEFINITION(mod_msrpcast, mod_msrpcast_load, mod_msrpcast_shutdown, NULL);

#define MSRPCAST_CONF "msrpcast.conf"
#define LEG_PREFIX "msrpcast-"
/* Headers copied from one event, plus the looked-up channel variables. */
#define MAX_EVENT_HEADERS 512

static struct {
	switch_memory_pool_t *pool;
	switch_thread_rwlock_t *lock; /* read: any use of engine/fs; write: shutdown */
	msrpcast_engine *engine;
	msrpcast_fs *fs;
	switch_event_node_t *maint_node;
	switch_event_node_t *answer_node;
	switch_event_node_t *hangup_node;
	switch_thread_t *thread;
	volatile int running;
	char load_id[32]; /* distinguishes legs of this load from those of an earlier one */
} globals;

static void log_result(switch_log_level_t level, const char *what, msrpcast_result r)
{
	switch_log_printf(SWITCH_CHANNEL_LOG, level, "msrpcast: %s: %s\n", what, msrpcast_result_name(r));
}

/* --- conference::maintenance ------------------------------------------------------------------ */

static void on_conference_event(switch_event_t *event)
{
	msrpcast_fs_header headers[MAX_EVENT_HEADERS];
	size_t n = 0, i;
	switch_event_header_t *hp;
	switch_core_session_t *member = NULL;
	const char *action = switch_event_get_header(event, "Action");
	const char *uuid = switch_event_get_header(event, "Unique-ID");
	msrpcast_fs_outcome outcome = MSRPCAST_FS_IGNORED;
	char *text = NULL;
	size_t text_len = 0;
	msrpcast_result r;

	if (!action || (strcmp(action, "add-member") && strcmp(action, "del-member") &&
					strcmp(action, "conference-destroy"))) {
		return;
	}
	switch_thread_rwlock_rdlock(globals.lock);
	if (!globals.running) {
		goto done;
	}
	for (hp = event->headers; hp && n < MAX_EVENT_HEADERS; hp = hp->next) {
		headers[n].name = hp->name;
		headers[n].name_len = strlen(hp->name);
		headers[n].value = hp->value;
		headers[n].value_len = hp->value ? strlen(hp->value) : 0;
		n++;
	}
	/* The event carries no channel variables unless the profile has verbose-events: look the
	 * member's channel up and append those the Rust side asks for. The strings stay valid while
	 * the session is read-locked. */
	if (!strcmp(action, "add-member") && !zstr(uuid) && (member = switch_core_session_locate(uuid))) {
		switch_channel_t *channel = switch_core_session_get_channel(member);
		static __thread char names[64][80];
		const char *name;
		size_t name_len;

		for (i = 0; i < 64 && n < MAX_EVENT_HEADERS &&
					msrpcast_fs_variable_name(globals.fs, i, &name, &name_len) == MSRPCAST_OK;
			 i++) {
			const char *v = switch_channel_get_variable(channel, name);
			if (!v) {
				continue;
			}
			switch_snprintf(names[i], sizeof(names[i]), "variable_%s", name);
			headers[n].name = names[i];
			headers[n].name_len = strlen(names[i]);
			headers[n].value = v;
			headers[n].value_len = strlen(v);
			n++;
		}
	}
	r = msrpcast_fs_event(globals.fs, globals.engine, headers, n, &outcome, &text, &text_len);
	if (member) {
		switch_core_session_rwunlock(member);
	}
	if (r == MSRPCAST_OK) {
		switch_log_printf(SWITCH_CHANNEL_LOG,
						  outcome == MSRPCAST_FS_IGNORED ? SWITCH_LOG_DEBUG : SWITCH_LOG_INFO,
						  "msrpcast: %s\n", text ? text : "");
	} else {
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_ERROR, "msrpcast: %s event: %s (%s)\n", action,
						  text ? text : "", msrpcast_result_name(r));
	}
	msrpcast_string_free(text);
done:
	switch_thread_rwlock_unlock(globals.lock);
}

/* --- outcomes of our file legs ---------------------------------------------------------------- */

/* The delivery of one of this load's legs, from its Unique-ID; 0 for any other channel. */
static int leg_delivery(switch_event_t *event, uint64_t *delivery)
{
	const char *uuid = switch_event_get_header(event, "Unique-ID");
	size_t plen = strlen(LEG_PREFIX), llen = strlen(globals.load_id);
	char *end = NULL;
	unsigned long long d;

	if (!uuid || strncmp(uuid, LEG_PREFIX, plen) || strncmp(uuid + plen, globals.load_id, llen) ||
		uuid[plen + llen] != '-') {
		return 0;
	}
	d = strtoull(uuid + plen + llen + 1, &end, 10);
	if (!end || *end) {
		return 0;
	}
	*delivery = (uint64_t)d;
	return 1;
}

static void on_leg_answer(switch_event_t *event)
{
	uint64_t d;
	const char *sdp;
	msrpcast_result r;

	if (!leg_delivery(event, &d)) {
		return;
	}
	switch_thread_rwlock_rdlock(globals.lock);
	if (globals.running) {
		sdp = switch_event_get_header(event, "variable_" SWITCH_R_SDP_VARIABLE);
		if (zstr(sdp)) {
			/* A 2xx without SDP cannot carry a file session: end it as a failure. */
			switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_WARNING,
							  "msrpcast: delivery %llu answered without SDP\n", (unsigned long long)d);
			msrpcast_engine_rejected(globals.engine, d, 488);
		} else if ((r = msrpcast_engine_answered(globals.engine, d, sdp, strlen(sdp))) != MSRPCAST_OK) {
			log_result(SWITCH_LOG_ERROR, "answered", r);
		}
	}
	switch_thread_rwlock_unlock(globals.lock);
}

static void on_leg_hangup(switch_event_t *event)
{
	uint64_t d;
	msrpcast_result r;

	if (!leg_delivery(event, &d)) {
		return;
	}
	switch_thread_rwlock_rdlock(globals.lock);
	if (globals.running) {
		const char *answered = switch_event_get_header(event, "Caller-Channel-Answered-Time");
		const char *bye = switch_event_get_header(event, "variable_msrpcast_bye");
		if ((answered && strcmp(answered, "0")) || switch_true(bye)) {
			r = msrpcast_engine_ended(globals.engine, d);
		} else {
			const char *cause = switch_event_get_header(event, "Hangup-Cause");
			const char *term = switch_event_get_header(event, "variable_sip_term_status");
			uint32_t code = msrpcast_fs_failure_code(
				(uint32_t)(cause ? switch_channel_str2cause(cause) : SWITCH_CAUSE_NONE), term,
				term ? strlen(term) : 0);
			r = msrpcast_engine_rejected(globals.engine, d, code);
		}
		if (r != MSRPCAST_OK) {
			log_result(SWITCH_LOG_ERROR, "leg outcome", r);
		}
	}
	switch_thread_rwlock_unlock(globals.lock);
}

/* --- signals: OFFER, BYE, LOG ----------------------------------------------------------------- */

static void leg_uuid(char *buf, size_t len, uint64_t delivery)
{
	switch_snprintf(buf, len, "%s%s-%llu", LEG_PREFIX, globals.load_id, (unsigned long long)delivery);
}

static void place_offer(const msrpcast_signal *s)
{
	uint64_t d = msrpcast_signal_delivery(s);
	const char *target, *sdp, *sender, *name, *value;
	size_t tlen, slen, sender_len, nlen, vlen, i;
	char *dest = NULL, uuid[96];
	size_t dlen;
	switch_memory_pool_t *pool = NULL;
	switch_caller_profile_t *profile;
	switch_event_t *vars = NULL;
	switch_core_session_t *leg = NULL;
	switch_channel_t *channel;
	switch_call_cause_t cause;
	msrpcast_result r;

	msrpcast_signal_target(s, &target, &tlen);
	msrpcast_signal_sdp(s, &sdp, &slen);
	msrpcast_signal_sender(s, &sender, &sender_len);
	if ((r = msrpcast_fs_dial(globals.fs, target, tlen, &dest, &dlen)) != MSRPCAST_OK) {
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_ERROR, "msrpcast: delivery %llu: bad target %s\n",
						  (unsigned long long)d, target);
		msrpcast_engine_rejected(globals.engine, d, 484);
		return;
	}
	leg_uuid(uuid, sizeof(uuid), d);
	switch_core_new_memory_pool(&pool);
	/* inline:park: the leg waits in park (a no-media application) until it is hung up. */
	profile = switch_caller_profile_new(pool, "msrpcast", "inline:park", "msrpcast", "msrpcast", NULL,
										NULL, NULL, NULL, "mod_msrpcast", "default", dest);
	switch_event_create_plain(&vars, SWITCH_EVENT_CHANNEL_DATA);
	switch_event_add_header_string(vars, SWITCH_STACK_BOTTOM, "origination_uuid", uuid);
	for (i = 0; msrpcast_fs_leg_variable(globals.fs, i, &name, &nlen, &value, &vlen) == MSRPCAST_OK; i++) {
		switch_event_add_header_string(vars, SWITCH_STACK_BOTTOM, name, value);
	}
	cause = switch_core_session_outgoing_channel(NULL, vars, "sofia", profile, &leg, NULL, SOF_NO_LIMITS, NULL);
	if (cause != SWITCH_CAUSE_SUCCESS || !leg) {
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_WARNING, "msrpcast: delivery %llu to %s: %s\n",
						  (unsigned long long)d, dest, switch_channel_cause2str(cause));
		msrpcast_engine_rejected(globals.engine, d, msrpcast_fs_failure_code((uint32_t)cause, NULL, 0));
		goto done;
	}
	/* The session comes back without a lock of ours: take one while we set it up. */
	if (switch_core_session_read_lock(leg) != SWITCH_STATUS_SUCCESS) {
		msrpcast_engine_rejected(globals.engine, d, 500);
		goto done;
	}
	channel = switch_core_session_get_channel(leg);
	for (i = 0; msrpcast_fs_leg_variable(globals.fs, i, &name, &nlen, &value, &vlen) == MSRPCAST_OK; i++) {
		switch_channel_set_variable(channel, name, value);
	}
	if (sender_len) {
		switch_channel_set_variable(channel, "sip_from_uri", sender);
	}
	switch_channel_set_variable_printf(channel, "msrpcast_delivery", "%llu", (unsigned long long)d);
	switch_channel_set_variable(channel, "msrpcast_load", globals.load_id);
	/* Proxy mode: sofia_on_init absorbs switch_m_sdp and sends it as the offer, raw. */
	switch_channel_set_flag(channel, CF_PROXY_MODE);
	switch_channel_set_variable(channel, SWITCH_B_SDP_VARIABLE, sdp);
	if (switch_core_session_thread_launch(leg) != SWITCH_STATUS_SUCCESS) {
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_ERROR, "msrpcast: delivery %llu: cannot start the leg\n",
						  (unsigned long long)d);
		switch_channel_hangup(channel, SWITCH_CAUSE_DESTINATION_OUT_OF_ORDER);
		switch_core_session_rwunlock(leg);
		switch_core_session_destroy(&leg);
		msrpcast_engine_rejected(globals.engine, d, 500);
		goto done;
	}
	switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_DEBUG, "msrpcast: delivery %llu: INVITE sofia/%s (%s)\n",
					  (unsigned long long)d, dest, uuid);
	switch_core_session_rwunlock(leg);
done:
	if (vars) {
		switch_event_destroy(&vars);
	}
	if (pool) {
		switch_core_destroy_memory_pool(&pool);
	}
	msrpcast_string_free(dest);
}

static void end_leg(uint64_t d)
{
	char uuid[96];
	switch_core_session_t *leg;

	leg_uuid(uuid, sizeof(uuid), d);
	if ((leg = switch_core_session_locate(uuid))) {
		switch_channel_t *channel = switch_core_session_get_channel(leg);
		switch_channel_set_variable(channel, "msrpcast_bye", "true");
		switch_channel_hangup(channel, SWITCH_CAUSE_NORMAL_CLEARING);
		switch_core_session_rwunlock(leg);
		/* msrpcast_engine_ended follows from CHANNEL_HANGUP_COMPLETE. */
	} else {
		/* Already gone (its hangup was reported, or it never started). */
		msrpcast_engine_ended(globals.engine, d);
	}
}

static void log_record(const msrpcast_signal *s)
{
	const char *text;
	size_t len;
	switch_log_level_t level;

	msrpcast_signal_text(s, &text, &len);
	switch (msrpcast_signal_log_level(s)) {
	case MSRPCAST_LOG_ERROR:
		level = SWITCH_LOG_ERROR;
		break;
	case MSRPCAST_LOG_WARN:
		level = SWITCH_LOG_WARNING;
		break;
	case MSRPCAST_LOG_INFO:
		level = SWITCH_LOG_INFO;
		break;
	default:
		level = SWITCH_LOG_DEBUG;
		break;
	}
	switch_log_printf(SWITCH_CHANNEL_LOG, level, "msrpcast: %.*s\n", (int)len, text);
}

static void *SWITCH_THREAD_FUNC signal_thread(switch_thread_t *thread, void *obj)
{
	int fd = -1;

	(void)thread;
	(void)obj;
	if (msrpcast_engine_signal_fd(globals.engine, &fd) != MSRPCAST_OK) {
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_CRIT, "msrpcast: no signal descriptor\n");
		return NULL;
	}
	while (globals.running) {
		struct pollfd p;
		msrpcast_signal *s = NULL;

		p.fd = fd;
		p.events = POLLIN;
		p.revents = 0;
		/* 200 ms: the longest shutdown waits for this thread. */
		if (poll(&p, 1, 200) < 0 && errno != EINTR) {
			switch_yield(200000);
		}
		while (globals.running && msrpcast_engine_next_signal(globals.engine, &s) == MSRPCAST_OK) {
			switch (msrpcast_signal_kind(s)) {
			case MSRPCAST_SIGNAL_OFFER:
				place_offer(s);
				break;
			case MSRPCAST_SIGNAL_BYE:
				end_leg(msrpcast_signal_delivery(s));
				break;
			case MSRPCAST_SIGNAL_LOG:
				log_record(s);
				break;
			default:
				break;
			}
			msrpcast_signal_free(s);
			s = NULL;
		}
	}
	return NULL;
}

/* --- dialplan application and API command ----------------------------------------------------- */

#define APP_SYNTAX "[on|off] [display=<name>] [target=<sip uri>]"

SWITCH_STANDARD_APP(msrpcast_app)
{
	switch_channel_t *channel = switch_core_session_get_channel(session);
	const char *arg = data ? data : "";
	char *text = NULL;
	size_t len = 0;
	msrpcast_result r = msrpcast_fs_app_check(arg, strlen(arg), &text, &len);

	if (r == MSRPCAST_OK) {
		switch_channel_set_variable(channel, "msrpcast", zstr(arg) ? "true" : arg);
		switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_DEBUG, "msrpcast: %s\n", text);
	} else {
		switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_ERROR, "msrpcast: %s (usage: msrpcast %s)\n",
						  text ? text : msrpcast_result_name(r), APP_SYNTAX);
	}
	msrpcast_string_free(text);
}

#define API_SYNTAX "status|conferences|transfers|counters|members|cancel <transfer>|upload <conference> <path>|reload_tls|help"

SWITCH_STANDARD_API(msrpcast_api)
{
	char *json = NULL;
	size_t len = 0;
	const char *c = cmd ? cmd : "";
	msrpcast_result r;

	(void)session;
	switch_thread_rwlock_rdlock(globals.lock);
	r = msrpcast_fs_api(globals.fs, globals.running ? globals.engine : NULL, c, strlen(c), &json, &len);
	switch_thread_rwlock_unlock(globals.lock);
	stream->write_function(stream, "%s\n", json ? json : msrpcast_result_name(r));
	msrpcast_string_free(json);
	return SWITCH_STATUS_SUCCESS;
}

/* --- load and shutdown ------------------------------------------------------------------------- */

static switch_status_t configure(msrpcast_config *cfg)
{
	switch_xml_t xml, conf, settings, param;
	switch_status_t status = SWITCH_STATUS_SUCCESS;

	if (!(xml = switch_xml_open_cfg(MSRPCAST_CONF, &conf, NULL))) {
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_WARNING,
						  "msrpcast: %s.xml not found: every setting at its default\n", MSRPCAST_CONF);
		return SWITCH_STATUS_SUCCESS;
	}
	if ((settings = switch_xml_child(conf, "settings"))) {
		for (param = switch_xml_child(settings, "param"); param; param = param->next) {
			const char *name = switch_xml_attr_soft(param, "name");
			const char *value = switch_xml_attr_soft(param, "value");
			if (msrpcast_fs_config_set(globals.fs, cfg, name, strlen(name), value, strlen(value)) != MSRPCAST_OK) {
				const char *msg;
				size_t len;
				msrpcast_config_error(cfg, &msg, &len);
				switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_ERROR, "msrpcast: %s.xml: %.*s\n", MSRPCAST_CONF,
								  (int)len, msg);
				status = SWITCH_STATUS_FALSE;
			}
		}
	}
	switch_xml_free(xml);
	return status;
}

static void release_all(void)
{
	if (globals.maint_node) {
		switch_event_unbind(&globals.maint_node);
	}
	if (globals.answer_node) {
		switch_event_unbind(&globals.answer_node);
	}
	if (globals.hangup_node) {
		switch_event_unbind(&globals.hangup_node);
	}
	switch_thread_rwlock_wrlock(globals.lock);
	globals.running = 0;
	switch_thread_rwlock_unlock(globals.lock);
	if (globals.thread) {
		switch_status_t st;
		switch_thread_join(&st, globals.thread);
		globals.thread = NULL;
	}
	/* Our legs hold no pointer into this module; hang them up and let them finish. */
	switch_core_session_hupall_matching_var("msrpcast_load", globals.load_id, SWITCH_CAUSE_MANAGER_REQUEST);
	msrpcast_engine_free(globals.engine); /* stops: aborts deliveries, removes partial uploads */
	globals.engine = NULL;
	msrpcast_fs_free(globals.fs);
	globals.fs = NULL;
}

SWITCH_MODULE_LOAD_FUNCTION(mod_msrpcast_load)
{
	switch_application_interface_t *app;
	switch_api_interface_t *api;
	switch_threadattr_t *attr = NULL;
	msrpcast_config *cfg = NULL;
	msrpcast_result r;

	memset(&globals, 0, sizeof(globals));
	globals.pool = pool;
	switch_thread_rwlock_create(&globals.lock, pool);
	switch_snprintf(globals.load_id, sizeof(globals.load_id), "%lld", (long long)switch_micro_time_now());

	if ((r = msrpcast_config_new(&cfg)) != MSRPCAST_OK || (r = msrpcast_fs_new(cfg, &globals.fs)) != MSRPCAST_OK) {
		log_result(SWITCH_LOG_CRIT, "config", r);
		msrpcast_config_free(cfg);
		return SWITCH_STATUS_GENERR;
	}
	if (configure(cfg) != SWITCH_STATUS_SUCCESS) {
		msrpcast_fs_free(globals.fs);
		msrpcast_config_free(cfg);
		return SWITCH_STATUS_GENERR;
	}
	if ((r = msrpcast_engine_start(cfg, &globals.engine)) != MSRPCAST_OK) {
		const char *msg;
		size_t len;
		msrpcast_config_error(cfg, &msg, &len);
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_CRIT, "msrpcast: engine: %s: %.*s\n",
						  msrpcast_result_name(r), (int)len, msg);
		msrpcast_fs_free(globals.fs);
		msrpcast_config_free(cfg);
		return SWITCH_STATUS_GENERR;
	}
	msrpcast_config_free(cfg);
	globals.running = 1;

	switch_threadattr_create(&attr, pool);
	switch_threadattr_stacksize_set(attr, SWITCH_THREAD_STACKSIZE);
	if (switch_thread_create(&globals.thread, attr, signal_thread, NULL, pool) != SWITCH_STATUS_SUCCESS ||
		switch_event_bind_removable(modname, SWITCH_EVENT_CUSTOM, "conference::maintenance", on_conference_event,
									NULL, &globals.maint_node) != SWITCH_STATUS_SUCCESS ||
		switch_event_bind_removable(modname, SWITCH_EVENT_CHANNEL_ANSWER, SWITCH_EVENT_SUBCLASS_ANY, on_leg_answer,
									NULL, &globals.answer_node) != SWITCH_STATUS_SUCCESS ||
		switch_event_bind_removable(modname, SWITCH_EVENT_CHANNEL_HANGUP_COMPLETE, SWITCH_EVENT_SUBCLASS_ANY,
									on_leg_hangup, NULL, &globals.hangup_node) != SWITCH_STATUS_SUCCESS) {
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_CRIT, "msrpcast: cannot start the thread or bind events\n");
		release_all();
		return SWITCH_STATUS_GENERR;
	}

	*module_interface = switch_loadable_module_create_module_interface(pool, modname);
	SWITCH_ADD_APP(app, "msrpcast", "Opt this call in to msrpcast file pushes",
				   "Marks the call for msrpcast (channel variable msrpcast) before it enters a conference; "
				   "optionally sets the display name and the SIP target of its file INVITEs.",
				   msrpcast_app, APP_SYNTAX, SAF_SUPPORT_NOMEDIA | SAF_ROUTING_EXEC);
	SWITCH_ADD_API(api, "msrpcast", "msrpcast status (JSON)", msrpcast_api, API_SYNTAX);
	switch_console_set_complete("add msrpcast status");
	switch_console_set_complete("add msrpcast conferences");
	switch_console_set_complete("add msrpcast transfers");
	switch_console_set_complete("add msrpcast counters");
	switch_console_set_complete("add msrpcast members");
	switch_console_set_complete("add msrpcast cancel");
	switch_console_set_complete("add msrpcast upload");

	switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_NOTICE, "msrpcast: %s loaded (load id %s)\n", msrpcast_version(),
					  globals.load_id);
	return SWITCH_STATUS_SUCCESS;
}

SWITCH_MODULE_SHUTDOWN_FUNCTION(mod_msrpcast_shutdown)
{
	switch_console_set_complete("del msrpcast");
	release_all();
	switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_NOTICE, "msrpcast: unloaded\n");
	return SWITCH_STATUS_SUCCESS;
}
