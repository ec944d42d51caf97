/*
 * The config module: YAML loading, the environment and flags in their order of precedence,
 * validation messages that name the key and the value, the reload diff, and a dump that hides
 * secrets and reads back. Files live in a temporary directory removed at the end.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "ent/config.h"

static char tmp[64];

static int setup_all(void **state)
{
	(void)state;
	snprintf(tmp, sizeof(tmp), "/tmp/ent-config-XXXXXX");
	return mkdtemp(tmp) ? 0 : -1;
}

static int teardown_all(void **state)
{
	(void)state;
	DIR *d = opendir(tmp);
	if (!d)
		return 0;
	struct dirent *e;
	char p[512];
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", tmp, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(tmp);
	return 0;
}

/* Write \a text to tmp/name and return the path (static buffer per call site is enough). */
static const char *put_file(const char *name, const char *text)
{
	static char paths[16][256];
	static int next;
	char *p = paths[next++ % 16];
	snprintf(p, 256, "%s/%s", tmp, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return p;
}

/* A config with defaults and db.path in the temporary directory, so validate can pass. */
static void base(struct ent_config *cfg)
{
	ent_config_defaults(cfg);
	char *argv[] = {"entd", "--db", tmp};
	struct ent_err err = {0};
	assert_int_equal(ent_config_apply_flags(cfg, 3, argv, &err), 0);
}

static int load(struct ent_config *cfg, const char *yaml, struct ent_err *err)
{
	return ent_config_load_string(cfg, yaml, strlen(yaml), "t.yaml", err);
}

/* Expect loading \a yaml over the defaults to fail with \a msg as the whole message. */
static void expect_load_error(const char *yaml, const char *msg)
{
	struct ent_config cfg;
	struct ent_err err = {0};
	ent_config_defaults(&cfg);
	assert_int_equal(load(&cfg, yaml, &err), -ENT_EINVAL);
	assert_string_equal(err.msg, msg);
	ent_config_free(&cfg);
}

/* Expect validate to fail with a message starting with \a prefix. */
static void expect_invalid(struct ent_config *cfg, const char *prefix)
{
	struct ent_err err = {0};
	int rc = ent_config_validate(cfg, &err);
	if (rc == 0)
		fail_msg("validate passed; expected '%s'", prefix);
	if (strncmp(err.msg, prefix, strlen(prefix)))
		fail_msg("got '%s'\nexpected prefix '%s'", err.msg, prefix);
}

/* ---- parsers ------------------------------------------------------------------------- */

static void test_sizes(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		uint64_t v;
	} ok[] = {{"0", 0},
		  {"4096", 4096},
		  {"4MiB", 4ULL << 20},
		  {"4Mi", 4ULL << 20},
		  {"1GiB", 1ULL << 30},
		  {"2 GiB", 2ULL << 30},
		  {"500KB", 500000},
		  {"3M", 3ULL << 20},
		  {"64G", 64ULL << 30},
		  {"3MB", 3000000},
		  {"1TiB", 1ULL << 40},
		  {"12B", 12}};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint64_t v = 1;
		assert_int_equal(ent_config_parse_size(ok[i].s, &v), 0);
		assert_true(v == ok[i].v);
	}
	static const char *const bad[] = {"",
					  "MiB",
					  "-1",
					  "4 MiBs",
					  "1.5GiB",
					  "4mib",
					  "x",
					  "99999999999999999999",
					  "17179869184TiB"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v;
		if (ent_config_parse_size(bad[i], &v) == 0)
			fail_msg("'%s' parsed as a size", bad[i]);
	}
}

static void test_durations(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		int64_t v;
	} ok[] = {{"0", 0},	    {"250", 250},     {"250ms", 250},	 {"10s", 10000},
		  {"5m", 300000},   {"2h", 7200000},  {"7d", 604800000}, {"1h30m", 5400000},
		  {"1m30s", 90000}, {"1s500ms", 1500}};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		int64_t v = -1;
		assert_int_equal(ent_config_parse_duration_ms(ok[i].s, &v), 0);
		assert_true(v == ok[i].v);
	}
	static const char *const bad[] = {
		"", "s", "-1s", "10x", "1h30", "1.5s", " 1s", "10 s", "99999999999999999999d"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t v;
		if (ent_config_parse_duration_ms(bad[i], &v) == 0)
			fail_msg("'%s' parsed as a duration", bad[i]);
	}
}

/* ---- the file ------------------------------------------------------------------------ */

static void test_defaults_validate(void **state)
{
	(void)state;
	struct ent_config cfg;
	base(&cfg);
	struct ent_err err = {0};
	assert_int_equal(ent_config_validate(&cfg, &err), 0);
	assert_int_equal(cfg.n_listeners, 1);
	assert_string_equal(cfg.listeners[0].address, "127.0.0.1:50051");
	assert_int_equal(cfg.listeners[0].services, ENT_SVC_ALL);
	assert_true(cfg.map_size == 16ULL << 30);
	assert_true(cfg.threads >= 1 && cfg.threads <= 256);
	assert_true(cfg.max_message_bytes == 4ULL << 20);
	assert_int_equal(cfg.writer_nice, 10);
	assert_int_equal(cfg.log_level, ENT_LOG_INFO);
	assert_int_equal(cfg.log_format, ENT_LOG_LOGFMT);
	assert_null(cfg.metrics_listen);
	assert_null(cfg.admin_token);
	assert_false(cfg.protect_checks);
	assert_int_equal(cfg.action, ENT_CONFIG_RUN);
	ent_config_free(&cfg);
}

static void test_load_everything(void **state)
{
	(void)state;
	const char *cert = put_file("cert.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n"
						"-----END CERTIFICATE-----\n");
	const char *key = put_file("key.pem", "-----BEGIN PRIVATE KEY-----\nMIIE\n"
					      "-----END PRIVATE KEY-----\n");
	char yaml[2048];
	snprintf(yaml, sizeof(yaml),
		 "# a comment\n"
		 "db:\n  path: %s\n  map_size: 2GiB\n"
		 "threads: 3\n"
		 "listeners:\n"
		 "  - address: unix:%s/entd.sock\n"
		 "    services: checks\n"
		 "    mode: \"0660\"\n"
		 "    owner: root\n"
		 "    group: \"0\"\n"
		 "  - address: 127.0.0.1:50052\n"
		 "    services: [admin, health]\n"
		 "    tls:\n"
		 "      cert_file: %s\n"
		 "      key_file: %s\n"
		 "      client_ca_file: %s\n"
		 "      require_client_cert: true\n"
		 "  - \"[::1]:50053\"\n"
		 "admin:\n  token: s3cret-token\n  protect_checks: yes\n"
		 "limits:\n  max_message_bytes: 1MiB\n  max_concurrent_streams: 128\n"
		 "  keepalive_time_ms: 30s\n  keepalive_timeout_ms: 5000\n"
		 "  keepalive_permit_without_calls: true\n  min_ping_interval_ms: 10s\n"
		 "shutdown:\n  grace_ms: 15s\n"
		 "log:\n  level: debug\n  format: json\n"
		 "decision_log:\n  sample_rate: 0.25\n  path: %s/decisions.log\n"
		 "metrics:\n  listen: 127.0.0.1:9464\n"
		 "writer:\n  max_group: 256\n  idem_retention_ms: 2d\n  nice: 3\n",
		 tmp, tmp, cert, key, cert, tmp);
	struct ent_config cfg;
	struct ent_err err = {0};
	ent_config_defaults(&cfg);
	int rc = load(&cfg, yaml, &err);
	if (rc)
		fail_msg("%s", err.msg);
	assert_string_equal(cfg.db_path, tmp);
	assert_true(cfg.map_size == 2ULL << 30);
	assert_int_equal(cfg.threads, 3);
	assert_int_equal(cfg.n_listeners, 3);
	assert_int_equal(cfg.listeners[0].services, ENT_SVC_CHECKS | ENT_SVC_HEALTH);
	assert_int_equal(cfg.listeners[0].mode, 0660);
	assert_string_equal(cfg.listeners[0].owner, "root");
	assert_string_equal(cfg.listeners[0].group, "0");
	assert_false(cfg.listeners[0].tls);
	assert_int_equal(cfg.listeners[1].services, ENT_SVC_ADMIN | ENT_SVC_HEALTH);
	assert_true(cfg.listeners[1].tls);
	assert_string_equal(cfg.listeners[1].key_file, key);
	assert_true(cfg.listeners[1].require_client_cert);
	assert_string_equal(cfg.listeners[2].address, "[::1]:50053");
	assert_int_equal(cfg.listeners[2].services, ENT_SVC_ALL);
	assert_int_equal(cfg.listeners[2].mode, -1);
	assert_string_equal(cfg.admin_token, "s3cret-token");
	assert_true(cfg.protect_checks);
	assert_true(cfg.max_message_bytes == 1ULL << 20);
	assert_int_equal(cfg.max_concurrent_streams, 128);
	assert_int_equal(cfg.keepalive_time_ms, 30000);
	assert_int_equal(cfg.keepalive_timeout_ms, 5000);
	assert_true(cfg.keepalive_permit_without_calls);
	assert_int_equal(cfg.min_ping_interval_ms, 10000);
	assert_int_equal(cfg.grace_ms, 15000);
	assert_int_equal(cfg.log_level, ENT_LOG_DEBUG);
	assert_int_equal(cfg.log_format, ENT_LOG_JSON);
	assert_true(cfg.decision_log_sample_rate == 0.25);
	assert_string_equal(cfg.metrics_listen, "127.0.0.1:9464");
	assert_int_equal(cfg.writer_max_group, 256);
	assert_int_equal(cfg.writer_idem_retention_ms, 2 * 86400000LL);
	assert_int_equal(cfg.writer_nice, 3);
	rc = ent_config_validate(&cfg, &err);
	if (rc)
		fail_msg("%s", err.msg);

	/* The copy is deep and equal. */
	struct ent_config copy;
	assert_int_equal(ent_config_copy(&copy, &cfg), 0);
	assert_ptr_not_equal(copy.listeners, cfg.listeners);
	assert_string_equal(copy.listeners[1].cert_file, cfg.listeners[1].cert_file);
	assert_ptr_not_equal(copy.admin_token, cfg.admin_token);
	const char *keys[4];
	assert_int_equal(ent_config_reloadable_diff(&cfg, &copy, keys, 4), 0);
	ent_config_free(&copy);
	ent_config_free(&cfg);
}

static void test_file_errors_name_the_key(void **state)
{
	(void)state;
	expect_load_error("threads: 2\nthreds: 3\n", "threds: unknown key (t.yaml line 2)");
	expect_load_error("limits:\n  max_mesage_bytes: 3\n",
			  "limits.max_mesage_bytes: unknown key (t.yaml line 2)");
	expect_load_error("listeners:\n  - address: 127.0.0.1:1\n  - address: 127.0.0.1:2\n"
			  "    tls:\n      cert_fille: x\n",
			  "listeners[1].tls.cert_fille: unknown key (t.yaml line 5)");
	expect_load_error("threads: 0\n", "threads: 0 is not in 1..256 (t.yaml line 1)");
	expect_load_error("threads: [1, 2]\n",
			  "threads: expected a value, not a list (t.yaml line 1)");
	expect_load_error("threads: many\n",
			  "threads: 'many' is not an integer or auto (t.yaml line 1)");
	expect_load_error("db: /var/lib/entd\n",
			  "db: expected a mapping, not a value (t.yaml line 1)");
	expect_load_error("log:\n  level: loud\n",
			  "log.level: 'loud' is not debug, info, warn or error (t.yaml line 2)");
	expect_load_error("db:\n  map_size: 12 parsecs\n",
			  "db.map_size: '12 parsecs' is not a size (bytes, or a number with a "
			  "suffix such as 4MiB) (t.yaml line 2)");
	expect_load_error("db:\n  map_size: 1KiB\n",
			  "db.map_size: 1KiB is not in 1MiB..16TiB (t.yaml line 2)");
	expect_load_error("shutdown:\n  grace_ms: soon\n",
			  "shutdown.grace_ms: 'soon' is not a duration (milliseconds, or with "
			  "units such as 500ms, 10s, 5m, 2h, 7d) (t.yaml line 2)");
	expect_load_error("decision_log:\n  sample_rate: 2\n",
			  "decision_log.sample_rate: '2' is not a number in 0..1 (t.yaml line 2)");
	expect_load_error("log:\n  level: info\n  level: debug\n",
			  "log.level: appears twice (t.yaml line 3)");
	expect_load_error("listeners:\n  - services: all\n",
			  "listeners[0]: address is missing (t.yaml line 2)");
	expect_load_error("listeners:\n  - address: unix:/x\n    mode: rw-rw----\n",
			  "listeners[0].mode: 'rw-rw----' is not an octal mode such as \"0660\" "
			  "(t.yaml line 3)");
	expect_load_error("listeners:\n  - address: x:1\n    services: everything\n",
			  "listeners[0].services: 'everything' is not all, checks, admin or health "
			  "(or a list) (t.yaml line 3)");
	expect_load_error("admin:\n  token: a\n  token_file: /b\n",
			  "admin: token and token_file are both set in t.yaml; use one");
	expect_load_error("- 1\n- 2\n", "(top level): expected a mapping, not a list (t.yaml "
					"line 1)");

	/* Syntax errors carry the line too. */
	struct ent_config cfg;
	struct ent_err err = {0};
	ent_config_defaults(&cfg);
	assert_int_equal(load(&cfg, "log:\n  level: [debug\n", &err), -ENT_EINVAL);
	assert_non_null(strstr(err.msg, "t.yaml line "));
	ent_config_free(&cfg);

	/* A secret's value never appears in an error. */
	ent_config_defaults(&cfg);
	assert_int_equal(load(&cfg, "admin:\n  token: [hunter2]\n", &err), -ENT_EINVAL);
	assert_null(strstr(err.msg, "hunter2"));
	ent_config_free(&cfg);

	/* A missing file names itself. */
	ent_config_defaults(&cfg);
	char missing[128];
	snprintf(missing, sizeof(missing), "%s/missing.yaml", tmp);
	assert_int_equal(ent_config_load_file(&cfg, missing, &err), -ENT_EIO);
	assert_non_null(strstr(err.msg, missing));
	ent_config_free(&cfg);
}

static void test_empty_and_null_values(void **state)
{
	(void)state;
	struct ent_config cfg;
	struct ent_err err = {0};
	ent_config_defaults(&cfg);
	/* An empty file and empty sections change nothing; `listen: ~` means off. */
	assert_int_equal(load(&cfg, "", &err), 0);
	assert_int_equal(load(&cfg, "metrics:\nwriter:\n", &err), 0);
	assert_int_equal(load(&cfg, "metrics:\n  listen: 127.0.0.1:9\n", &err), 0);
	assert_string_equal(cfg.metrics_listen, "127.0.0.1:9");
	assert_int_equal(load(&cfg, "metrics:\n  listen: ~\n", &err), 0);
	assert_null(cfg.metrics_listen);
	/* Anchors and aliases are plain YAML and work. */
	assert_int_equal(load(&cfg, "x_common: &c 7\n", &err), -ENT_EINVAL);
	assert_int_equal(load(&cfg, "writer:\n  max_group: &n 17\nthreads: *n\n", &err), 0);
	assert_int_equal(cfg.threads, 17);
	/* A second document is refused rather than ignored. */
	assert_int_equal(load(&cfg, "threads: 2\n---\nthreads: 3\n", &err), -ENT_EINVAL);
	assert_non_null(strstr(err.msg, "more than one YAML document"));
	ent_config_free(&cfg);
}

/* ---- precedence ---------------------------------------------------------------------- */

struct env {
	const char *const *kv; /* name, value, ..., NULL */
};

static const char *env_get(void *ctx, const char *name)
{
	const struct env *e = ctx;
	for (const char *const *p = e->kv; *p; p += 2)
		if (!strcmp(p[0], name))
			return p[1];
	return NULL;
}

static void test_precedence(void **state)
{
	(void)state;
	char yaml[512];
	snprintf(yaml, sizeof(yaml),
		 "db:\n  path: %s\nthreads: 4\nlog:\n  level: warn\n  format: json\n"
		 "listeners:\n  - 127.0.0.1:7001\n",
		 tmp);
	const char *file = put_file("prec.yaml", yaml);

	/* File only. */
	const char *const none[] = {NULL};
	struct env e0 = {none};
	char *argv0[] = {"entd", "--config", (char *)file};
	struct ent_config cfg;
	struct ent_err err = {0};
	int rc = ent_config_build(&cfg, 3, argv0, env_get, &e0, &err);
	if (rc)
		fail_msg("%s", err.msg);
	assert_int_equal(cfg.threads, 4);
	assert_int_equal(cfg.log_level, ENT_LOG_WARN);
	assert_string_equal(cfg.config_file, file);
	assert_string_equal(cfg.listeners[0].address, "127.0.0.1:7001");
	ent_config_free(&cfg);

	/* The environment wins over the file; ENTD_LISTEN replaces the list. */
	const char *const kv1[] = {
		"ENTD_THREADS",	  "8",	   "ENTD_LISTEN", "127.0.0.1:7002, unix:/tmp/x.sock",
		"ENTD_LOG_LEVEL", "error", NULL};
	struct env e1 = {kv1};
	rc = ent_config_build(&cfg, 3, argv0, env_get, &e1, &err);
	if (rc)
		fail_msg("%s", err.msg);
	assert_int_equal(cfg.threads, 8);
	assert_int_equal(cfg.log_level, ENT_LOG_ERROR);
	assert_int_equal(cfg.log_format, ENT_LOG_JSON); /* untouched by env: from the file */
	assert_int_equal(cfg.n_listeners, 2);
	assert_string_equal(cfg.listeners[0].address, "127.0.0.1:7002");
	assert_string_equal(cfg.listeners[1].address, "unix:/tmp/x.sock");
	ent_config_free(&cfg);

	/* Flags win over both; the first --listen replaces, the next ones add. */
	char *argv2[] = {"entd",	"--threads=2",	  "-c",	      (char *)file,
			 "--listen",	"127.0.0.1:7003", "--listen", "127.0.0.1:7004",
			 "--log-level", "debug"};
	rc = ent_config_build(&cfg, 10, argv2, env_get, &e1, &err);
	if (rc)
		fail_msg("%s", err.msg);
	assert_int_equal(cfg.threads, 2);
	assert_int_equal(cfg.log_level, ENT_LOG_DEBUG);
	assert_int_equal(cfg.n_listeners, 2);
	assert_string_equal(cfg.listeners[0].address, "127.0.0.1:7003");
	assert_string_equal(cfg.listeners[1].address, "127.0.0.1:7004");
	ent_config_free(&cfg);

	/* ENTD_CONFIG names the file when no flag does. */
	const char *const kv3[] = {"ENTD_CONFIG", file, NULL};
	struct env e3 = {kv3};
	char *argv3[] = {"entd"};
	rc = ent_config_build(&cfg, 1, argv3, env_get, &e3, &err);
	if (rc)
		fail_msg("%s", err.msg);
	assert_int_equal(cfg.threads, 4);
	ent_config_free(&cfg);

	/* An env error names the variable. */
	const char *const kv4[] = {"ENTD_THREADS", "lots", NULL};
	struct env e4 = {kv4};
	assert_int_equal(ent_config_build(&cfg, 3, argv0, env_get, &e4, &err), -ENT_EINVAL);
	assert_string_equal(err.msg, "threads: 'lots' is not an integer or auto (from "
				     "ENTD_THREADS)");
}

/* db.batched_walk: on by default; the file, the environment and the flags each turn it off
   or on again, in that order of precedence. */
static void test_batched_walk(void **state)
{
	(void)state;
	struct ent_config cfg;
	struct ent_err err = {0};
	char *argv0[] = {"entd"};
	const char *const none[] = {NULL};
	struct env e0 = {none};
	assert_int_equal(ent_config_build(&cfg, 1, argv0, env_get, &e0, &err), 0);
	assert_true(cfg.batched_walk);
	ent_config_free(&cfg);

	ent_config_defaults(&cfg);
	assert_int_equal(load(&cfg, "db:\n  batched_walk: false\n", &err), 0);
	assert_false(cfg.batched_walk);
	ent_config_free(&cfg);

	const char *const off[] = {"ENTD_BATCHED_WALK", "false", NULL};
	struct env e1 = {off};
	assert_int_equal(ent_config_build(&cfg, 1, argv0, env_get, &e1, &err), 0);
	assert_false(cfg.batched_walk);
	ent_config_free(&cfg);
	char *on[] = {"entd", "--batched-walk"};
	assert_int_equal(ent_config_build(&cfg, 2, on, env_get, &e1, &err), 0);
	assert_true(cfg.batched_walk);
	ent_config_free(&cfg);
	char *no[] = {"entd", "--no-batched-walk"};
	assert_int_equal(ent_config_build(&cfg, 2, no, env_get, &e0, &err), 0);
	assert_false(cfg.batched_walk);
	ent_config_free(&cfg);

	const char *const bad[] = {"ENTD_BATCHED_WALK", "sometimes", NULL};
	struct env e2 = {bad};
	assert_int_equal(ent_config_build(&cfg, 1, argv0, env_get, &e2, &err), -ENT_EINVAL);
	assert_non_null(strstr(err.msg, "db.batched_walk"));
	assert_non_null(strstr(err.msg, "ENTD_BATCHED_WALK"));
}

static void test_flags(void **state)
{
	(void)state;
	struct ent_config cfg;
	struct ent_err err = {0};
	ent_config_defaults(&cfg);
	char *a1[] = {"entd",
		      "--protect-checks",
		      "--keepalive-permit-without-calls=true",
		      "--map-size",
		      "64MiB",
		      "--grace-ms=2s",
		      "--max-message-bytes",
		      "8MiB"};
	assert_int_equal(ent_config_apply_flags(&cfg, 8, a1, &err), 0);
	assert_true(cfg.protect_checks);
	assert_true(cfg.keepalive_permit_without_calls);
	assert_true(cfg.map_size == 64ULL << 20);
	assert_int_equal(cfg.grace_ms, 2000);
	assert_true(cfg.max_message_bytes == 8ULL << 20);
	char *a2[] = {"entd", "--no-protect-checks", "--log-json"};
	assert_int_equal(ent_config_apply_flags(&cfg, 3, a2, &err), 0);
	assert_false(cfg.protect_checks);
	assert_int_equal(cfg.log_format, ENT_LOG_JSON);

	static const struct {
		int argc;
		char *argv[4];
		const char *msg;
	} bad[] = {
		{2, {"entd", "--thread=3"}, "--thread: unknown flag (see --help)"},
		{2, {"entd", "--threads"}, "--threads: needs a value"},
		{3, {"entd", "--threads", "0"}, "threads: 0 is not in 1..256 (from --threads)"},
		{2,
		 {"entd", "serve"},
		 "'serve': unexpected argument (flags are --name value or "
		 "--name=value; see --help)"},
		{2, {"entd", "--no-threads"}, "--no-threads: unknown flag (see --help)"},
		{2, {"entd", "--help=1"}, "--help: takes no value"},
		{3,
		 {"entd", "--admin-token=x", "--admin-token-file=/y"},
		 "admin.token: --admin-token and --admin-token-file are both given; use one"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&err, 0, sizeof(err));
		assert_int_equal(ent_config_apply_flags(&cfg, bad[i].argc, bad[i].argv, &err),
				 -ENT_EINVAL);
		assert_string_equal(err.msg, bad[i].msg);
	}

	char *a3[] = {"entd", "--version"};
	assert_int_equal(ent_config_apply_flags(&cfg, 2, a3, &err), 0);
	assert_int_equal(cfg.action, ENT_CONFIG_VERSION);
	char *a4[] = {"entd", "-h"};
	assert_int_equal(ent_config_apply_flags(&cfg, 2, a4, &err), 0);
	assert_int_equal(cfg.action, ENT_CONFIG_HELP);
	char *a5[] = {"entd", "--print-config"};
	assert_int_equal(ent_config_apply_flags(&cfg, 2, a5, &err), 0);
	assert_int_equal(cfg.action, ENT_CONFIG_PRINT);
	ent_config_free(&cfg);

	/* --help does not validate (so it works with a broken config) ... */
	char *a6[] = {"entd", "--db", "/nonexistent/deeper/still", "--help"};
	assert_int_equal(
		ent_config_build(&cfg, 4, a6, env_get, &(struct env){(const char *[]){NULL}}, &err),
		0);
	assert_int_equal(cfg.action, ENT_CONFIG_HELP);
	ent_config_free(&cfg);
	/* ... but --check-config does, and reads the file it names. */
	const char *bad_file = put_file("bad.yaml", "threads: 0\n");
	char *a7[] = {"entd", "--check-config", (char *)bad_file};
	assert_int_equal(
		ent_config_build(&cfg, 3, a7, env_get, &(struct env){(const char *[]){NULL}}, &err),
		-ENT_EINVAL);
	assert_non_null(strstr(err.msg, "threads: 0 is not in 1..256"));
	char good_yaml[256];
	snprintf(good_yaml, sizeof(good_yaml), "db:\n  path: %s\n", tmp);
	const char *good_file = put_file("good.yaml", good_yaml);
	char *a8[] = {"entd", "--check-config", (char *)good_file};
	assert_int_equal(
		ent_config_build(&cfg, 3, a8, env_get, &(struct env){(const char *[]){NULL}}, &err),
		0);
	assert_int_equal(cfg.action, ENT_CONFIG_CHECK);
	ent_config_free(&cfg);

	/* find_file does not take a flag's value for --config. */
	char *a9[] = {"entd", "--db", "--config", "--threads", "2"};
	assert_null(ent_config_find_file(5, a9, env_get, &(struct env){(const char *[]){NULL}}));
}

/* ---- credentials ---------------------------------------------------------------------- */

static void test_token_sources(void **state)
{
	(void)state;
	const char *tf = put_file("token", "from-file-token\n");
	struct ent_config cfg;
	struct ent_err err = {0};
	base(&cfg);
	assert_int_equal(load(&cfg, "admin:\n  token: from-yaml\n", &err), 0);
	assert_string_equal(cfg.admin_token, "from-yaml");
	/* A later source's token_file replaces the file's token ... */
	const char *const kv[] = {"ENTD_ADMIN_TOKEN_FILE", tf, NULL};
	struct env e = {kv};
	assert_int_equal(ent_config_apply_env(&cfg, env_get, &e, &err), 0);
	assert_null(cfg.admin_token);
	assert_string_equal(cfg.admin_token_file, tf);
	/* ... and validate reads it, without the trailing newline. */
	assert_int_equal(ent_config_validate(&cfg, &err), 0);
	assert_string_equal(cfg.admin_token, "from-file-token");

	/* The dump shows neither token value. */
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	ent_config_dump(&cfg, f);
	fclose(f);
	assert_null(strstr(text, "from-file-token"));
	assert_non_null(strstr(text, "token_file:"));
	free(text);

	/* Both in the environment is refused. */
	const char *const kv2[] = {"ENTD_ADMIN_TOKEN", "a", "ENTD_ADMIN_TOKEN_FILE", tf, NULL};
	struct env e2 = {kv2};
	assert_int_equal(ent_config_apply_env(&cfg, env_get, &e2, &err), -ENT_EINVAL);
	assert_string_equal(err.msg, "admin.token: ENTD_ADMIN_TOKEN and ENTD_ADMIN_TOKEN_FILE are "
				     "both set; use one");
	ent_config_free(&cfg);

	/* Empty token file, and a token with a space: refused without echoing it. */
	base(&cfg);
	const char *empty = put_file("empty-token", "\n");
	char want_empty[256];
	char *a1[] = {"entd", "--admin-token-file", (char *)empty};
	assert_int_equal(ent_config_apply_flags(&cfg, 3, a1, &err), 0);
	snprintf(want_empty, sizeof(want_empty), "admin.token_file: '%s' is empty", empty);
	expect_invalid(&cfg, want_empty);
	char *a2[] = {"entd", "--admin-token", "two words"};
	assert_int_equal(ent_config_apply_flags(&cfg, 3, a2, &err), 0);
	assert_null(cfg.admin_token_file);
	memset(&err, 0, sizeof(err));
	assert_int_equal(ent_config_validate(&cfg, &err), -ENT_EINVAL);
	assert_string_equal(err.msg, "admin.token: the token holds a space or control character "
				     "(value not shown)");
	/* protect_checks needs a credential. */
	char *a3[] = {"entd", "--admin-token=", "--protect-checks"};
	assert_int_equal(ent_config_apply_flags(&cfg, 3, a3, &err), 0);
	expect_invalid(&cfg, "admin.protect_checks: true needs admin.token or admin.token_file");
	ent_config_free(&cfg);
}

/* ---- validation ----------------------------------------------------------------------- */

/* Load \a yaml over a valid base config and expect validate to fail with \a prefix. */
static void expect_yaml_invalid(const char *yaml, const char *prefix)
{
	struct ent_config cfg;
	struct ent_err err = {0};
	base(&cfg);
	if (load(&cfg, yaml, &err))
		fail_msg("load failed: %s", err.msg);
	expect_invalid(&cfg, prefix);
	ent_config_free(&cfg);
}

static void test_validate(void **state)
{
	(void)state;
	char y[1024];
	expect_yaml_invalid("listeners: [foo]\n", "listeners[0].address: 'foo' is not host:port "
						  "or unix:/path");
	expect_yaml_invalid("listeners: [\":50051\"]\n",
			    "listeners[0].address: ':50051' is not host:port or unix:/path");
	expect_yaml_invalid("listeners: [\"127.0.0.1:70000\"]\n",
			    "listeners[0].address: '127.0.0.1:70000' is not host:port");
	expect_yaml_invalid("listeners: [\"::1:5\"]\n", "listeners[0].address: '::1:5' is not");
	expect_yaml_invalid("listeners: []\n", "listeners: at least one is needed");
	expect_yaml_invalid("listeners: [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n",
			    "listeners[1].address: '127.0.0.1:1' is also listeners[0]");
	expect_yaml_invalid("listeners: [\"unix:/nonexistent-dir/entd.sock\"]\n",
			    "listeners[0].address: 'unix:/nonexistent-dir/entd.sock': the socket's "
			    "directory does not exist");
	expect_yaml_invalid("listeners:\n  - address: 127.0.0.1:1\n    mode: \"0600\"\n",
			    "listeners[0].mode: only for unix: sockets");
	snprintf(y, sizeof(y),
		 "listeners:\n  - address: unix:%s/s.sock\n    owner: no-such-user-here\n", tmp);
	expect_yaml_invalid(y, "listeners[0].owner: 'no-such-user-here' is not a user");
	snprintf(y, sizeof(y),
		 "listeners:\n  - address: unix:%s/s.sock\n    group: no-such-group-here\n", tmp);
	expect_yaml_invalid(y, "listeners[0].group: 'no-such-group-here' is not a group");
	snprintf(y, sizeof(y),
		 "listeners:\n  - address: unix:%s/s.sock\n    tls:\n      cert_file: /a\n"
		 "      key_file: /b\n",
		 tmp);
	expect_yaml_invalid(y, "listeners[0].tls: not supported on a unix socket");

	/* TLS files are opened and must hold the right kind of PEM. */
	const char *cert = put_file("v-cert.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n"
						  "-----END CERTIFICATE-----\n");
	const char *key = put_file("v-key.pem", "-----BEGIN EC PRIVATE KEY-----\nMHc\n"
						"-----END EC PRIVATE KEY-----\n");
	const char *enc = put_file("v-enc.pem", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF\n"
						"-----END ENCRYPTED PRIVATE KEY-----\n");
	const char *junk = put_file("v-junk.pem", "hello\n");
	char missing[128];
	snprintf(missing, sizeof(missing), "%s/nope.pem", tmp);
#define tls                                                                                        \
	"listeners:\n  - address: 127.0.0.1:1\n    tls:\n      cert_file: %s\n      key_file: %s\n"
	snprintf(y, sizeof(y), tls, missing, key);
	char want[256];
	snprintf(want, sizeof(want), "listeners[0].tls.cert_file: '%s' is not readable", missing);
	expect_yaml_invalid(y, want);
	snprintf(y, sizeof(y), tls, junk, key);
	snprintf(want, sizeof(want), "listeners[0].tls.cert_file: '%s' holds no PEM block", junk);
	expect_yaml_invalid(y, want);
	snprintf(y, sizeof(y), tls, cert, cert);
	snprintf(want, sizeof(want), "listeners[0].tls.key_file: '%s' holds no PEM private key",
		 cert);
	expect_yaml_invalid(y, want);
	snprintf(y, sizeof(y), tls, cert, enc);
	snprintf(want, sizeof(want), "listeners[0].tls.key_file: '%s' is an encrypted key", enc);
	expect_yaml_invalid(y, want);
	snprintf(y, sizeof(y), tls, key, key);
	snprintf(want, sizeof(want), "listeners[0].tls.cert_file: '%s' holds no PEM certificate",
		 key);
	expect_yaml_invalid(y, want);
	snprintf(y, sizeof(y),
		 "listeners:\n  - address: 127.0.0.1:1\n    tls:\n      cert_file: %s\n"
		 "      key_file: %s\n      require_client_cert: true\n",
		 cert, key);
	expect_yaml_invalid(y, "listeners[0].tls.require_client_cert: true needs client_ca_file");
	snprintf(y, sizeof(y),
		 "listeners:\n  - address: 127.0.0.1:1\n    tls:\n      cert_file: %s\n", cert);
	expect_yaml_invalid(y, "listeners[0].tls.key_file: is required");
#undef tls

	expect_yaml_invalid("metrics:\n  listen: nine\n",
			    "metrics.listen: 'nine' is not host:port (or :port)");
	expect_yaml_invalid("metrics:\n  listen: 127.0.0.1:50051\n",
			    "metrics.listen: '127.0.0.1:50051' is also listeners[0]");
	expect_yaml_invalid("db:\n  path: /nonexistent-a/nonexistent-b\n",
			    "db.path: '/nonexistent-a/nonexistent-b' does not exist and neither "
			    "does its parent directory");
	expect_yaml_invalid("db:\n  path: /etc/hostname\n",
			    "db.path: '/etc/hostname' is not a directory");
	expect_yaml_invalid("decision_log:\n  path: /nonexistent-c/d.log\n",
			    "decision_log.path: the directory of '/nonexistent-c/d.log' does not "
			    "exist");

	/* Configs built by hand get the same range checks. */
	struct ent_config cfg;
	base(&cfg);
	cfg.threads = 0;
	expect_invalid(&cfg, "threads: 0 is not in 1..256");
	cfg.threads = 1;
	cfg.writer_max_group = 0;
	expect_invalid(&cfg, "writer.max_group: 0 is not in 1..65536");
	cfg.writer_max_group = 1;
	cfg.writer_nice = 20;
	expect_invalid(&cfg, "writer.nice: 20 is not in 0..19");
	cfg.writer_nice = 10;
	cfg.check_min_seq_wait_max = 0;
	expect_invalid(&cfg, "check.min_sequence_wait_max: 0 is not in 1..1000000");
	cfg.check_min_seq_wait_max = 1;
	cfg.check_min_seq_wait_ms = 601 * 1000;
	expect_invalid(&cfg, "check.min_sequence_wait_ms: ");
	cfg.check_min_seq_wait_ms = 0;
	cfg.decision_log_sample_rate = -0.5;
	expect_invalid(&cfg, "decision_log.sample_rate: -0.5 is not in 0..1");
	ent_config_free(&cfg);

	/* ":port" is fine for metrics, and the good TLS listener passes. */
	base(&cfg);
	struct ent_err err = {0};
	snprintf(y, sizeof(y),
		 "metrics:\n  listen: \":9464\"\nlisteners:\n  - address: \"[::1]:1\"\n"
		 "  - address: localhost:2\n    tls:\n      cert_file: %s\n      key_file: %s\n"
		 "      client_ca_file: %s\n      require_client_cert: true\n",
		 cert, key, cert);
	assert_int_equal(load(&cfg, y, &err), 0);
	int rc = ent_config_validate(&cfg, &err);
	if (rc)
		fail_msg("%s", err.msg);
	ent_config_free(&cfg);
}

/* ---- reload, dump -------------------------------------------------------------------- */

static void test_reload_diff(void **state)
{
	(void)state;
	struct ent_config a, b;
	struct ent_err err = {0};
	base(&a);
	base(&b);
	const char *keys[8];
	/* Reloadable settings do not show up ... */
	assert_int_equal(load(&b,
			      "log:\n  level: debug\n  format: json\nadmin:\n  token: t\n"
			      "decision_log:\n  sample_rate: 0.5\n",
			      &err),
			 0);
	assert_int_equal(ent_config_reloadable_diff(&a, &b, keys, 8), 0);
	/* ... the others do, each by its key. */
	assert_int_equal(load(&b,
			      "db:\n  map_size: 2GiB\nlisteners: [\"127.0.0.1:9999\"]\n"
			      "limits:\n  max_message_bytes: 1MiB\n",
			      &err),
			 0);
	assert_int_equal(ent_config_reloadable_diff(&a, &b, keys, 8), 3);
	assert_string_equal(keys[0], "db.map_size");
	assert_string_equal(keys[1], "listeners");
	assert_string_equal(keys[2], "limits.max_message_bytes");
	/* The count is complete even when the array is short. */
	assert_int_equal(ent_config_reloadable_diff(&a, &b, keys, 1), 3);
	ent_config_free(&a);
	ent_config_free(&b);
}

static void test_dump_round_trip(void **state)
{
	(void)state;
	struct ent_config a, b;
	struct ent_err err = {0};
	base(&a);
	char y[512];
	snprintf(y, sizeof(y),
		 "admin:\n  token: very-secret-value\nlisteners:\n  - address: unix:%s/d.sock\n"
		 "    services: checks\n    mode: \"0660\"\n  - 127.0.0.1:5\n"
		 "limits:\n  keepalive_time_ms: 90s\n  max_message_bytes: 2000\n"
		 "decision_log:\n  sample_rate: 0.125\n",
		 tmp);
	assert_int_equal(load(&a, y, &err), 0);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	ent_config_dump(&a, f);
	fclose(f);
	assert_null(strstr(text, "very-secret-value"));
	assert_non_null(strstr(text, "token: \"<set>\""));
	assert_non_null(strstr(text, "keepalive_time_ms: 90s"));
	assert_non_null(strstr(text, "mode: \"0660\""));

	/* It reads back to the same settings (the secret comes back as the placeholder). */
	base(&b);
	int rc = load(&b, text, &err);
	if (rc)
		fail_msg("%s\n%s", err.msg, text);
	const char *keys[8];
	assert_int_equal(ent_config_reloadable_diff(&a, &b, keys, 8), 0);
	assert_int_equal(b.keepalive_time_ms, 90000);
	assert_true(b.decision_log_sample_rate == 0.125);
	assert_string_equal(b.admin_token, "<set>");
	free(text);
	ent_config_free(&a);
	ent_config_free(&b);

	/* The usage text lists every flag with its variable. */
	f = open_memstream(&text, &len);
	ent_config_usage(f, "entd");
	fclose(f);
	assert_non_null(strstr(text, "--metrics-listen V"));
	assert_non_null(strstr(text, "ENTD_METRICS_LISTEN"));
	assert_non_null(strstr(text, "--check-config FILE"));
	free(text);
}

static void test_socket_perms(void **state)
{
	(void)state;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/perm.sock", tmp);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);

	struct ent_config cfg;
	struct ent_err err = {0};
	base(&cfg);
	char y[256];
	snprintf(y, sizeof(y),
		 "listeners:\n  - address: unix:%s\n    mode: \"0604\"\n"
		 "    group: \"%u\"\n",
		 sa.sun_path, (unsigned)getgid());
	assert_int_equal(load(&cfg, y, &err), 0);
	assert_int_equal(ent_config_validate(&cfg, &err), 0);
	assert_int_equal(ent_config_apply_socket_perms(&cfg.listeners[0], 0, &err), 0);
	struct stat st;
	assert_int_equal(stat(sa.sun_path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0604);
	assert_int_equal(st.st_gid, getgid());
	close(fd);

	/* A socket that is gone is an error naming the listener. */
	unlink(sa.sun_path);
	assert_int_equal(ent_config_apply_socket_perms(&cfg.listeners[0], 0, &err), -ENT_EIO);
	assert_non_null(strstr(err.msg, "listeners[0].mode: chmod 0604"));
	ent_config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_defaults_validate),
		cmocka_unit_test(test_load_everything),
		cmocka_unit_test(test_file_errors_name_the_key),
		cmocka_unit_test(test_empty_and_null_values),
		cmocka_unit_test(test_precedence),
		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_batched_walk),
		cmocka_unit_test(test_token_sources),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_reload_diff),
		cmocka_unit_test(test_dump_round_trip),
		cmocka_unit_test(test_socket_perms),
	};
	return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
