/* cli: shared command-line parsing. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int cli_parse_ids(const char *s, int32_t *out, int cap)
{
	int n = 0;
	while (*s) {
		char *end;
		errno = 0;
		long v = strtol(s, &end, 10);
		if (end == s || errno || v < 0 || v > INT32_MAX || n == cap)
			return -1;
		out[n++] = (int32_t)v;
		s = end;
		if (*s == ',')
			s++;
		else if (*s)
			return -1;
	}
	return n;
}

int cli_parse_num(const char *prog, const char *flag, const char *v, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double x = strtod(v, &end);
	if (end == v || *end || errno || !(x >= lo && x <= hi)) {
		fprintf(stderr, "%s: %s = \"%s\": not a number in %g..%g\n", prog, flag, v, lo, hi);
		return -1;
	}
	*out = x;
	return 0;
}

enum samp_flag { SF_TEMP, SF_TOP_K, SF_TOP_P, SF_MIN_P, SF_REP, SF_PRES, SF_FREQ, SF_SEED, SF_N };
static const char *const samp_flags[SF_N] = {
	[SF_TEMP] = "--temperature",         [SF_TOP_K] = "--top-k",
	[SF_TOP_P] = "--top-p",              [SF_MIN_P] = "--min-p",
	[SF_REP] = "--repetition-penalty",   [SF_PRES] = "--presence-penalty",
	[SF_FREQ] = "--frequency-penalty",   [SF_SEED] = "--seed",
};

int cli_samp_opt(const char *prog, const char *flag, const char *v, struct samp_params *p)
{
	int k = 0;
	double x;
	while (k < SF_N && strcmp(flag, samp_flags[k]))
		k++;
	if (k == SF_N)
		return 0;
	if (k == SF_SEED) { /* the full 64-bit range: not through a double */
		char *end;
		errno = 0;
		unsigned long long s = strtoull(v, &end, 0);
		if (end == v || *end || errno || v[0] == '-') {
			fprintf(stderr, "%s: %s = \"%s\": not an unsigned integer\n", prog, flag, v);
			return -1;
		}
		p->seed = s;
		return 1;
	}
	if (cli_parse_num(prog, flag, v, -1e9, 1e9, &x) < 0)
		return -1;
	switch ((enum samp_flag)k) {
	case SF_TEMP:
		p->temperature = (float)x;
		break;
	case SF_TOP_K:
		p->top_k = (int32_t)x;
		break;
	case SF_TOP_P:
		p->top_p = (float)x;
		break;
	case SF_MIN_P:
		p->min_p = (float)x;
		break;
	case SF_REP:
		p->repetition_penalty = (float)x;
		break;
	case SF_PRES:
		p->presence_penalty = (float)x;
		break;
	case SF_FREQ:
		p->frequency_penalty = (float)x;
		break;
	case SF_SEED:
	case SF_N:
		break;
	}
	return 1;
}
