/*
 * The rule engine's internal interfaces: the lexer, the syntax tree, the checker, the compiled
 * form (slots, nodes, constants) shared by the compiler and the evaluator, the prefilter and
 * the per-thread state. Nothing here is used outside src/rules/ and its tests. The design is
 * described in docs/internals/rules.md.
 */
#ifndef MOAT_RULES_INTERNAL_H
#define MOAT_RULES_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8

#include <hs/hs.h>
#include <pcre2.h>
#include <stdarg.h>

#include "core/config.h"
#include "rules/rules.h"

#define MOAT_RULES_NONE UINT32_MAX

/* ---- arena: stable, bump-allocated memory freed in one go -------------------------------- */

struct moat_rules_chunk;

struct moat_rules_arena {
	struct moat_rules_chunk *head;
};

/* 16-byte aligned, zeroed memory that lives until moat_rules_arena_free; NULL on ENOMEM. */
void *moat_rules_arena_alloc(struct moat_rules_arena *a, size_t n);
/* A NUL-terminated copy of p[0..n). */
char *moat_rules_arena_dup(struct moat_rules_arena *a, const char *p, size_t n);
void moat_rules_arena_free(struct moat_rules_arena *a);

/* ---- diagnostics -------------------------------------------------------------------------- */

/* Where a phase reports an error: a byte offset into the expression and a message. The
 * message is only valid during the call. */
struct moat_rules_diag {
	void (*fn)(void *arg, size_t pos, const char *msg);
	void *arg;
	unsigned count;
};

void moat_rules_diag(struct moat_rules_diag *d, size_t pos, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* ---- types -------------------------------------------------------------------------------- */

enum moat_rules_type {
	MOAT_RT_ERR = 0, /* poisoned by an earlier error: reported once, not again */
	MOAT_RT_BOOL,
	MOAT_RT_INT,
	MOAT_RT_STR,
	MOAT_RT_IP,
	MOAT_RT_VER, /* compares as a version; the string functions see its text */
};

const char *moat_rules_type_name(enum moat_rules_type t, int list);

/* ---- lexer -------------------------------------------------------------------------------- */

enum moat_rules_tok {
	MOAT_TK_EOF = 0,
	MOAT_TK_NAME, /* field, function or keyword-looking word */
	MOAT_TK_STRING, /* "..." or r"..." / r#"..."# */
	MOAT_TK_INT,
	MOAT_TK_IP, /* address or CIDR */
	MOAT_TK_LPAREN,
	MOAT_TK_RPAREN,
	MOAT_TK_LBRACE,
	MOAT_TK_RBRACE,
	MOAT_TK_LBRACKET,
	MOAT_TK_RBRACKET,
	MOAT_TK_COMMA,
	MOAT_TK_EQ,
	MOAT_TK_NE,
	MOAT_TK_LT,
	MOAT_TK_LE,
	MOAT_TK_GT,
	MOAT_TK_GE,
	MOAT_TK_AND,
	MOAT_TK_OR,
	MOAT_TK_XOR,
	MOAT_TK_NOT,
	MOAT_TK_CONTAINS,
	MOAT_TK_MATCHES,
	MOAT_TK_IN,
	MOAT_TK_TRUE,
	MOAT_TK_FALSE,
};

struct moat_rules_token {
	enum moat_rules_tok kind;
	size_t pos, end; /* byte offsets of the token in the expression */
	const char *str; /* NAME: into the source; STRING: decoded bytes in the arena */
	size_t len;
	int raw; /* STRING: no escapes, so decoded offset + body == source offset */
	size_t body; /* STRING: offset of the first byte after the opening quote */
	int64_t num; /* INT */
	struct moat_cidr ip; /* IP: a single address has prefix 128 */
};

struct moat_rules_lexer {
	const char *src;
	size_t len, pos;
	struct moat_rules_arena *arena;
	const char *err; /* set when moat_rules_lex fails */
	size_t err_pos;
	char errbuf[160];
};

void moat_rules_lex_init(struct moat_rules_lexer *lx, const char *src, size_t len,
                         struct moat_rules_arena *arena);
/* The next token; MOAT_EINVAL with lx->err and lx->err_pos on a bad token, MOAT_ENOMEM. */
int moat_rules_lex(struct moat_rules_lexer *lx, struct moat_rules_token *t) MOAT_WUR;
/* How a token kind is shown in messages: "'=='", "a string", "end of expression". */
const char *moat_rules_tok_name(enum moat_rules_tok k);

/* ---- syntax tree -------------------------------------------------------------------------- */

enum moat_rules_ast_kind {
	MOAT_AST_OR = 0,
	MOAT_AST_XOR,
	MOAT_AST_AND,
	MOAT_AST_NOT,
	MOAT_AST_CMP, /* kids[0] op kids[1] */
	MOAT_AST_FIELD, /* name, optional key */
	MOAT_AST_CALL, /* name(kids...) */
	MOAT_AST_STR,
	MOAT_AST_INT,
	MOAT_AST_IP,
	MOAT_AST_BOOL,
	MOAT_AST_SET, /* { kids... } */
};

enum moat_rules_op {
	MOAT_OP_EQ = 0,
	MOAT_OP_NE,
	MOAT_OP_LT,
	MOAT_OP_LE,
	MOAT_OP_GT,
	MOAT_OP_GE,
	MOAT_OP_CONTAINS,
	MOAT_OP_MATCHES,
	MOAT_OP_IN,
};

const char *moat_rules_op_name(enum moat_rules_op op);

struct moat_rules_ast {
	enum moat_rules_ast_kind kind;
	enum moat_rules_op op; /* CMP */
	size_t pos; /* first byte, for errors; CMP: the operator */
	struct moat_rules_ast **kids;
	unsigned nkids;
	const char *name; /* FIELD, CALL: into the source */
	size_t namelen;
	struct moat_rules_ast *key; /* FIELD["key"]: a STR node, or NULL */
	const char *str; /* STR: decoded bytes */
	size_t len;
	int raw; /* STR: see moat_rules_token.raw */
	size_t body; /* STR: offset of the first byte of the string's body */
	int64_t num; /* INT, BOOL */
	struct moat_cidr ip;
	/* set by the checker */
	enum moat_rules_type type;
	int list; /* the value has one element per header / argument / tag */
	unsigned field, func; /* resolved field or function */
	const struct moat_rules_ast *root; /* the list field this (list) value maps, or NULL */
	/* set by the compiler */
	uint32_t slot;
};

/* Parses an expression into a tree allocated in `a`. NULL after reporting one error (or on
 * ENOMEM, reported as an error too). Nesting deeper than max_depth is an error. */
struct moat_rules_ast *moat_rules_parse(const char *src, size_t len, unsigned max_depth,
                                        struct moat_rules_arena *a, struct moat_rules_diag *d);

/* ---- fields and functions ----------------------------------------------------------------- */

enum moat_rules_field_id {
	MOAT_F_IP_SRC = 0,
	MOAT_F_TLS_VERSION,
	MOAT_F_TLS_SNI,
	MOAT_F_TLS_VERIFIED,
	MOAT_F_TLS_FINGERPRINT,
	MOAT_F_TLS_SERIAL,
	MOAT_F_TENANT,
	MOAT_F_DEVICE_ID,
	MOAT_F_DEVICE_MODEL,
	MOAT_F_DEVICE_FIRMWARE,
	MOAT_F_DEVICE_TAGS,
	MOAT_F_METHOD,
	MOAT_F_URI,
	MOAT_F_PATH,
	MOAT_F_PATH_RAW,
	MOAT_F_QUERY,
	MOAT_F_ARGS,
	MOAT_F_ARGS_NAMES,
	MOAT_F_ARGS_VALUES,
	MOAT_F_HEADERS,
	MOAT_F_HEADER_NAMES,
	MOAT_F_HEADER_VALUES,
	MOAT_F_USER_AGENT,
	MOAT_F_HOST,
	MOAT_F_BODY,
	MOAT_F_BODY_SIZE,
	MOAT_F_COUNT
};

struct moat_rules_field {
	const char *name;
	enum moat_rules_field_id id;
	enum moat_rules_type type;
	unsigned list : 1; /* multi-valued */
	unsigned map : 1; /* needs ["key"] */
	unsigned http : 1; /* only on HTTP listeners */
	unsigned body : 1; /* makes the ruleset hold the body back */
};

extern const struct moat_rules_field moat_rules_fields[MOAT_F_COUNT];

const struct moat_rules_field *moat_rules_field_find(const char *name, size_t len);

enum moat_rules_func_id {
	MOAT_FN_LOWER = 0,
	MOAT_FN_UPPER,
	MOAT_FN_LEN,
	MOAT_FN_COUNT,
	MOAT_FN_URL_DECODE,
	MOAT_FN_STARTS_WITH,
	MOAT_FN_ENDS_WITH,
	MOAT_FN_ANY,
	MOAT_FN_ALL,
	MOAT_FN_NUM
};

/* Resolves names and types, checks the scope and the literals. Returns the number of errors
 * reported (0: the tree is ready for the compiler). */
unsigned moat_rules_check(struct moat_rules_ast *root, enum moat_rules_scope scope,
                          const struct moat_rules_limits *lim, struct moat_rules_diag *d);

/* ---- versions ----------------------------------------------------------------------------- */

#define MOAT_RULES_VER_PARTS 8
#define MOAT_RULES_VER_MAXLEN 128

struct moat_rules_version {
	uint64_t num[MOAT_RULES_VER_PARTS]; /* missing trailing parts are 0 */
	unsigned nnum;
	const char *pre; /* pre-release identifiers (after '-'), into the parsed text */
	size_t prelen; /* 0: a release */
};

/* Parses "1.2.3", "v2.10.0-rc.1+build.5". MOAT_EINVAL if malformed (docs/rules.md). */
int moat_rules_version_parse(const char *s, size_t len, struct moat_rules_version *v) MOAT_WUR;
int moat_rules_version_compare(const struct moat_rules_version *a,
                               const struct moat_rules_version *b);

/* ---- decoding ----------------------------------------------------------------------------- */

/* Percent-decodes src into out (at least len bytes); '+' becomes a space if plus_space. An
 * invalid escape is kept as it is. Returns the decoded length. */
size_t moat_rules_url_decode(const char *src, size_t len, char *out, int plus_space);

/* ---- the compiled form -------------------------------------------------------------------- */

/* A value slot: a field (with its key) or a function of another slot. Identical values in
 * different rules share one slot, so each is computed at most once per evaluation. */
enum moat_rules_slot_op {
	MOAT_SLOT_FIELD = 0,
	MOAT_SLOT_LOWER,
	MOAT_SLOT_UPPER,
	MOAT_SLOT_URLDEC,
	MOAT_SLOT_LEN,
	MOAT_SLOT_COUNT,
};

struct moat_rules_slot {
	uint8_t op; /* moat_rules_slot_op */
	uint8_t type; /* moat_rules_type of each element */
	uint8_t list;
	uint8_t field; /* moat_rules_field_id, FIELD */
	uint32_t arg; /* the input slot of a function */
	uint32_t root; /* list slots: the FIELD slot whose elements this one maps 1:1 */
	const char *key; /* FIELD of a map: lowered for headers */
	size_t keylen;
	uint64_t keybloom; /* headers: the key's two bits in the per-request name filter */
	int32_t db; /* prefilter database index, or -1 */
	uint32_t npat; /* patterns in that database */
	uint32_t words; /* 64-bit words of one row of the match bitset */
};

enum moat_rules_node_op {
	MOAT_N_TRUE = 0,
	MOAT_N_FALSE,
	MOAT_N_AND, /* kids[a .. a+b) */
	MOAT_N_OR,
	MOAT_N_XOR,
	MOAT_N_NOT, /* a: the child */
	MOAT_N_ANY, /* a: the child, slot: the list it iterates */
	MOAT_N_ALL,
	/* leaves: slot is the value; a is a constant index where one is needed */
	MOAT_N_BOOL, /* the bool slot is true */
	MOAT_N_CMP_INT, /* cmp against num (bools are ints) */
	MOAT_N_CMP_STR, /* cmp against strs[a] */
	MOAT_N_CMP_VER, /* cmp against vers[a] */
	MOAT_N_IN_IP, /* in the ranges sets[a]; cmp NE negates */
	MOAT_N_IN_STR, /* sets[a] */
	MOAT_N_IN_INT, /* sets[a] */
	MOAT_N_IN_VER, /* sets[a] */
	MOAT_N_CONTAINS, /* strs[a] */
	MOAT_N_MATCHES, /* regexes[a] */
	MOAT_N_STARTS, /* strs[a] */
	MOAT_N_ENDS, /* strs[a] */
};

struct moat_rules_node {
	uint8_t op; /* moat_rules_node_op */
	uint8_t cmp; /* moat_rules_op for CMP_*; EQ or NE for IN_IP */
	uint8_t exact; /* the prefilter bit alone decides (a literal), no confirmation needed */
	uint32_t slot;
	uint32_t a, b;
	uint32_t pslot; /* the slot whose prefilter database holds this pattern, or NONE */
	uint32_t pat; /* its bit in that database, or NONE (evaluated directly) */
	int64_t num;
};

enum moat_rules_set_kind { MOAT_SET_STR = 0, MOAT_SET_INT, MOAT_SET_VER, MOAT_SET_IP };

struct moat_rules_range {
	unsigned char lo[16], hi[16]; /* inclusive, IPv6 or IPv4-mapped */
};

/* A sorted, duplicate-free constant set: binary search at run time. */
struct moat_rules_set {
	enum moat_rules_set_kind kind;
	uint32_t n;
	union {
		struct moat_slice *str;
		int64_t *num;
		struct moat_rules_version *ver;
		struct moat_rules_range *ip; /* disjoint, merged */
	} v;
};

/* A rule's guard: a prefilter bit without which the rule cannot match. */
struct moat_rules_guard {
	uint32_t slot, pat;
};

/* What the evaluation loop needs of a rule, packed away from the rule's texts. */
struct moat_rules_exec {
	uint32_t root;
	uint8_t action, mode;
};

/* A value that guards rules: the rules guarded by each of its pattern bits, as a compressed
 * row list: rules[off[bit] .. off[bit + 1]) in guard_rules, off being at pat_off + first. */
struct moat_rules_gslot {
	uint32_t slot;
	uint32_t first; /* index into pat_off of bit 0 */
	uint32_t npat;
};

struct moat_ruleset {
	struct moat_rule *rules;
	size_t nrules;
	uint32_t *root; /* per rule: its root node */
	struct moat_rules_guard *guard;
	struct moat_rules_exec *exec;
	uint64_t *always; /* enabled rules without a guard: always evaluated */
	uint64_t *enabled; /* every enabled rule */
	uint32_t rule_words;
	struct moat_rules_gslot *gslots;
	uint32_t ngslots;
	uint32_t *pat_off;
	uint32_t *guard_rules;
	struct moat_rules_node *nodes;
	uint32_t nnodes;
	uint32_t *kids;
	uint32_t nkids;
	struct moat_rules_slot *slots;
	uint32_t nslots;
	struct moat_slice *strs;
	uint32_t nstrs;
	struct moat_rules_version *vers;
	uint32_t nvers;
	struct moat_rules_set *sets;
	uint32_t nsets;
	pcre2_code **regexes;
	uint32_t nregexes;
	hs_database_t **dbs;
	uint32_t ndbs;
	pcre2_general_context *gctx;
	pcre2_compile_context *cctx;
	pcre2_match_context *mctx;
	struct moat_rules_limits lim;
	int needs_body;
	size_t scratch_fixed; /* bytes of scratch before the value arena */
	size_t scratch_vals; /* offset of the value table in the scratch */
	size_t scratch_cand; /* offset of the candidate bitmap */
	atomic_uint_fast64_t scratch_overflows, regex_limit_hits, prefilter_unavailable;
	struct moat_rules_arena arena; /* rule texts and constants */
};

/* ---- regular expressions ------------------------------------------------------------------ */

/* Compiles (and JIT-compiles when available) a pattern with the ruleset's contexts. NULL with
 * errbuf and *erroff set on a bad pattern. */
pcre2_code *moat_rules_regex_compile(struct moat_ruleset *rs, const char *p, size_t len,
                                     char *errbuf, size_t cap, size_t *erroff);

/* 1 on a match, 0 on no match. A match or depth limit hit, a JIT stack overflow or a missing
 * match block count as no match and set *limited. */
int moat_rules_regex_match(const struct moat_ruleset *rs, const pcre2_code *re,
                           pcre2_match_data *md, const char *s, size_t len, int *limited);

/* ---- prefilter (Hyperscan) ---------------------------------------------------------------- */

enum moat_rules_pat_kind {
	MOAT_PAT_CONTAINS = 0, /* the literal anywhere: exact */
	MOAT_PAT_EXACT, /* the whole value is the literal: exact */
	MOAT_PAT_PREFIX, /* exact */
	MOAT_PAT_SUFFIX, /* exact */
	MOAT_PAT_SET, /* the whole value is one of set[0..nset): exact */
	MOAT_PAT_REGEX, /* prefilter only: a hit is confirmed with PCRE2 */
};

struct moat_rules_pattern {
	enum moat_rules_pat_kind kind;
	int caseless; /* literals compared ASCII case-insensitively (lower()/upper()) */
	const char *p; /* literal bytes or regex source */
	size_t len;
	const struct moat_slice *set; /* MOAT_PAT_SET */
	uint32_t nset;
	int in_db; /* set by moat_rules_prefilter_build: 0 means "evaluate without prefilter" */
};

/* Builds one Hyperscan database from the patterns (pattern i reports id i). Patterns that
 * Hyperscan cannot compile, even as a prefilter, are left out (in_db = 0). Returns NULL if
 * no pattern could be compiled or Hyperscan is unusable on this CPU. Grows the per-process
 * scratch prototype (see moat_rules_thread_hs). */
hs_database_t *moat_rules_prefilter_build(struct moat_rules_pattern *pats, unsigned n);

/* Scans one value and sets the bit of every pattern found in row[]. 0, or -1 on a Hyperscan
 * error (the caller then evaluates without the prefilter). */
int moat_rules_prefilter_scan(const hs_database_t *db, hs_scratch_t *scratch, const char *p,
                              size_t len, uint64_t *row);

/* ---- per-thread state ----------------------------------------------------------------------- */

/* The calling thread's Hyperscan scratch, usable with every database compiled so far; NULL
 * if it cannot be allocated (the caller evaluates without the prefilter). Allocated on a
 * thread's first use and again only after a newly compiled ruleset needed a larger one. */
hs_scratch_t *moat_rules_thread_hs(void);
/* The calling thread's PCRE2 match block (one pair of offsets); NULL if out of memory. */
pcre2_match_data *moat_rules_thread_md(void);
/* Grows the process-wide prototype scratch for a new database. 0 or -1. */
int moat_rules_thread_grow(const hs_database_t *db);

/* ---- compiler ----------------------------------------------------------------------------- */

struct moat_rules_builder;

/* A compilation: one ruleset being built from rules and expressions. */
struct moat_rules_builder *moat_rules_builder_new(enum moat_rules_scope scope,
                                                  const struct moat_rules_limits *lim);
/* Parses, checks and compiles one expression; errors go to d (positions are offsets into
 * expr). On success *root is its root node. */
int moat_rules_builder_expr(struct moat_rules_builder *b, const char *expr, size_t len,
                            struct moat_rules_diag *d, uint32_t *root) MOAT_WUR;
/* Adds a rule (its strings are copied) whose expression compiled to root. */
int moat_rules_builder_rule(struct moat_rules_builder *b, const struct moat_rule *r,
                            uint32_t root) MOAT_WUR;
/* The ruleset will have no prefilter: same results, built in a fraction of the time. */
void moat_rules_builder_no_prefilter(struct moat_rules_builder *b);
/* Builds the prefilter and the final ruleset; frees the builder in every case. */
int moat_rules_builder_finish(struct moat_rules_builder *b, struct moat_ruleset **out) MOAT_WUR;
void moat_rules_builder_free(struct moat_rules_builder *b);

/* Defaults for every zero field of `in` (or all of them if in is NULL). */
void moat_rules_limits_fill(struct moat_rules_limits *out, const struct moat_rules_limits *in);

/* ---- evaluator ---------------------------------------------------------------------------- */

/* The value of one slot during one evaluation, in the scratch. Scalars have n == 1. */
struct moat_rules_val {
	uint32_t n; /* elements (0 for an empty list) */
	uint8_t missing; /* a missing value: every comparison with it is false */
	uint8_t scan; /* prefilter: 0 not yet, 1 bits valid, 2 not available */
	const struct moat_slice *s; /* STR; VER: the text */
	const int64_t *num; /* INT, BOOL */
	const unsigned char *ip; /* IP: 16 bytes per element */
	const struct moat_rules_version *ver; /* VER: NULL if malformed (then missing for
	                                         version comparisons) */
	uint64_t *bits; /* prefilter rows: the union, then one per element of a list */
	struct moat_slice one;
	int64_t onenum;
};

/* One evaluation: lives on the evaluating thread's stack, points into the scratch. */
struct moat_rules_ctx {
	const struct moat_ruleset *rs;
	const struct moat_rules_input *in;
	uint64_t *done; /* one bit per slot: computed in this evaluation */
	struct moat_rules_val *vals;
	char *mem; /* the value arena */
	size_t used, cap;
	hs_scratch_t *hs;
	pcre2_match_data *md;
	unsigned flags;
	uint32_t iter_root, iter_elem; /* inside any()/all(): the list and the element */
	unsigned overflows, limited;
	/* a Bloom filter of the request's lowered header names (0: not computed yet): most
	 * header keys that rules ask for are absent, and this answers them without a scan */
	uint64_t hdr_bloom;
	/* the query string split and decoded, shared by every args slot */
	int args_state; /* 0 not yet, 1 done, 2 missing */
	uint32_t nargs;
	struct moat_slice *arg_names, *arg_values;
};

/* The two bits of a lowered header name in a 64-bit Bloom filter; never 0. */
uint64_t moat_rules_name_bloom(const char *name, size_t len, int lower);

/* Bump allocation in the value arena (8-byte aligned); NULL, counted, when it is full. */
void *moat_rules_ctx_alloc(struct moat_rules_ctx *c, size_t n);

/* The value of a slot, computed on first use; NULL if it is missing. */
struct moat_rules_val *moat_rules_value_compute(struct moat_rules_ctx *c, uint32_t slot);

static inline struct moat_rules_val *moat_rules_value(struct moat_rules_ctx *c, uint32_t slot)
{
	if (c->done[slot / 64] & (1ull << (slot % 64)))
		return c->vals[slot].missing ? NULL : &c->vals[slot];
	return moat_rules_value_compute(c, slot);
}

#define MOAT_RULES_EVAL_NO_PREFILTER 0x1 /* tests: evaluate every pattern directly */

void moat_rules_eval_flags(const struct moat_ruleset *rs, const struct moat_rules_input *in,
                           struct moat_rules_scratch *scratch, moat_rules_hit_fn hit, void *arg,
                           struct moat_rules_verdict *v, unsigned flags);

/* Evaluates one rule's expression alone (tests): 1 or 0. */
int moat_rules_eval_rule(const struct moat_ruleset *rs, size_t i, const struct moat_rules_input *in,
                         struct moat_rules_scratch *scratch, unsigned flags);

#endif
