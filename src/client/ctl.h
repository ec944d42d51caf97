/*
 * entctl subcommands. Each takes the arguments after its name and returns the process exit
 * status (0 ok, 1 failed, 2 usage).
 */
#ifndef ENT_CTL_H
#define ENT_CTL_H

/* Offline, straight on an LMDB directory (src/client/ctl_offline.c). */
int ent_ctl_import(int argc, char **argv);   /* import --db DIR [--replace] FILE.json */
int ent_ctl_export(int argc, char **argv);   /* export --db DIR [FILE.json] */
int ent_ctl_generate(int argc, char **argv); /* generate --db DIR --customers N [--seed S] */

/* Against a running entd (src/client/ctl_remote.c). */
int ent_ctl_check(int argc, char **argv);  /* check [-a ADDR] [--json] CUSTOMER FEATURE [N] */
int ent_ctl_get(int argc, char **argv);	   /* get [-a ADDR] [--json] CUSTOMER [FEATURE...] */
int ent_ctl_health(int argc, char **argv); /* health [-a ADDR] [SERVICE] */
int ent_ctl_admin(int argc, char **argv);  /* every admin RPC: see `entctl help` */

/* ReportUsage and ConsumeEntitlement (src/client/ctl_remote.c). */
int ent_ctl_usage(int argc, char **argv);   /* usage [-a ADDR] --key K CUSTOMER FEATURE N */
int ent_ctl_consume(int argc, char **argv); /* consume [-a ADDR] [--key K] CUSTOMER FEATURE [N] */

/* Fleet mode tools on NATS JetStream (src/client/ctl_fleet.c). */
int ent_ctl_fleet(int argc, char **argv); /* fleet snapshot publish|fetch|info ... */

#endif
