/* Placeholder until this file is written. */
#include <stdio.h>
#include "client/ctl.h"
int ent_ctl_import(int argc, char **argv)
{
	fputs("entctl: import is not built yet\n", stderr);
	return 1;
}
int ent_ctl_export(int argc, char **argv)
{
	fputs("entctl: export is not built yet\n", stderr);
	return 1;
}
int ent_ctl_generate(int argc, char **argv)
{
	fputs("entctl: generate is not built yet\n", stderr);
	return 1;
}
