/*
 * The server: listeners and their credentials (the TLS state and its reload: tls.c), one
 * grpc_server per distinct service set, method registration, one completion queue and thread
 * per worker, worker notifications, reloads (admin token, decision log) and the shutdown
 * sequence.
 *
 * Start order: build the method tables, grpc_init, create one server per service set with the
 * same channel args, create one "next" queue per worker and register it with every server,
 * register every method, add the listeners (socket permissions right after each bind), start
 * the servers, pre-request calls on every queue for every server, then start the threads.
 * Nothing can arrive before the threads run: requested calls simply wait in their queues.
 *
 * Why one server per service set and not one per listener: listeners that serve the same
 * services share a server (and its pre-requested calls), so the common deployments (one
 * listener; a socket and a TCP port serving everything) run exactly one server. Every queue is
 * registered with every server, so the worker threads, their read views and their call pools
 * are shared: a second server costs only its pre-requested call slots.
 *
 * Stop order (GRPC_C_CORE.md): NOT_SERVING, stop re-arming, grpc_server_shutdown_and_notify
 * on every server, wake the workers so Watch streams end, wait up to the grace period for the
 * shutdown tags, grpc_server_cancel_all_calls, wait for the tags, wait until every call that
 * arrived has been recycled (a call handed to the writer may still be answered after its
 * stream was cancelled), grpc_server_destroy, shut down each queue (its thread drains it and
 * exits), join, free the calls and views, destroy the queues, grpc_shutdown.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc_security.h>
#include <grpc/support/log.h>

#include "rpc/core.h"
#include "rpc/reflection.h"

#define DEFAULT_MAX_MESSAGE	(4u * 1024 * 1024)
#define DEFAULT_CALLS_PER_QUEUE 64
/* Checks parked for their min_sequence at most (each holds one call object). */
#define DEFAULT_MIN_SEQ_WAIT_MAX 1024
/* Slots per queue for methods that are called rarely (admin, health, streams). */
#define FEW_CALLS 4
#define MAX_SRVS  4 /* distinct service sets: all, checks, admin, health */

static struct ent_rpc_opts default_opts(const struct ent_rpc_opts *o)
{
	struct ent_rpc_opts d = *o;
	if (!d.max_message_bytes)
		d.max_message_bytes = DEFAULT_MAX_MESSAGE;
	if (d.max_message_bytes > INT_MAX)
		d.max_message_bytes = INT_MAX;
	if (!d.calls_per_queue)
		d.calls_per_queue = DEFAULT_CALLS_PER_QUEUE;
	if (!d.min_seq_wait_max)
		d.min_seq_wait_max = DEFAULT_MIN_SEQ_WAIT_MAX;
	if (!d.threads) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		d.threads = n > 0 ? (unsigned)n : 1;
	}
	if (d.threads > 256)
		d.threads = 256;
	return d;
}

/* ---- gRPC's own log lines go through ours ---------------------------------------------- */

/*
 * gRPC's error lines are mostly about what a peer sent (a bad header, a malformed frame) and
 * can quote header values of requests nobody authenticated: one per request let any client
 * write into the warn log at will. So at most one gRPC line a second is logged at warn, with
 * the count of those held back since; the rest go to debug. The two counters are the only
 * state, shared by gRPC's threads.
 */
static _Atomic int64_t grpc_log_second;
static _Atomic uint64_t grpc_log_held;

static void grpc_log_sink(gpr_log_func_args *a)
{
	char at[64], held[24] = "";
	enum ent_log_level lvl = a->severity == GPR_LOG_SEVERITY_ERROR	? ENT_LOG_WARN
				 : a->severity == GPR_LOG_SEVERITY_INFO ? ENT_LOG_INFO
									: ENT_LOG_DEBUG;
	if (lvl > ENT_LOG_DEBUG) {
		int64_t sec = ent_time_now_ms() / 1000, last = atomic_load(&grpc_log_second);
		if (sec != last && atomic_compare_exchange_strong(&grpc_log_second, &last, sec)) {
			uint64_t n = atomic_exchange(&grpc_log_held, 0);
			if (n)
				snprintf(held, sizeof(held), "%llu", (unsigned long long)n);
		} else {
			atomic_fetch_add(&grpc_log_held, 1);
			lvl = ENT_LOG_DEBUG;
		}
	}
	if (held[0]) {
		ent_log(ENT_LOG_WARN, "grpc: log lines held back (rate limit: one a second)",
			"source", "grpc", "held", held, NULL);
	}
	const char *file = strrchr(a->file, '/');
	snprintf(at, sizeof(at), "%s:%d", file ? file + 1 : a->file, a->line);
	ent_log(lvl, a->message, "source", "grpc", "at", at, NULL);
}

/* ---- method names (metrics indexes) ----------------------------------------------------- */

/*
 * The metrics' method indexes follow one fixed order: check methods, the check stream, health
 * methods, Watch, admin methods, the two reflection streams, then "other". The tables are
 * read, not copied, so a method added to a service table is counted without a change here.
 */
struct mindex {
	unsigned check, stream, health, watch, admin, refl_alpha, refl_v1, other;
};

static struct mindex method_indexes(void)
{
	struct mindex x;
	x.check = 0;
	x.stream = x.check + (unsigned)ent_rpc_check_methods_count;
	x.health = x.stream + 1;
	x.watch = x.health + (unsigned)ent_rpc_health_methods_count;
	x.admin = x.watch + 1;
	x.refl_alpha = x.admin + (unsigned)ent_rpc_admin_methods_count;
	x.refl_v1 = x.refl_alpha + 1;
	x.other = x.refl_v1 + 1;
	return x;
}

size_t ent_rpc_method_names(const char **names, size_t cap)
{
	struct mindex x = method_indexes();
	size_t n = x.other + 1;
	for (size_t i = 0; i < n && i < cap; i++) {
		const char *p;
		if (i < x.stream)
			p = ent_rpc_check_methods[i - x.check].path;
		else if (i == x.stream)
			p = ENT_CHECK_STREAM_PATH;
		else if (i < x.watch)
			p = ent_rpc_health_methods[i - x.health].path;
		else if (i == x.watch)
			p = ENT_HEALTH_WATCH_PATH;
		else if (i < x.refl_alpha)
			p = ent_rpc_admin_methods[i - x.admin].path;
		else if (i == x.refl_alpha)
			p = ENT_REFLECTION_PATH_V1ALPHA;
		else if (i == x.refl_v1)
			p = ENT_REFLECTION_PATH_V1;
		else
			p = ENT_RPC_METHOD_OTHER;
		names[i] = p;
	}
	return n;
}

/* ---- listeners -------------------------------------------------------------------------- */

/*
 * A unix socket file left by a process that died keeps bind() from working; one that a live
 * process still listens on must not be stolen. Only a socket nobody accepts on is removed.
 */
static int clear_stale_socket(const char *addr, struct ent_err *err)
{
	const char *path = addr + 5;
	if (strncmp(path, "//", 2) == 0)
		path += 2; /* unix:///abs/path */
	struct stat st;
	if (lstat(path, &st) != 0)
		return 0;
	if (!S_ISSOCK(st.st_mode))
		return ent_err_set(err, ENT_EEXIST, "listen %s: %s exists and is not a socket",
				   addr, path);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sun.sun_path))
		return ent_err_set(err, ENT_EINVAL, "listen %s: socket path too long", addr);
	strcpy(sun.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return ent_err_set(err, ENT_EIO, "listen %s: socket: %s", addr, strerror(errno));
	int rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	int e = errno;
	close(fd);
	if (rc == 0)
		return ent_err_set(err, ENT_EEXIST, "listen %s: another process is serving on it",
				   addr);
	if (e == ECONNREFUSED && unlink(path) != 0 && errno != ENOENT)
		return ent_err_set(err, ENT_EIO, "listen %s: cannot remove stale socket: %s", addr,
				   strerror(errno));
	return 0;
}

/*
 * Bind one listener to its server. Credentials are chosen here and only here. The socket file
 * of a unix listener exists once grpc_server_add_http2_port returns (gRPC binds and listens
 * there), so its mode and owner are applied right away, before the server starts accepting.
 */
static int add_listener(struct ent_rpc *r, grpc_server *server, const struct ent_config_listener *l,
			size_t index, struct ent_err *err)
{
	const char *addr = l->address;
	if (!addr || !*addr)
		return ent_err_set(err, ENT_EINVAL, "listen: empty address");
	bool unix_sock = strncmp(addr, "unix:", 5) == 0;
	if (unix_sock) {
		int rc = clear_stale_socket(addr, err);
		if (rc)
			return rc;
	}
	grpc_server_credentials *creds;
	if (l->tls) {
		struct ent_tls *t = NULL;
		int rc = ent_rpc_tls_new(r, l, &t, err);
		if (rc)
			return rc;
		grpc_ssl_server_credentials_options *o =
			grpc_ssl_server_credentials_create_options_using_config_fetcher(
				t->request, ent_rpc_tls_fetch, t);
		creds = o ? grpc_ssl_server_credentials_create_with_options(o) : NULL;
		if (!creds)
			return ent_err_set(err, ENT_EIO, "listen %s: cannot create TLS credentials",
					   addr);
	} else {
		creds = grpc_insecure_server_credentials_create();
	}
	int port = grpc_server_add_http2_port(server, addr, creds);
	grpc_server_credentials_release(creds);
	if (port == 0)
		return ent_err_set(err, ENT_EUNAVAIL,
				   "listen %s: cannot bind (address in use, not resolvable, or no "
				   "permission%s)",
				   addr, l->tls ? ", or the TLS certificate was refused" : "");
	if (unix_sock) {
		int rc = ent_config_apply_socket_perms(l, index, err);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- methods ---------------------------------------------------------------------------- */

static void add_method(struct ent_srv *s, const char *path, const struct ent_method *m,
		       uint8_t kind, bool auth, unsigned prearm, unsigned mindex)
{
	struct ent_rmethod *rm = &s->methods[s->n_methods++];
	rm->path = path;
	rm->m = m;
	rm->kind = kind;
	rm->auth = auth;
	rm->prearm = prearm;
	rm->mindex = mindex;
	rm->srv = s;
}

/* The method table of one server: only the services it serves (health always). */
static int build_methods(struct ent_rpc *r, struct ent_srv *s, struct ent_err *err)
{
	size_t n = ent_rpc_check_methods_count + 1 + ent_rpc_health_methods_count + 1 +
		   ent_rpc_admin_methods_count + 2;
	s->methods = calloc(n, sizeof(*s->methods));
	if (!s->methods)
		return ent_err_set(err, ENT_ENOMEM, "rpc: out of memory");
	unsigned hot = r->opts.calls_per_queue;
	unsigned few = hot < FEW_CALLS ? hot : FEW_CALLS;
	bool protect = r->opts.protect_checks;
	struct mindex x = method_indexes();

	if (s->services & ENT_SVC_CHECKS) {
		for (size_t i = 0; i < ent_rpc_check_methods_count; i++)
			add_method(s, ent_rpc_check_methods[i].path, &ent_rpc_check_methods[i],
				   ENT_MK_UNARY, protect, hot, x.check + (unsigned)i);
		add_method(s, ENT_CHECK_STREAM_PATH, NULL, ENT_MK_CHECK_STREAM, protect,
			   hot / 4 > few ? hot / 4 : few, x.stream);
	}
	/* Health stays open even when checks are protected: probes carry no credential. */
	for (size_t i = 0; i < ent_rpc_health_methods_count; i++)
		add_method(s, ent_rpc_health_methods[i].path, &ent_rpc_health_methods[i],
			   ENT_MK_UNARY, false, few, x.health + (unsigned)i);
	add_method(s, ENT_HEALTH_WATCH_PATH, NULL, ENT_MK_WATCH, false, few, x.watch);
	if (s->services & ENT_SVC_ADMIN)
		for (size_t i = 0; i < ent_rpc_admin_methods_count; i++)
			add_method(s, ent_rpc_admin_methods[i].path, &ent_rpc_admin_methods[i],
				   ENT_MK_UNARY, true, few, x.admin + (unsigned)i);
	/* Reflection describes the API, so it is where the API is: not on a listener that
	   serves health alone (a probe port on the pod network). Protected like the checks. */
	if (r->reflection && (s->services & (ENT_SVC_CHECKS | ENT_SVC_ADMIN))) {
		add_method(s, ENT_REFLECTION_PATH_V1ALPHA, NULL, ENT_MK_REFLECTION, protect, 1,
			   x.refl_alpha);
		add_method(s, ENT_REFLECTION_PATH_V1, NULL, ENT_MK_REFLECTION, protect, 1,
			   x.refl_v1);
	}
	s->generic = (struct ent_rmethod){
		.path = "*", .kind = ENT_MK_GENERIC, .prearm = few, .mindex = x.other, .srv = s};
	return 0;
}

static int register_methods(struct ent_srv *s, struct ent_err *err)
{
	for (size_t i = 0; i < s->n_methods; i++) {
		struct ent_rmethod *rm = &s->methods[i];
		/* Streams read their messages themselves; everything else (unary methods and
		   Watch, which has exactly one request) gets its request with the call. */
		grpc_server_register_method_payload_handling ph =
			rm->kind == ENT_MK_CHECK_STREAM || rm->kind == ENT_MK_REFLECTION
				? GRPC_SRM_PAYLOAD_NONE
				: GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER;
		rm->handle = grpc_server_register_method(s->server, rm->path, NULL, ph, 0);
		if (!rm->handle)
			return ent_err_set(err, ENT_EINVAL, "rpc: cannot register method %s",
					   rm->path);
	}
	return 0;
}

static int prearm(struct ent_wstate *ws, const struct ent_rmethod *rm, struct ent_err *err)
{
	for (unsigned i = 0; i < rm->prearm; i++) {
		struct ent_call *c = ent_rpc_call_get(ws);
		if (!c)
			return ent_err_set(err, ENT_ENOMEM, "rpc: out of memory");
		if (ent_rpc_call_arm(c, rm) != 0)
			return ent_err_set(err, ENT_EUNAVAIL, "rpc: cannot request calls for %s",
					   rm->path);
	}
	return 0;
}

/* ---- channel args ----------------------------------------------------------------------- */

static void int_arg(grpc_arg *a, size_t *n, const char *key, int64_t v)
{
	if (v > INT_MAX)
		v = INT_MAX;
	a[*n].type = GRPC_ARG_INTEGER;
	a[*n].key = (char *)key;
	a[*n].value.integer = (int)v;
	(*n)++;
}

/*
 * Limits that keep one client from hurting the others; 0 leaves gRPC's default. The threat
 * each one answers, and what gRPC 1.51 cannot bound, are in docs/security.md.
 */
#define SERVER_ARGS_MAX 16
static size_t server_args(const struct ent_rpc_opts *o, grpc_resource_quota *quota, grpc_arg *a)
{
	size_t n = 0;
	memset(a, 0, SERVER_ARGS_MAX * sizeof(*a));
	/* Memory of every connection's buffers together, shared by all of entd's servers. */
	if (quota) {
		a[n].type = GRPC_ARG_POINTER;
		a[n].key = (char *)GRPC_ARG_RESOURCE_QUOTA;
		a[n].value.pointer.p = quota;
		a[n].value.pointer.vtable = grpc_resource_quota_arg_vtable();
		n++;
	}
	/* Identity only unless configured: a 2 MB gzip body inflated to 2 GiB before the size
	   limit was applied. A disabled algorithm is refused (UNIMPLEMENTED) before inflating. */
	int_arg(a, &n, GRPC_COMPRESSION_CHANNEL_ENABLED_ALGORITHMS_BITSET,
		o->compression ? (1 << GRPC_COMPRESS_ALGORITHMS_COUNT) - 1
			       : 1 << GRPC_COMPRESS_NONE);
	if (o->max_metadata_bytes)
		int_arg(a, &n, GRPC_ARG_MAX_METADATA_SIZE, (int64_t)o->max_metadata_bytes);
	if (o->max_connection_idle_ms > 0)
		int_arg(a, &n, GRPC_ARG_MAX_CONNECTION_IDLE_MS, o->max_connection_idle_ms);
	if (o->max_connection_age_ms > 0)
		int_arg(a, &n, GRPC_ARG_MAX_CONNECTION_AGE_MS, o->max_connection_age_ms);
	int_arg(a, &n, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, (int64_t)o->max_message_bytes);
	int_arg(a, &n, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, (int64_t)o->max_message_bytes);
	/* A second daemon on the same port must fail to bind, not share the traffic. */
	int_arg(a, &n, GRPC_ARG_ALLOW_REUSEPORT, 0);
	if (o->max_concurrent_streams)
		int_arg(a, &n, GRPC_ARG_MAX_CONCURRENT_STREAMS, o->max_concurrent_streams);
	if (o->keepalive_time_ms > 0)
		int_arg(a, &n, GRPC_ARG_KEEPALIVE_TIME_MS, o->keepalive_time_ms);
	if (o->keepalive_timeout_ms > 0)
		int_arg(a, &n, GRPC_ARG_KEEPALIVE_TIMEOUT_MS, o->keepalive_timeout_ms);
	if (o->keepalive_permit_without_calls)
		int_arg(a, &n, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
	if (o->min_ping_interval_ms > 0)
		int_arg(a, &n, GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
			o->min_ping_interval_ms);
	return n;
}

/* ---- workers and notifications -------------------------------------------------------- */

void ent_rpc_notify(struct ent_wstate *ws)
{
	struct ent_rpc *r = ws->w.rpc;
	/* At most one notification in flight per worker; a change made while one is in flight
	   is seen when the worker handles it, because the worker clears the flag before it
	   looks at the state. */
	if (atomic_exchange(&ws->notify_armed, 1))
		return;
	grpc_call *call =
		grpc_channel_create_call(r->lame, NULL, GRPC_PROPAGATE_DEFAULTS, ws->cq,
					 grpc_slice_from_static_string("/entd.internal/Notify"),
					 NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	if (!call) {
		atomic_store(&ws->notify_armed, 0);
		ent_log(ENT_LOG_ERROR, "rpc: cannot notify a worker", NULL);
		return;
	}
	ws->notify_call = call;
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	op.data.recv_status_on_client.trailing_metadata = &ws->notify_md;
	op.data.recv_status_on_client.status = &ws->notify_status;
	op.data.recv_status_on_client.status_details = &ws->notify_details;
	if (grpc_call_start_batch(call, &op, 1, &ws->t_notify, NULL) != GRPC_CALL_OK) {
		ws->notify_call = NULL;
		grpc_call_unref(call);
		atomic_store(&ws->notify_armed, 0);
		ent_log(ENT_LOG_ERROR, "rpc: cannot notify a worker", NULL);
	}
}

static void on_notify(struct ent_wstate *ws)
{
	grpc_call_unref(ws->notify_call);
	ws->notify_call = NULL;
	grpc_slice_unref(ws->notify_details);
	grpc_metadata_array_destroy(&ws->notify_md);
	grpc_metadata_array_init(&ws->notify_md);
	atomic_store(&ws->notify_armed, 0);
	ent_rpc_call_collect_orphans(ws);
	ent_rpc_call_collect_resumed(ws);
	ent_rpc_health_watch_update(ws);
}

static void on_shutdown_tag(struct ent_rpc *r)
{
	pthread_mutex_lock(&r->mu);
	r->shutdowns_done++;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->mu);
}

static void dispatch(struct ent_wstate *ws, const grpc_event *ev)
{
	struct ent_tag *t = ev->tag;
	switch (t->kind) {
	case ENT_TAG_NOTIFY:
		on_notify(ws);
		break;
	case ENT_TAG_SHUTDOWN:
		on_shutdown_tag(t->owner);
		break;
	default:
		ent_rpc_call_on_event(t->owner, t->kind, ev->success != 0);
		break;
	}
}

/*
 * After each blocking wait the worker also takes the completions that are already waiting
 * (zero deadline), so that the checks among them are looked up as one batched B-tree walk
 * whose cache misses overlap (call.c: ent_rpc_call_prepare); then every completion taken is
 * dispatched, in queue order, before the worker waits again. No answer is ever left for a
 * later cycle.
 *
 * Gathering is bounded twice: at most ENT_DRAIN_MAX completions, and no more zero-deadline
 * polls once DRAIN_WINDOW_NS have passed since the blocking wait returned. A zero-deadline
 * poll that finds socket data reads and parses it (new requests), which delays the answers
 * already in hand; the window caps that delay at about one socket read.
 *
 * An empty drain is not free: a zero-deadline grpc_completion_queue_next polls (epoll_wait),
 * ~3k instructions, +10% per unary call at light load where every drain is empty (callgrind).
 * So after an empty drain the next DRAIN_BACKOFF completions are taken one by one; under load
 * the drains keep finding completions and run every cycle.
 */
#define DRAIN_BACKOFF	8
#define DRAIN_WINDOW_NS 20000

/* Take up to ENT_DRAIN_MAX - 1 more completions that are ready now into \a evs after the
   first; returns how many \a evs holds. */
static size_t drain_ready(struct ent_wstate *ws, grpc_event *evs)
{
	size_t n = 1;
	int64_t until = ent_time_mono_ns() + DRAIN_WINDOW_NS;
	while (n < ENT_DRAIN_MAX) {
		grpc_event ev =
			grpc_completion_queue_next(ws->cq, gpr_inf_past(GPR_CLOCK_REALTIME), NULL);
		if (ev.type != GRPC_OP_COMPLETE)
			break; /* empty (or shut down: the blocking wait sees it) */
		evs[n++] = ev;
		if (ent_time_mono_ns() >= until)
			break;
	}
	return n;
}

static void *worker_main(void *arg)
{
	struct ent_wstate *ws = arg;
	grpc_event evs[ENT_DRAIN_MAX];
	unsigned skip = 0; /* completions to take one by one before the next drain */
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(
			ws->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		evs[0] = ev;
		size_t n = 1;
		if (skip) {
			skip--;
		} else {
			n = drain_ready(ws, evs);
			if (n == 1)
				skip = DRAIN_BACKOFF;
		}
		if (n > 1)
			ent_rpc_call_prepare(ws, evs, n);
		for (size_t i = 0; i < n; i++)
			dispatch(ws, &evs[i]);
	}
	return NULL;
}

/* ---- start / stop ----------------------------------------------------------------------- */

static void wipe_free(char *secret)
{
	if (secret)
		explicit_bzero(secret, strlen(secret));
	free(secret);
}

/* Servers whose shutdown was started. */
static size_t shutdowns_started(const struct ent_rpc *r)
{
	size_t n = 0;
	for (size_t i = 0; i < r->n_srvs; i++)
		n += r->srvs[i].shutdown_started;
	return n;
}

/* Wait for every started shutdown's tag, up to \a ms (negative: forever). True if all came. */
static bool wait_shutdown(struct ent_rpc *r, int64_t ms)
{
	size_t want = shutdowns_started(r);
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	if (ms >= 0) {
		until.tv_sec += ms / 1000;
		until.tv_nsec += (ms % 1000) * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
	}
	pthread_mutex_lock(&r->mu);
	while (r->shutdowns_done < want) {
		if (ms < 0)
			pthread_cond_wait(&r->cond, &r->mu);
		else if (pthread_cond_timedwait(&r->cond, &r->mu, &until) == ETIMEDOUT)
			break;
	}
	bool done = r->shutdowns_done >= want;
	pthread_mutex_unlock(&r->mu);
	return done;
}

static size_t live_calls(const struct ent_rpc *r)
{
	size_t n = 0;
	for (unsigned i = 0; i < r->n_workers; i++)
		n += atomic_load_explicit(&r->workers[i].live, memory_order_acquire);
	return n;
}

/*
 * The drain: wait for the shutdown tags until the grace period is over or no call is left in
 * flight, whichever comes first. gRPC completes a shutdown only once every client connection
 * has closed, and an idle client keeps its connection open after the GOAWAY, so waiting for
 * the tags alone would spend the whole grace period on connections with nothing to finish.
 * No call is accepted once shutdown has started; one accepted just before may still sit in
 * its worker's queue, not yet counted, so "nothing in flight" must be seen twice, a poll
 * interval apart, before the connections are closed.
 * \return true if every tag came (nothing left to cancel).
 */
static bool drain(struct ent_rpc *r, int64_t grace_ms)
{
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int idle = 0;
	for (;;) {
		if (wait_shutdown(r, 20))
			return true;
		idle = live_calls(r) == 0 ? idle + 1 : 0;
		if (idle >= 2)
			return false;
		clock_gettime(CLOCK_MONOTONIC, &now);
		int64_t ms = (int64_t)(now.tv_sec - t0.tv_sec) * 1000 +
			     (now.tv_nsec - t0.tv_nsec) / 1000000;
		if (ms >= grace_ms)
			return false;
	}
}

static void cancel_all(struct ent_rpc *r)
{
	for (size_t i = 0; i < r->n_srvs; i++)
		if (r->srvs[i].server)
			grpc_server_cancel_all_calls(r->srvs[i].server);
}

/*
 * Shut the servers down and free everything. Works with or without running threads (a failed
 * start tears down through here too): without threads, this thread drains the queues.
 */
static void teardown(struct ent_rpc *r, int64_t grace_ms)
{
	bool threads = r->n_workers && r->workers[0].thread_started;

	atomic_store(&r->serving, false);
	atomic_store(&r->stopping, true);
	/* Checks parked for their min_sequence are answered now (UNAVAILABLE, shutting down),
	   not at their bound, and no new one parks: the drain below does not wait for them. */
	if (r->opts.writer && threads)
		ent_writer_wait_close(r->opts.writer);
	if (r->n_workers && r->workers[0].cq) {
		for (size_t i = 0; i < r->n_srvs; i++) {
			struct ent_srv *s = &r->srvs[i];
			if (!s->server)
				continue;
			grpc_server_shutdown_and_notify(s->server, r->workers[0].cq,
							&s->t_shutdown);
			s->shutdown_started = true;
		}
	}
	if (shutdowns_started(r)) {
		if (threads) {
			for (unsigned i = 0; i < r->n_workers; i++)
				ent_rpc_notify(&r->workers[i]);
			if (!drain(r, grace_ms)) {
				size_t live = live_calls(r);
				char n[24];
				snprintf(n, sizeof(n), "%zu", live);
				/* Idle connections alone also hold the shutdown tag: gRPC waits for
				   every channel to close, and cancelling is what closes them. */
				ent_log(live ? ENT_LOG_WARN : ENT_LOG_DEBUG,
					live ? "rpc: grace period over, cancelling calls"
					     : "rpc: calls drained, closing idle connections",
					"calls", n, NULL);
				cancel_all(r);
				wait_shutdown(r, -1);
			}
			/* A call cancelled above may still be waiting for the writer's answer; its
			   queue must outlive that answer. */
			for (unsigned ticks = 1; live_calls(r) > 0; ticks++) {
				struct timespec ts = {0, 1000000};
				nanosleep(&ts, NULL);
				if (ticks % 5000 == 0)
					ent_log(ENT_LOG_WARN,
						"rpc: still waiting for calls to finish", NULL);
			}
		} else {
			cancel_all(r);
			size_t want = shutdowns_started(r), got = 0;
			while (got < want) {
				grpc_event ev = grpc_completion_queue_next(
					r->workers[0].cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
				if (ev.type == GRPC_OP_COMPLETE &&
				    ((struct ent_tag *)ev.tag)->kind == ENT_TAG_SHUTDOWN)
					got++;
			}
		}
	}
	for (size_t i = 0; i < r->n_srvs; i++) {
		if (r->srvs[i].server)
			grpc_server_destroy(r->srvs[i].server);
		r->srvs[i].server = NULL;
	}
	for (unsigned i = 0; i < r->n_workers; i++) {
		struct ent_wstate *ws = &r->workers[i];
		if (!ws->cq)
			continue;
		grpc_completion_queue_shutdown(ws->cq);
		if (ws->thread_started) {
			pthread_join(ws->thread, NULL);
		} else {
			while (grpc_completion_queue_next(ws->cq,
							  gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
				       .type != GRPC_QUEUE_SHUTDOWN)
				;
		}
	}
	for (unsigned i = 0; i < r->n_workers; i++) {
		struct ent_wstate *ws = &r->workers[i];
		struct ent_call *c = ws->all;
		while (c) {
			struct ent_call *n = c->all_next;
			ent_rpc_call_free(c);
			c = n;
		}
		grpc_metadata_array_destroy(&ws->notify_md);
		if (ws->w.view)
			ent_store_view_free(ws->w.view);
		if (ws->cq)
			grpc_completion_queue_destroy(ws->cq);
	}
	if (r->lame)
		grpc_channel_destroy(r->lame);
	if (r->quota)
		grpc_resource_quota_unref(r->quota); /* the servers held their own references */
	for (size_t i = 0; i < r->n_srvs; i++)
		free(r->srvs[i].methods);
	free(r->srvs);
	free(r->workers);
	/* Every server is destroyed: gRPC holds no fetcher that could still read these. */
	for (size_t i = 0; i < r->n_tls; i++)
		ent_rpc_tls_free(r->tls[i]);
	free(r->tls);
	wipe_free(atomic_load(&r->token));
	for (size_t i = 0; i < r->n_old_tokens; i++)
		wipe_free(r->old_tokens[i]);
	free(r->old_tokens);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->mu);
	free(r);
	grpc_shutdown_blocking();
}

/* The listeners as given: the full form, or the plain addresses serving everything. */
static int listeners_of(const struct ent_rpc_opts *o, struct ent_config_listener **out, size_t *n,
			bool *owned, struct ent_err *err)
{
	if (o->n_listeners) {
		*out = (struct ent_config_listener *)o->listeners;
		*n = o->n_listeners;
		*owned = false;
		return 0;
	}
	struct ent_config_listener *ls = calloc(o->n_listen, sizeof(*ls));
	if (!ls)
		return ent_err_set(err, ENT_ENOMEM, "rpc: out of memory");
	for (size_t i = 0; i < o->n_listen; i++) {
		ls[i].address = (char *)o->listen[i];
		ls[i].services = ENT_SVC_ALL;
		ls[i].mode = -1;
	}
	*out = ls;
	*n = o->n_listen;
	*owned = true;
	return 0;
}

/* The server of the listeners serving \a services, created on first use. */
static struct ent_srv *srv_for(struct ent_rpc *r, unsigned services, const grpc_channel_args *a,
			       struct ent_err *err)
{
	services |= ENT_SVC_HEALTH;
	for (size_t i = 0; i < r->n_srvs; i++)
		if (r->srvs[i].services == services)
			return &r->srvs[i];
	struct ent_srv *s = &r->srvs[r->n_srvs++];
	s->services = services;
	s->t_shutdown = (struct ent_tag){ENT_TAG_SHUTDOWN, r};
	s->server = grpc_server_create(a, NULL);
	int rc = build_methods(r, s, err);
	if (!rc)
		rc = register_methods(s, err);
	for (unsigned i = 0; !rc && i < r->n_workers; i++)
		grpc_server_register_completion_queue(s->server, r->workers[i].cq, NULL);
	return rc ? NULL : s;
}

int ent_rpc_start(const struct ent_rpc_opts *opts, struct ent_rpc **out, struct ent_err *err)
{
	if (!opts || !opts->store || !(opts->n_listen || opts->n_listeners))
		return ent_err_set(err, ENT_EINVAL, "rpc: a store and at least one listener");
	struct ent_rpc *r = calloc(1, sizeof(*r));
	if (!r)
		return ent_err_set(err, ENT_ENOMEM, "rpc: out of memory");
	r->opts = default_opts(opts);
	/* The caller's strings need only live through this call. */
	r->opts.listen = NULL;
	r->opts.n_listen = 0;
	r->opts.listeners = NULL;
	r->opts.n_listeners = 0;
	char *token = NULL;
	if (opts->admin_token && *opts->admin_token && !(token = strdup(opts->admin_token))) {
		free(r);
		return ent_err_set(err, ENT_ENOMEM, "rpc: out of memory");
	}
	atomic_init(&r->token, token);
	r->opts.admin_token = token;
	atomic_init(&r->dlog, opts->decision_log);
	atomic_init(&r->serving, !opts->start_not_serving);
	atomic_init(&r->stopping, false);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&r->mu, NULL);
	r->m_other = method_indexes().other;

	gpr_set_log_function(grpc_log_sink);
	grpc_init();

	int rc = 0;
	struct ent_config_listener *ls = NULL;
	size_t n_ls = 0;
	bool ls_owned = false;
	if ((rc = listeners_of(opts, &ls, &n_ls, &ls_owned, err)) != 0)
		goto fail;
	int refl = ent_rpc_reflection_init();
	r->reflection = refl == 0;
	if (refl)
		ent_log(ENT_LOG_ERROR, "rpc: server reflection unavailable", "error",
			ent_err_strerror(refl), NULL);

	r->workers = calloc(r->opts.threads, sizeof(*r->workers));
	r->srvs = calloc(MAX_SRVS, sizeof(*r->srvs));
	if (!r->workers || !r->srvs) {
		rc = ent_err_set(err, ENT_ENOMEM, "rpc: out of memory");
		goto fail;
	}
	r->n_workers = r->opts.threads;
	for (unsigned i = 0; i < r->n_workers; i++) {
		struct ent_wstate *ws = &r->workers[i];
		ws->w.rpc = r;
		ws->w.index = i;
		ws->t_notify = (struct ent_tag){ENT_TAG_NOTIFY, ws};
		atomic_init(&ws->notify_armed, 0);
		atomic_init(&ws->orphans, NULL);
		atomic_init(&ws->resumed, NULL);
		atomic_init(&ws->live, 0);
		grpc_metadata_array_init(&ws->notify_md);
		ws->cq = grpc_completion_queue_create_for_next(NULL);
		/* Created here, written only by the worker thread once it runs. */
		ws->mb = opts->metrics ? ent_metrics_thread_block(opts->metrics) : NULL;
		if ((rc = ent_store_view_new(r->opts.store, &ws->w.view)) != 0) {
			ws->w.view = NULL;
			ent_err_set(err, -rc, "rpc: cannot open a read view: %s",
				    ent_err_strerror(rc));
			goto fail;
		}
	}

	grpc_arg args[SERVER_ARGS_MAX];
	if (r->opts.memory_bytes) {
		r->quota = grpc_resource_quota_create("entd");
		grpc_resource_quota_resize(r->quota, r->opts.memory_bytes);
	}
	grpc_channel_args cargs = {server_args(&r->opts, r->quota, args), args};
	for (size_t i = 0; i < n_ls; i++) {
		unsigned svc = ls[i].services ? ls[i].services : ENT_SVC_ALL;
		struct ent_srv *s = srv_for(r, svc, &cargs, err);
		if (!s) {
			rc = -ENT_EINVAL;
			goto fail;
		}
		if ((rc = add_listener(r, s->server, &ls[i], i, err)) != 0)
			goto fail;
	}
	r->lame = grpc_lame_client_channel_create("entd-notify", GRPC_STATUS_UNAVAILABLE,
						  "worker notification");
	for (size_t i = 0; i < r->n_srvs; i++)
		grpc_server_start(r->srvs[i].server);

	for (unsigned i = 0; i < r->n_workers; i++) {
		struct ent_wstate *ws = &r->workers[i];
		for (size_t k = 0; k < r->n_srvs; k++) {
			struct ent_srv *s = &r->srvs[k];
			for (size_t m = 0; m < s->n_methods; m++)
				if ((rc = prearm(ws, &s->methods[m], err)) != 0)
					goto fail;
			if ((rc = prearm(ws, &s->generic, err)) != 0)
				goto fail;
		}
	}

	/* Workers take no signals, whatever the caller's mask: main waits for them. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (unsigned i = 0; i < r->n_workers; i++) {
		struct ent_wstate *ws = &r->workers[i];
		if (pthread_create(&ws->thread, NULL, worker_main, ws) != 0) {
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			rc = ent_err_set(err, ENT_ENOMEM, "rpc: cannot start worker thread %u", i);
			goto fail;
		}
		ws->thread_started = true;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ls_owned)
		free(ls);
	*out = r;
	return 0;

fail:
	if (ls_owned)
		free(ls);
	/* Teardown joins the threads that run and drains the other queues itself. */
	teardown(r, 0);
	return rc < 0 ? rc : -rc;
}

void ent_rpc_set_serving(struct ent_rpc *r, bool serving)
{
	if (!r)
		return;
	atomic_store(&r->serving, serving);
	for (unsigned i = 0; i < r->n_workers; i++)
		ent_rpc_notify(&r->workers[i]);
}

bool ent_rpc_serving(const struct ent_rpc *r)
{
	return r && atomic_load(&r->serving);
}

size_t ent_rpc_open_calls(const struct ent_rpc *r)
{
	return r ? live_calls(r) : 0;
}

int ent_rpc_set_admin_token(struct ent_rpc *r, const char *token)
{
	char *copy = NULL;
	if (token && *token && !(copy = strdup(token)))
		return -ENT_ENOMEM;
	pthread_mutex_lock(&r->mu);
	char **v = realloc(r->old_tokens, (r->n_old_tokens + 1) * sizeof(*v));
	if (!v) {
		pthread_mutex_unlock(&r->mu);
		free(copy);
		return -ENT_ENOMEM;
	}
	r->old_tokens = v;
	/* A worker may be comparing against the old token right now, so it is kept, neither
	   freed nor wiped, until teardown: tokens are small and reloads rare, and this keeps
	   the readers free of locks and of reads racing with writes. */
	r->old_tokens[r->n_old_tokens++] = atomic_exchange(&r->token, copy);
	pthread_mutex_unlock(&r->mu);
	return 0;
}

void ent_rpc_set_decision_log(struct ent_rpc *r, struct ent_decision_log *dl)
{
	if (r)
		atomic_store(&r->dlog, dl);
}

void ent_rpc_stop(struct ent_rpc *r, int64_t grace_ms)
{
	if (!r)
		return;
	teardown(r, grace_ms < 0 ? 0 : grace_ms);
}
