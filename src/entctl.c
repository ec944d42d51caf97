/* entctl: the command-line client. Dispatch only; each subcommand lives in src/client/. */
#include <stdio.h>
#include <string.h>

#include "client/ctl.h"

struct subcommand {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
};

static const struct subcommand subcommands[] = {
	{"check", ent_client_ctl_check,
	 "check [-a ADDR] [--json] [--at TIME] CUSTOMER FEATURE [QUANTITY]"},
	{"get", ent_client_ctl_get, "get [-a ADDR] [--json] CUSTOMER [FEATURE...]"},
	{"usage", ent_client_ctl_usage,
	 "usage report [-a ADDR] [--json] [--at TIME] --key KEY CUSTOMER FEATURE QUANTITY\n"
	 "  entctl usage import [-a ADDR] [--json] [--batch-size N] [--quiet] FILE|-"},
	{"consume", ent_client_ctl_consume,
	 "consume [-a ADDR] [--json] [--key KEY] CUSTOMER FEATURE [QUANTITY]"},
	{"health", ent_client_ctl_health, "health [-a ADDR] [SERVICE]"},
	{"admin", ent_client_ctl_admin,
	 "admin [-a ADDR] [--token T] COMMAND ... (entctl admin help)"},
	{"import", ent_client_ctl_import, "import --db DIR [--replace] FILE.json"},
	{"export", ent_client_ctl_export, "export --db DIR [FILE.json]"},
	{"generate", ent_client_ctl_generate, "generate --db DIR --customers N [--seed S]"},
	{"verify", ent_client_ctl_verify, "verify --db DIR"},
	{"fleet", ent_client_ctl_fleet,
	 "fleet snapshot publish|fetch|info --nats URL [--db DIR] ... (entctl fleet help)"},
};

static int usage(FILE *out)
{
	fprintf(out,
		"usage: entctl COMMAND [ARGS]\n\n"
		"ADDR is host:port or unix:/path (default: $ENTD_ADDR or 127.0.0.1:50051).\n\n");
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		fprintf(out, "  entctl %s\n", subcommands[i].help);
	return out == stderr ? 2 : 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr);
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return usage(stdout);
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		if (!strcmp(argv[1], subcommands[i].name))
			return subcommands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "entctl: unknown command '%s'\n", argv[1]);
	return usage(stderr);
}
