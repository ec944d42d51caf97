/*
 * config internals: one table of settings drives the YAML loader (yaml.c), the environment and
 * flag parsers, the dump, the usage text and the range checks of validate (config.c), so a
 * setting is added in one place and every source and document agrees on its name.
 */
#ifndef ENT_CONFIG_IMPL_H
#define ENT_CONFIG_IMPL_H

#include "ent/config.h"

enum setting_kind {
	K_STR,	    /**< char *; "" means unset (NULL) */
	K_SECRET,   /**< char *, never printed or echoed in errors */
	K_SIZE,	    /**< uint64_t bytes, suffixes allowed */
	K_DURATION, /**< int64_t ms, units allowed */
	K_UINT,	    /**< unsigned */
	K_BOOL,	    /**< bool */
	K_RATE,	    /**< double 0..1 */
	K_LEVEL,    /**< enum ent_log_level */
	K_FORMAT,   /**< enum ent_config_log_format */
	K_THREADS,  /**< unsigned, or "auto" */
	K_LISTEN,   /**< the listener list (special everywhere) */
};

struct setting {
	const char *key;  /**< dotted path in the YAML file */
	const char *env;  /**< ENTD_* variable or NULL */
	const char *flag; /**< long flag without the dashes, or NULL */
	enum setting_kind kind;
	bool reloadable;
	size_t off; /**< offset in struct ent_config */
	uint64_t min, max;
	const char *help;
};

extern const struct setting ent_config_settings[];
extern const size_t ent_config_n_settings;

/** The setting with this dotted key, or NULL. */
const struct setting *ent_config_setting(const char *key);

/**
 * Set \a s from \a text. \a label names it in errors ("threads"); \a where is appended to the
 * message (" (from ENTD_THREADS)"). Secrets are never echoed.
 */
int ent_config_set_text(struct ent_config *cfg, const struct setting *s, const char *text,
			const char *label, const char *where, struct ent_err *err);

/** Replace *dst by a copy of \a src ("" gives NULL when \a empty_null). -ENT_ENOMEM. */
int ent_config_set_str(char **dst, const char *src, bool empty_null);

/** Parse a services list ("all", "checks,admin", ...) into bits (health always added). */
int ent_config_parse_services(const char *s, unsigned *out);

/** Append a listener with \a address serving \a services. */
int ent_config_add_listener(struct ent_config *cfg, const char *address, unsigned services);
void ent_config_clear_listeners(struct ent_config *cfg);
void ent_config_listener_init(struct ent_config_listener *l);
void ent_config_listener_free(struct ent_config_listener *l);

/** Append " ..." to err->msg if there is room (messages are truncated, never overflowed). */
void ent_config_err_append(struct ent_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
