/*
 * Tests for src/core/buf.c: appending and consuming, and rewinding a sent request head so that
 * it can be sent again on another connection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/buf.h"

static const char head[] = "GET /x HTTP/1.1\r\nHost: a\r\n\r\n";

static void filled(struct moat_buf *b)
{
	moat_buf_init(b, 256);
	assert_int_equal(moat_buf_prepare(b), MOAT_OK);
	moat_buf_append(b, head, sizeof(head) - 1);
}

static void test_consume_restarts_at_zero(void **state)
{
	struct moat_buf b;

	filled(&b);
	moat_buf_consume(&b, 4);
	assert_int_equal(moat_buf_len(&b), sizeof(head) - 1 - 4);
	assert_memory_equal(moat_buf_head(&b), head + 4, 4);
	moat_buf_consume(&b, moat_buf_len(&b));
	assert_int_equal(b.start, 0);
	assert_int_equal(b.end, 0);
	moat_buf_free(&b);
}

static void test_rewind_after_whole_send(void **state)
{
	struct moat_buf b;

	filled(&b);
	moat_buf_consume(&b, sizeof(head) - 1);
	assert_int_equal(moat_buf_rewind(&b, sizeof(head) - 1), MOAT_OK);
	assert_int_equal(moat_buf_len(&b), sizeof(head) - 1);
	assert_memory_equal(moat_buf_head(&b), head, sizeof(head) - 1);
	moat_buf_free(&b);
}

static void test_rewind_after_partial_send(void **state)
{
	struct moat_buf b;

	filled(&b);
	moat_buf_consume(&b, 10);
	assert_int_equal(moat_buf_rewind(&b, sizeof(head) - 1), MOAT_OK);
	assert_memory_equal(moat_buf_head(&b), head, sizeof(head) - 1);
	moat_buf_free(&b);
}

static void test_rewind_refused(void **state)
{
	struct moat_buf b;

	moat_buf_init(&b, 256);
	assert_int_equal(moat_buf_rewind(&b, 10), MOAT_EINVAL); /* no storage */
	filled(&b);
	moat_buf_append(&b, "more", 4); /* something appended after the head */
	assert_int_equal(moat_buf_rewind(&b, sizeof(head) - 1), MOAT_EINVAL);
	assert_int_equal(moat_buf_rewind(&b, 0), MOAT_EINVAL);
	assert_int_equal(moat_buf_rewind(&b, 257), MOAT_EINVAL);
	moat_buf_free(&b);
	moat_buf_cache_flush();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_consume_restarts_at_zero),
	        cmocka_unit_test(test_rewind_after_whole_send),
	        cmocka_unit_test(test_rewind_after_partial_send),
	        cmocka_unit_test(test_rewind_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
