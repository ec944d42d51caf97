/*
 * The server: listeners, method registration, one completion queue and thread per worker,
 * worker notifications, and the shutdown sequence.
 *
 * Start order: build the method table, grpc_init, create the server with its channel args,
 * create and register one "next" queue per worker, register every method, add the listeners,
 * start, pre-request calls on every queue, then start the threads. Nothing can arrive before
 * the threads run: requested calls simply wait in their queues.
 *
 * Stop order (GRPC_C_CORE.md): NOT_SERVING, stop re-arming, grpc_server_shutdown_and_notify,
 * wake the workers so Watch streams end, wait up to the grace period for the shutdown tag,
 * grpc_server_cancel_all_calls, wait for the tag, wait until every call that arrived has been
 * recycled (a call handed to the writer may still be answered after its stream was cancelled),
 * grpc_server_destroy, shut down each queue (its thread drains it and exits), join, free the
 * calls and views, destroy the queues, grpc_shutdown.
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

#define DEFAULT_MAX_MESSAGE	(4u * 1024 * 1024)
#define DEFAULT_CALLS_PER_QUEUE 64
/* Slots per queue for methods that are called rarely (admin, health, streams). */
#define FEW_CALLS 4

static struct ent_rpc_opts default_opts(const struct ent_rpc_opts *o)
{
	struct ent_rpc_opts d = *o;
	if (!d.max_message_bytes)
		d.max_message_bytes = DEFAULT_MAX_MESSAGE;
	if (d.max_message_bytes > INT_MAX)
		d.max_message_bytes = INT_MAX;
	if (!d.calls_per_queue)
		d.calls_per_queue = DEFAULT_CALLS_PER_QUEUE;
	if (!d.threads) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		d.threads = n > 0 ? (unsigned)n : 1;
	}
	if (d.threads > 256)
		d.threads = 256;
	return d;
}

/* ---- gRPC's own log lines go through ours ---------------------------------------------- */

static void grpc_log_sink(gpr_log_func_args *a)
{
	char at[64];
	enum ent_log_level lvl = a->severity == GPR_LOG_SEVERITY_ERROR	? ENT_LOG_WARN
				 : a->severity == GPR_LOG_SEVERITY_INFO ? ENT_LOG_INFO
									: ENT_LOG_DEBUG;
	const char *file = strrchr(a->file, '/');
	snprintf(at, sizeof(at), "%s:%d", file ? file + 1 : a->file, a->line);
	ent_log(lvl, a->message, "source", "grpc", "at", at, NULL);
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
 * Bind one listener. Credentials are chosen here and only here, so TLS is a change to this
 * function.
 */
static int add_listener(struct ent_rpc *r, const char *addr, struct ent_err *err)
{
	if (!addr || !*addr)
		return ent_err_set(err, ENT_EINVAL, "listen: empty address");
	if (strncmp(addr, "unix:", 5) == 0) {
		int rc = clear_stale_socket(addr, err);
		if (rc)
			return rc;
	}
	grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
	int port = grpc_server_add_http2_port(r->server, addr, creds);
	grpc_server_credentials_release(creds);
	if (port == 0)
		return ent_err_set(err, ENT_EUNAVAIL,
				   "listen %s: cannot bind (address in use, not resolvable, or no "
				   "permission)",
				   addr);
	return 0;
}

/* ---- methods ---------------------------------------------------------------------------- */

static void add_method(struct ent_rpc *r, const char *path, const struct ent_method *m,
		       uint8_t kind, bool auth, unsigned prearm)
{
	struct ent_rmethod *rm = &r->methods[r->n_methods++];
	rm->path = path;
	rm->m = m;
	rm->kind = kind;
	rm->auth = auth;
	rm->prearm = prearm;
}

static int build_methods(struct ent_rpc *r, struct ent_err *err)
{
	size_t n = ent_check_methods_count + 1 + ent_health_methods_count + 1 +
		   ent_admin_methods_count;
	r->methods = calloc(n, sizeof(*r->methods));
	if (!r->methods)
		return ent_err_set(err, ENT_ENOMEM, "rpc: out of memory");
	unsigned hot = r->opts.calls_per_queue;
	unsigned few = hot < FEW_CALLS ? hot : FEW_CALLS;
	bool protect = r->opts.protect_checks;

	for (size_t i = 0; i < ent_check_methods_count; i++)
		add_method(r, ent_check_methods[i].path, &ent_check_methods[i], ENT_MK_UNARY,
			   protect, hot);
	add_method(r, ENT_CHECK_STREAM_PATH, NULL, ENT_MK_CHECK_STREAM, protect,
		   hot / 4 > few ? hot / 4 : few);
	/* Health stays open even when checks are protected: probes carry no credential. */
	for (size_t i = 0; i < ent_health_methods_count; i++)
		add_method(r, ent_health_methods[i].path, &ent_health_methods[i], ENT_MK_UNARY,
			   false, few);
	add_method(r, ENT_HEALTH_WATCH_PATH, NULL, ENT_MK_WATCH, false, few);
	for (size_t i = 0; i < ent_admin_methods_count; i++)
		add_method(r, ent_admin_methods[i].path, &ent_admin_methods[i], ENT_MK_UNARY, true,
			   few);
	r->generic = (struct ent_rmethod){.path = "*", .kind = ENT_MK_GENERIC, .prearm = few};
	return 0;
}

static int register_methods(struct ent_rpc *r, struct ent_err *err)
{
	for (size_t i = 0; i < r->n_methods; i++) {
		struct ent_rmethod *rm = &r->methods[i];
		/* The check stream reads its messages itself; everything else (unary methods and
		   Watch, which has exactly one request) gets its request with the call. */
		grpc_server_register_method_payload_handling ph =
			rm->kind == ENT_MK_CHECK_STREAM ? GRPC_SRM_PAYLOAD_NONE
							: GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER;
		rm->handle = grpc_server_register_method(r->server, rm->path, NULL, ph, 0);
		if (!rm->handle)
			return ent_err_set(err, ENT_EINVAL, "rpc: cannot register method %s",
					   rm->path);
	}
	return 0;
}

static int prearm(struct ent_rpc *r, struct ent_wstate *ws, const struct ent_rmethod *rm,
		  struct ent_err *err)
{
	for (unsigned i = 0; i < rm->prearm; i++) {
		struct ent_call *c = ent_call_get(ws);
		if (!c)
			return ent_err_set(err, ENT_ENOMEM, "rpc: out of memory");
		if (ent_call_arm(c, rm) != 0)
			return ent_err_set(err, ENT_EUNAVAIL, "rpc: cannot request calls for %s",
					   rm->path);
	}
	return 0;
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
	ent_call_collect_orphans(ws);
	ent_health_watch_update(ws);
}

static void on_shutdown_tag(struct ent_rpc *r)
{
	pthread_mutex_lock(&r->mu);
	r->shutdown_done = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->mu);
}

static void *worker_main(void *arg)
{
	struct ent_wstate *ws = arg;
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(
			ws->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		struct ent_tag *t = ev.tag;
		switch (t->kind) {
		case ENT_TAG_NOTIFY:
			on_notify(ws);
			break;
		case ENT_TAG_SHUTDOWN:
			on_shutdown_tag(t->owner);
			break;
		default:
			ent_call_on_event(t->owner, t->kind, ev.success != 0);
			break;
		}
	}
	return NULL;
}

/* ---- start / stop ----------------------------------------------------------------------- */

/* Wait for the server's shutdown tag, up to \a ms (negative: forever). True if it came. */
static bool wait_shutdown(struct ent_rpc *r, int64_t ms)
{
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
	while (!r->shutdown_done) {
		if (ms < 0)
			pthread_cond_wait(&r->cond, &r->mu);
		else if (pthread_cond_timedwait(&r->cond, &r->mu, &until) == ETIMEDOUT)
			break;
	}
	bool done = r->shutdown_done;
	pthread_mutex_unlock(&r->mu);
	return done;
}

static size_t live_calls(struct ent_rpc *r)
{
	size_t n = 0;
	for (unsigned i = 0; i < r->n_workers; i++)
		n += atomic_load_explicit(&r->workers[i].live, memory_order_acquire);
	return n;
}

/*
 * Shut the server down and free everything. Works with or without running threads (a failed
 * start tears down through here too): without threads, this thread drains the queues.
 */
static void teardown(struct ent_rpc *r, int64_t grace_ms)
{
	bool threads = r->n_workers && r->workers[0].thread_started;

	atomic_store(&r->serving, false);
	atomic_store(&r->stopping, true);
	if (r->server) {
		grpc_server_shutdown_and_notify(r->server, r->workers[0].cq, &r->t_shutdown);
		if (threads) {
			for (unsigned i = 0; i < r->n_workers; i++)
				ent_rpc_notify(&r->workers[i]);
			if (!wait_shutdown(r, grace_ms)) {
				char n[24];
				snprintf(n, sizeof(n), "%zu", live_calls(r));
				ent_log(ENT_LOG_WARN, "rpc: grace period over, cancelling calls",
					"calls", n, NULL);
				grpc_server_cancel_all_calls(r->server);
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
			grpc_server_cancel_all_calls(r->server);
			for (;;) {
				grpc_event ev = grpc_completion_queue_next(
					r->workers[0].cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
				if (ev.type == GRPC_OP_COMPLETE && ev.tag == &r->t_shutdown)
					break;
			}
		}
		grpc_server_destroy(r->server);
		r->server = NULL;
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
			ent_call_free(c);
			c = n;
		}
		grpc_metadata_array_destroy(&ws->notify_md);
		if (ws->w.view)
			ent_view_free(ws->w.view);
		if (ws->cq)
			grpc_completion_queue_destroy(ws->cq);
	}
	if (r->lame)
		grpc_channel_destroy(r->lame);
	free(r->workers);
	free(r->methods);
	free(r->token);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->mu);
	free(r);
	grpc_shutdown_blocking();
}

int ent_rpc_start(const struct ent_rpc_opts *opts, struct ent_rpc **out, struct ent_err *err)
{
	if (!opts || !opts->store || !opts->n_listen)
		return ent_err_set(err, ENT_EINVAL, "rpc: a store and at least one listener");
	struct ent_rpc *r = calloc(1, sizeof(*r));
	if (!r)
		return ent_err_set(err, ENT_ENOMEM, "rpc: out of memory");
	r->opts = default_opts(opts);
	/* The caller's strings need only live through this call. */
	r->opts.listen = NULL;
	r->opts.n_listen = 0;
	if (opts->admin_token && !(r->token = strdup(opts->admin_token))) {
		free(r);
		return ent_err_set(err, ENT_ENOMEM, "rpc: out of memory");
	}
	r->opts.admin_token = r->token;
	atomic_init(&r->serving, true);
	atomic_init(&r->stopping, false);
	r->t_shutdown = (struct ent_tag){ENT_TAG_SHUTDOWN, r};
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&r->mu, NULL);

	gpr_set_log_function(grpc_log_sink);
	grpc_init();

	int rc = build_methods(r, err);
	if (rc)
		goto fail;
	r->workers = calloc(r->opts.threads, sizeof(*r->workers));
	if (!r->workers) {
		rc = ent_err_set(err, ENT_ENOMEM, "rpc: out of memory");
		goto fail;
	}
	r->n_workers = r->opts.threads;

	grpc_arg args[3];
	memset(args, 0, sizeof(args));
	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	args[0].value.integer = (int)r->opts.max_message_bytes;
	args[1].type = GRPC_ARG_INTEGER;
	args[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
	args[1].value.integer = (int)r->opts.max_message_bytes;
	/* A second daemon on the same port must fail to bind, not share the traffic. */
	args[2].type = GRPC_ARG_INTEGER;
	args[2].key = (char *)GRPC_ARG_ALLOW_REUSEPORT;
	args[2].value.integer = 0;
	grpc_channel_args cargs = {3, args};
	r->server = grpc_server_create(&cargs, NULL);

	for (unsigned i = 0; i < r->n_workers; i++) {
		struct ent_wstate *ws = &r->workers[i];
		ws->w.rpc = r;
		ws->w.index = i;
		ws->t_notify = (struct ent_tag){ENT_TAG_NOTIFY, ws};
		atomic_init(&ws->notify_armed, 0);
		atomic_init(&ws->orphans, NULL);
		atomic_init(&ws->live, 0);
		grpc_metadata_array_init(&ws->notify_md);
		ws->cq = grpc_completion_queue_create_for_next(NULL);
		grpc_server_register_completion_queue(r->server, ws->cq, NULL);
		if ((rc = ent_view_new(r->opts.store, &ws->w.view)) != 0) {
			ws->w.view = NULL;
			ent_err_set(err, -rc, "rpc: cannot open a read view: %s", ent_strerror(rc));
			goto fail;
		}
	}
	if ((rc = register_methods(r, err)) != 0)
		goto fail;
	for (size_t i = 0; i < opts->n_listen; i++)
		if ((rc = add_listener(r, opts->listen[i], err)) != 0)
			goto fail;
	r->lame = grpc_lame_client_channel_create("entd-notify", GRPC_STATUS_UNAVAILABLE,
						  "worker notification");
	grpc_server_start(r->server);

	for (unsigned i = 0; i < r->n_workers; i++) {
		struct ent_wstate *ws = &r->workers[i];
		for (size_t m = 0; m < r->n_methods; m++)
			if ((rc = prearm(r, ws, &r->methods[m], err)) != 0)
				goto fail;
		if ((rc = prearm(r, ws, &r->generic, err)) != 0)
			goto fail;
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
	*out = r;
	return 0;

fail:
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

void ent_rpc_stop(struct ent_rpc *r, int64_t grace_ms)
{
	if (!r)
		return;
	teardown(r, grace_ms < 0 ? 0 : grace_ms);
}
