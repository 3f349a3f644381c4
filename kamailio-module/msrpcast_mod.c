/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * msrpcast Kamailio module: exports, parameters, init, and the cfg/KEMI functions.
 *
 * msrpcast pushes files uploaded from a web page to every participant of a SIP conference over
 * MSRP. The module is one shared object: this C glue linked with the Rust library (static).
 * See README.md for the processes and the parameters.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/dprint.h"
#include "core/globals.h"
#include "core/kemi.h"
#include "core/mem/mem.h"
#include "core/mem/shm_mem.h"
#include "core/mod_fix.h"
#include "core/pt.h"
#include "core/socket_info.h"
#include "core/sr_module.h"
#include "core/cfg/cfg_struct.h"

#include "msrpcast_mod.h"
#include "msrpcast_offerin.h"
#include "msrpcast_proc.h"
#include "msrpcast_rpc.h"
#include "msrpcast_sip.h"

MODULE_VERSION

msrpcast_config *msrpcast_cfg = NULL;
str msrpcast_control_socket = STR_NULL;
str msrpcast_contact = STR_NULL;
str msrpcast_outbound_proxy = STR_NULL;
int msrpcast_rpc_timeout_ms = 5000;
int msrpcast_ipc_fd[2] = {-1, -1};
int *msrpcast_engine_pid = NULL;

static msrpcast_client *client = NULL;
static int client_logged = 0;

static int mod_init(void);
static int child_init(int rank);
static void mod_destroy(void);

static int w_msrpcast_join3(
		sip_msg_t *msg, char *conf, char *participant, char *target);
static int w_msrpcast_join4(sip_msg_t *msg, char *conf, char *participant,
		char *target, char *display);
static int w_msrpcast_leave(sip_msg_t *msg, char *conf, char *participant);

/* clang-format off */
static cmd_export_t cmds[] = {
	{"msrpcast_join", (cmd_function)w_msrpcast_join3, 3, fixup_spve_all,
		fixup_free_spve_all, ANY_ROUTE},
	{"msrpcast_join", (cmd_function)w_msrpcast_join4, 4, fixup_spve_all,
		fixup_free_spve_all, ANY_ROUTE},
	{"msrpcast_leave", (cmd_function)w_msrpcast_leave, 2, fixup_spve_all,
		fixup_free_spve_all, ANY_ROUTE},
	{"msrpcast_offer_in", (cmd_function)w_msrpcast_offer_in, 2, fixup_spve_all,
		fixup_free_spve_all, REQUEST_ROUTE},
	{"msrpcast_offer_in_end", (cmd_function)w_msrpcast_offer_in_end, 0, 0, 0,
		REQUEST_ROUTE},
	{0, 0, 0, 0, 0, 0}
};
/* clang-format on */

/*
 * Engine settings: every key goes to msrpcast_config_set, which checks the value and names the
 * key and the reason when it refuses it. Kamailio's param_func_t gets no name, so each key has
 * a one-line handler; each is exported for string and integer values.
 */
static int engine_param(const char *key, modparam_t type, void *val)
{
	char num[32];
	const char *v;
	const char *emsg = NULL;
	size_t elen = 0;
	msrpcast_result r;
	str *dst = NULL;

	if(msrpcast_cfg == NULL) {
		r = msrpcast_config_new(&msrpcast_cfg);
		if(r != MSRPCAST_OK) {
			LM_ERR("msrpcast_config_new: %s\n", msrpcast_rc_name(r));
			return -1;
		}
	}
	if(PARAM_TYPE_MASK(type) == PARAM_INT) {
		snprintf(num, sizeof(num), "%d", (int)(long)val);
		v = num;
	} else {
		v = (const char *)val;
		if(v == NULL)
			v = "";
	}
	r = msrpcast_config_set(msrpcast_cfg, key, strlen(key), v, strlen(v));
	if(r != MSRPCAST_OK) {
		if(msrpcast_config_error(msrpcast_cfg, &emsg, &elen) != MSRPCAST_OK
				|| emsg == NULL) {
			emsg = msrpcast_rc_name(r);
			elen = strlen(emsg);
		}
		LM_ERR("modparam msrpcast %s: %.*s\n", key, (int)elen, emsg);
		return -1;
	}
	/* The C side uses these three too. */
	if(strcmp(key, "control_socket") == 0)
		dst = &msrpcast_control_socket;
	else if(strcmp(key, "contact") == 0)
		dst = &msrpcast_contact;
	else if(strcmp(key, "outbound_proxy") == 0)
		dst = &msrpcast_outbound_proxy;
	if(dst != NULL) {
		if(dst->s)
			pkg_free(dst->s);
		dst->len = (int)strlen(v);
		dst->s = pkg_malloc(dst->len + 1);
		if(dst->s == NULL) {
			PKG_MEM_ERROR;
			return -1;
		}
		memcpy(dst->s, v, dst->len + 1);
	}
	return 0;
}

/* clang-format off */
#define ENGINE_PARAM(k)                                 \
	static int mp_##k(modparam_t type, void *val)       \
	{                                                   \
		return engine_param(#k, type, val);             \
	}
#define ENGINE_EXPORT(k)                                      \
	{#k, PARAM_STRING | PARAM_USE_FUNC, (void *)mp_##k},      \
	{#k, PARAM_INT | PARAM_USE_FUNC, (void *)mp_##k}

#define ENGINE_KEYS(X)                   \
	X(http_enabled)                      \
	X(http_listen)                       \
	X(http_token)                        \
	X(http_max_connections)              \
	X(http_max_uploads)                  \
	X(http_idle_timeout_ms)              \
	X(http_sse_interval_ms)              \
	X(http_head_timeout_ms)              \
	X(http_allowed_hosts)                \
	X(http_cors_origins)                 \
	X(http_login_max_failures)           \
	X(http_max_event_streams)            \
	X(http_event_stream_max_ms)          \
	X(http_tls_cert)                     \
	X(http_tls_key)                      \
	X(http_hsts_max_age_s)               \
	X(msrp_listen)                       \
	X(msrp_advertise)                    \
	X(msrp_reuse_port)                   \
	X(msrp_max_pending)                  \
	X(msrp_pending_max_bytes)            \
	X(max_name_lookups)                  \
	X(max_queued_commands)               \
	X(msrp_max_owed_responses)           \
	X(msrp_max_report_ranges)            \
	X(msrp_tls)                          \
	X(tls_cert)                          \
	X(tls_key)                           \
	X(tls_ca)                            \
	X(tls_verify)                        \
	X(tls_verify_cache)                  \
	X(tls_handshake_timeout_ms)          \
	X(spool_dir)                         \
	X(spool_max_bytes)                   \
	X(max_file_bytes)                    \
	X(spool_persist)                     \
	X(spool_read_ahead_bytes)            \
	X(spool_hash_nice)                   \
	X(chunk_bytes)                       \
	X(direct_chunk_bytes)                \
	X(window_bytes)                      \
	X(max_window_bytes)                  \
	X(transaction_timeout_ms)            \
	X(report_timeout_ms)                 \
	X(answer_timeout_ms)                 \
	X(connect_timeout_ms)                \
	X(resume_retries)                    \
	X(resume_backoff_ms)                 \
	X(io_threads)                        \
	X(offer_to_late_joiners)             \
	X(sender_uri)                        \
	X(contact)                           \
	X(outbound_proxy)                    \
	X(max_conferences)                   \
	X(max_participants_per_conference)   \
	X(max_participants)                  \
	X(max_files_per_conference)          \
	X(max_finished_transfers)            \
	X(finished_transfer_ttl_ms)          \
	X(max_path_uris)                     \
	X(offer_in_per_participant_per_min)  \
	X(offer_in_max_sessions)             \
	X(accept_types)                      \
	X(success_report)                    \
	X(bind_empty_send)                   \
	X(log_level)                         \
	X(control_socket)                    \
	X(upload_dir)

/* clang-format on */

ENGINE_KEYS(ENGINE_PARAM)

#define ENGINE_EXPORT_COMMA(k) ENGINE_EXPORT(k),

/* clang-format off */
static param_export_t params[] = {
	ENGINE_KEYS(ENGINE_EXPORT_COMMA)
	{"rpc_timeout_ms", PARAM_INT, &msrpcast_rpc_timeout_ms},
	{0, 0, 0}
};

struct module_exports exports = {
	"msrpcast",       /* module name */
	DEFAULT_DLFLAGS,  /* dlopen flags */
	cmds,             /* cfg functions */
	params,           /* modparams */
	0,                /* RPC commands: registered in mod_init */
	0,                /* pseudo-variables */
	0,                /* response handling */
	mod_init,         /* module init */
	child_init,       /* per-child init */
	mod_destroy       /* destroy */
};
/* clang-format on */

/* contact default: sip:msrpcast@<first listen address>:<port>[;transport=tcp]. */
static int derive_contact(void)
{
	struct socket_info *si = get_first_socket();
	str *addr, *port;
	char buf[512];
	int n;

	if(si == NULL) {
		LM_ERR("no listen socket to derive the contact from: set modparam "
			   "contact\n");
		return -1;
	}
	addr = si->useinfo.name.len > 0 ? &si->useinfo.name : &si->address_str;
	port = si->useinfo.port_no_str.len > 0 ? &si->useinfo.port_no_str
										   : &si->port_no_str;
	n = snprintf(buf, sizeof(buf), "sip:msrpcast@%.*s:%.*s%s", addr->len,
			addr->s, port->len, port->s,
			si->proto == PROTO_TCP ? ";transport=tcp" : "");
	if(n <= 0 || n >= (int)sizeof(buf))
		return -1;
	msrpcast_contact.s = pkg_malloc(n + 1);
	if(msrpcast_contact.s == NULL) {
		PKG_MEM_ERROR;
		return -1;
	}
	memcpy(msrpcast_contact.s, buf, n + 1);
	msrpcast_contact.len = n;
	return 0;
}

/* control_socket default: <runtime dir>/msrpcast.sock (kamailio -Y sets the runtime dir). */
static int derive_control_socket(void)
{
	const char *dir = runtime_dir ? runtime_dir : RUN_DIR;
	char buf[512];
	int n;

	n = snprintf(buf, sizeof(buf), "%s%smsrpcast.sock", dir,
			(dir[0] && dir[strlen(dir) - 1] == '/') ? "" : "/");
	if(n <= 0 || n >= (int)sizeof(buf))
		return -1;
	return engine_param("control_socket", PARAM_STRING, buf);
}

/* Socket buffer size asked for on each end of the reply socketpair. */
#define MSRPCAST_IPC_BUFFER (4 * 1024 * 1024)

/*
 * Sets SO_SNDBUF or SO_RCVBUF of one end of the reply socketpair. A refusal is logged with its
 * reason; so is a size the kernel capped (net.core.wmem_max / rmem_max): the pair works either
 * way, with less room for bursts.
 */
static void ipc_buffer(int fd, int opt, const char *name, int want)
{
	int got = 0;
	socklen_t glen = sizeof(got);

	if(setsockopt(fd, SOL_SOCKET, opt, &want, sizeof(want)) < 0) {
		LM_WARN("reply socketpair: setsockopt %s %d: %s; kernel default kept\n",
				name, want, strerror(errno));
		return;
	}
	if(getsockopt(fd, SOL_SOCKET, opt, &got, &glen) < 0) {
		LM_WARN("reply socketpair: getsockopt %s: %s\n", name, strerror(errno));
		return;
	}
	/* Linux reports twice the size it accounts for (bookkeeping overhead). */
	if(got / 2 < want)
		LM_INFO("reply socketpair: %s capped by the kernel: %d, asked %d\n",
				name, got, want);
	else
		LM_DBG("reply socketpair: %s %d bytes\n", name, got);
}

static int mod_init(void)
{
	const char *emsg = NULL;
	size_t elen = 0;
	msrpcast_result r;

	LM_INFO("initializing %s\n", msrpcast_version());
	if(msrpcast_cfg == NULL) {
		r = msrpcast_config_new(&msrpcast_cfg);
		if(r != MSRPCAST_OK) {
			LM_ERR("msrpcast_config_new: %s\n", msrpcast_rc_name(r));
			return -1;
		}
	}
	if(msrpcast_control_socket.len == 0 && derive_control_socket() < 0) {
		LM_ERR("cannot derive the control socket path: set modparam "
			   "control_socket\n");
		return -1;
	}
	if(msrpcast_contact.len == 0 && derive_contact() < 0)
		return -1;
	r = msrpcast_config_validate(msrpcast_cfg);
	if(r != MSRPCAST_OK) {
		if(msrpcast_config_error(msrpcast_cfg, &emsg, &elen) != MSRPCAST_OK
				|| emsg == NULL) {
			emsg = msrpcast_rc_name(r);
			elen = strlen(emsg);
		}
		LM_ERR("invalid msrpcast settings: %.*s\n", (int)elen, emsg);
		return -1;
	}
	if(msrpcast_sip_init() < 0)
		return -1;
	if(msrpcast_rpc_init() < 0)
		return -1;

	if(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, msrpcast_ipc_fd) < 0) {
		LM_ERR("socketpair: %s\n", strerror(errno));
		return -1;
	}
	/* Room for bursts of replies (each a few hundred bytes); a full socket drops, never blocks.
	 * Not fatal: with the kernel's default size only a larger burst is dropped (and logged). */
	ipc_buffer(msrpcast_ipc_fd[1], SO_SNDBUF, "SO_SNDBUF", MSRPCAST_IPC_BUFFER);
	ipc_buffer(msrpcast_ipc_fd[0], SO_RCVBUF, "SO_RCVBUF", MSRPCAST_IPC_BUFFER);

	msrpcast_engine_pid = shm_malloc(sizeof(int));
	if(msrpcast_engine_pid == NULL) {
		SHM_MEM_ERROR;
		return -1;
	}
	*msrpcast_engine_pid = 0;

	/* One extra process: the engine. */
	register_procs(1);
	cfg_register_child(1);
	LM_INFO("contact %.*s, control socket %.*s\n", msrpcast_contact.len,
			msrpcast_contact.s, msrpcast_control_socket.len,
			msrpcast_control_socket.s);
	return 0;
}

static int child_init(int rank)
{
	int pid;

	if(rank == PROC_INIT)
		return 0;
	if(rank == PROC_MAIN) {
		pid = fork_process(PROC_TIMER, "msrpcast engine", 1);
		if(pid < 0) {
			LM_ERR("cannot fork the msrpcast engine process\n");
			return -1;
		}
		if(pid == 0) {
			/* The engine process: tm was initialised for PROC_TIMER by fork_process. */
			if(cfg_child_init() != 0) {
				LM_CRIT("cfg_child_init failed in the msrpcast engine "
						"process\n");
				exit(-1);
			}
			msrpcast_proc_run(); /* never returns */
			exit(-1);
		}
		*msrpcast_engine_pid = pid;
		return 0;
	}
	/* A process that may run cfg routes or RPC: try to open its client now; on failure it is
	 * retried at first use (the engine process may still be starting). */
	(void)msrpcast_client_get();
	return 0;
}

static void mod_destroy(void)
{
	msrpcast_client_free(client);
	client = NULL;
	msrpcast_sip_destroy();
	if(msrpcast_engine_pid) {
		shm_free(msrpcast_engine_pid);
		msrpcast_engine_pid = NULL;
	}
	/* The config stays allocated until exit: children forked from this process share it. */
}

msrpcast_client *msrpcast_client_get(void)
{
	msrpcast_result r;

	if(client != NULL)
		return client;
	r = msrpcast_client_open(msrpcast_control_socket.s,
			(size_t)msrpcast_control_socket.len, &client);
	if(r != MSRPCAST_OK) {
		client = NULL;
		/* Logged once per process until it works: the engine may simply not be up yet. */
		if(!client_logged) {
			LM_DBG("cannot open a client to %.*s yet: %s\n",
					msrpcast_control_socket.len, msrpcast_control_socket.s,
					msrpcast_rc_name(r));
			client_logged = 1;
		}
		return NULL;
	}
	client_logged = 0;
	return client;
}

/* Results of the cfg functions: 1 ok, -1 bad input, -2 engine unreachable, -3 engine busy. */
static int result_to_cfg(
		msrpcast_result r, const char *what, str *conf, str *participant)
{
	switch(r) {
		case MSRPCAST_OK:
			return 1;
		case MSRPCAST_ERR_BUSY:
			LM_WARN("%s %.*s/%.*s: engine busy\n", what, conf->len, conf->s,
					participant->len, participant->s);
			return -3;
		case MSRPCAST_ERR_UNREACHABLE:
		case MSRPCAST_ERR_STOPPED:
			LM_ERR("%s %.*s/%.*s: engine unreachable (%s)\n", what, conf->len,
					conf->s, participant->len, participant->s,
					msrpcast_rc_name(r));
			return -2;
		default:
			LM_ERR("%s %.*s/%.*s: %s\n", what, conf->len, conf->s,
					participant->len, participant->s, msrpcast_rc_name(r));
			return -1;
	}
}

static int ki_msrpcast_join_display(
		sip_msg_t *msg, str *conf, str *participant, str *target, str *display)
{
	msrpcast_client *c;
	msrpcast_result r;

	if(conf == NULL || participant == NULL || target == NULL || conf->len <= 0
			|| participant->len <= 0 || target->len <= 0) {
		LM_ERR("msrpcast_join: conference, participant and target must not be "
			   "empty\n");
		return -1;
	}
	c = msrpcast_client_get();
	if(c == NULL)
		return result_to_cfg(
				MSRPCAST_ERR_UNREACHABLE, "join", conf, participant);
	r = msrpcast_client_join(c, conf->s, (size_t)conf->len, participant->s,
			(size_t)participant->len, target->s, (size_t)target->len,
			(display && display->len > 0) ? display->s : NULL,
			(display && display->len > 0) ? (size_t)display->len : 0);
	if(r == MSRPCAST_OK)
		LM_DBG("join %.*s/%.*s -> %.*s\n", conf->len, conf->s, participant->len,
				participant->s, target->len, target->s);
	return result_to_cfg(r, "join", conf, participant);
}

static int ki_msrpcast_join(
		sip_msg_t *msg, str *conf, str *participant, str *target)
{
	return ki_msrpcast_join_display(msg, conf, participant, target, NULL);
}

static int ki_msrpcast_leave(sip_msg_t *msg, str *conf, str *participant)
{
	msrpcast_client *c;
	msrpcast_result r;

	if(conf == NULL || participant == NULL || conf->len <= 0
			|| participant->len <= 0) {
		LM_ERR("msrpcast_leave: conference and participant must not be "
			   "empty\n");
		return -1;
	}
	c = msrpcast_client_get();
	if(c == NULL)
		return result_to_cfg(
				MSRPCAST_ERR_UNREACHABLE, "leave", conf, participant);
	r = msrpcast_client_leave(c, conf->s, (size_t)conf->len, participant->s,
			(size_t)participant->len);
	return result_to_cfg(r, "leave", conf, participant);
}

static int get_params(sip_msg_t *msg, char **p, str *out, int n, const char *fn)
{
	int i;

	for(i = 0; i < n; i++) {
		if(fixup_get_svalue(msg, (gparam_t *)p[i], &out[i]) != 0) {
			LM_ERR("%s: cannot evaluate parameter %d\n", fn, i + 1);
			return -1;
		}
	}
	return 0;
}

static int w_msrpcast_join3(
		sip_msg_t *msg, char *conf, char *participant, char *target)
{
	char *p[3] = {conf, participant, target};
	str v[3];

	if(get_params(msg, p, v, 3, "msrpcast_join") < 0)
		return -1;
	return ki_msrpcast_join(msg, &v[0], &v[1], &v[2]);
}

static int w_msrpcast_join4(sip_msg_t *msg, char *conf, char *participant,
		char *target, char *display)
{
	char *p[4] = {conf, participant, target, display};
	str v[4];

	if(get_params(msg, p, v, 4, "msrpcast_join") < 0)
		return -1;
	return ki_msrpcast_join_display(msg, &v[0], &v[1], &v[2], &v[3]);
}

static int w_msrpcast_leave(sip_msg_t *msg, char *conf, char *participant)
{
	char *p[2] = {conf, participant};
	str v[2];

	if(get_params(msg, p, v, 2, "msrpcast_leave") < 0)
		return -1;
	return ki_msrpcast_leave(msg, &v[0], &v[1]);
}

/* clang-format off */
static sr_kemi_t sr_kemi_msrpcast_exports[] = {
	{ str_init("msrpcast"), str_init("join"),
		SR_KEMIP_INT, ki_msrpcast_join,
		{ SR_KEMIP_STR, SR_KEMIP_STR, SR_KEMIP_STR,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ str_init("msrpcast"), str_init("join_display"),
		SR_KEMIP_INT, ki_msrpcast_join_display,
		{ SR_KEMIP_STR, SR_KEMIP_STR, SR_KEMIP_STR,
			SR_KEMIP_STR, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ str_init("msrpcast"), str_init("leave"),
		SR_KEMIP_INT, ki_msrpcast_leave,
		{ SR_KEMIP_STR, SR_KEMIP_STR, SR_KEMIP_NONE,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ str_init("msrpcast"), str_init("offer_in"),
		SR_KEMIP_INT, msrpcast_offer_in,
		{ SR_KEMIP_STR, SR_KEMIP_STR, SR_KEMIP_NONE,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ str_init("msrpcast"), str_init("offer_in_end"),
		SR_KEMIP_INT, msrpcast_offer_in_end,
		{ SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ {0, 0}, {0, 0}, 0, NULL, { 0, 0, 0, 0, 0, 0 } }
};
/* clang-format on */

int mod_register(char *path, int *dlflags, void *p1, void *p2)
{
	sr_kemi_modules_add(sr_kemi_msrpcast_exports);
	return 0;
}
