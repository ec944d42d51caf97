/*
 * Start-up validation: everything that can be known before binding a port is checked here, so
 * `entd --check-config` catches it on a CI machine and a bad deploy fails before it serves.
 * The first problem is reported with its key and value; secrets are never echoed.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config/impl.h"

#define FIELD(cfg, s, type) ((type *)((char *)(cfg) + (s)->off))

/* The generic range checks of the numeric settings, for configs built by hand. */
static int check_ranges(const struct ent_config *cfg, struct ent_err *err)
{
	for (size_t i = 0; i < ent_config_n_settings; i++) {
		const struct setting *s = &ent_config_settings[i];
		uint64_t v;
		switch (s->kind) {
		case K_SIZE:
			v = *FIELD(cfg, s, const uint64_t);
			break;
		case K_DURATION: {
			int64_t d = *FIELD(cfg, s, const int64_t);
			if (d < 0)
				return ent_err_set(err, ENT_EINVAL, "%s: %lld is negative", s->key,
						   (long long)d);
			v = (uint64_t)d;
			break;
		}
		case K_UINT:
		case K_THREADS:
			v = *FIELD(cfg, s, const unsigned);
			break;
		case K_RATE: {
			double r = *FIELD(cfg, s, const double);
			if (!(r >= 0.0 && r <= 1.0))
				return ent_err_set(err, ENT_EINVAL, "%s: %g is not in 0..1", s->key,
						   r);
			continue;
		}
		case K_LEVEL:
			if ((unsigned)*FIELD(cfg, s, const enum ent_log_level) > ENT_LOG_ERROR)
				return ent_err_set(err, ENT_EINVAL, "%s: unknown level", s->key);
			continue;
		default:
			continue;
		}
		if (v < s->min || v > s->max)
			return ent_err_set(err, ENT_EINVAL, "%s: %llu is not in %llu..%llu", s->key,
					   (unsigned long long)v, (unsigned long long)s->min,
					   (unsigned long long)s->max);
	}
	return 0;
}

/* Does the directory holding \a path exist? */
static bool parent_exists(const char *path)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		return true; /* relative to the working directory */
	if (slash == dir)
		slash[1] = 0;
	else
		*slash = 0;
	struct stat st;
	return !stat(dir, &st) && S_ISDIR(st.st_mode);
}

static bool valid_hostname(const char *h)
{
	if (!*h || strlen(h) > 253)
		return false;
	for (const char *p = h; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
			return false;
	return true;
}

/*
 * "host:port" or "[v6]:port". \a allow_empty_host admits ":port" (all interfaces), which the
 * metrics listener understands but gRPC does not.
 */
static bool valid_hostport(const char *a, bool allow_empty_host)
{
	char host[256];
	const char *colon;
	if (a[0] == '[') {
		const char *close = strchr(a, ']');
		if (!close || close[1] != ':' || (size_t)(close - a - 1) >= sizeof(host))
			return false;
		snprintf(host, sizeof(host), "%.*s", (int)(close - a - 1), a + 1);
		unsigned char buf[16];
		if (inet_pton(AF_INET6, host, buf) != 1)
			return false;
		colon = close + 1;
	} else {
		colon = strrchr(a, ':');
		if (!colon || (size_t)(colon - a) >= sizeof(host))
			return false;
		snprintf(host, sizeof(host), "%.*s", (int)(colon - a), a);
		if (strchr(host, ':'))
			return false; /* a bare IPv6 address needs brackets */
		if (!*host ? !allow_empty_host : !valid_hostname(host))
			return false;
	}
	const char *port = colon + 1;
	if (!*port || strlen(port) > 5)
		return false;
	long v = 0;
	for (const char *p = port; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (*p - '0');
	}
	return v <= 65535;
}

static bool is_unix(const char *a)
{
	return !strncmp(a, "unix:", 5) || !strncmp(a, "unix-abstract:", 14);
}

static int lookup_user(const char *name, uid_t *out)
{
	char *end;
	unsigned long v = strtoul(name, &end, 10);
	if (*name && !*end) {
		*out = (uid_t)v;
		return 0;
	}
	char buf[4096];
	struct passwd pw, *res = NULL;
	if (getpwnam_r(name, &pw, buf, sizeof(buf), &res) || !res)
		return -ENT_ENOTFOUND;
	*out = res->pw_uid;
	return 0;
}

static int lookup_group(const char *name, gid_t *out)
{
	char *end;
	unsigned long v = strtoul(name, &end, 10);
	if (*name && !*end) {
		*out = (gid_t)v;
		return 0;
	}
	char buf[4096];
	struct group gr, *res = NULL;
	if (getgrnam_r(name, &gr, buf, sizeof(buf), &res) || !res)
		return -ENT_ENOTFOUND;
	*out = res->gr_gid;
	return 0;
}

/* A PEM file of the expected kind: we open it, so permissions and paths are checked too. */
static int check_pem(const char *key, const char *path, bool private_key, struct ent_err *err)
{
	char *buf;
	size_t len;
	int rc = ent_config_read_file(key, path, &buf, &len, err);
	if (rc)
		return rc;
	const char *begin = strstr(buf, "-----BEGIN ");
	if (!begin || !strstr(begin, "-----END ")) {
		rc = ent_err_set(err, ENT_EINVAL, "%s: '%s' holds no PEM block", key, path);
	} else if (private_key) {
		if (strstr(buf, "ENCRYPTED"))
			rc = ent_err_set(err, ENT_EINVAL,
					 "%s: '%s' is an encrypted key; entd needs it unencrypted",
					 key, path);
		else if (!strstr(buf, "PRIVATE KEY-----"))
			rc = ent_err_set(err, ENT_EINVAL, "%s: '%s' holds no PEM private key", key,
					 path);
	} else if (!strstr(buf, "-----BEGIN CERTIFICATE-----")) {
		rc = ent_err_set(err, ENT_EINVAL, "%s: '%s' holds no PEM certificate", key, path);
	}
	if (private_key)
		explicit_bzero(buf, len);
	free(buf);
	return rc;
}

static int check_listener(const struct ent_config *cfg, size_t i, struct ent_err *err)
{
	const struct ent_config_listener *l = &cfg->listeners[i];
	char key[64];
	const char *a = l->address ? l->address : "";
	snprintf(key, sizeof(key), "listeners[%zu].address", i);
	if (is_unix(a)) {
		bool abstract = a[4] == '-';
		const char *path = a + (abstract ? 14 : 5);
		if (!*path)
			return ent_err_set(err, ENT_EINVAL, "%s: '%s' has no socket path", key, a);
		if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return ent_err_set(err, ENT_EINVAL,
					   "%s: '%s': the socket path is longer than 107 bytes",
					   key, a);
		if (!abstract && !parent_exists(path))
			return ent_err_set(err, ENT_EINVAL,
					   "%s: '%s': the socket's directory does not exist", key,
					   a);
		if (l->tls)
			return ent_err_set(err, ENT_EINVAL,
					   "listeners[%zu].tls: not supported on a unix socket "
					   "(protect it with mode, owner and group)",
					   i);
		if (abstract && (l->mode >= 0 || l->owner || l->group))
			return ent_err_set(
				err, ENT_EINVAL,
				"listeners[%zu]: mode, owner and group need a socket file, "
				"not unix-abstract:",
				i);
	} else {
		if (!valid_hostport(a, false))
			return ent_err_set(err, ENT_EINVAL,
					   "%s: '%s' is not host:port or unix:/path "
					   "(all interfaces: 0.0.0.0:PORT or [::]:PORT)",
					   key, a);
		if (l->mode >= 0)
			return ent_err_set(err, ENT_EINVAL,
					   "listeners[%zu].mode: only for unix: "
					   "sockets",
					   i);
		if (l->owner || l->group)
			return ent_err_set(err, ENT_EINVAL,
					   "listeners[%zu].%s: only for unix: sockets", i,
					   l->owner ? "owner" : "group");
	}
	if (l->mode > 07777)
		return ent_err_set(err, ENT_EINVAL, "listeners[%zu].mode: %o is not a mode", i,
				   (unsigned)l->mode);
	uid_t uid;
	gid_t gid;
	if (l->owner && lookup_user(l->owner, &uid))
		return ent_err_set(err, ENT_EINVAL, "listeners[%zu].owner: '%s' is not a user", i,
				   l->owner);
	if (l->group && lookup_group(l->group, &gid))
		return ent_err_set(err, ENT_EINVAL, "listeners[%zu].group: '%s' is not a group", i,
				   l->group);
	if (!(l->services & (ENT_SVC_ALL)))
		return ent_err_set(err, ENT_EINVAL, "listeners[%zu].services: none", i);
	for (size_t j = 0; j < i; j++)
		if (cfg->listeners[j].address && !strcmp(cfg->listeners[j].address, a))
			return ent_err_set(err, ENT_EINVAL, "%s: '%s' is also listeners[%zu]", key,
					   a, j);
	if (!l->tls)
		return 0;

	char k[80];
	if (!l->cert_file || !l->key_file) {
		return ent_err_set(err, ENT_EINVAL, "listeners[%zu].tls.%s: is required", i,
				   l->cert_file ? "key_file" : "cert_file");
	}
	snprintf(k, sizeof(k), "listeners[%zu].tls.cert_file", i);
	int rc = check_pem(k, l->cert_file, false, err);
	if (rc)
		return rc;
	snprintf(k, sizeof(k), "listeners[%zu].tls.key_file", i);
	if ((rc = check_pem(k, l->key_file, true, err)))
		return rc;
	if (l->client_ca_file) {
		snprintf(k, sizeof(k), "listeners[%zu].tls.client_ca_file", i);
		if ((rc = check_pem(k, l->client_ca_file, false, err)))
			return rc;
	} else if (l->require_client_cert) {
		return ent_err_set(err, ENT_EINVAL,
				   "listeners[%zu].tls.require_client_cert: true needs "
				   "client_ca_file",
				   i);
	}
	return 0;
}

/* Header values may not hold spaces or control characters; say so without showing the token. */
static int check_token_text(const char *key, const char *t, struct ent_err *err)
{
	for (const unsigned char *p = (const unsigned char *)t; *p; p++)
		if (*p <= 0x20 || *p == 0x7f)
			return ent_err_set(err, ENT_EINVAL,
					   "%s: the token holds a space or control character "
					   "(value not shown)",
					   key);
	return 0;
}

static int load_token_file(struct ent_config *cfg, struct ent_err *err)
{
	char *buf;
	size_t len;
	int rc = ent_config_read_file("admin.token_file", cfg->admin_token_file, &buf, &len, err);
	if (rc)
		return rc;
	/* Files written by echo or an editor end in a newline that is no part of the token. */
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
		       buf[len - 1] == '\t'))
		buf[--len] = 0;
	if (!len)
		rc = ent_err_set(err, ENT_EINVAL, "admin.token_file: '%s' is empty",
				 cfg->admin_token_file);
	else if (strlen(buf) != len)
		rc = ent_err_set(err, ENT_EINVAL, "admin.token_file: '%s' holds a NUL byte",
				 cfg->admin_token_file);
	else
		rc = check_token_text("admin.token_file", buf, err);
	if (!rc) {
		if (cfg->admin_token)
			explicit_bzero(cfg->admin_token, strlen(cfg->admin_token));
		free(cfg->admin_token);
		cfg->admin_token = buf;
	} else {
		explicit_bzero(buf, len);
		free(buf);
	}
	return rc;
}

static int check_db(const struct ent_config *cfg, struct ent_err *err)
{
	if (!cfg->db_path || !*cfg->db_path)
		return ent_err_set(err, ENT_EINVAL, "db.path: must be set");
	struct stat st;
	if (!stat(cfg->db_path, &st)) {
		if (!S_ISDIR(st.st_mode))
			return ent_err_set(err, ENT_EINVAL, "db.path: '%s' is not a directory",
					   cfg->db_path);
		return 0;
	}
	if (!parent_exists(cfg->db_path))
		return ent_err_set(err, ENT_EINVAL,
				   "db.path: '%s' does not exist and neither does its parent "
				   "directory",
				   cfg->db_path);
	return 0;
}

static int check_decision_log(const struct ent_config *cfg, struct ent_err *err)
{
	const char *p = cfg->decision_log_path;
	if (!p || !*p || !strcmp(p, "stderr") || !strcmp(p, "-"))
		return 0;
	struct stat st;
	if (!stat(p, &st)) {
		if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode))
			return ent_err_set(err, ENT_EINVAL, "decision_log.path: '%s' is not a file",
					   p);
		if (access(p, W_OK))
			return ent_err_set(err, ENT_EINVAL,
					   "decision_log.path: '%s' is not writable: %s", p,
					   strerror(errno));
		return 0;
	}
	if (!parent_exists(p))
		return ent_err_set(err, ENT_EINVAL,
				   "decision_log.path: the directory of '%s' does not exist", p);
	return 0;
}

/* A file the fleet settings name must be readable now, not at the first reconnect. */
static int check_readable(const char *key, const char *path, struct ent_err *err)
{
	if (!path || !*path)
		return 0;
	if (access(path, R_OK) != 0)
		return ent_err_set(err, ENT_EINVAL, "%s: '%s' is not readable: %s", key, path,
				   strerror(errno));
	return 0;
}

/* Stream names and subjects: what NATS accepts (no spaces; names also no '.', '*', '>'). */
static bool nats_token_ok(const char *s, bool name)
{
	if (!s || !*s || strlen(s) > 255)
		return false;
	for (const char *p = s; *p; p++) {
		if (*p <= ' ' || *p == 0x7f)
			return false;
		if (name && (*p == '.' || *p == '*' || *p == '>' || *p == '/' || *p == '\\'))
			return false;
	}
	return true;
}

static int check_fleet(const struct ent_config *cfg, struct ent_err *err)
{
	const char *u = cfg->fleet_nats;
	if (!u || !*u)
		return 0;
	/* Each comma-separated entry: scheme://host:port or host:port. */
	char buf[2048];
	snprintf(buf, sizeof(buf), "%s", u);
	char *save = NULL;
	for (char *one = strtok_r(buf, ",", &save); one; one = strtok_r(NULL, ",", &save)) {
		while (*one == ' ')
			one++;
		const char *hp = strstr(one, "://");
		if (hp && strncmp(one, "nats://", 7) && strncmp(one, "tls://", 6))
			return ent_err_set(
				err, ENT_EINVAL,
				"fleet.nats: '%s' is not nats://host:port or tls://host:port", one);
		hp = hp ? hp + 3 : one;
		const char *at = strrchr(hp, '@');
		if (at)
			hp = at +
			     1; /* user:password@ (the password is not echoed: only the host) */
		if (!*hp || *hp == ':')
			return ent_err_set(err, ENT_EINVAL, "fleet.nats: '%s' names no host", hp);
	}
	if (!nats_token_ok(cfg->fleet_stream, true))
		return ent_err_set(
			err, ENT_EINVAL,
			"fleet.stream: '%s' is not a stream name (letters, digits, - and "
			"_; no spaces, '.', '*', '>')",
			cfg->fleet_stream ? cfg->fleet_stream : "");
	if (!nats_token_ok(cfg->fleet_subject, false))
		return ent_err_set(err, ENT_EINVAL, "fleet.subject: '%s' is not a subject",
				   cfg->fleet_subject ? cfg->fleet_subject : "");
	if (strchr(cfg->fleet_subject, '*') || strchr(cfg->fleet_subject, '>'))
		return ent_err_set(err, ENT_EINVAL,
				   "fleet.subject: '%s' has a wildcard; events go to one subject",
				   cfg->fleet_subject);
	if (!nats_token_ok(cfg->fleet_snapshot_bucket, true))
		return ent_err_set(err, ENT_EINVAL,
				   "fleet.snapshot_bucket: '%s' is not a bucket name",
				   cfg->fleet_snapshot_bucket ? cfg->fleet_snapshot_bucket : "");
	if (cfg->fleet_replicas != 1 && cfg->fleet_replicas != 3 && cfg->fleet_replicas != 5)
		return ent_err_set(err, ENT_EINVAL, "fleet.replicas: %u is not 1, 3 or 5",
				   cfg->fleet_replicas);
	int rc;
	if ((rc = check_readable("fleet.creds_file", cfg->fleet_creds_file, err)) ||
	    (rc = check_readable("fleet.tls_ca_file", cfg->fleet_tls_ca_file, err)) ||
	    (rc = check_readable("fleet.tls_cert_file", cfg->fleet_tls_cert_file, err)) ||
	    (rc = check_readable("fleet.tls_key_file", cfg->fleet_tls_key_file, err)))
		return rc;
	if ((cfg->fleet_tls_cert_file && *cfg->fleet_tls_cert_file) !=
	    (cfg->fleet_tls_key_file && *cfg->fleet_tls_key_file))
		return ent_err_set(
			err, ENT_EINVAL,
			"fleet.tls_cert_file: needs fleet.tls_key_file (and the reverse)");
	/* The object-store layout's bucket names (src/sync/objstore.c). */
	const char *b = cfg->fleet_snapshot_bucket;
	bool bok = b && *b && strlen(b) <= 64;
	for (const char *p = b; bok && *p; p++)
		bok = isalnum((unsigned char)*p) || *p == '_' || *p == '-';
	if (!bok)
		return ent_err_set(err, ENT_EINVAL,
				   "fleet.snapshot_bucket: '%s' is not 1..64 of A-Z a-z 0-9 _ -",
				   b ? b : "");
	return 0;
}

int ent_config_validate(struct ent_config *cfg, struct ent_err *err)
{
	int rc = check_ranges(cfg, err);
	if (rc)
		return rc;
	if ((rc = check_db(cfg, err)))
		return rc;
	if (!cfg->n_listeners)
		return ent_err_set(err, ENT_EINVAL, "listeners: at least one is needed");
	for (size_t i = 0; i < cfg->n_listeners; i++)
		if ((rc = check_listener(cfg, i, err)))
			return rc;

	if (cfg->admin_token_file && (rc = load_token_file(cfg, err)))
		return rc;
	if (cfg->admin_token && (rc = check_token_text("admin.token", cfg->admin_token, err)))
		return rc;
	if (cfg->protect_checks && !(cfg->admin_token && *cfg->admin_token))
		return ent_err_set(err, ENT_EINVAL,
				   "admin.protect_checks: true needs admin.token or "
				   "admin.token_file");

	const char *m = cfg->metrics_listen;
	if (m && *m) {
		if (!valid_hostport(m, true))
			return ent_err_set(err, ENT_EINVAL,
					   "metrics.listen: '%s' is not host:port (or :port)", m);
		for (size_t i = 0; i < cfg->n_listeners; i++)
			if (!strcmp(cfg->listeners[i].address, m))
				return ent_err_set(err, ENT_EINVAL,
						   "metrics.listen: '%s' is also listeners[%zu]", m,
						   i);
	}
	if ((rc = check_fleet(cfg, err)))
		return rc;
	return check_decision_log(cfg, err);
}

int ent_config_apply_socket_perms(const struct ent_config_listener *l, size_t index,
				  struct ent_err *err)
{
	if (!l->address || strncmp(l->address, "unix:", 5))
		return 0;
	const char *path = l->address + 5;
	if (l->mode >= 0 && chmod(path, (mode_t)l->mode))
		return ent_err_set(err, ENT_EIO, "listeners[%zu].mode: chmod %04o '%s': %s", index,
				   (unsigned)l->mode, path, strerror(errno));
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	if (l->owner && lookup_user(l->owner, &uid))
		return ent_err_set(err, ENT_EIO, "listeners[%zu].owner: '%s' is not a user", index,
				   l->owner);
	if (l->group && lookup_group(l->group, &gid))
		return ent_err_set(err, ENT_EIO, "listeners[%zu].group: '%s' is not a group", index,
				   l->group);
	if ((l->owner || l->group) && chown(path, uid, gid))
		return ent_err_set(err, ENT_EIO, "listeners[%zu]: chown '%s' to %s:%s: %s", index,
				   path, l->owner ? l->owner : "-", l->group ? l->group : "-",
				   strerror(errno));
	return 0;
}
