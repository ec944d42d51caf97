/* Wall-clock milliseconds and RFC 3339 without the locale- and TZ-dependent libc calls. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ent/util.h"

int64_t ent_time_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ent_time_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t ent_time_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

void ent_time_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

char *ent_time_fmt(int64_t ms, char *buf, size_t len)
{
	/* Floor division by remainders: (ms - 999) overflowed for INT64_MIN ("since ever"). */
	int64_t secs = ms / 1000, milli = ms % 1000;
	if (milli < 0) {
		milli += 1000;
		secs--;
	}
	int64_t days = secs / 86400, rem = secs % 86400;
	if (rem < 0) {
		rem += 86400;
		days--;
	}
	int64_t y;
	unsigned m, d;
	ent_time_civil_from_days(days, &y, &m, &d);
	snprintf(buf, len, "%04lld-%02u-%02uT%02d:%02d:%02d.%03dZ", (long long)y, m, d,
		 (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60), (int)milli);
	return buf;
}

static int digits(const char **s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*s)[i]))
			return -1;
		v = v * 10 + ((*s)[i] - '0');
	}
	*s += n;
	*out = v;
	return 0;
}

int ent_time_parse(const char *s, int64_t *ms)
{
	int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0;
	if (!s || digits(&s, 4, &y) || *s++ != '-' || digits(&s, 2, &mo) || *s++ != '-' ||
	    digits(&s, 2, &d))
		return -ENT_EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || d > 31)
		return -ENT_EINVAL;
	int64_t off = 0;
	if (*s == 'T' || *s == 't' || *s == ' ') {
		s++;
		if (digits(&s, 2, &h) || *s++ != ':' || digits(&s, 2, &mi))
			return -ENT_EINVAL;
		if (*s == ':') {
			s++;
			if (digits(&s, 2, &sec))
				return -ENT_EINVAL;
		}
		if (*s == '.') {
			s++;
			int scale = 100, n = 0;
			while (isdigit((unsigned char)*s)) {
				frac += (*s - '0') * scale;
				scale /= 10;
				s++;
				n++;
			}
			if (n == 0)
				return -ENT_EINVAL;
		}
		if (h > 23 || mi > 59 || sec > 60)
			return -ENT_EINVAL;
		if (*s == 'Z' || *s == 'z') {
			s++;
		} else if (*s == '+' || *s == '-') {
			int sign = *s++ == '-' ? -1 : 1, oh, om;
			if (digits(&s, 2, &oh) || *s++ != ':' || digits(&s, 2, &om))
				return -ENT_EINVAL;
			off = sign * ((int64_t)oh * 3600 + om * 60);
		} else {
			return -ENT_EINVAL; /* a time without a zone is ambiguous */
		}
	}
	if (*s)
		return -ENT_EINVAL;
	int64_t secs = ent_time_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 +
		       mi * 60 + sec - off;
	*ms = secs * 1000 + frac;
	return 0;
}
