/*
 * Fleet mode: publish every Event to one JetStream stream and apply the stream, in order, on
 * every replica (docs/fleet.md tells the whole story; include/ent/sync.h the sequence).
 *
 * Why an ordered consumer on nats.c's own threads, not a pull consumer on the libuv adapter:
 * an ordered consumer is ephemeral, flow-controlled and heart-beaten, and nats.c re-creates it
 * from the last stream sequence it delivered whenever it notices a gap, a missed heartbeat or
 * a reconnect, so reconnects, leader changes and server restarts are ridden out without code
 * of ours. Nothing needs acking (a replica's position is its own LMDB meta "seq", stored with
 * the data), so there is no consumer state on the server to clean up when a replica goes away.
 * The delivery thread only wraps each message and queues it for the writer thread
 * (ent_writer_feed: a mutex and uv_async_send), so the writer's libuv loop stays the only
 * writer and the libuv adapter (which would move the whole connection onto that loop, next to
 * the commits) is not needed.
 *
 * Requests of this node: publish() registers the request under a local id in a ring of
 * PENDING_CAP slots *before* the message leaves, the message carries the id in its
 * Nats-Msg-Id header ("<node>-<id>", node = 16 random hex digits per process), and the writer,
 * once the message's transaction committed, claims the request by that id and answers it
 * with the result its own replica computed. A publish the engine refuses (or does not
 * acknowledge in time) is claimed by the acknowledgement handler instead and answered
 * UNAVAILABLE through the writer; whoever claims first answers, exactly once.
 *
 * Re-bootstrap in place (docs/fleet.md): when the consumer meets a hole (the stream no longer
 * holds the next sequence), the delivery thread only marks it and wakes the re-bootstrap
 * thread, which drops the consumer, fetches the newest snapshot that fits into
 * <db>/.rebootstrap (digest checked), has the writer swap every table for the snapshot's in
 * one write transaction (ent_store_restore, a "local" transaction request), and consumes
 * again from the snapshot's sequence + 1 under a new generation: a message of an older
 * consumer is recognised by its generation and dropped.
 *
 * Invariants:
 * - pending[] and next_id are under mu; a slot holds (id, req) or id 0.
 * - fed_seq, gen and the decision to feed a message are under feed_mu, held by the delivery
 *   thread across ent_writer_feed, so a consumer being replaced never feeds at the old
 *   position after the new one started (at most one consumer's generation is current).
 * - sub is created and destroyed by the thread calling ent_sync_fleet_start, then only by the
 *   re-bootstrap thread, which ent_sync_fleet_close joins before it touches sub.
 * - The atomics are written by nats.c's threads, the poller and the re-bootstrap thread,
 *   read by anyone.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "ent/sync.h"
#include "ent/v1/event.pb-c.h"
#include "sync/snapshot.h"

#define PENDING_CAP	65536 /* writes of this node in flight at most (power of two) */
#define POLL_MS		500   /* stream head refresh */
#define MSGID_HEADER	"Nats-Msg-Id"
#define DUP_WINDOW_NS	(2LL * 60 * 1000 * 1000 * 1000)
#define REBOOT_RETRY_MS 2000  /* re-bootstrap: next try when no snapshot fits or a try failed */
#define REBOOT_LOG_MS	30000 /* re-bootstrap: the same reason is logged at most this often */
#define REBOOT_DIR	".rebootstrap"

struct pending {
	uint64_t id;
	struct ent_writer_req *req;
};

struct fmsg {
	struct ent_writer_msg m;
	natsMsg *nm;
};

/* The closure of one consumer: messages of another generation than the current are dropped. */
struct subctx {
	struct subctx *next;
	struct ent_fleet *f;
	uint64_t gen;
};

struct ent_fleet {
	char *urls, *stream, *subject;
	unsigned replicas;
	int64_t publish_timeout_ms;
	natsOptions *nopts;
	natsConnection *nc;
	jsCtx *js;
	natsSubscription *sub;
	struct ent_writer *w;
	struct ent_writer_fleet hooks;
	char node[17];
	char identity[160];
	int64_t created; /* the stream's creation time (ns): its identity */
	int32_t max_payload;

	pthread_mutex_t mu;
	struct pending *pending;
	uint64_t next_id;

	pthread_mutex_t feed_mu;
	uint64_t fed_seq;	 /* under feed_mu */
	uint64_t gen;		 /* under feed_mu: the current consumer's generation */
	struct subctx *subctxs;	 /* every consumer's closure, freed at close */
	struct ent_store *store; /* set by ent_sync_fleet_start */
	char *db_path, *bucket;	 /* re-bootstrap in place; db_path NULL: off */

	pthread_t poller;
	bool poller_started;
	_Atomic bool stopping;

	/* The re-bootstrap thread: rb_mu/rb_cv wake it (a hole, stop) and carry the swap's end. */
	pthread_t rebooter;
	bool rebooter_started;
	pthread_mutex_t rb_mu;
	pthread_cond_t rb_cv;
	bool swap_done;		 /* under rb_mu */
	struct ent_err swap_err; /* under rb_mu */

	_Atomic bool connected, caught_up, hole, stream_changed, rebootstrapping;
	_Atomic uint64_t head_seq, start_head, published, publish_failed, reconnects, disconnects;
	_Atomic uint64_t rebootstraps, rebootstrap_failed;
	_Atomic int64_t last_heard_ms;
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void max_store(_Atomic uint64_t *a, uint64_t v)
{
	uint64_t cur = atomic_load(a);
	while (v > cur && !atomic_compare_exchange_weak(a, &cur, v))
		;
}

static const char *nats_text(natsStatus s)
{
	const char *t = nats_GetLastError(NULL);
	return t && *t ? t : natsStatus_GetText(s);
}

/*
 * \a urls with any "user:password@" replaced by "***@", for messages: a password in a URL
 * is a secret and is never logged.
 */
static const char *redact(const char *urls, char *buf, size_t cap)
{
	size_t o = 0;
	const char *p = urls;
	while (*p && o + 1 < cap) {
		const char *scheme = strstr(p, "://");
		const char *comma = strchr(p, ',');
		const char *end = comma ? comma : p + strlen(p);
		const char *host = scheme && scheme < end ? scheme + 3 : p;
		const char *at = memchr(host, '@', (size_t)(end - host));
		int n;
		if (at)
			n = snprintf(buf + o, cap - o, "%.*s***%.*s", (int)(host - p), p,
				     (int)(end - at), at);
		else
			n = snprintf(buf + o, cap - o, "%.*s", (int)(end - p), p);
		if (n < 0 || (size_t)n >= cap - o)
			break;
		o += (size_t)n;
		if (!comma)
			break;
		if (o + 1 < cap)
			buf[o++] = ',';
		p = comma + 1;
	}
	buf[o < cap ? o : cap - 1] = 0;
	return buf;
}

/* ---- pending requests ------------------------------------------------------------------- */

static uint64_t pending_add(struct ent_fleet *f, struct ent_writer_req *req)
{
	pthread_mutex_lock(&f->mu);
	uint64_t id = ++f->next_id;
	struct pending *p = &f->pending[id & (PENDING_CAP - 1)];
	if (p->id) {
		f->next_id--;
		pthread_mutex_unlock(&f->mu);
		return 0;
	}
	p->id = id;
	p->req = req;
	pthread_mutex_unlock(&f->mu);
	return id;
}

static struct ent_writer_req *pending_take(struct ent_fleet *f, uint64_t id)
{
	struct ent_writer_req *req = NULL;
	pthread_mutex_lock(&f->mu);
	struct pending *p = &f->pending[id & (PENDING_CAP - 1)];
	if (p->id == id) {
		req = p->req;
		p->id = 0;
		p->req = NULL;
	}
	pthread_mutex_unlock(&f->mu);
	return req;
}

static struct ent_writer_req *claim(void *ctx, uint64_t id)
{
	return pending_take(ctx, id);
}

/* "<node>-<id>" of this process -> id; 0 for anything else (another node, a tool). */
static uint64_t local_id_of(struct ent_fleet *f, natsMsg *m)
{
	const char *v = NULL;
	if (natsMsgHeader_Get(m, MSGID_HEADER, &v) != NATS_OK || !v)
		return 0;
	if (strncmp(v, f->node, 16) != 0 || v[16] != '-')
		return 0;
	char *end;
	unsigned long long id = strtoull(v + 17, &end, 10);
	return *end ? 0 : (uint64_t)id;
}

static void refuse(struct ent_fleet *f, struct ent_writer_req *req, int code, const char *msg)
{
	struct ent_err err = {0};
	ent_err_set(&err, code, "%s", msg);
	atomic_fetch_add(&f->publish_failed, 1);
	ent_writer_fail(f->w, req, &err);
}

/* ---- publish ------------------------------------------------------------------------------ */

static int publish(void *ctx, struct ent_writer_req *req, const Ent__V1__Event *in)
{
	struct ent_fleet *f = ctx;
	if (!atomic_load(&f->connected) ||
	    natsConnection_Status(f->nc) != NATS_CONN_STATUS_CONNECTED) {
		refuse(f, req, ENT_EUNAVAIL,
		       "fleet: the event engine (NATS JetStream) is not reachable; the write was "
		       "not taken (checks go on from the last applied state)");
		return 0;
	}
	if (atomic_load(&f->hole) || atomic_load(&f->rebootstrapping)) {
		/* Its result could not be computed here before the re-bootstrap: not taken. */
		refuse(f, req, ENT_EUNAVAIL,
		       "fleet: this replica is behind the stream's retention and re-bootstraps "
		       "from a snapshot; the write was not taken (send it to another replica or "
		       "retry later)");
		return 0;
	}
	/* Stamped once, here: every replica applies the same instant. */
	Ent__V1__Event ev = *in;
	if (ev.at == 0)
		ev.at = ent_time_now_ms();
	size_t n = ent__v1__event__get_packed_size(&ev);
	if (f->max_payload > 0 && n > (size_t)f->max_payload) {
		char msg[200];
		snprintf(msg, sizeof(msg),
			 "fleet: the event is %zu bytes, more than the engine's max_payload %d", n,
			 (int)f->max_payload);
		refuse(f, req, ENT_EINVAL, msg);
		return 0;
	}
	uint8_t stackbuf[4096];
	uint8_t *buf = n <= sizeof(stackbuf) ? stackbuf : malloc(n);
	if (!buf)
		return -ENT_ENOMEM;
	ent__v1__event__pack(&ev, buf);

	uint64_t id = pending_add(f, req);
	if (!id) {
		if (buf != stackbuf)
			free(buf);
		refuse(f, req, ENT_EUNAVAIL, "fleet: too many writes in flight on this node");
		return 0;
	}
	natsMsg *m = NULL;
	natsStatus s = natsMsg_Create(&m, f->subject, NULL, (const char *)buf, (int)n);
	if (buf != stackbuf)
		free(buf);
	char msgid[40];
	snprintf(msgid, sizeof(msgid), "%s-%" PRIu64, f->node, id);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, MSGID_HEADER, msgid);
	if (s == NATS_OK) {
		jsPubOptions po;
		jsPubOptions_Init(&po);
		po.ExpectStream = f->stream;
		po.MaxWait = f->publish_timeout_ms;
		s = js_PublishMsgAsync(f->js, &m, &po);
	}
	if (s != NATS_OK) {
		natsMsg_Destroy(m); /* NULL when the library took it */
		struct ent_writer_req *r = pending_take(f, id);
		if (r) {
			char msg[300];
			snprintf(msg, sizeof(msg),
				 "fleet: the event engine did not take the write (%s); it was not "
				 "applied",
				 natsStatus_GetText(s));
			refuse(f, r, ENT_EUNAVAIL, msg);
		}
	}
	return 0;
}

/*
 * nats.c's thread, for every asynchronous publish: success only moves the head; a failure
 * answers the request, unless its message was applied meanwhile (then the writer claimed it).
 */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	struct ent_fleet *f = closure;
	if (pa) {
		max_store(&f->head_seq, pa->Sequence);
		atomic_fetch_add(&f->published, 1);
	} else if (pae) {
		uint64_t id = local_id_of(f, msg);
		struct ent_writer_req *r = id ? pending_take(f, id) : NULL;
		if (r) {
			char text[300];
			if (pae->Err == NATS_TIMEOUT)
				snprintf(text, sizeof(text),
					 "fleet: the event engine did not acknowledge the write in "
					 "time; it may still be applied: retry with the same "
					 "idempotency key, or read before writing again");
			else
				snprintf(
					text, sizeof(text),
					"fleet: the event engine refused the write (%s%s%s); it was "
					"not applied",
					natsStatus_GetText(pae->Err), pae->ErrText ? ": " : "",
					pae->ErrText ? pae->ErrText : "");
			refuse(f, r, ENT_EUNAVAIL, text);
		}
	}
	natsMsg_Destroy(msg);
}

/* ---- consume -------------------------------------------------------------------------------- */

static void release_msg(struct ent_writer_msg *m)
{
	struct fmsg *fm = (struct fmsg *)m;
	natsMsg_Destroy(fm->nm);
	free(fm);
}

/*
 * Called with feed_mu held: this replica cannot apply \a msg in order, so it stops feeding
 * (hole) and wakes the re-bootstrap thread; \a msg is dropped and feed_mu released.
 */
static void stop_feeding(struct ent_fleet *f, natsMsg *msg)
{
	atomic_store(&f->hole, true);
	pthread_mutex_unlock(&f->feed_mu);
	natsMsg_Destroy(msg);
	pthread_mutex_lock(&f->rb_mu);
	pthread_cond_broadcast(&f->rb_cv);
	pthread_mutex_unlock(&f->rb_mu);
}

/*
 * The delivery thread: stream messages in order. A sequence that is not the next one means
 * the stream no longer holds what this replica needs (retention, a purge): applying on would
 * leave a hole, so the replica stops here, says so, and wakes the re-bootstrap thread
 * (docs/fleet.md, "Re-bootstrap in place"). A message of a replaced consumer (an older
 * generation) is dropped: the position it was delivered for is gone.
 */
static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	struct subctx *sc = closure;
	struct ent_fleet *f = sc->f;
	jsMsgMetaData *meta = NULL;
	if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
		natsMsg_Destroy(msg);
		return;
	}
	uint64_t seq = meta->Sequence.Stream;
	max_store(&f->head_seq, seq + meta->NumPending);
	jsMsgMetaData_Destroy(meta);
	atomic_store(&f->last_heard_ms, mono_ms());
	pthread_mutex_lock(&f->feed_mu);
	if (sc->gen != f->gen || seq <= f->fed_seq || atomic_load(&f->hole)) {
		pthread_mutex_unlock(&f->feed_mu);
		natsMsg_Destroy(msg);
		return;
	}
	if (seq != f->fed_seq + 1) {
		char want[24], got[24];
		snprintf(want, sizeof(want), "%" PRIu64, f->fed_seq + 1);
		snprintf(got, sizeof(got), "%" PRIu64, seq);
		ent_log(ENT_LOG_ERROR,
			"fleet: the stream no longer holds the next sequence this replica needs; "
			"it stops applying and re-bootstraps from a snapshot",
			"want", want, "got", got, NULL);
		stop_feeding(f, msg);
		return;
	}
	struct fmsg *fm = malloc(sizeof(*fm));
	if (!fm) {
		/* Cannot queue it: stop rather than skip (the replica would diverge). */
		ent_log(ENT_LOG_ERROR, "fleet: out of memory; the replica stops applying", NULL);
		stop_feeding(f, msg);
		return;
	}
	memset(fm, 0, sizeof(*fm));
	fm->nm = msg;
	fm->m.seq = seq;
	fm->m.data = (const uint8_t *)natsMsg_GetData(msg);
	fm->m.len = (size_t)natsMsg_GetDataLength(msg);
	fm->m.local_id = local_id_of(f, msg);
	fm->m.release = release_msg;
	f->fed_seq = seq;
	/* Under feed_mu: a consumer being replaced cannot feed after its successor started. */
	ent_writer_feed(f->w, &fm->m);
	pthread_mutex_unlock(&f->feed_mu);
}

/* ---- connection events ------------------------------------------------------------------------
 */

static void on_disconnected(natsConnection *nc, void *closure)
{
	struct ent_fleet *f = closure;
	if (atomic_exchange(&f->connected, false)) {
		atomic_fetch_add(&f->disconnects, 1);
		if (!atomic_load(&f->stopping))
			ent_log(ENT_LOG_WARN,
				"fleet: disconnected from NATS; checks go on from the last applied "
				"state, writes answer UNAVAILABLE until it is back",
				NULL);
	}
}

static void on_reconnected(natsConnection *nc, void *closure)
{
	struct ent_fleet *f = closure;
	atomic_store(&f->connected, true);
	atomic_fetch_add(&f->reconnects, 1);
	char url[256] = "";
	natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	ent_log(ENT_LOG_INFO, "fleet: reconnected to NATS", "url", url, NULL);
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
	ent_log(ENT_LOG_WARN, "fleet: NATS asynchronous error", "error", natsStatus_GetText(err),
		NULL);
}

/* ---- the stream --------------------------------------------------------------------------------
 */

static int stream_info(struct ent_fleet *f, jsStreamInfo **si, struct ent_err *err)
{
	jsErrCode jerr = 0;
	jsOptions o;
	jsOptions_Init(&o);
	o.Wait = 5000;
	natsStatus s = js_GetStreamInfo(si, f->js, f->stream, &o, &jerr);
	if (s == NATS_NOT_FOUND)
		return -ENT_ENOTFOUND;
	if (s != NATS_OK)
		return ent_err_set(err, ENT_EUNAVAIL, "fleet.stream: cannot read stream '%s': %s",
				   f->stream, nats_text(s));
	return 0;
}

static int verify_stream(struct ent_fleet *f, const jsStreamInfo *si, struct ent_err *err)
{
	const jsStreamConfig *c = si->Config;
	if (!c)
		return ent_err_set(err, ENT_EPRECOND, "fleet.stream: '%s' has no configuration",
				   f->stream);
	bool has = false;
	for (int i = 0; i < c->SubjectsLen; i++)
		if (c->Subjects[i] && !strcmp(c->Subjects[i], f->subject))
			has = true;
	if (!has || c->SubjectsLen != 1)
		return ent_err_set(err, ENT_EPRECOND,
				   "fleet.subject: the existing stream '%s' has other subjects "
				   "(%d, first '%s') than '%s'; fix the config or the stream",
				   f->stream, c->SubjectsLen,
				   c->SubjectsLen > 0 && c->Subjects[0] ? c->Subjects[0] : "",
				   f->subject);
	if ((unsigned)c->Replicas != f->replicas && !(c->Replicas == 0 && f->replicas == 1))
		return ent_err_set(err, ENT_EPRECOND,
				   "fleet.replicas: the existing stream '%s' has %d replicas, the "
				   "config says %u",
				   f->stream, (int)c->Replicas, f->replicas);
	if (c->Retention != js_LimitsPolicy)
		return ent_err_set(err, ENT_EPRECOND,
				   "fleet.stream: the existing stream '%s' does not keep messages "
				   "for every replica (retention is not 'limits')",
				   f->stream);
	if (c->Storage != js_FileStorage)
		return ent_err_set(err, ENT_EPRECOND,
				   "fleet.stream: the existing stream '%s' is not on file storage",
				   f->stream);
	return 0;
}

static int ensure_stream(struct ent_fleet *f, int64_t max_age_ms, int64_t max_msgs,
			 struct ent_err *err)
{
	jsStreamInfo *si = NULL;
	int rc = stream_info(f, &si, err);
	if (rc == -ENT_ENOTFOUND) {
		jsStreamConfig sc;
		jsStreamConfig_Init(&sc);
		const char *subjects[1] = {f->subject};
		sc.Name = f->stream;
		sc.Description = "entd fleet events (docs/fleet.md)";
		sc.Subjects = subjects;
		sc.SubjectsLen = 1;
		sc.Retention = js_LimitsPolicy;
		sc.Storage = js_FileStorage;
		sc.Replicas = f->replicas;
		sc.Duplicates = DUP_WINDOW_NS;
		sc.MaxAge = max_age_ms * 1000000LL;
		if (max_msgs > 0)
			sc.MaxMsgs = max_msgs;
		sc.Discard = js_DiscardOld;
		jsErrCode jerr = 0;
		natsStatus s = js_AddStream(&si, f->js, &sc, NULL, &jerr);
		if (s != NATS_OK) {
			/* Another replica may have created it a moment ago. */
			si = NULL;
			rc = stream_info(f, &si, err);
			if (rc == -ENT_ENOTFOUND)
				return ent_err_set(err, ENT_EUNAVAIL,
						   "fleet.stream: cannot create stream '%s': %s",
						   f->stream, nats_text(s));
			if (rc)
				return rc;
		} else {
			ent_log(ENT_LOG_INFO, "fleet: stream created", "stream", f->stream,
				"subject", f->subject, NULL);
		}
	} else if (rc) {
		return rc;
	}
	rc = verify_stream(f, si, err);
	if (!rc) {
		f->created = si->Created;
		snprintf(f->identity, sizeof(f->identity), "%s/%" PRId64, f->stream, si->Created);
		atomic_store(&f->head_seq, si->State.LastSeq);
		atomic_store(&f->start_head, si->State.LastSeq);
		atomic_store(&f->last_heard_ms, mono_ms());
	}
	jsStreamInfo_Destroy(si);
	return rc;
}

/* The poller: the stream head for the lag, and whether the stream is still the same one. */
static void *poll_main(void *arg)
{
	struct ent_fleet *f = arg;
	int missing = 0;
	while (!atomic_load(&f->stopping)) {
		for (int i = 0; i < POLL_MS / 50 && !atomic_load(&f->stopping); i++)
			usleep(50 * 1000);
		if (atomic_load(&f->stopping) || !atomic_load(&f->connected))
			continue;
		jsStreamInfo *si = NULL;
		struct ent_err err = {0};
		int rc = stream_info(f, &si, &err);
		/* Several answers in a row: an engine restoring its store may not know it yet. */
		missing = rc == -ENT_ENOTFOUND ? missing + 1 : 0;
		if (missing >= 10 && !atomic_exchange(&f->stream_changed, true))
			ent_log(ENT_LOG_ERROR,
				"fleet: the stream is gone (deleted, or the engine lost its store); "
				"this replica keeps its state and stops serving (restart it to "
				"re-bootstrap)",
				"stream", f->stream, NULL);
		if (rc == 0 && si) {
			atomic_store(&f->head_seq, si->State.LastSeq);
			atomic_store(&f->last_heard_ms, mono_ms());
			if (si->Created != f->created && !atomic_exchange(&f->stream_changed, true))
				ent_log(ENT_LOG_ERROR,
					"fleet: the stream was deleted and re-created; this replica "
					"follows the old one (restart it to re-bootstrap)",
					"stream", f->stream, NULL);
			jsStreamInfo_Destroy(si);
		}
	}
	return NULL;
}

/* ---- lifecycle
 * ----------------------------------------------------------------------------------- */

static int set_opts(struct ent_fleet *f, const struct ent_fleet_opts *o, struct ent_err *err)
{
	natsStatus s = natsOptions_Create(&f->nopts);
	if (s != NATS_OK)
		return ent_err_set(err, ENT_ENOMEM, "fleet: %s", nats_text(s));
	/* natsOptions_SetURL takes one URL: the comma-separated list goes to SetServers. */
	char buf[2048];
	const char *servers[32];
	int n = 0;
	snprintf(buf, sizeof(buf), "%s", o->urls);
	char *save = NULL;
	for (char *one = strtok_r(buf, ",", &save); one && n < 32;
	     one = strtok_r(NULL, ",", &save)) {
		while (*one == ' ')
			one++;
		if (*one)
			servers[n++] = one;
	}
	char shown[512];
	if (n == 0)
		return ent_err_set(err, ENT_EINVAL, "fleet.nats: no server in '%s'",
				   redact(o->urls, shown, sizeof(shown)));
	if ((s = natsOptions_SetServers(f->nopts, servers, n)) != NATS_OK)
		return ent_err_set(err, ENT_EINVAL, "fleet.nats: '%s': %s",
				   redact(o->urls, shown, sizeof(shown)), nats_text(s));
	natsOptions_SetName(f->nopts, "entd");
	/* Reconnect for ever: the fleet rides out engine restarts without restarting entd. */
	natsOptions_SetMaxReconnect(f->nopts, -1);
	natsOptions_SetReconnectWait(f->nopts, 250);
	natsOptions_SetTimeout(f->nopts, 2000);
	natsOptions_SetPingInterval(f->nopts, 2000);
	natsOptions_SetMaxPingsOut(f->nopts, 2);
	/* Nothing buffered while disconnected: a write then is refused, never sent late. */
	natsOptions_SetReconnectBufSize(f->nopts, 0);
	natsOptions_SetDisconnectedCB(f->nopts, on_disconnected, f);
	natsOptions_SetReconnectedCB(f->nopts, on_reconnected, f);
	natsOptions_SetErrorHandler(f->nopts, on_async_error, f);
	if (o->creds_file && *o->creds_file &&
	    (s = natsOptions_SetUserCredentialsFromFiles(f->nopts, o->creds_file, NULL)) != NATS_OK)
		return ent_err_set(err, ENT_EINVAL, "fleet.creds_file: '%s': %s", o->creds_file,
				   nats_text(s));
	if (o->tls_ca_file && *o->tls_ca_file) {
		if ((s = natsOptions_SetSecure(f->nopts, true)) != NATS_OK ||
		    (s = natsOptions_LoadCATrustedCertificates(f->nopts, o->tls_ca_file)) !=
			    NATS_OK)
			return ent_err_set(err, ENT_EINVAL, "fleet.tls_ca_file: '%s': %s",
					   o->tls_ca_file, nats_text(s));
	}
	if (o->tls_cert_file && *o->tls_cert_file) {
		if ((s = natsOptions_SetSecure(f->nopts, true)) != NATS_OK ||
		    (s = natsOptions_LoadCertificatesChain(f->nopts, o->tls_cert_file,
							   o->tls_key_file)) != NATS_OK)
			return ent_err_set(err, ENT_EINVAL, "fleet.tls_cert_file: '%s': %s",
					   o->tls_cert_file, nats_text(s));
	}
	return 0;
}

/*
 * True when nats.c's error \a text is about the configured credentials file: it names the
 * file (unreadable, no seed), or the server refused the user the file holds.
 */
static bool creds_file_fault(const struct ent_fleet_opts *o, const char *text)
{
	return o->creds_file && *o->creds_file && text &&
	       (strstr(text, o->creds_file) || strstr(text, "uthorization"));
}

int ent_sync_fleet_open(const struct ent_fleet_opts *o, struct ent_fleet **out, struct ent_err *err)
{
	if (!o || !o->urls || !*o->urls || !o->stream || !o->subject)
		return ent_err_set(err, ENT_EINVAL, "fleet.nats: not set");
	struct ent_fleet *f = calloc(1, sizeof(*f));
	if (!f)
		return ent_err_set(err, ENT_ENOMEM, "fleet: out of memory");
	f->urls = strdup(o->urls);
	f->stream = strdup(o->stream);
	f->subject = strdup(o->subject);
	f->pending = calloc(PENDING_CAP, sizeof(*f->pending));
	f->replicas = o->replicas ? o->replicas : 1;
	f->publish_timeout_ms = o->publish_timeout_ms > 0 ? o->publish_timeout_ms : 5000;
	pthread_mutex_init(&f->mu, NULL);
	pthread_mutex_init(&f->feed_mu, NULL);
	pthread_mutex_init(&f->rb_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&f->rb_cv, &ca);
	pthread_condattr_destroy(&ca);
	f->bucket = strdup(o->snapshot_bucket && *o->snapshot_bucket ? o->snapshot_bucket
								     : ENT_SNAPSHOT_DEFAULT_BUCKET);
	if (o->db_path && *o->db_path)
		f->db_path = strdup(o->db_path);
	atomic_store(&f->last_heard_ms, -1);
	int rc;
	if (!f->urls || !f->stream || !f->subject || !f->pending || !f->bucket ||
	    (o->db_path && *o->db_path && !f->db_path)) {
		rc = ent_err_set(err, ENT_ENOMEM, "fleet: out of memory");
		goto fail;
	}
	/* The node id of this process's message ids: random, so a restart never reuses one. */
	uint64_t r[2] = {0, 0};
	FILE *u = fopen("/dev/urandom", "rb");
	if (!u || fread(r, sizeof(r), 1, u) != 1)
		r[0] = (uint64_t)ent_time_now_ms() ^ ((uint64_t)getpid() << 32);
	if (u)
		fclose(u);
	snprintf(f->node, sizeof(f->node), "%016" PRIx64, r[0]);

	if ((rc = set_opts(f, o, err)))
		goto fail;
	int64_t deadline = mono_ms() + (o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000);
	natsStatus s;
	for (;;) {
		s = natsConnection_Connect(&f->nc, f->nopts);
		if (s == NATS_OK || mono_ms() >= deadline || s == NATS_NOT_PERMITTED ||
		    s == NATS_SECURE_CONNECTION_REQUIRED)
			break;
		const char *t = nats_text(s);
		if (t && strstr(t, "uthorization"))
			break; /* wrong credentials do not get better by waiting */
		if (creds_file_fault(o, t))
			break; /* nor does a credentials file nats.c cannot read */
		usleep(250 * 1000);
	}
	if (s != NATS_OK) {
		char shown[512];
		const char *t = nats_text(s);
		/* nats.c reads the credentials file only when it connects: name the key here. */
		rc = ent_err_set(err, ENT_EUNAVAIL, "%s: cannot connect to %s: %s",
				 creds_file_fault(o, t) ? "fleet.creds_file" : "fleet.nats",
				 redact(f->urls, shown, sizeof(shown)), t);
		goto fail;
	}
	atomic_store(&f->connected, true);
	f->max_payload = (int32_t)natsConnection_GetMaxPayload(f->nc);
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = 5000;
	jo.PublishAsync.AckHandler = on_ack;
	jo.PublishAsync.AckHandlerClosure = f;
	jo.PublishAsync.MaxPending = PENDING_CAP / 2;
	if ((s = natsConnection_JetStream(&f->js, f->nc, &jo)) != NATS_OK) {
		rc = ent_err_set(err, ENT_EUNAVAIL, "fleet.nats: JetStream: %s", nats_text(s));
		goto fail;
	}
	if ((rc = ensure_stream(f, o->max_age_ms, o->max_msgs, err)))
		goto fail;
	f->hooks = (struct ent_writer_fleet){
		.ctx = f, .publish = publish, .claim = claim, .identity = f->identity};
	*out = f;
	return 0;
fail:
	ent_sync_fleet_close(f);
	return rc < 0 ? rc : -rc;
}

int ent_sync_fleet_check_store(struct ent_fleet *f, struct ent_store *store, uint64_t *behind_first,
			       struct ent_err *err)
{
	struct ent_store_stats st;
	int rc = ent_store_stats(store, &st);
	if (rc)
		return ent_err_set(err, -rc, "db.path: cannot read the store: %s",
				   ent_err_strerror(rc));
	char id[160];
	rc = ent_store_get_meta(store, "fleet_stream", id, sizeof(id));
	bool empty = rc == -ENT_ENOTFOUND && st.seq == 0;
	if (rc == -ENT_ENOTFOUND && !empty) {
		return ent_err_set(
			err, ENT_EPRECOND,
			"db.path: holds embedded-mode state (sequence %" PRIu64
			") that no stream has; start fleet mode from an empty directory or "
			"a snapshot",
			st.seq);
	}
	if (rc && !empty)
		return ent_err_set(err, -rc, "db.path: cannot read meta: %s", ent_err_strerror(rc));
	/* An empty store follows the stream from its start, if the stream still has it. */
	if (!empty && strcmp(id, f->identity) != 0)
		return ent_err_set(
			err, ENT_EPRECOND,
			"db.path: follows stream '%s', the engine's is '%s' (deleted and "
			"re-created?); start from an empty directory or a snapshot",
			id, f->identity);
	jsStreamInfo *si = NULL;
	if ((rc = stream_info(f, &si, err)))
		return rc == -ENT_ENOTFOUND ? ent_err_set(err, ENT_EPRECOND,
							  "fleet.stream: '%s' vanished", f->stream)
					    : rc;
	uint64_t first = si->State.FirstSeq, last = si->State.LastSeq;
	jsStreamInfo_Destroy(si);

	if (st.seq > last)
		return ent_err_set(err, ENT_EPRECOND,
				   "db.path: applied sequence %" PRIu64 " is ahead of the stream's "
				   "last %" PRIu64 "; start from an empty directory or a snapshot",
				   st.seq, last);
	if (st.seq + 1 < first && behind_first)
		*behind_first = first;
	if (st.seq + 1 < first)
		return ent_err_set(err, ENT_EPRECOND,
				   "db.path: the stream no longer holds sequence %" PRIu64
				   " (its first is %" PRIu64 "): re-bootstrap from a snapshot",
				   st.seq + 1, first);
	return 0;
}

const struct ent_writer_fleet *ent_sync_fleet_hooks(struct ent_fleet *f)
{
	return &f->hooks;
}

void *ent_sync_fleet_js(struct ent_fleet *f)
{
	return f->js;
}

/*
 * A new ordered consumer from stream sequence \a start, with a closure of a new generation:
 * fed_seq is start - 1 and the hole is cleared in the same critical section, so whatever an
 * older consumer still delivers is dropped from here on.
 */
static int subscribe_at(struct ent_fleet *f, uint64_t start, struct ent_err *err)
{
	struct subctx *sc = calloc(1, sizeof(*sc));
	if (!sc)
		return ent_err_set(err, ENT_ENOMEM, "fleet: out of memory");
	sc->f = f;
	pthread_mutex_lock(&f->feed_mu);
	sc->gen = ++f->gen;
	sc->next = f->subctxs;
	f->subctxs = sc;
	f->fed_seq = start - 1;
	atomic_store(&f->hole, false);
	pthread_mutex_unlock(&f->feed_mu);
	jsSubOptions so;
	jsSubOptions_Init(&so);
	so.Stream = f->stream;
	so.Ordered = true;
	so.Config.DeliverPolicy = js_DeliverByStartSequence;
	so.Config.OptStartSeq = start;
	jsErrCode jerr = 0;
	natsStatus s = js_Subscribe(&f->sub, f->js, f->subject, on_msg, sc, NULL, &so, &jerr);
	if (s != NATS_OK) {
		f->sub = NULL;
		/* No consumer: not "ok" (the re-bootstrap thread tries again). */
		atomic_store(&f->hole, true);
		return ent_err_set(err, ENT_EUNAVAIL, "fleet.stream: cannot consume '%s': %s",
				   f->stream, nats_text(s));
	}
	/* The writer's queue is the buffer; nats.c's own limit would drop messages. */
	natsSubscription_SetPendingLimits(f->sub, -1, -1);
	return 0;
}

static void drop_consumer(struct ent_fleet *f)
{
	if (!f->sub)
		return;
	natsSubscription_Unsubscribe(f->sub);
	natsSubscription_Destroy(f->sub);
	f->sub = NULL;
}

/* ---- re-bootstrap in place ------------------------------------------------------------------ */

/* Remove <dir> and the files in it (a fetched snapshot, its lock file, a partial download). */
static void remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *e;
		char p[PATH_MAX + 256];
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
			    snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) < (int)sizeof(p))
				unlink(p);
		closedir(d);
	}
	rmdir(dir);
}

/* Answer every request of this node still waiting for its message, with \a why. */
static void fail_pending(struct ent_fleet *f, const char *why)
{
	struct ent_err e = {0};
	ent_err_set(&e, ENT_EUNAVAIL, "%s", why);
	pthread_mutex_lock(&f->mu);
	for (size_t i = 0; i < PENDING_CAP; i++) {
		struct pending *p = &f->pending[i];
		if (p->id) {
			atomic_fetch_add(&f->publish_failed, 1);
			ent_writer_fail(f->w, p->req, &e);
			p->id = 0;
			p->req = NULL;
		}
	}
	pthread_mutex_unlock(&f->mu);
}

struct swap_job {
	struct ent_writer_txn_req t;
	struct ent_fleet *f;
	const char *dir;
	struct ent_store_restore_stats st;
};

/* The writer thread, inside a write transaction of its own: every table from the snapshot. */
static int swap_fn(void *ctx, struct ent_wtxn *txn, struct ent_arena *arena,
		   struct ent_apply_result *res)
{
	struct swap_job *j = ctx;
	int r = ent_store_restore(txn, j->dir, &j->st, &res->err);
	if (r)
		return r;
	/* The copy follows this stream (checked before); the writer's hooks write it anyway. */
	return ent_store_wtxn_put_meta(txn, "fleet_stream", j->f->identity);
}

/* The writer thread, after the commit (or the abort): wake the re-bootstrap thread. */
static void swap_cb(void *ctx, const struct ent_apply_result *res)
{
	struct swap_job *j = ctx;
	struct ent_fleet *f = j->f;
	pthread_mutex_lock(&f->rb_mu);
	f->swap_err = res->err;
	if (!res->err.code && res->seq != j->st.seq)
		ent_err_set(&f->swap_err, ENT_EIO,
			    "fleet: the swap committed sequence %" PRIu64
			    ", the snapshot is at %" PRIu64,
			    res->seq, j->st.seq);
	f->swap_done = true;
	pthread_cond_broadcast(&f->rb_cv);
	pthread_mutex_unlock(&f->rb_mu);
}

/* Sleep up to \a ms on rb_cv; false once stopping. */
static bool rb_wait(struct ent_fleet *f, int64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&f->rb_mu);
	while (!atomic_load(&f->stopping) &&
	       pthread_cond_timedwait(&f->rb_cv, &f->rb_mu, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&f->rb_mu);
	return !atomic_load(&f->stopping);
}

struct rb_log {
	char last[200];
	int64_t at;
};

/* A reason to wait, logged when it changes and at most every REBOOT_LOG_MS otherwise. */
static void rb_wait_reason(struct ent_fleet *f, struct rb_log *lg, const char *reason,
			   const char *detail)
{
	atomic_fetch_add(&f->rebootstrap_failed, 1);
	int64_t now = mono_ms();
	if (!strcmp(lg->last, reason) && now - lg->at < REBOOT_LOG_MS)
		return;
	snprintf(lg->last, sizeof(lg->last), "%s", reason);
	lg->at = now;
	ent_log(ENT_LOG_ERROR, reason, "detail", detail, "bucket", f->bucket, NULL);
}

/*
 * One try. Returns true when the replica consumes again (restored, or the stream turned out
 * to hold the next sequence after all), false to try again later (reason logged).
 */
static bool rebootstrap_round(struct ent_fleet *f, struct rb_log *lg)
{
	char detail[400];
	struct ent_err err = {0};
	jsStreamInfo *si = NULL;
	int rc = stream_info(f, &si, &err);
	if (rc) {
		rb_wait_reason(f, lg, "fleet: re-bootstrap waits: cannot read the stream",
			       rc == -ENT_ENOTFOUND ? "the stream is gone" : err.msg);
		return false;
	}
	uint64_t first = si->State.FirstSeq, last = si->State.LastSeq;
	bool same = si->Created == f->created;
	jsStreamInfo_Destroy(si);
	if (!same) {
		rb_wait_reason(f, lg, "fleet: re-bootstrap waits: the stream was re-created",
			       "restart the replica from an empty directory");
		return false;
	}
	pthread_mutex_lock(&f->feed_mu);
	uint64_t fed = f->fed_seq;
	pthread_mutex_unlock(&f->feed_mu);
	if (fed + 1 >= first && fed <= last) {
		/* The stream holds the next sequence (a hole that was not retention): resume. */
		if (subscribe_at(f, fed + 1, &err)) {
			rb_wait_reason(f, lg, "fleet: re-bootstrap waits: cannot consume", err.msg);
			return false;
		}
		ent_log(ENT_LOG_WARN, "fleet: the stream holds the next sequence; consuming again",
			NULL);
		return true;
	}

	jsCtx *js = f->js;
	struct ent_sync_snapshot_info info;
	rc = ent_sync_snapshot_info(js, f->bucket, NULL, &info, &err);
	if (rc == 0 && strcmp(info.stream, f->identity) != 0) {
		snprintf(detail, sizeof(detail),
			 "the newest snapshot follows '%.150s', not '%.150s'", info.stream,
			 f->identity);
		rb_wait_reason(f, lg, "fleet: re-bootstrap waits: no snapshot fits", detail);
		return false;
	}
	if (rc == 0 && info.seq + 1 < first) {
		snprintf(detail, sizeof(detail),
			 "the newest snapshot is at sequence %" PRIu64
			 ", the stream's first is %" PRIu64
			 " (publish a newer one: entctl fleet snapshot publish)",
			 info.seq, first);
		rb_wait_reason(f, lg, "fleet: re-bootstrap waits: no snapshot fits", detail);
		return false;
	}
	if (rc) {
		rb_wait_reason(f, lg, "fleet: re-bootstrap waits: no snapshot fits", err.msg);
		return false;
	}

	atomic_store(&f->rebootstrapping, true);
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/%s", f->db_path, REBOOT_DIR);
	remove_dir(dir);
	int64_t t0 = mono_ms();
	rc = ent_sync_snapshot_fetch_opts(js, f->bucket, dir, NULL, &info, &err);
	if (!rc && (strcmp(info.stream, f->identity) != 0 || info.seq + 1 < first))
		rc = ent_err_set(&err, ENT_EPRECOND,
				 "the fetched snapshot (sequence %" PRIu64
				 ") does not fit any more; trying again",
				 info.seq);
	if (rc) {
		remove_dir(dir);
		atomic_store(&f->rebootstrapping, false);
		rb_wait_reason(f, lg, "fleet: re-bootstrap: the snapshot fetch failed", err.msg);
		return false;
	}
	int64_t t1 = mono_ms();

	/* The swap: one write transaction of the writer, the only writer. */
	struct swap_job j = {.f = f, .dir = dir};
	j.t.fn = swap_fn;
	j.t.local = true;
	j.t.req.cb = swap_cb;
	j.t.req.ctx = &j;
	pthread_mutex_lock(&f->rb_mu);
	f->swap_done = false;
	memset(&f->swap_err, 0, sizeof(f->swap_err));
	pthread_mutex_unlock(&f->rb_mu);
	rc = ent_writer_submit_txn(f->w, &j.t);
	if (rc) {
		remove_dir(dir);
		atomic_store(&f->rebootstrapping, false);
		rb_wait_reason(f, lg, "fleet: re-bootstrap: the writer is stopping",
			       ent_err_strerror(rc));
		return false;
	}
	/* Not interruptible by stopping: the writer runs the job before it stops. */
	pthread_mutex_lock(&f->rb_mu);
	while (!f->swap_done)
		pthread_cond_wait(&f->rb_cv, &f->rb_mu);
	err = f->swap_err;
	pthread_mutex_unlock(&f->rb_mu);
	remove_dir(dir);
	if (err.code) {
		atomic_store(&f->rebootstrapping, false);
		rb_wait_reason(f, lg, "fleet: re-bootstrap: the swap failed (nothing changed)",
			       err.msg);
		return false;
	}
	/* Requests that raced with the hole: their messages are in the snapshot or not ours. */
	fail_pending(f, "fleet: this replica re-bootstrapped from a snapshot while the write "
			"waited; it may have been applied by the fleet: read it back or retry "
			"with the same idempotency key");
	/* Ready again once caught up with the head seen now, as at start. */
	atomic_store(&f->start_head, atomic_load(&f->head_seq));
	atomic_store(&f->caught_up, false);
	char s1[24], s2[24], s3[24], s4[24];
	snprintf(s1, sizeof(s1), "%" PRIu64, j.st.seq);
	snprintf(s2, sizeof(s2), "%" PRIu64, j.st.entries);
	snprintf(s3, sizeof(s3), "%.2f", (double)(t1 - t0) / 1000.0);
	snprintf(s4, sizeof(s4), "%.2f", (double)(mono_ms() - t1) / 1000.0);
	ent_log(ENT_LOG_INFO, "fleet: re-bootstrapped in place from the snapshot", "seq", s1,
		"entries", s2, "fetch_seconds", s3, "swap_seconds", s4, NULL);
	atomic_fetch_add(&f->rebootstraps, 1);
	/* Consume from the snapshot's next sequence; retried until it works or entd stops. */
	while (subscribe_at(f, j.st.seq + 1, &err)) {
		rb_wait_reason(f, lg, "fleet: re-bootstrap: cannot consume again", err.msg);
		if (!rb_wait(f, REBOOT_RETRY_MS))
			break;
	}
	atomic_store(&f->rebootstrapping, false);
	return true;
}

static void *rebooter_main(void *arg)
{
	struct ent_fleet *f = arg;
	struct rb_log lg = {{0}, 0};
	for (;;) {
		pthread_mutex_lock(&f->rb_mu);
		while (!atomic_load(&f->stopping) && !atomic_load(&f->hole))
			pthread_cond_wait(&f->rb_cv, &f->rb_mu);
		pthread_mutex_unlock(&f->rb_mu);
		if (atomic_load(&f->stopping))
			break;
		/* The consumer delivers nothing usable any more; writes waiting for it never
		 * get their result here. */
		drop_consumer(f);
		fail_pending(f, "fleet: this replica is behind the stream's retention and "
				"re-bootstraps from a snapshot; the write was published and may be "
				"applied by the fleet: read it back or retry with the same "
				"idempotency key");
		lg.last[0] = 0;
		while (!rebootstrap_round(f, &lg))
			if (!rb_wait(f, REBOOT_RETRY_MS))
				return NULL;
	}
	return NULL;
}

int ent_sync_fleet_start(struct ent_fleet *f, struct ent_writer *w, struct ent_store *store,
			 struct ent_err *err)
{
	struct ent_store_stats st;
	int rc = ent_store_stats(store, &st);
	if (rc)
		return ent_err_set(err, -rc, "db.path: cannot read the store: %s",
				   ent_err_strerror(rc));
	f->w = w;
	f->store = store;
	if (st.seq >= atomic_load(&f->start_head))
		atomic_store(&f->caught_up, true);
	if (f->db_path) {
		/* A re-bootstrap killed half-way left its download: only disk space. */
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s/%s", f->db_path, REBOOT_DIR);
		remove_dir(dir);
	}
	if ((rc = subscribe_at(f, st.seq + 1, err)))
		return rc;
	if (pthread_create(&f->poller, NULL, poll_main, f) == 0)
		f->poller_started = true;
	if (f->db_path && pthread_create(&f->rebooter, NULL, rebooter_main, f) == 0)
		f->rebooter_started = true;
	return 0;
}

void ent_sync_fleet_get_stats(struct ent_fleet *f, struct ent_fleet_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->connected = atomic_load(&f->connected);
	out->applied_seq = f->w ? ent_writer_seq(f->w) : 0;
	out->head_seq = atomic_load(&f->head_seq);
	out->start_head = atomic_load(&f->start_head);
	if (!atomic_load(&f->caught_up) && out->applied_seq >= out->start_head)
		atomic_store(&f->caught_up, true);
	out->caught_up = atomic_load(&f->caught_up);
	out->hole = atomic_load(&f->hole);
	out->rebootstrapping = atomic_load(&f->rebootstrapping);
	out->rebootstraps = atomic_load(&f->rebootstraps);
	out->rebootstrap_failed = atomic_load(&f->rebootstrap_failed);
	out->stream_changed = atomic_load(&f->stream_changed);
	out->lag = out->head_seq > out->applied_seq ? out->head_seq - out->applied_seq : 0;
	int64_t heard = atomic_load(&f->last_heard_ms);
	out->last_heard_ms = heard < 0 ? -1 : mono_ms() - heard;
	out->published = atomic_load(&f->published);
	out->publish_failed = atomic_load(&f->publish_failed);
	out->skipped = f->w ? ent_writer_skipped(f->w) : 0;
	out->reconnects = atomic_load(&f->reconnects);
	out->disconnects = atomic_load(&f->disconnects);
	snprintf(out->identity, sizeof(out->identity), "%s", f->identity);
}

const char *ent_sync_fleet_state_name(const struct ent_fleet_stats *s)
{
	if (s->stream_changed)
		return "stream_changed";
	if (s->rebootstrapping)
		return "rebootstrapping";
	if (s->hole)
		return "stopped_hole";
	if (!s->connected)
		return "disconnected";
	if (!s->caught_up)
		return "catching_up";
	return "ok";
}

void ent_sync_fleet_close(struct ent_fleet *f)
{
	if (!f)
		return;
	atomic_store(&f->stopping, true);
	pthread_mutex_lock(&f->rb_mu);
	pthread_cond_broadcast(&f->rb_cv);
	pthread_mutex_unlock(&f->rb_mu);
	if (f->rebooter_started)
		pthread_join(f->rebooter, NULL); /* waits for a fetch or swap in progress */
	if (f->poller_started)
		pthread_join(f->poller, NULL);
	drop_consumer(f);
	/* Closing waits for nats.c's callbacks in progress; pending acks are dropped. */
	if (f->nc)
		natsConnection_Close(f->nc);
	if (f->w && f->pending) {
		/* Requests still waiting for their message: the writer answers them. */
		struct ent_err e = {0};
		ent_err_set(&e, ENT_EUNAVAIL,
			    "fleet: entd is stopping; the write may still be applied by the fleet");
		pthread_mutex_lock(&f->mu);
		for (size_t i = 0; i < PENDING_CAP; i++) {
			struct pending *p = &f->pending[i];
			if (p->id) {
				ent_writer_fail(f->w, p->req, &e);
				p->id = 0;
				p->req = NULL;
			}
		}
		pthread_mutex_unlock(&f->mu);
	}
	if (f->js)
		jsCtx_Destroy(f->js);
	if (f->nc)
		natsConnection_Destroy(f->nc);
	natsOptions_Destroy(f->nopts);
	while (f->subctxs) {
		struct subctx *next = f->subctxs->next;
		free(f->subctxs);
		f->subctxs = next;
	}
	pthread_mutex_destroy(&f->mu);
	pthread_mutex_destroy(&f->feed_mu);
	pthread_mutex_destroy(&f->rb_mu);
	pthread_cond_destroy(&f->rb_cv);
	free(f->db_path);
	free(f->bucket);
	free(f->pending);
	free(f->urls);
	free(f->stream);
	free(f->subject);
	free(f);
}
