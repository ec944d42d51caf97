/*
 * Usage reset periods. Fixed-length periods (DAILY, WEEKLY) step from the anchor in
 * milliseconds; calendar periods step whole UTC months from the anchor's date and time of day,
 * clamping the day to the month's length. The civil-date arithmetic is done here, without
 * gmtime/timegm, so the answer never depends on the process's TZ or locale.
 *
 * Values that can leave the int64 range (a period start or end near ENT_T_MIN/ENT_T_MAX, a
 * distance between two instants) are __int128, so that any int64 instant gives a well-defined,
 * saturated answer instead of signed overflow. Divisions stay in int64 wherever the operands
 * are int64: a 128-bit division is a library call (__divti3) costing several times as much,
 * and this runs for every check of a metered feature with a calendar reset.
 */
#include "ent/model.h"

#define DAY_MS	(INT64_C(86400000))
#define WEEK_MS (7 * DAY_MS)

typedef __int128 i128;

static int64_t sat64(i128 v)
{
	if (v > INT64_MAX)
		return INT64_MAX;
	if (v < INT64_MIN)
		return INT64_MIN;
	return (int64_t)v;
}

/* Division rounding toward negative infinity (C's rounds toward zero); b > 0. */
static int64_t floor_div64(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && a < 0) ? q - 1 : q;
}

static i128 floor_div(i128 a, i128 b)
{
	int64_t a64 = (int64_t)a;
	if (a64 == a)
		return floor_div64(a64, (int64_t)b);
	i128 q = a / b;
	return (a % b != 0 && a < 0) ? q - 1 : q;
}

static bool is_leap(int64_t y)
{
	return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

static unsigned days_in_month(int64_t y, unsigned m)
{
	static const unsigned dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* A UTC instant split into a month index (year * 12 + month - 1), day and time of day. */
struct civil {
	int64_t month;
	unsigned day;
	int64_t tod;
};

static struct civil civil_of(int64_t ms)
{
	int64_t days = floor_div64(ms, DAY_MS);
	int64_t y;
	unsigned m, d;
	ent_time_civil_from_days(days, &y, &m, &d);
	return (struct civil){y * 12 + (int64_t)m - 1, d,
			      (int64_t)((i128)ms - (i128)days * DAY_MS)};
}

/*
 * Start of the period \a k months after the anchor \a a. The day is clamped from the anchor's
 * own day every time, so Jan 31 gives Feb 28/29 and then Mar 31 again, not Mar 28.
 */
static i128 month_start(const struct civil *a, int64_t k)
{
	int64_t mi = a->month + k;
	int64_t y = floor_div64(mi, 12);
	unsigned m = (unsigned)(mi - y * 12) + 1;
	unsigned dim = days_in_month(y, m);
	unsigned d = a->day < dim ? a->day : dim;
	return (i128)ent_time_days_from_civil(y, m, d) * DAY_MS + a->tod;
}

void ent_model_period(uint8_t reset, int64_t anchor, int64_t t, int64_t *start, int64_t *end)
{
	int64_t step;
	switch (reset) {
	case ENT_RESET_DAILY:
	case ENT_RESET_WEEKLY: {
		i128 len = reset == ENT_RESET_DAILY ? DAY_MS : WEEK_MS;
		i128 k = floor_div((i128)t - anchor, len);
		i128 s = (i128)anchor + k * len;
		*start = sat64(s);
		*end = sat64(s + len);
		return;
	}
	case ENT_RESET_MONTHLY:
		step = 1;
		break;
	case ENT_RESET_QUARTERLY:
		step = 3;
		break;
	case ENT_RESET_HALF_YEARLY:
		step = 6;
		break;
	case ENT_RESET_ANNUAL:
		step = 12;
		break;
	default: /* NEVER, UNSPECIFIED and anything unknown: one period for ever, so two
		    never-resetting sources with different anchors count in the same period */
		*start = ENT_T_MIN;
		*end = 0;
		return;
	}

	/*
	 * Guess k from the month distance, then correct it: the guess is off by at most one
	 * period because the clamped day and the time of day only move a start within its month.
	 */
	struct civil a = civil_of(anchor), c = civil_of(t);
	int64_t k = floor_div64(c.month - a.month, step);
	i128 s = month_start(&a, k * step);
	while (s > t)
		s = month_start(&a, --k * step);
	i128 e = month_start(&a, (k + 1) * step);
	while (e <= t) {
		s = e;
		e = month_start(&a, (++k + 1) * step);
	}
	*start = sat64(s);
	*end = sat64(e);
}
