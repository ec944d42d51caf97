/*
 * entctl import / export / generate: straight on an LMDB directory, no daemon. They must not
 * run against a directory a live entd writes to (LMDB would serialize the writers, but the
 * daemon's boundary timers would not know about the change).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/ctl.h"
#include "ent/json.h"
#include "ent/model.h"
#include "ent/store.h"

#define GIB ((size_t)1 << 30)

/* Parse a size with an optional K/M/G/T suffix (powers of 1024). */
static int parse_size(const char *s, size_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	int shift = 0;
	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 't':
	case 'T':
		shift = 40;
		break;
	case '\0':
		break;
	default:
		return -1;
	}
	if (shift)
		end++;
	if (*end || v > (SIZE_MAX >> shift))
		return -1;
	*out = (size_t)v << shift;
	return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-')
		return -1;
	*out = v;
	return 0;
}

/* The whole of \a path ("-": stdin) into a malloc'ed buffer. */
static char *read_all(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (n == cap) {
			char *b = realloc(buf, cap *= 2);
			if (!b) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = b;
		}
		size_t got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0) {
			if (ferror(f)) {
				free(buf);
				buf = NULL;
			}
			break;
		}
	}
	if (f != stdin)
		fclose(f);
	*len = n;
	return buf;
}

static double elapsed_s(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* ---- import ------------------------------------------------------------------------------ */

int ent_client_ctl_import(int argc, char **argv)
{
	const char *db = NULL, *file = NULL;
	bool replace = false;
	size_t map_size = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--db") && i + 1 < argc) {
			db = argv[++i];
		} else if (!strcmp(argv[i], "--replace")) {
			replace = true;
		} else if (!strcmp(argv[i], "--map-size") && i + 1 < argc) {
			if (parse_size(argv[++i], &map_size)) {
				fprintf(stderr, "entctl import: bad --map-size '%s'\n", argv[i]);
				return 2;
			}
		} else if (argv[i][0] == '-' && argv[i][1]) {
			fprintf(stderr, "entctl import: unknown option '%s'\n", argv[i]);
			return 2;
		} else if (!file) {
			file = argv[i];
		} else {
			fprintf(stderr, "entctl import: one file only\n");
			return 2;
		}
	}
	if (!db || !file) {
		fputs("usage: entctl import --db DIR [--replace] [--map-size BYTES] FILE.json\n",
		      stderr);
		return 2;
	}
	size_t len;
	char *text = read_all(file, &len);
	if (!text) {
		fprintf(stderr, "entctl import: %s: %s\n", file, strerror(errno));
		return 1;
	}
	struct ent_store *store;
	struct ent_err err = {0};
	struct ent_store_opts so = {.path = db, .map_size = map_size};
	int rc = ent_store_open(&so, &store, &err);
	if (rc) {
		fprintf(stderr, "entctl import: %s\n", err.code ? err.msg : ent_err_strerror(rc));
		free(text);
		return 1;
	}
	struct ent_json_stats st;
	rc = ent_json_import(store, text, len, replace, &err, &st);
	free(text);
	ent_store_close(store);
	if (rc) {
		fprintf(stderr, "entctl import: %s\n", err.code ? err.msg : ent_err_strerror(rc));
		return 1;
	}
	printf("imported %u changes, sequence %llu\n", st.changes, (unsigned long long)st.seq);
	return 0;
}

/* ---- export ------------------------------------------------------------------------------ */

int ent_client_ctl_export(int argc, char **argv)
{
	const char *db = NULL, *file = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--db") && i + 1 < argc) {
			db = argv[++i];
		} else if (argv[i][0] == '-' && argv[i][1]) {
			fprintf(stderr, "entctl export: unknown option '%s'\n", argv[i]);
			return 2;
		} else if (!file) {
			file = argv[i];
		} else {
			fprintf(stderr, "entctl export: one file only\n");
			return 2;
		}
	}
	if (!db) {
		fputs("usage: entctl export --db DIR [FILE.json]\n", stderr);
		return 2;
	}
	struct ent_store *store;
	struct ent_view *view;
	struct ent_err err = {0};
	struct ent_store_opts so = {.path = db, .read_only = true};
	char *json = NULL;
	int rc = ent_store_open(&so, &store, &err);
	if (rc) {
		fprintf(stderr, "entctl export: %s\n", err.code ? err.msg : ent_err_strerror(rc));
		return 1;
	}
	if (!(rc = ent_store_view_new(store, &view))) {
		if (!(rc = ent_store_view_begin(view))) {
			rc = ent_json_export(view, &json, &err);
			ent_store_view_end(view);
		}
		ent_store_view_free(view);
	}
	ent_store_close(store);
	if (rc) {
		fprintf(stderr, "entctl export: %s\n", err.code ? err.msg : ent_err_strerror(rc));
		return 1;
	}
	FILE *f = file && strcmp(file, "-") ? fopen(file, "wb") : stdout;
	if (!f) {
		fprintf(stderr, "entctl export: %s: %s\n", file, strerror(errno));
		free(json);
		return 1;
	}
	size_t len = strlen(json);
	bool ok = fwrite(json, 1, len, f) == len;
	ok = (f == stdout ? fflush(f) : fclose(f)) == 0 && ok;
	free(json);
	if (!ok) {
		fprintf(stderr, "entctl export: write failed: %s\n", strerror(errno));
		return 1;
	}
	return 0;
}

/* ---- generate ------------------------------------------------------------------------------ */

struct gen_progress {
	struct timespec t0;
	uint64_t next; /* print when this many customers are done */
};

/* Called after each committed batch: a line every 100k customers, not one per batch. */
static void gen_progress(void *ctx, uint64_t done)
{
	struct gen_progress *p = ctx;
	if (done < p->next)
		return;
	fprintf(stderr, "  %llu customers (%.1f s)\n", (unsigned long long)done, elapsed_s(&p->t0));
	p->next = (done / 100000 + 1) * 100000;
}

/*
 * The store was opened with MDB_NOSYNC, so commits only reached the page cache: one fsync of
 * the data file at the end makes the whole build durable at the cost of a single flush.
 */
static int sync_data_file(const char *db)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/data.mdb", db);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	close(fd);
	return rc;
}

static void print_codes(const char *kind, uint8_t type, uint32_t n)
{
	char a[32], b[32];
	if (n == 1)
		printf("  %-8s %s\n", kind, ent_json_gen_feature_code(type, 0, a, sizeof(a)));
	else
		printf("  %-8s %s .. %s\n", kind, ent_json_gen_feature_code(type, 0, a, sizeof(a)),
		       ent_json_gen_feature_code(type, n - 1, b, sizeof(b)));
}

int ent_client_ctl_generate(int argc, char **argv)
{
	const char *db = NULL;
	struct ent_gen_opts go = {0};
	size_t map_size = 16 * GIB;
	bool have_customers = false;
	const char *a = NULL;
	/* Every option takes a value: they come in pairs. */
	for (int i = 1; i < argc; i += 2) {
		uint64_t v;
		a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--db") && val) {
			db = val;
		} else if (!strcmp(a, "--map-size") && val) {
			if (parse_size(val, &map_size))
				goto bad;
		} else if (!strcmp(a, "--customers") && val && !parse_u64(val, &v)) {
			go.customers = v;
			have_customers = true;
		} else if (!strcmp(a, "--features") && val && !parse_u64(val, &v) && v >= 4 &&
			   v <= 100000) {
			go.features = (uint32_t)v;
		} else if (!strcmp(a, "--plans") && val && !parse_u64(val, &v) && v >= 1 &&
			   v <= 1000) {
			go.plans = (uint32_t)v;
		} else if (!strcmp(a, "--seed") && val && !parse_u64(val, &v)) {
			go.seed = v;
		} else if (!strcmp(a, "--batch") && val && !parse_u64(val, &v) && v >= 1 &&
			   v <= 10000000) {
			go.batch = (uint32_t)v;
		} else {
			goto bad;
		}
	}
	if (!db || !have_customers)
		goto usage;

	struct gen_progress prog = {.next = 100000};
	clock_gettime(CLOCK_MONOTONIC, &prog.t0);
	go.progress = gen_progress;
	go.progress_ctx = &prog;
	struct ent_store *store;
	struct ent_err err = {0};
	struct ent_store_opts so = {.path = db, .map_size = map_size, .no_sync = true};
	int rc = ent_store_open(&so, &store, &err);
	if (rc) {
		fprintf(stderr, "entctl generate: %s\n", err.code ? err.msg : ent_err_strerror(rc));
		return 1;
	}
	struct ent_gen_stats gs = {0};
	rc = ent_json_generate(store, &go, &gs, &err);
	struct ent_store_stats ss = {0};
	if (!rc)
		ent_store_stats(store, &ss);
	ent_store_close(store);
	if (rc) {
		fprintf(stderr, "entctl generate: %s\n", err.code ? err.msg : ent_err_strerror(rc));
		return 1;
	}
	if (sync_data_file(db)) {
		fprintf(stderr, "entctl generate: sync %s: %s\n", db, strerror(errno));
		return 1;
	}
	uint32_t nm, nb, ns;
	ent_json_gen_feature_counts(go.features ? go.features : 20, &nm, &nb, &ns);
	uint32_t plans = go.plans ? go.plans : 4;
	printf("generated %llu customers (%llu events, sequence %llu) in %.1f s\n",
	       (unsigned long long)go.customers, (unsigned long long)gs.events,
	       (unsigned long long)gs.seq, elapsed_s(&prog.t0));
	printf("database %s: %.1f MiB used, %llu aggregates\n", db,
	       (double)ss.db_size_bytes / (1 << 20), (unsigned long long)ss.aggregates);
	if (go.customers)
		printf("customers: cus_0 .. cus_%llu\n", (unsigned long long)go.customers - 1);
	printf("features:\n");
	print_codes("metered", ENT_FT_METERED, nm);
	print_codes("boolean", ENT_FT_BOOLEAN, nb);
	print_codes("static", ENT_FT_STATIC, ns);
	printf("plans: plan_0 .. plan_%u; add-ons: addon_0, addon_1\n", plans - 1);
	return 0;

bad:
	fprintf(stderr, "entctl generate: bad or unknown argument '%s'\n", a);
usage:
	fputs("usage: entctl generate --db DIR --customers N [--features F] [--plans P] [--seed S]\n"
	      "                       [--map-size BYTES] [--batch EVENTS]\n",
	      stderr);
	return 2;
}
