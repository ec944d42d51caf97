/*
 * libFuzzer target for the config file: untrusted bytes -> ent_config_load_string (an operator's
 * YAML, but also whatever a deployment tool templated into it). It must never crash, leak or
 * read out of bounds; every refusal names a reason; a success leaves a config that the
 * validator can judge and that copies and frees cleanly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ent/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ent_config cfg, copy;
	struct ent_err err = {0};
	ent_config_defaults(&cfg);
	int rc = ent_config_load_string(&cfg, (const char *)data, size, "fuzz.yaml", &err);
	if (rc) {
		if (err.code == 0 || err.msg[0] == '\0')
			abort(); /* every failure explains itself */
	} else {
		memset(&copy, 0, sizeof(copy));
		ent_config_copy(&copy, &cfg);
		ent_config_free(&copy);
	}
	ent_config_free(&cfg);
	return 0;
}
