/*
 * Requests to the admin API with libcurl, and the one place where failures become messages
 * and exit codes.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "moatctl.h"

/* No API answer comes near this; a bigger one is not the API talking. */
#define MAX_ANSWER (64L * 1024 * 1024)

/* One handle for the whole run, so that pages of a list (--all) reuse the connection. */
static CURL *curl;

int ctl_http_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -1;
	curl = curl_easy_init();
	return curl != NULL ? 0 : -1;
}

void ctl_http_done(void)
{
	if (curl != NULL)
		curl_easy_cleanup(curl);
	curl = NULL;
	curl_global_cleanup();
}

/* ---- paths ------------------------------------------------------------------------------- */

static char *escape(const char *s)
{
	char *e = curl_easy_escape(curl, s, 0);
	char *copy;

	if (e == NULL) {
		fputs("moatctl: out of memory\n", stderr);
		exit(CTL_EXIT_API);
	}
	copy = ctl_strdup(e);
	curl_free(e);
	return copy;
}

char *ctl_path(const char *tmpl, ...)
{
	va_list ap;
	size_t cap = strlen(tmpl) + 1, len = 0;
	char *out = ctl_malloc(cap);

	va_start(ap, tmpl);
	for (const char *p = tmpl; *p;) {
		const char *piece = p;
		size_t n = 1;
		char *escaped = NULL;

		if (p[0] == '{' && p[1] == '}') {
			escaped = escape(va_arg(ap, const char *));
			piece = escaped;
			n = strlen(escaped);
			p += 2;
		} else {
			p++;
		}
		if (len + n + 1 > cap) {
			cap = (len + n + 1) * 2;
			out = ctl_realloc(out, cap);
		}
		memcpy(out + len, piece, n);
		len += n;
		ctl_free(escaped);
	}
	va_end(ap);
	out[len] = '\0';
	return out;
}

void ctl_query(char **path, const char *key, const char *value)
{
	char *v = escape(value);
	char *next = ctl_printf("%s%c%s=%s", *path, strchr(*path, '?') ? '&' : '?', key, v);

	ctl_free(v);
	ctl_free(*path);
	*path = next;
}

/* ---- the transfer ---------------------------------------------------------------------------- */

struct answer {
	char *data;
	size_t len, cap;
	long retry_after; /* seconds, from a 429's Retry-After; -1 if none */
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct answer *ans = arg;
	size_t n = size * nmemb;

	if (ans->len + n > (size_t)MAX_ANSWER)
		return 0; /* libcurl stops the transfer with CURLE_WRITE_ERROR */
	if (ans->len + n + 1 > ans->cap) {
		ans->cap = (ans->len + n + 1) * 2;
		ans->data = ctl_realloc(ans->data, ans->cap);
	}
	memcpy(ans->data + ans->len, ptr, n);
	ans->len += n;
	ans->data[ans->len] = '\0';
	return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct answer *ans = arg;
	size_t n = size * nmemb;
	static const char name[] = "retry-after:";

	if (n > sizeof(name) - 1 && strncasecmp(ptr, name, sizeof(name) - 1) == 0) {
		char buf[32];
		size_t vlen = n - (sizeof(name) - 1);

		if (vlen >= sizeof(buf))
			vlen = sizeof(buf) - 1;
		memcpy(buf, ptr + sizeof(name) - 1, vlen);
		buf[vlen] = '\0';
		ans->retry_after = strtol(buf, NULL, 10);
	}
	return n;
}

static void add_header(struct curl_slist **list, const char *header)
{
	struct curl_slist *next = curl_slist_append(*list, header);

	if (next == NULL) {
		fputs("moatctl: out of memory\n", stderr);
		exit(CTL_EXIT_API);
	}
	*list = next;
}

static struct curl_slist *headers_for(const struct ctl *ctl, int has_body)
{
	struct curl_slist *h = NULL;
	char *auth;

	add_header(&h, "Accept: application/json");
	/* The API refuses bodies of any other type, including libcurl's default form type on
	 * a POST without a body. */
	if (has_body)
		add_header(&h, "Content-Type: application/json");
	/* No "Expect: 100-continue" for larger bodies (PEM files): one round trip less. */
	add_header(&h, "Expect:");
	if (ctl->token != NULL) {
		auth = ctl_printf("Authorization: Bearer %s", ctl->token);
		add_header(&h, auth);
		ctl_free(auth);
	}
	return h;
}

/* POST and PATCH always carry a body (maybe empty, with Content-Length: 0). */
static int sends_body(const char *method, const char *body)
{
	return body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PATCH") == 0;
}

static void set_request(const struct ctl *ctl, const char *method, const char *url,
                        const char *body, struct curl_slist *headers, struct answer *ans,
                        char *errbuf)
{
	curl_easy_reset(curl);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, ctl->timeout_ms);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "moatctl/" MOATCTL_VERSION);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, ans);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, ans);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	/* The admin address is loopback by default: a proxy from the environment would only
	 * get in the way. */
	curl_easy_setopt(curl, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
	if (ctl->cacert != NULL)
		curl_easy_setopt(curl, CURLOPT_CAINFO, ctl->cacert);
	if (strcmp(method, "GET") == 0)
		return;
	if (sends_body(method, body)) {
		/* Always a Content-Length, also 0: the API answers 411 without one. */
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
		                 (curl_off_t)(body ? strlen(body) : 0));
	}
	if (strcmp(method, "POST") != 0)
		curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
}

/* ---- errors -------------------------------------------------------------------------------- */

int ctl_exit_for_status(long status)
{
	if (status >= 200 && status < 300)
		return CTL_EXIT_OK;
	if (status == 404)
		return CTL_EXIT_NOT_FOUND;
	if (status == 409)
		return CTL_EXIT_CONFLICT;
	if (status == 401 || status == 403)
		return CTL_EXIT_AUTH;
	if (status == 400 || status == 422)
		return CTL_EXIT_INVALID;
	if (status >= 500)
		return CTL_EXIT_SERVER;
	return CTL_EXIT_API;
}

static const char *reason(long status)
{
	switch (status) {
	case 400:
		return "bad request";
	case 401:
		return "unauthorized";
	case 403:
		return "forbidden";
	case 404:
		return "not found";
	case 405:
		return "method not allowed";
	case 409:
		return "conflict";
	case 411:
		return "length required";
	case 413:
		return "payload too large";
	case 415:
		return "unsupported media type";
	case 422:
		return "unprocessable";
	case 429:
		return "too many requests";
	case 500:
		return "internal server error";
	case 502:
		return "bad gateway";
	case 503:
		return "service unavailable";
	default:
		return "unexpected status";
	}
}

/* The expression line and the caret line under it, indented. Tabs stay (the server puts
 * them in the caret line where the expression has them, to keep the caret in place); other
 * control characters do not reach the terminal. */
static void print_caret(const char *caret)
{
	fputs("  ", stderr);
	for (const char *p = caret; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '\n')
			fputs(p[1] ? "\n  " : "", stderr);
		else if ((c < 0x20 && c != '\t') || c == 0x7f)
			fputc('?', stderr);
		else
			fputc(c, stderr);
	}
	fputc('\n', stderr);
}

/* The caret lines of a rule that does not compile, indented under the error line. */
static void print_rule_errors(const json_t *errors)
{
	size_t i;
	const json_t *e;

	json_array_foreach (errors, i, e) {
		const char *caret = ctl_str(e, "caret");

		/* The detail already gave the first error's message. */
		if (i > 0) {
			char *msg = ctl_clean(ctl_str(e, "message"));

			fprintf(stderr, "  %" JSON_INTEGER_FORMAT ":%" JSON_INTEGER_FORMAT ": %s\n",
			        json_integer_value(json_object_get(e, "line")),
			        json_integer_value(json_object_get(e, "col")), msg);
			ctl_free(msg);
		}
		if (caret != NULL)
			print_caret(caret);
	}
}

static void print_hint(const struct ctl *ctl, long status, const struct answer *ans)
{
	if (status == 401 && ctl->token == NULL)
		fputs("moatctl: hint: no token was given: use --token, MOAT_TOKEN or token_file in "
		      "~/.config/moat/config\n",
		      stderr);
	else if (status == 401)
		fprintf(stderr,
		        "moatctl: hint: check --token / MOAT_TOKEN (this one came from %s)\n",
		        ctl->token_source);
	else if (status == 403)
		fputs("moatctl: hint: this needs an operator token, or a token of this tenant\n",
		      stderr);
	else if (status == 429 && ans->retry_after >= 0)
		fprintf(stderr,
		        "moatctl: hint: too many failed authentications from this address; retry "
		        "in %ld s\n",
		        ans->retry_after);
	else if (status == 429)
		fputs("moatctl: hint: too many failed authentications from this address; retry in "
		      "a minute\n",
		      stderr);
}

/* "moatctl: <detail> (<error>, HTTP <status>)" and a hint. */
static void print_api_error(const struct ctl *ctl, long status, const json_t *body,
                            const struct answer *ans)
{
	const char *detail = ctl_str(body, "detail");
	const char *error = ctl_str(body, "error");
	const json_t *errors = json_object_get(body, "errors");
	char *d, *e;

	if (detail == NULL && error == NULL && ctl_str(body, "status") != NULL) {
		/* health's 503 {"status": "degraded"} */
		d = ctl_clean(ctl_str(body, "status"));
		fprintf(stderr, "moatctl: server %s (HTTP %ld)\n", d, status);
		ctl_free(d);
		return;
	}
	d = ctl_clean(detail ? detail : reason(status));
	e = ctl_clean(error ? error : reason(status));
	fprintf(stderr, "moatctl: %s (%s, HTTP %ld)\n", d, e, status);
	ctl_free(d);
	ctl_free(e);
	if (json_is_array(errors))
		print_rule_errors(errors);
	print_hint(ctl, status, ans);
}

static int print_transport_error(const struct ctl *ctl, CURLcode code, const char *errbuf)
{
	const char *why = errbuf[0] ? errbuf : curl_easy_strerror(code);

	switch (code) {
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		fprintf(stderr, "moatctl: bad server address %s: %s\n", ctl->server, why);
		return CTL_EXIT_USAGE;
	case CURLE_OPERATION_TIMEDOUT:
		fprintf(stderr, "moatctl: no answer from %s within %.3g s: %s\n", ctl->server,
		        (double)ctl->timeout_ms / 1000, why);
		fputs("moatctl: hint: is moatd busy or stopped? --timeout SECONDS waits longer\n",
		      stderr);
		return CTL_EXIT_CONNECT;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
		fprintf(stderr, "moatctl: cannot connect to %s: %s\n", ctl->server, why);
		fputs("moatctl: hint: is moatd running? admin_listen is 127.0.0.1:9900 by "
		      "default\n",
		      stderr);
		return CTL_EXIT_CONNECT;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
		fprintf(stderr, "moatctl: TLS with %s failed: %s\n", ctl->server, why);
		fputs("moatctl: hint: --cacert FILE names the CA of the admin certificate\n",
		      stderr);
		return CTL_EXIT_CONNECT;
	case CURLE_WRITE_ERROR:
		fprintf(stderr, "moatctl: the answer from %s is larger than %ld MiB\n", ctl->server,
		        MAX_ANSWER / 1024 / 1024);
		return CTL_EXIT_SERVER;
	default:
		fprintf(stderr, "moatctl: request to %s failed: %s\n", ctl->server, why);
		return CTL_EXIT_CONNECT;
	}
}

/* ---- one request --------------------------------------------------------------------------- */

/* Parses the answer into reply; returns the exit code for it, printing any error. */
static int take_answer(const struct ctl *ctl, struct answer *ans, struct ctl_reply *reply)
{
	json_error_t jerr;
	int rc = ctl_exit_for_status(reply->status);

	if (ans->len > 0)
		reply->json = json_loadb(ans->data, ans->len, 0, &jerr);
	if (ans->len > 0 && reply->json == NULL) {
		fprintf(stderr,
		        "moatctl: %s answered HTTP %ld with something that is not JSON: %s\n",
		        ctl->server, reply->status, jerr.text);
		return rc != CTL_EXIT_OK ? rc : CTL_EXIT_SERVER;
	}
	/* An empty 2xx answer is taken as "done"; anything else must be an object. */
	if (rc == CTL_EXIT_OK && reply->json != NULL && !json_is_object(reply->json)) {
		fprintf(stderr, "moatctl: %s answered HTTP %ld without a JSON object\n",
		        ctl->server, reply->status);
		return CTL_EXIT_SERVER;
	}
	if (rc != CTL_EXIT_OK)
		print_api_error(ctl, reply->status, reply->json, ans);
	return rc;
}

int ctl_http(struct ctl *ctl, const char *method, const char *path, json_t *body,
             struct ctl_reply *reply)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	struct answer ans = {NULL, 0, 0, -1};
	char *text = NULL;
	char *url = ctl_printf("%s%s", ctl->server, path);
	struct curl_slist *headers;
	CURLcode code;
	int rc;

	reply->status = 0;
	reply->json = NULL;
	if (body != NULL) {
		text = json_dumps(body, JSON_COMPACT);
		if (text == NULL) {
			fputs("moatctl: out of memory\n", stderr);
			exit(CTL_EXIT_API);
		}
	}
	headers = headers_for(ctl, sends_body(method, text));
	set_request(ctl, method, url, text, headers, &ans, errbuf);
	code = curl_easy_perform(curl);
	if (code != CURLE_OK) {
		rc = print_transport_error(ctl, code, errbuf);
		goto out;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply->status);
	rc = take_answer(ctl, &ans, reply);
out:
	curl_slist_free_all(headers);
	free(text); /* json_dumps allocates with jansson's allocator, malloc by default */
	ctl_free(ans.data);
	ctl_free(url);
	return rc;
}

void ctl_reply_clear(struct ctl_reply *reply)
{
	json_decref(reply->json);
	reply->json = NULL;
}

int ctl_http_show(struct ctl *ctl, const char *method, const char *path, json_t *body,
                  void (*print)(const json_t *answer))
{
	struct ctl_reply r = {0};
	int rc = ctl_http(ctl, method, path, body, &r);

	if (rc == CTL_EXIT_OK && ctl->json)
		ctl_print_json(r.json);
	else if (rc == CTL_EXIT_OK && print != NULL)
		print(r.json);
	else if (rc == CTL_EXIT_OK)
		ctl_print_object(r.json, NULL);
	ctl_reply_clear(&r);
	return rc;
}

int ctl_http_delete(struct ctl *ctl, const char *path, const char *fmt, ...)
{
	struct ctl_reply r = {0};
	int rc = ctl_http(ctl, "DELETE", path, NULL, &r);
	va_list ap;

	if (rc == CTL_EXIT_OK && !ctl->json) {
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		putchar('\n');
	}
	ctl_reply_clear(&r);
	return rc;
}
