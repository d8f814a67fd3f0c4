/*
 * allowlist.c — the superuser's lists of where keys may come from and where
 * requests may go: comma-separated name patterns (llmext.key_env_allowed)
 * and host patterns (llmext.allowed_hosts), and the host of a base URL.
 *
 * Pure code (see allowlist.h).
 */
#include "core/allowlist.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static bool
same_char(char a, char b, bool ignore_case)
{
	return ignore_case ? tolower((unsigned char) a) == tolower((unsigned char) b) : a == b;
}

/* Does s[0..slen) match pattern[0..plen), "*" matching any run? */
static bool
glob_match(const char *pattern, size_t plen, const char *s, size_t slen, bool ignore_case)
{
	size_t		pi = 0;
	size_t		si = 0;
	size_t		star = SIZE_MAX;
	size_t		mark = 0;

	/* the classic greedy matcher: linear backtracking to the last star */
	while (si < slen)
	{
		if (pi < plen && pattern[pi] == '*')
		{
			star = pi++;
			mark = si;
		}
		else if (pi < plen && same_char(pattern[pi], s[si], ignore_case))
		{
			pi++;
			si++;
		}
		else if (star != SIZE_MAX)
		{
			pi = star + 1;
			si = ++mark;
		}
		else
			return false;
	}
	while (pi < plen && pattern[pi] == '*')
		pi++;
	return pi == plen;
}

/*
 * The next pattern of a comma-separated list, blanks trimmed; false at the
 * end.  Empty patterns are skipped.
 */
static bool
next_pattern(const char **cursor, const char **start, size_t *len)
{
	const char *p = *cursor;

	while (*p != '\0')
	{
		const char *end;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		*start = p;
		while (*p != '\0' && *p != ',')
			p++;
		end = p;
		while (end > *start && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		if (end > *start)
		{
			*len = end - *start;
			*cursor = p;
			return true;
		}
	}
	*cursor = p;
	return false;
}

bool
llm_pattern_list_match(const char *list, const char *name, bool ignore_case)
{
	const char *start;
	size_t		len;

	if (list == NULL || name == NULL)
		return false;
	while (next_pattern(&list, &start, &len))
		if (glob_match(start, len, name, strlen(name), ignore_case))
			return true;
	return false;
}

bool
llm_url_host(const char *url, char *host, size_t hostlen, int *port)
{
	const char *p;
	size_t		n = 0;
	int			default_port;

	if (url == NULL || hostlen == 0)
		return false;
	if (strncasecmp(url, "http://", 7) == 0)
	{
		p = url + 7;
		default_port = 80;
	}
	else if (strncasecmp(url, "https://", 8) == 0)
	{
		p = url + 8;
		default_port = 443;
	}
	else
		return false;

	if (*p == '[')
	{
		/* IPv6 address: hexadecimal digits, colons and dots (no zone id) */
		for (p++; *p != ']'; p++)
		{
			if (!isxdigit((unsigned char) *p) && *p != ':' && *p != '.')
				return false;
			if (n + 1 >= hostlen)
				return false;
			host[n++] = (char) tolower((unsigned char) *p);
		}
		p++;
	}
	else
	{
		for (; *p != '\0' && *p != ':' && *p != '/'; p++)
		{
			/* "@", "\", "?", "#", "%"...: libcurl might see another host */
			if (!isalnum((unsigned char) *p) && *p != '-' && *p != '.' && *p != '_')
				return false;
			if (n + 1 >= hostlen)
				return false;
			host[n++] = (char) tolower((unsigned char) *p);
		}
		/* "example.com." is "example.com" */
		if (n > 0 && host[n - 1] == '.')
			n--;
	}
	if (n == 0)
		return false;
	host[n] = '\0';

	*port = default_port;
	if (*p == ':')
	{
		long		value = 0;

		p++;
		if (!isdigit((unsigned char) *p))
			return false;
		for (; isdigit((unsigned char) *p); p++)
		{
			value = value * 10 + (*p - '0');
			if (value > 65535)
				return false;
		}
		if (value == 0)
			return false;
		*port = (int) value;
	}
	return *p == '\0' || *p == '/';
}

/* Does one allowed_hosts pattern (host pattern, optional ":port") match? */
static bool
host_pattern_match(const char *pattern, size_t len, const char *host, int port)
{
	const char *host_pattern = pattern;
	size_t		host_len = len;
	const char *port_pattern = NULL;
	size_t		port_len = 0;

	if (pattern[0] == '[')
	{
		const char *close = memchr(pattern, ']', len);

		if (close == NULL)
			return false;
		host_pattern = pattern + 1;
		host_len = close - host_pattern;
		if ((size_t) (close + 1 - pattern) < len)
		{
			if (close[1] != ':')
				return false;
			port_pattern = close + 2;
			port_len = len - (port_pattern - pattern);
		}
	}
	else
	{
		const char *colon = NULL;

		for (size_t i = 0; i < len; i++)
			if (pattern[i] == ':')
				colon = pattern + i;
		if (colon != NULL)
		{
			host_len = colon - pattern;
			port_pattern = colon + 1;
			port_len = len - host_len - 1;
		}
	}
	if (!glob_match(host_pattern, host_len, host, strlen(host), true))
		return false;
	if (port_pattern == NULL || (port_len == 1 && port_pattern[0] == '*'))
		return true;
	{
		char		digits[8];

		snprintf(digits, sizeof(digits), "%d", port);
		return port_len == strlen(digits) && memcmp(port_pattern, digits, port_len) == 0;
	}
}

bool
llm_host_allowed(const char *list, const char *url)
{
	const char *cursor = list;
	const char *start;
	size_t		len;
	char		host[256];
	int			port;

	if (list == NULL)
		return false;
	while (next_pattern(&cursor, &start, &len))
		if (len == 1 && start[0] == '*')
			return true;
	if (!llm_url_host(url, host, sizeof(host), &port))
		return false;
	cursor = list;
	while (next_pattern(&cursor, &start, &len))
		if (host_pattern_match(start, len, host, port))
			return true;
	return false;
}
