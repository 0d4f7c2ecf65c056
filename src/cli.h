/* cli: the command-line parsing that tokenspeed and tsctl share.
 *
 * Owns: token-id lists ("1,2,3"), bounded numbers, and the sampling flags
 * (--temperature, --top-k, --top-p, --min-p, --repetition-penalty,
 * --presence-penalty, --frequency-penalty, --seed) with one spelling for
 * both programs. Ranges of the sampling fields are checked later by
 * samp_params_check, whose messages name the field.
 * Does not: know about either program's other options.
 * Threads: main thread, before anything starts. */
#ifndef TS_CLI_H
#define TS_CLI_H

#include "samp.h"

/* "1,2,3" -> out; returns the count, or -1 on a malformed list or more than cap. */
int cli_parse_ids(const char *s, int32_t *out, int cap);

/* A number in [lo, hi]; on error prints "prog: flag = "v": ..." and returns -1. */
int cli_parse_num(const char *prog, const char *flag, const char *v, double lo, double hi, double *out);

/* If flag is a sampling flag, parses v into p and returns 1 (or -1 with a
 * message); returns 0 for any other flag. */
int cli_samp_opt(const char *prog, const char *flag, const char *v, struct samp_params *p);

#endif
