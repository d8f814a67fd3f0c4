/*
 * allowlist.h — where keys may come from and where requests may go:
 * llmext.key_env_allowed and llmext.allowed_hosts patterns, and the host of
 * a base URL.
 *
 * Pure code (no PostgreSQL headers), unit-tested in test/unit.  Strings
 * are allocated with cJSON_malloc, which the server routes to palloc.
 */
#ifndef LLMEXT_ALLOWLIST_H
#define LLMEXT_ALLOWLIST_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>


/*
 * Does name match one of the comma-separated patterns of list?  Blanks
 * around a pattern are ignored; "*" in a pattern matches any run of
 * characters (none included); everything else matches itself, ignoring
 * case when ignore_case.  An empty list matches nothing.
 */
extern bool llm_pattern_list_match(const char *list, const char *name, bool ignore_case);

/*
 * Reads the host (lower case, without a trailing dot or the brackets of an
 * IPv6 address) and port (explicit, or 80 for http and 443 for https) of an
 * http:// or https:// URL.  Refuses (false) credentials, an empty host, a
 * port out of range and any character a host name cannot hold, so that
 * the host read here is the one libcurl would connect to.
 */
extern bool llm_url_host(const char *url, char *host, size_t hostlen, int *port);

/*
 * Does llmext.allowed_hosts (list) allow url?  Patterns are host patterns
 * as for llm_pattern_list_match (case ignored), each optionally followed by
 * ":port" (digits or "*"); without a port any port matches.  An IPv6
 * address is written in brackets: "[::1]:8080".  A pattern "*" alone allows
 * every URL, even one llm_url_host cannot read.
 */
extern bool llm_host_allowed(const char *list, const char *url);

#endif							/* LLMEXT_ALLOWLIST_H */
