/**
 * \file config.h
 * entd's settings: one YAML file, environment variables and command-line flags, in that order of
 * precedence (flags win over the environment, the environment over the file, the file over the
 * defaults). Every setting is documented in docs/configuration.md with its key, type, default,
 * variable, flag and whether SIGHUP reloads it.
 *
 * The start-up sequence of a main():
 *
 *     struct ent_config cfg;
 *     struct ent_err err = {0};
 *     if (ent_config_build(&cfg, argc, argv, NULL, NULL, &err) < 0) {
 *             fprintf(stderr, "entd: %s\n", err.msg);   // names the key and the value
 *             exit(2);
 *     }
 *     switch (cfg.action) { ... }   // --help, --version, --check-config, --print-config
 *
 * ent_config_build() is defaults, the config file (--config FILE, --check-config FILE, or
 * ENTD_CONFIG), the environment, the flags, then ent_config_validate(). The steps are public
 * too, for tests and for callers with other needs. On SIGHUP, build a new config the same way
 * and compare it with ent_config_reloadable_diff() to log what needs a restart.
 *
 * Ownership: every string in struct ent_config is heap-owned by the config and freed by
 * ent_config_free(); assign them only through the functions here. A config is not thread-safe;
 * build it on one thread, then share it read-only.
 */
#ifndef ENT_CONFIG_H
#define ENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ent/util.h"

/** Which services a listener serves (a bit set). Health is served on every listener. */
enum ent_config_service {
	ENT_SVC_HEALTH = 1u << 0, /**< grpc.health.v1.Health (always on) */
	ENT_SVC_CHECKS = 1u << 1, /**< ent.v1.EntitlementService */
	ENT_SVC_ADMIN = 1u << 2,  /**< ent.v1.AdminService */
	ENT_SVC_ALL = ENT_SVC_HEALTH | ENT_SVC_CHECKS | ENT_SVC_ADMIN,
};

/** One gRPC listener (`listeners[i]` in the file). */
struct ent_config_listener {
	char *address; /**< "host:port", "[v6]:port", ":port" (all interfaces) or "unix:/path" */
	unsigned services; /**< enum ent_config_service bits; always has ENT_SVC_HEALTH */
	/* unix sockets only */
	int mode; /**< permission bits (e.g. 0660) to chmod the socket to; -1: leave as created */
	char *owner; /**< user name to chown the socket to; NULL: leave */
	char *group; /**< group name to chown the socket to; NULL: leave */
	/* TLS (TCP only); tls is true when a `tls:` block was given (cert_file and key_file set) */
	bool tls;
	char *cert_file;	  /**< PEM server certificate chain */
	char *key_file;		  /**< PEM private key (a secret: its content is never printed) */
	char *client_ca_file;	  /**< PEM CA bundle to verify client certificates; NULL: none */
	bool require_client_cert; /**< mTLS: refuse clients without a certificate from the CA */
};

enum ent_config_action {
	ENT_CONFIG_RUN = 0, /**< start the daemon */
	ENT_CONFIG_CHECK,   /**< --check-config FILE: validate, print "ok", exit 0 */
	ENT_CONFIG_PRINT,   /**< --print-config: print the effective config (secrets hidden) */
	ENT_CONFIG_HELP,    /**< --help: ent_config_usage() and exit 0 */
	ENT_CONFIG_VERSION, /**< --version: print ENT_VERSION and exit 0 */
};

enum ent_config_log_format {
	ENT_LOG_LOGFMT = 0,
	ENT_LOG_JSON = 1,
};

/**
 * The effective settings. Field comments give the YAML key; defaults are set by
 * ent_config_defaults() and listed in docs/configuration.md.
 */
struct ent_config {
	enum ent_config_action action;
	char *config_file; /**< the file that was loaded, or NULL */

	char *db_path;	       /**< db.path: LMDB directory */
	uint64_t map_size;     /**< db.map_size: bytes */
	bool batched_walk;     /**< db.batched_walk: batched checks walk the B-tree (storage.md) */
	uint64_t verify_below; /**< db.verify_below: check the database at start up to this size */
	unsigned threads; /**< threads: completion-queue threads, 1..256 ("auto": online CPUs) */

	struct ent_config_listener *listeners; /**< listeners[] */
	size_t n_listeners;

	char *admin_token;	/**< admin.token: secret; after validate: the effective token */
	char *admin_token_file; /**< admin.token_file: the token is read from this file */
	bool protect_checks;	/**< admin.protect_checks: checks need the credential too */

	uint64_t max_message_bytes;	     /**< limits.max_message_bytes */
	unsigned max_concurrent_streams;     /**< limits.max_concurrent_streams; 0: no limit */
	int64_t keepalive_time_ms;	     /**< limits.keepalive_time_ms */
	int64_t keepalive_timeout_ms;	     /**< limits.keepalive_timeout_ms */
	bool keepalive_permit_without_calls; /**< limits.keepalive_permit_without_calls */
	int64_t min_ping_interval_ms;	     /**< limits.min_ping_interval_ms */
	uint64_t max_metadata_bytes;	     /**< limits.max_metadata_bytes: header list */
	uint64_t memory_bytes;		     /**< limits.memory: gRPC resource quota */
	bool compression;		     /**< limits.compression: accept gzip/deflate */
	int64_t max_connection_idle_ms;	     /**< limits.max_connection_idle_ms; 0: none */
	int64_t max_connection_age_ms;	     /**< limits.max_connection_age_ms; 0: none */

	int64_t grace_ms; /**< shutdown.grace_ms: in-flight calls get this long on SIGTERM */

	enum ent_log_level log_level;	       /**< log.level */
	enum ent_config_log_format log_format; /**< log.format */

	double decision_log_sample_rate; /**< decision_log.sample_rate: 0 (off) .. 1 (every check)
					  */
	char *decision_log_path;	 /**< decision_log.path: "stderr" or a file (appended) */

	char *metrics_listen; /**< metrics.listen: "host:port" of the HTTP endpoint; "": off */
	unsigned metrics_max_connections; /**< metrics.max_connections */
	int64_t metrics_timeout_ms;	  /**< metrics.connection_timeout_ms */

	int64_t check_min_seq_wait_ms;	 /**< check.min_sequence_wait_ms (0: refuse at once) */
	unsigned check_min_seq_wait_max; /**< check.min_sequence_wait_max: parked checks */

	unsigned writer_max_group;	  /**< writer.max_group: events per transaction */
	unsigned writer_nice;		  /**< writer.nice: the writer thread's nice increment */
	int64_t writer_idem_retention_ms; /**< writer.idem_retention_ms */

	/* fleet mode (docs/fleet.md); fleet_nats NULL: embedded mode */
	char *fleet_nats;	   /**< fleet.nats: comma-separated nats:// URLs (or a list) */
	char *fleet_stream;	   /**< fleet.stream */
	char *fleet_subject;	   /**< fleet.subject */
	unsigned fleet_replicas;   /**< fleet.replicas: 1..5 */
	char *fleet_creds_file;	   /**< fleet.creds_file */
	char *fleet_tls_ca_file;   /**< fleet.tls_ca_file */
	char *fleet_tls_cert_file; /**< fleet.tls_cert_file */
	char *fleet_tls_key_file;  /**< fleet.tls_key_file */
	int64_t fleet_connect_timeout_ms; /**< fleet.connect_timeout_ms */
	int64_t fleet_publish_timeout_ms; /**< fleet.publish_timeout_ms */
	int64_t fleet_max_age_ms;	  /**< fleet.max_age_ms: retention of a created stream */
	unsigned fleet_max_msgs;	  /**< fleet.max_msgs: retention (count) */
	int64_t fleet_ready_wait_ms;	  /**< fleet.ready_wait_ms: with serve_stale */
	bool fleet_serve_stale;		  /**< fleet.serve_stale */
	bool fleet_full_sync;		  /**< fleet.full_sync: fsync the meta page every commit */
	char *fleet_snapshot_bucket;	  /**< fleet.snapshot_bucket: object-store bucket */
	int64_t fleet_snapshot_interval_ms; /**< fleet.snapshot_interval_ms: 0 off */
};

/** An environment lookup: returns the value of \a name or NULL. */
typedef const char *(*ent_config_getenv_fn)(void *ctx, const char *name);

/** Fill \a cfg with the defaults (one listener 127.0.0.1:50051 serving all services). */
ENT_API void ent_config_defaults(struct ent_config *cfg);

/** Free every string and the listener array; \a cfg can be filled again with _defaults. */
ENT_API void ent_config_free(struct ent_config *cfg);

/**
 * Deep copy \a src into \a dst (which is overwritten, not freed first).
 * \return 0 or -ENT_ENOMEM (dst is then empty and safe to free).
 */
ENT_API int ent_config_copy(struct ent_config *dst, const struct ent_config *src);

/**
 * Read the YAML file \a path over \a cfg. Keys not present keep their value; `listeners`
 * replaces the whole list. Unknown keys, wrong types and out-of-range values are errors naming
 * the key path and the value, e.g. "listeners[1].tls.cert_file: expected a string (entd.yaml
 * line 12)". Sizes take suffixes (4MiB, 1GiB, 500KB), durations units (250ms, 10s, 5m, 2h, 7d).
 * \return 0, or -ENT_EINVAL (bad content) / -ENT_EIO (unreadable file) with \a err filled;
 *         \a cfg may then hold part of the file and should only be freed.
 */
ENT_API int ent_config_load_file(struct ent_config *cfg, const char *path, struct ent_err *err);

/** As ent_config_load_file() on a YAML text in memory; \a name is used in messages. */
ENT_API int ent_config_load_string(struct ent_config *cfg, const char *yaml, size_t len,
				   const char *name, struct ent_err *err);

/**
 * Apply the ENTD_* environment variables (docs/configuration.md lists them all; ENTD_LISTEN is
 * comma-separated and replaces the listeners). \a get NULL means getenv(3).
 * \return 0 or -ENT_EINVAL naming the variable and its value.
 */
ENT_API int ent_config_apply_env(struct ent_config *cfg, ent_config_getenv_fn get, void *ctx,
				 struct ent_err *err);

/**
 * Apply the command-line flags (argv[0] is skipped): `--key value` or `--key=value`; boolean
 * flags also as `--flag` and `--no-flag`; --listen repeats and replaces the listeners;
 * --config/-c FILE is accepted (it is read by ent_config_build, not here); --check-config FILE,
 * --print-config, --help/-h and --version/-V set cfg->action.
 * \return 0 or -ENT_EINVAL naming the flag and the value.
 */
ENT_API int ent_config_apply_flags(struct ent_config *cfg, int argc, char *const *argv,
				   struct ent_err *err);

/**
 * The config file named on the command line (--config FILE, -c FILE, --check-config FILE, the
 * last one wins), else ENTD_CONFIG from \a get (NULL: getenv), else NULL. Borrowed from argv or
 * the environment.
 */
ENT_API const char *ent_config_find_file(int argc, char *const *argv, ent_config_getenv_fn get,
					 void *ctx);

/**
 * Check the whole config, naming the key and value of the first problem: "threads: 0 is not in
 * 1..256", "listeners[0].address: 'foo' is not host:port or unix:/path", TLS files that cannot
 * be opened or do not hold PEM, a socket owner that is not a user, and so on. Reads
 * admin.token_file into admin_token (the trailing newline dropped), so it must be readable.
 * \return 0 or -ENT_EINVAL / -ENT_EIO.
 */
ENT_API int ent_config_validate(struct ent_config *cfg, struct ent_err *err);

/**
 * The whole sequence: defaults, file, environment, flags, validate (validate is skipped for
 * --help and --version). On error \a cfg is freed already.
 */
ENT_API int ent_config_build(struct ent_config *cfg, int argc, char *const *argv,
			     ent_config_getenv_fn get, void *ctx, struct ent_err *err);

/**
 * The settings that differ between \a old and \a cur and cannot change without a restart.
 * Fills up to \a cap key names (static strings such as "db.path", "listeners") into \a keys.
 * Reloadable on SIGHUP: log.level, log.format, admin.token, admin.token_file, the contents
 * (and paths) of the TLS files, decision_log.sample_rate.
 * \return the number of such settings (may exceed \a cap).
 */
ENT_API size_t ent_config_reloadable_diff(const struct ent_config *old,
					  const struct ent_config *cur, const char **keys,
					  size_t cap);

/**
 * Print the effective config as YAML that ent_config_load_file() reads back, with every secret
 * (admin.token) shown as "<set>" or "" — never its value.
 */
ENT_API void ent_config_dump(const struct ent_config *cfg, FILE *out);

/** Print the flags and environment variables with one line each. */
ENT_API void ent_config_usage(FILE *out, const char *prog);

/* ---- helpers for whoever applies the config ------------------------------------------- */

/**
 * Parse a size: bytes, or a number with a suffix. K, M, G, T (and k, m, g, t), Ki.., KiB.. are
 * binary (64G = 64 GiB); only kB, KB, MB, GB, TB are decimal.
 */
ENT_API int ent_config_parse_size(const char *s, uint64_t *out);
/** Parse a duration: bare milliseconds, or units ms/s/m/h/d, possibly combined ("1h30m"). */
ENT_API int ent_config_parse_duration_ms(const char *s, int64_t *out);

/**
 * Read a whole (PEM) file into a NUL-terminated heap buffer (caller frees), at most 1 MiB.
 * Used for TLS certificates and keys at start and on SIGHUP.
 * \return 0 or -ENT_EIO / -ENT_EINVAL with \a err naming \a key and the path.
 */
ENT_API int ent_config_read_file(const char *key, const char *path, char **out, size_t *len,
				 struct ent_err *err);

/**
 * After the listener's unix socket exists: chmod it to l->mode and chown it to l->owner /
 * l->group when they are set. A no-op for TCP listeners.
 * \return 0 or -ENT_EIO with \a err naming the listener and the failing call.
 */
ENT_API int ent_config_apply_socket_perms(const struct ent_config_listener *l, size_t index,
					  struct ent_err *err);

/** "all", "checks", "checks,health", ... (static storage) for logs. */
ENT_API const char *ent_config_services_name(unsigned services);

#endif
