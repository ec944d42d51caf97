/*
 * The config file: YAML read with libyaml's document loader, then walked against the settings
 * table. Every message names the key path ("listeners[1].tls.cert_file") and the line, so an
 * operator can go straight to the mistake. Values are taken as text and parsed by the same code
 * as environment variables and flags, so "4MiB" means the same everywhere; YAML's own typing
 * (octal 0660, yes/no booleans) never gets a say.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "config/impl.h"

#define MAX_FILE (1024 * 1024)

struct loader {
	struct ent_config *cfg;
	yaml_document_t *doc;
	const char *name; /**< the file name, for messages */
	struct ent_err *err;
	bool saw_token, saw_token_file;
};

static int fail(struct loader *L, const yaml_node_t *n, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(struct loader *L, const yaml_node_t *n, const char *path, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return ent_err_set(L->err, ENT_EINVAL, "%s: %s (%s line %lu)", path, msg, L->name,
			   n ? (unsigned long)n->start_mark.line + 1 : 0UL);
}

static const char *where(struct loader *L, const yaml_node_t *n, char *buf, size_t len)
{
	snprintf(buf, len, " (%s line %lu)", L->name, (unsigned long)n->start_mark.line + 1);
	return buf;
}

static const char *kind_name(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	default:
		return "a value";
	}
}

/*
 * The text of a scalar node, with YAML's null spellings as "" (so `listen:` or `listen: ~`
 * means "unset"). A quoted "null" stays the string null.
 */
static int scalar(struct loader *L, const yaml_node_t *n, const char *path, const char **out)
{
	if (n->type != YAML_SCALAR_NODE)
		return fail(L, n, path, "expected a value, not %s", kind_name(n));
	const char *v = (const char *)n->data.scalar.value;
	if (strlen(v) != n->data.scalar.length)
		return fail(L, n, path, "contains a NUL byte");
	if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	    (!strcmp(v, "~") || !strcasecmp(v, "null")))
		v = "";
	*out = v;
	return 0;
}

static yaml_node_t *node(struct loader *L, int id)
{
	return yaml_document_get_node(L->doc, id);
}

/* Keys are scalars and appear once per mapping; returns the key text of pair \a p. */
static int pair_key(struct loader *L, const yaml_node_t *map, const yaml_node_pair_t *p,
		    const char *path, const char **out)
{
	const yaml_node_t *k = node(L, p->key);
	if (!k || k->type != YAML_SCALAR_NODE)
		return fail(L, k, path[0] ? path : "(top level)", "keys must be plain names");
	const char *key = (const char *)k->data.scalar.value;
	for (const yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
		const yaml_node_t *qk = node(L, q->key);
		if (qk && qk->type == YAML_SCALAR_NODE &&
		    !strcmp((const char *)qk->data.scalar.value, key)) {
			char full[160];
			snprintf(full, sizeof(full), "%s%s%s", path, path[0] ? "." : "", key);
			return fail(L, k, full, "appears twice");
		}
	}
	*out = key;
	return 0;
}

static int set_setting(struct loader *L, const struct setting *s, const yaml_node_t *v,
		       const char *path)
{
	const char *text;
	char joined[2048];
	int rc;
	if (v->type == YAML_SEQUENCE_NODE && !strcmp(s->key, "fleet.nats")) {
		/* A list of servers: kept as the comma-separated text the env and flag take. */
		size_t at = 0;
		joined[0] = 0;
		for (yaml_node_item_t *it = v->data.sequence.items.start;
		     it < v->data.sequence.items.top; it++) {
			const char *one;
			if ((rc = scalar(L, node(L, *it), path, &one)))
				return rc;
			int n = snprintf(joined + at, sizeof(joined) - at, "%s%s", at ? "," : "",
					 one);
			if (n < 0 || (size_t)n >= sizeof(joined) - at)
				return fail(L, v, path, "the list is too long");
			at += (size_t)n;
		}
		text = joined;
	} else if ((rc = scalar(L, v, path, &text))) {
		return rc;
	}
	char w[160];
	L->saw_token |= s->kind == K_SECRET && *text;
	L->saw_token_file |= !strcmp(s->key, "admin.token_file") && *text;
	return ent_config_set_text(L->cfg, s, text, path, where(L, v, w, sizeof(w)), L->err);
}

static int parse_mode(const char *s, int *out)
{
	if (!*s)
		return -ENT_EINVAL;
	long v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '7' || p - s > 4)
			return -ENT_EINVAL;
		v = v * 8 + (*p - '0');
	}
	if (v > 07777)
		return -ENT_EINVAL;
	*out = (int)v;
	return 0;
}

static int load_services(struct loader *L, const yaml_node_t *v, const char *path, unsigned *out)
{
	if (v->type == YAML_SEQUENCE_NODE) {
		unsigned bits = 0;
		for (yaml_node_item_t *it = v->data.sequence.items.start;
		     it < v->data.sequence.items.top; it++) {
			const yaml_node_t *e = node(L, *it);
			const char *text;
			unsigned one;
			int rc = scalar(L, e, path, &text);
			if (rc)
				return rc;
			if (ent_config_parse_services(text, &one))
				return fail(L, e, path, "'%s' is not all, checks, admin or health",
					    text);
			bits |= one;
		}
		if (!bits)
			return fail(L, v, path, "the list is empty");
		*out = bits;
		return 0;
	}
	const char *text;
	int rc = scalar(L, v, path, &text);
	if (rc)
		return rc;
	if (ent_config_parse_services(text, out))
		return fail(L, v, path, "'%s' is not all, checks, admin or health (or a list)",
			    text);
	return 0;
}

static int set_str(struct loader *L, char **dst, const yaml_node_t *v, const char *path)
{
	const char *text;
	int rc = scalar(L, v, path, &text);
	if (rc)
		return rc;
	if (ent_config_set_str(dst, text, true))
		return ent_err_set(L->err, ENT_ENOMEM, "%s: out of memory", path);
	return 0;
}

static int set_bool(struct loader *L, bool *dst, const yaml_node_t *v, const char *path)
{
	const char *text;
	int rc = scalar(L, v, path, &text);
	if (rc)
		return rc;
	if (!strcasecmp(text, "true") || !strcasecmp(text, "yes") || !strcasecmp(text, "on")) {
		*dst = true;
	} else if (!strcasecmp(text, "false") || !strcasecmp(text, "no") ||
		   !strcasecmp(text, "off")) {
		*dst = false;
	} else {
		return fail(L, v, path, "'%s' is not true or false", text);
	}
	return 0;
}

static int load_tls(struct loader *L, struct ent_config_listener *l, const yaml_node_t *map,
		    const char *prefix)
{
	if (map->type != YAML_MAPPING_NODE)
		return fail(L, map, prefix, "expected a mapping, not %s", kind_name(map));
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		const char *key;
		int rc = pair_key(L, map, p, prefix, &key);
		if (rc)
			return rc;
		const yaml_node_t *v = node(L, p->value);
		char path[160];
		snprintf(path, sizeof(path), "%s.%s", prefix, key);
		if (!strcmp(key, "cert_file"))
			rc = set_str(L, &l->cert_file, v, path);
		else if (!strcmp(key, "key_file"))
			rc = set_str(L, &l->key_file, v, path);
		else if (!strcmp(key, "client_ca_file"))
			rc = set_str(L, &l->client_ca_file, v, path);
		else if (!strcmp(key, "require_client_cert"))
			rc = set_bool(L, &l->require_client_cert, v, path);
		else
			rc = fail(L, node(L, p->key), path, "unknown key");
		if (rc)
			return rc;
	}
	l->tls = true;
	return 0;
}

static int load_listener(struct loader *L, size_t idx, const yaml_node_t *item)
{
	char prefix[48];
	snprintf(prefix, sizeof(prefix), "listeners[%zu]", idx);
	struct ent_config *cfg = L->cfg;

	/* The short form: just the address. */
	if (item->type == YAML_SCALAR_NODE) {
		const char *text;
		int rc = scalar(L, item, prefix, &text);
		if (rc)
			return rc;
		if (!*text)
			return fail(L, item, prefix, "empty address");
		if (ent_config_add_listener(cfg, text, ENT_SVC_ALL))
			return ent_err_set(L->err, ENT_ENOMEM, "%s: out of memory", prefix);
		return 0;
	}
	if (item->type != YAML_MAPPING_NODE)
		return fail(L, item, prefix, "expected a mapping or an address, not %s",
			    kind_name(item));
	if (ent_config_add_listener(cfg, "", ENT_SVC_ALL))
		return ent_err_set(L->err, ENT_ENOMEM, "%s: out of memory", prefix);
	struct ent_config_listener *l = &cfg->listeners[cfg->n_listeners - 1];
	bool have_address = false;
	for (yaml_node_pair_t *p = item->data.mapping.pairs.start; p < item->data.mapping.pairs.top;
	     p++) {
		const char *key;
		int rc = pair_key(L, item, p, prefix, &key);
		if (rc)
			return rc;
		const yaml_node_t *v = node(L, p->value);
		char path[96];
		snprintf(path, sizeof(path), "%s.%s", prefix, key);
		if (!strcmp(key, "address")) {
			rc = set_str(L, &l->address, v, path);
			have_address = l->address != NULL;
		} else if (!strcmp(key, "services")) {
			rc = load_services(L, v, path, &l->services);
		} else if (!strcmp(key, "mode")) {
			const char *text;
			rc = scalar(L, v, path, &text);
			if (!rc && *text && parse_mode(text, &l->mode))
				rc = fail(L, v, path, "'%s' is not an octal mode such as \"0660\"",
					  text);
		} else if (!strcmp(key, "owner")) {
			rc = set_str(L, &l->owner, v, path);
		} else if (!strcmp(key, "group")) {
			rc = set_str(L, &l->group, v, path);
		} else if (!strcmp(key, "tls")) {
			rc = load_tls(L, l, v, path);
		} else {
			rc = fail(L, node(L, p->key), path, "unknown key");
		}
		if (rc)
			return rc;
	}
	if (!have_address)
		return fail(L, item, prefix, "address is missing");
	return 0;
}

static int load_listeners(struct loader *L, const yaml_node_t *v)
{
	if (v->type == YAML_SCALAR_NODE && !v->data.scalar.length) {
		ent_config_clear_listeners(L->cfg);
		return 0;
	}
	if (v->type != YAML_SEQUENCE_NODE)
		return fail(L, v, "listeners", "expected a list, not %s", kind_name(v));
	ent_config_clear_listeners(L->cfg);
	size_t idx = 0;
	for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++, idx++) {
		int rc = load_listener(L, idx, node(L, *it));
		if (rc)
			return rc;
	}
	return 0;
}

/* A prefix of some setting's key: a section such as "limits". */
static bool is_section(const char *path)
{
	size_t n = strlen(path);
	for (size_t i = 0; i < ent_config_n_settings; i++) {
		const char *k = ent_config_settings[i].key;
		if (!strncmp(k, path, n) && k[n] == '.')
			return true;
	}
	return false;
}

static int load_mapping(struct loader *L, const yaml_node_t *map, const char *prefix)
{
	if (map->type != YAML_MAPPING_NODE) {
		/* `metrics:` with nothing under it is an empty section, not an error. */
		if (prefix[0] && map->type == YAML_SCALAR_NODE && !map->data.scalar.length)
			return 0;
		return fail(L, map, prefix[0] ? prefix : "(top level)",
			    "expected a mapping, not %s", kind_name(map));
	}
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		const char *key;
		int rc = pair_key(L, map, p, prefix, &key);
		if (rc)
			return rc;
		char path[128];
		snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "", key);
		const yaml_node_t *v = node(L, p->value);
		const struct setting *s = ent_config_setting(path);
		if (s && s->kind == K_LISTEN)
			rc = load_listeners(L, v);
		else if (s)
			rc = set_setting(L, s, v, path);
		else if (is_section(path))
			rc = load_mapping(L, v, path);
		else
			rc = fail(L, node(L, p->key), path, "unknown key");
		if (rc)
			return rc;
	}
	return 0;
}

int ent_config_load_string(struct ent_config *cfg, const char *yaml, size_t len, const char *name,
			   struct ent_err *err)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	if (!yaml_parser_initialize(&parser))
		return ent_err_set(err, ENT_ENOMEM, "%s: out of memory", name);
	yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
	int rc = 0;
	if (!yaml_parser_load(&parser, &doc)) {
		rc = ent_err_set(err, ENT_EINVAL, "%s line %lu: %s%s%s", name,
				 (unsigned long)parser.problem_mark.line + 1,
				 parser.problem ? parser.problem : "not valid YAML",
				 parser.context ? " " : "", parser.context ? parser.context : "");
		yaml_parser_delete(&parser);
		return rc;
	}
	struct loader L = {.cfg = cfg, .doc = &doc, .name = name, .err = err};
	const yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (root)
		rc = load_mapping(&L, root, "");
	if (!rc && L.saw_token && L.saw_token_file)
		rc = ent_err_set(err, ENT_EINVAL,
				 "admin: token and token_file are both set in %s; use one", name);
	if (!rc && root) {
		/* A second document would be silently ignored: refuse it instead. */
		yaml_document_t next;
		if (yaml_parser_load(&parser, &next)) {
			if (yaml_document_get_root_node(&next))
				rc = ent_err_set(err, ENT_EINVAL,
						 "%s: holds more than one YAML document", name);
			yaml_document_delete(&next);
		}
	}
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return rc;
}

int ent_config_read_file(const char *key, const char *path, char **out, size_t *len,
			 struct ent_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ent_err_set(err, ENT_EIO, "%s: '%s' is not readable: %s", key, path,
				   strerror(errno));
	struct stat st;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return ent_err_set(err, ENT_EIO, "%s: '%s' is not a regular file", key, path);
	}
	if (st.st_size > MAX_FILE) {
		close(fd);
		return ent_err_set(err, ENT_EINVAL, "%s: '%s' is larger than 1 MiB", key, path);
	}
	char *buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return ent_err_set(err, ENT_ENOMEM, "%s: out of memory", key);
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = 0;
	*out = buf;
	if (len)
		*len = got;
	return 0;
}

int ent_config_load_file(struct ent_config *cfg, const char *path, struct ent_err *err)
{
	char *buf;
	size_t len;
	int rc = ent_config_read_file("config", path, &buf, &len, err);
	if (rc)
		return rc;
	rc = ent_config_load_string(cfg, buf, len, path, err);
	free(buf);
	return rc;
}
