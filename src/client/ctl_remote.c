/* Placeholder until this file is written. */
#include <stdio.h>
#include "client/ctl.h"
int ent_ctl_check(int argc, char **argv)
{
	fputs("entctl: check is not built yet\n", stderr);
	return 1;
}
int ent_ctl_get(int argc, char **argv)
{
	fputs("entctl: get is not built yet\n", stderr);
	return 1;
}
int ent_ctl_health(int argc, char **argv)
{
	fputs("entctl: health is not built yet\n", stderr);
	return 1;
}
int ent_ctl_admin(int argc, char **argv)
{
	fputs("entctl: admin is not built yet\n", stderr);
	return 1;
}
