#!/bin/sh
# Machine checks of ../shared/STYLE.md: formatting, banned functions, constant-time secret
# comparison, and cppcheck on src/. Exits non-zero on the first category that fails.
set -u
cd "$(dirname "$0")/.."
status=0

files=$(find src tools tests/unit fuzz bench -name '*.[ch]' 2>/dev/null | sort)

echo "lint: clang-format"
if ! clang-format --dry-run --Werror $files; then
	echo "lint: run 'make format' to fix the formatting above" >&2
	status=1
fi

echo "lint: banned functions in src/"
# snprintf/vsnprintf are fine; plain sprintf, strcpy, atoi, strtok and rand are not.
if grep -nE '(^|[^a-z_n])(strcpy|strcat|sprintf|vsprintf|atoi|atol|strtok|rand|gets)[[:space:]]*\(' \
	$(find src -name '*.[ch]') | grep -vE '^\S+:[0-9]+:\s*(/\*|\*)'; then
	echo "lint: banned function used (see STYLE.md)" >&2
	status=1
fi

echo "lint: constant-time comparison of secrets"
# Secrets (keys, tokens, MACs, passwords) are compared with CRYPTO_memcmp, never memcmp/strcmp.
if grep -nE '(^|[^_A-Za-z])(memcmp|strcmp|strncmp)[[:space:]]*\([^;]*(secret|token|passw|hmac|mac_|ticket_name|ticket_aes|ticket_hmac)' \
	$(find src -name '*.[ch]'); then
	echo "lint: compare secrets with CRYPTO_memcmp" >&2
	status=1
fi

echo "lint: cppcheck"
if ! cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance \
	--inline-suppr --std=c11 -D_GNU_SOURCE -Isrc \
	--suppress=missingIncludeSystem --suppress=unknownMacro src; then
	status=1
fi

[ $status -eq 0 ] && echo "lint: ok"
exit $status
