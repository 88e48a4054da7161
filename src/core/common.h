/*
 * Definitions shared by every module: result codes and byte slices.
 */
#ifndef MOAT_CORE_COMMON_H
#define MOAT_CORE_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Result codes: 0 is success, failures are negative. */
#define MOAT_OK 0
#define MOAT_EAGAIN (-1) /* not an error: more input or buffer space needed */
#define MOAT_EINVAL (-2) /* malformed input; a reason is given through `err` */
#define MOAT_ENOMEM (-3) /* allocation failed or a memory cap was reached */
#define MOAT_ETOOBIG (-4) /* a configured limit was exceeded */
#define MOAT_EIO (-5) /* system or TLS I/O error */
#define MOAT_ECLOSED (-6) /* the peer closed the connection */
#define MOAT_ETIMEDOUT (-7)
#define MOAT_ENOTFOUND (-8)

#define MOAT_WUR __attribute__((warn_unused_result))
#define MOAT_UNUSED __attribute__((unused))
#define MOAT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Protocol bytes: a pointer and a length, never assumed NUL-terminated. */
struct moat_slice {
	const char *p;
	size_t len;
};

#define MOAT_SLICE_LIT(s) ((struct moat_slice){(s), sizeof(s) - 1})

/* Case-insensitive comparison of a slice with a NUL-terminated ASCII string. */
int moat_slice_eq_ci(struct moat_slice a, const char *s);

#endif
