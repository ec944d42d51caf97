/*
 * The HTTP endpoint: libmicrohttpd with its own polling thread, so scrapes and probes never run
 * on an RPC or writer thread and a slow scraper cannot delay a check. Three read-only paths;
 * everything is answered on the first callback because none of them takes a body.
 */
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "metrics/impl.h"

#define PROM_TYPE "text/plain; version=0.0.4; charset=utf-8"

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *body,
			     size_t len, enum MHD_ResponseMemoryMode mode, const char *type)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, mode);
	if (!r) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free((void *)body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	enum MHD_Result rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *s)
{
	return reply(c, status, s, strlen(s), MHD_RESPMEM_PERSISTENT, "text/plain; charset=utf-8");
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **req_cls)
{
	struct ent_metrics *m = cls;
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)req_cls;
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD)) {
		struct MHD_Response *r =
			MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
		if (!r)
			return MHD_NO;
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
		enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, r);
		MHD_destroy_response(r);
		return rc;
	}
	if (!strcmp(url, "/metrics")) {
		char *text;
		size_t len;
		if (ent_metrics_render(m, &text, &len))
			return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
		return reply(c, MHD_HTTP_OK, text, len, MHD_RESPMEM_MUST_FREE, PROM_TYPE);
	}
	if (!strcmp(url, "/livez"))
		return reply_text(c, MHD_HTTP_OK, "ok\n");
	if (!strcmp(url, "/readyz")) {
		char why[200] = "";
		if (!m->ready_cb || m->ready_cb(m->ready_ctx, why, sizeof(why) - 1))
			return reply_text(c, MHD_HTTP_OK, "ok\n");
		char body[256];
		int n = snprintf(body, sizeof(body), "not ready%s%s\n", why[0] ? ": " : "", why);
		char *copy = strndup(body, (size_t)n);
		if (!copy)
			return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready\n");
		return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, copy, strlen(copy),
			     MHD_RESPMEM_MUST_FREE, "text/plain; charset=utf-8");
	}
	return reply_text(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics, /livez or /readyz\n");
}

/* MHD's diagnostics go to our structured log at debug, and the last one is kept for errors. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct ent_metrics *m = cls;
	vsnprintf(m->last_http_error, sizeof(m->last_http_error), fmt, ap);
	size_t n = strlen(m->last_http_error);
	while (n && (m->last_http_error[n - 1] == '\n' || m->last_http_error[n - 1] == '.'))
		m->last_http_error[--n] = 0;
	ent_log(ENT_LOG_DEBUG, "metrics http", "detail", m->last_http_error, NULL);
}

/* "host:port", "[v6]:port" or ":port" (all IPv4 interfaces) into a socket address. */
static int resolve(const char *listen, struct sockaddr_storage *ss, struct ent_err *err)
{
	char host[256];
	const char *port;
	if (listen[0] == '[') {
		const char *close = strchr(listen, ']');
		if (!close || close[1] != ':' || (size_t)(close - listen) > sizeof(host))
			goto bad;
		snprintf(host, sizeof(host), "%.*s", (int)(close - listen - 1), listen + 1);
		port = close + 2;
	} else {
		const char *colon = strrchr(listen, ':');
		if (!colon || (size_t)(colon - listen) >= sizeof(host))
			goto bad;
		snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
		port = colon + 1;
	}
	if (!*port || strspn(port, "0123456789") != strlen(port) || atoi(port) > 65535)
		goto bad;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV | AI_ADDRCONFIG,
				 .ai_family = host[0] ? AF_UNSPEC : AF_INET};
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc || !res)
		return ent_err_set(err, ENT_EINVAL, "metrics.listen: '%s': %s", listen,
				   gai_strerror(rc));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
bad:
	return ent_err_set(err, ENT_EINVAL, "metrics.listen: '%s' is not host:port (or :port)",
			   listen);
}

int ent_metrics_serve(struct ent_metrics *m, const char *listen, ent_metrics_ready_cb ready,
		      void *ctx, struct ent_err *err)
{
	if (m->httpd)
		return ent_err_set(err, ENT_EINVAL, "metrics.listen: already serving");
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	int rc = resolve(listen, &ss, err);
	if (rc)
		return rc;
	m->ready_cb = ready;
	m->ready_ctx = ctx;
	m->last_http_error[0] = 0;
	unsigned flags = MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/*
	 * Scrapes are small and rare: a few connections, short timeouts, no keep-alive hoarding.
	 * One source address gets a quarter of the connections at most, so a client holding
	 * connections open (70 slow-header connections took all 64 before) cannot lock the
	 * kubelet's /livez out; the idle timeout closes what stops sending (docs/security.md).
	 */
	unsigned max_conn = m->max_connections ? m->max_connections : 32;
	unsigned per_ip = max_conn / 4 > 2 ? max_conn / 4 : 2;
	unsigned timeout = m->timeout_s ? m->timeout_s : 10;
	m->httpd = MHD_start_daemon(
		flags, 0, NULL, NULL, handle, m, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		MHD_OPTION_CONNECTION_LIMIT, max_conn, MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip,
		MHD_OPTION_CONNECTION_TIMEOUT, timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t)32 * 1024, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, m, MHD_OPTION_END);
	if (!m->httpd)
		return ent_err_set(err, ENT_EIO, "metrics.listen: cannot listen on '%s'%s%s",
				   listen, m->last_http_error[0] ? ": " : "", m->last_http_error);
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->httpd, MHD_DAEMON_INFO_BIND_PORT);
	m->port = info ? info->port : 0;
	return 0;
}

void ent_metrics_set_limits(struct ent_metrics *m, unsigned max_connections, unsigned timeout_s)
{
	m->max_connections = max_connections;
	m->timeout_s = timeout_s;
}

void ent_metrics_stop(struct ent_metrics *m)
{
	if (!m || !m->httpd)
		return;
	MHD_stop_daemon(m->httpd);
	m->httpd = NULL;
	m->port = 0;
}
