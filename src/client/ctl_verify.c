/*
 * entctl verify --db DIR: check a database offline or beside a running entd (it is only a
 * reader), page by page and record by record (ent_store_verify), and say what it found.
 * Exit status 0: sound; 1: damaged or unreadable (the first problem is named); 2: usage.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "client/ctl.h"
#include "ent/store.h"

int ent_client_ctl_verify(int argc, char **argv)
{
	const char *db = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--db") && i + 1 < argc) {
			db = argv[++i];
		} else {
			fprintf(stderr, "entctl verify: unknown argument '%s'\n", argv[i]);
			return 2;
		}
	}
	if (!db) {
		fputs("usage: entctl verify --db DIR\n", stderr);
		return 2;
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct ent_store *store;
	struct ent_err err = {0};
	struct ent_store_opts so = {.path = db, .read_only = true};
	int rc = ent_store_open(&so, &store, &err);
	if (rc) {
		fprintf(stderr, "entctl verify: %s\n", err.code ? err.msg : ent_err_strerror(rc));
		return 1;
	}
	struct ent_store_verify_report r;
	rc = ent_store_verify(store, &r);
	ent_store_close(store);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("tables %" PRIu64 ", pages %" PRIu64 ", records %" PRIu64 " (aggregated %" PRIu64
	       ", without checksum %" PRIu64 "), %.2f s\n",
	       r.tables, r.pages, r.records, r.agg_records, r.agg_unsealed, secs);
	if (rc == -ENT_ECORRUPT) {
		fprintf(stderr, "entctl verify: %s: DAMAGED (%" PRIu64 " problem%s): %s\n", db,
			r.problems, r.problems == 1 ? "" : "s", r.first);
		return 1;
	}
	if (rc) {
		fprintf(stderr, "entctl verify: %s: %s\n", db, ent_err_strerror(rc));
		return 1;
	}
	printf("%s: OK\n", db);
	return 0;
}
