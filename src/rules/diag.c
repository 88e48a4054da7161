/*
 * Error reporting shared by the lexer, the parser, the checker and the compiler, and the names
 * they use for types, operators and tokens in messages.
 */
#include <stdio.h>

#include "rules/internal.h"

void moat_rules_diag(struct moat_rules_diag *d, size_t pos, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	d->count++;
	if (d->fn == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	d->fn(d->arg, pos, msg);
}

const char *moat_rules_type_name(enum moat_rules_type t, int list)
{
	static const char *const one[] = {"error", "bool", "int", "string", "ip", "version"};
	static const char *const many[] = {"error",          "list of bool", "list of int",
	                                   "list of string", "list of ip",   "list of version"};

	if ((unsigned)t >= MOAT_ARRAY_LEN(one))
		return "?";
	return list ? many[t] : one[t];
}

const char *moat_rules_op_name(enum moat_rules_op op)
{
	static const char *const names[] = {"==", "!=",       "<",       "<=", ">",
	                                    ">=", "contains", "matches", "in"};

	if ((unsigned)op >= MOAT_ARRAY_LEN(names))
		return "?";
	return names[op];
}

const char *moat_rules_tok_name(enum moat_rules_tok k)
{
	switch (k) {
	case MOAT_TK_EOF:
		return "the end of the expression";
	case MOAT_TK_NAME:
		return "a name";
	case MOAT_TK_STRING:
		return "a string";
	case MOAT_TK_INT:
		return "a number";
	case MOAT_TK_IP:
		return "an IP address";
	case MOAT_TK_LPAREN:
		return "'('";
	case MOAT_TK_RPAREN:
		return "')'";
	case MOAT_TK_LBRACE:
		return "'{'";
	case MOAT_TK_RBRACE:
		return "'}'";
	case MOAT_TK_LBRACKET:
		return "'['";
	case MOAT_TK_RBRACKET:
		return "']'";
	case MOAT_TK_COMMA:
		return "','";
	case MOAT_TK_EQ:
		return "'=='";
	case MOAT_TK_NE:
		return "'!='";
	case MOAT_TK_LT:
		return "'<'";
	case MOAT_TK_LE:
		return "'<='";
	case MOAT_TK_GT:
		return "'>'";
	case MOAT_TK_GE:
		return "'>='";
	case MOAT_TK_AND:
		return "'and'";
	case MOAT_TK_OR:
		return "'or'";
	case MOAT_TK_XOR:
		return "'xor'";
	case MOAT_TK_NOT:
		return "'not'";
	case MOAT_TK_CONTAINS:
		return "'contains'";
	case MOAT_TK_MATCHES:
		return "'matches'";
	case MOAT_TK_IN:
		return "'in'";
	case MOAT_TK_TRUE:
		return "'true'";
	case MOAT_TK_FALSE:
		return "'false'";
	}
	return "?";
}
