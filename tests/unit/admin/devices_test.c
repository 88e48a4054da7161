/*
 * Tests for src/admin/devices.c and the device half of src/admin/stats.c, through
 * moat_admin_handle with a real store in a temporary data directory: enrollment from a CSR
 * (made here with OpenSSL) and in factory mode, field checks, lists with filters and pages,
 * the state machine, renewal, deletion, statistics, store failures, and tenant isolation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "admin/internal.h"
#include "core/alloc.h"
#include "core/stats.h"

#include "fixture.h"

/* ---- fixture: a data dir, a store, an operator token, tenants acme and beta ---------------- */

static int setup(void **state)
{
	(void)state;
	return fixture_open_tenants("devtest", 0);
}

static int setup_stats(void **state)
{
	(void)state;
	return fixture_open_tenants("devtest", 1);
}

/* ---- OpenSSL helpers --------------------------------------------------------------------- */

static char *bio_text(BIO *b)
{
	char *p;
	long n = BIO_get_mem_data(b, &p);
	char *s = strndup(p, (size_t)n);

	BIO_free(b);
	return s;
}

/* A CSR (PEM) for a new P-256 key, with CN cn (none if NULL); the key in *key. */
static char *make_csr(const char *cn, EVP_PKEY **key)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509_REQ *r = X509_REQ_new();
	X509_NAME *n = X509_NAME_new();
	BIO *b = BIO_new(BIO_s_mem());

	assert_non_null(k);
	if (cn != NULL)
		assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
		                                            (const unsigned char *)cn, -1, -1, 0),
		                 1);
	assert_int_equal(X509_REQ_set_subject_name(r, n), 1);
	assert_int_equal(X509_REQ_set_pubkey(r, k), 1);
	assert_true(X509_REQ_sign(r, k, EVP_sha256()) > 0);
	assert_int_equal(PEM_write_bio_X509_REQ(b, r), 1);
	X509_NAME_free(n);
	X509_REQ_free(r);
	if (key != NULL)
		*key = k;
	else
		EVP_PKEY_free(k);
	return bio_text(b);
}

static X509 *pem_cert(const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);

	BIO_free(b);
	assert_non_null(x);
	return x;
}

/* Checks the answer's certificate: signed by its "ca", CN = id; returns it. */
static X509 *check_issued(const json_t *o, const char *id)
{
	X509 *cert = pem_cert(str(o, "certificate")), *ca = pem_cert(str(o, "ca"));
	char cn[256];

	assert_int_equal(X509_verify(cert, X509_get0_pubkey(ca)), 1);
	assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn,
	                                      sizeof(cn)) > 0);
	assert_string_equal(cn, id);
	X509_free(ca);
	return cert;
}

static void enroll(const char *tenant, const char *id, const char *extra)
{
	char target[128], body[512];

	snprintf(target, sizeof(target), "/v1/tenants/%s/devices", tenant);
	snprintf(body, sizeof(body), "{\"id\":\"%s\"%s%s}", id, extra ? "," : "",
	         extra ? extra : "");
	assert_int_equal(call_s("POST", target, F.op, body), 201);
}

/*
 * More tenants enrolling at once than signing CAs are kept parsed (32): every enrollment is
 * still signed by its own tenant's CA, the first round filling the kept signers, the second
 * evicting them in turn.
 */
static void test_enroll_more_tenants_than_kept_signers(void **state)
{
	enum { TENANTS = 40 };
	char body[256], target[64], id[32];
	json_t *o;

	(void)state;
	for (int t = 0; t < TENANTS; t++) {
		snprintf(body, sizeof(body),
		         "{\"name\":\"t%02d\",\"hosts\":[\"t%02d.devices.local\"],"
		         "\"origin\":\"http://127.0.0.1:8080\"}",
		         t, t);
		assert_int_equal(call_s("POST", "/v1/tenants", F.op, body), 201);
	}
	for (int round = 0; round < 2; round++) {
		for (int t = 0; t < TENANTS; t++) {
			snprintf(target, sizeof(target), "/v1/tenants/t%02d/devices", t);
			snprintf(id, sizeof(id), "cam-%d-%d", t, round);
			o = NULL;
			assert_int_equal(
			        call("POST", target, F.op, json_pack("{s:s}", "id", id), &o), 201);
			X509_free(check_issued(o, id)); /* signed by the CA the answer names */
			json_decref(o);
		}
	}
}

static json_t *get_device(const char *id, int expect)
{
	char target[160];
	json_t *o = NULL;

	snprintf(target, sizeof(target), "/v1/tenants/acme/devices/%s", id);
	assert_int_equal(call("GET", target, F.op, NULL, &o), expect);
	return o;
}

/* ---- enrollment -------------------------------------------------------------------------- */

static void test_enroll_csr(void **state)
{
	EVP_PKEY *key;
	char *csr = make_csr("cam-0001", &key);
	json_t *o = NULL, *certs;
	X509 *cert;
	unsigned changed = F.changed;

	(void)state;
	assert_int_equal(
	        call("POST", "/v1/tenants/acme/devices", F.op,
	             json_pack("{s:s, s:s, s:s, s:s, s:[s,s], s:s, s:i}", "id", "cam-0001", "csr",
	                       csr, "model", "cam-x", "firmware", "1.2.0", "tags", "outdoor",
	                       "batch-7", "owner", "ops@acme.example", "days", 30),
	             &o),
	        201);
	assert_string_equal(str(o, "id"), "cam-0001");
	assert_string_equal(str(o, "tenant"), "acme");
	assert_string_equal(str(o, "model"), "cam-x");
	assert_string_equal(str(o, "firmware"), "1.2.0");
	assert_string_equal(str(o, "state"), "active");
	assert_int_equal(json_array_size(json_object_get(o, "tags")), 2);
	assert_null(json_object_get(o, "key")); /* the device keeps its own key */
	assert_non_null(strstr(str(o, "server_ca"), "BEGIN CERTIFICATE"));
	cert = check_issued(o, "cam-0001");
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(cert), key), 1);
	/* validity as asked: 30 days */
	assert_true(X509_cmp_time(X509_get0_notAfter(cert), NULL) > 0);
	certs = json_object_get(o, "certificates");
	assert_int_equal(json_array_size(certs), 1);
	assert_non_null(str(json_array_get(certs, 0), "serial"));
	assert_true(json_is_null(json_object_get(json_array_get(certs, 0), "revoked_at")));
	assert_true(F.changed > changed);
	X509_free(cert);
	EVP_PKEY_free(key);
	json_decref(o);

	/* stored, with its certificate */
	o = get_device("cam-0001", 200);
	assert_int_equal(json_array_size(json_object_get(o, "certificates")), 1);
	assert_null(json_object_get(o, "certificate"));
	json_decref(o);

	/* a CSR without a CN is fine: the certificate gets the id */
	free(csr);
	csr = make_csr(NULL, NULL);
	assert_int_equal(call("POST", "/v1/tenants/acme/devices", F.op,
	                      json_pack("{s:s, s:s}", "id", "cam-0002", "csr", csr), &o),
	                 201);
	X509_free(check_issued(o, "cam-0002"));
	json_decref(o);
	free(csr);
}

static void test_enroll_factory(void **state)
{
	json_t *o = NULL;
	X509 *cert;
	EVP_PKEY *key;
	BIO *b;

	(void)state;
	assert_int_equal(call("POST", "/v1/tenants/acme/devices", F.op,
	                      json_pack("{s:s}", "id", "plug-7"), &o),
	                 201);
	cert = check_issued(o, "plug-7");
	b = BIO_new_mem_buf(str(o, "key"), -1);
	key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	BIO_free(b);
	assert_non_null(key);
	assert_int_equal(X509_check_private_key(cert, key), 1);
	assert_true(json_is_null(json_object_get(o, "model")));
	assert_int_equal(json_array_size(json_object_get(o, "tags")), 0);
	EVP_PKEY_free(key);
	X509_free(cert);
	json_decref(o);
	/* the key is shown once */
	o = get_device("plug-7", 200);
	assert_null(json_object_get(o, "key"));
	json_decref(o);
}

static void test_enroll_refused(void **state)
{
	char *csr = make_csr("someone-else", NULL);
	json_t *o = NULL;

	(void)state;
	enroll("acme", "cam-1", NULL);
	assert_int_equal(call("POST", "/v1/tenants/acme/devices", F.op,
	                      json_pack("{s:s}", "id", "cam-1"), &o),
	                 409);
	assert_string_equal(str(o, "error"), "conflict");
	json_decref(o);
	/* the same id in another tenant is another device */
	enroll("beta", "cam-1", NULL);

	assert_int_equal(call("POST", "/v1/tenants/acme/devices", F.op,
	                      json_pack("{s:s, s:s}", "id", "cam-2", "csr", "not a csr"), &o),
	                 400);
	assert_string_equal(str(o, "error"), "bad_request");
	json_decref(o);
	assert_int_equal(call("POST", "/v1/tenants/acme/devices", F.op,
	                      json_pack("{s:s, s:s}", "id", "cam-2", "csr", csr), &o),
	                 400);
	assert_non_null(strstr(str(o, "detail"), "CN"));
	json_decref(o);
	json_decref(get_device("cam-2", 404)); /* nothing stored */

	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices", F.op, "{}"), 400);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices", F.op, "{\"id\":\"a b\"}"), 400);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices", F.op, "{\"id\":\"\"}"), 400);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices", F.op, "{\"id\":7}"), 400);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices", F.op,
	                        "{\"id\":\"x\",\"color\":\"red\"}"),
	                 400);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices", F.op,
	                        "{\"id\":\"x\",\"firmware\":\"one.two\"}"),
	                 400);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices", F.op,
	                        "{\"id\":\"x\",\"tags\":[\"a\",\"a\"]}"),
	                 400);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices", F.op,
	                        "{\"id\":\"x\",\"tags\":[\"a b\"]}"),
	                 400);
	assert_int_equal(
	        call_s("POST", "/v1/tenants/acme/devices", F.op, "{\"id\":\"x\",\"days\":0}"), 400);
	assert_int_equal(
	        call_s("POST", "/v1/tenants/acme/devices", F.op, "{\"id\":\"x\",\"days\":36501}"),
	        400);
	assert_int_equal(call_s("POST", "/v1/tenants/nope/devices", F.op, "{\"id\":\"x\"}"), 404);
	json_decref(get_device("x", 404));
	free(csr);
}

static void test_enroll_limits(void **state)
{
	char id[130], model[130], body[600];
	json_t *tags = json_array();

	(void)state;
	/* a device id is the certificate's CN: at most 64 characters (RFC 5280) */
	memset(id, 'a', 64);
	id[64] = '\0';
	snprintf(body, sizeof(body), "{\"id\":\"%s\"}", id);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices", F.op, body), 201);
	snprintf(body, sizeof(body), "{\"id\":\"%sa\"}", id);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices", F.op, body), 400);
	memset(model, 'm', 129);
	model[129] = '\0';
	snprintf(body, sizeof(body), "{\"id\":\"m1\",\"model\":\"%s\"}", model);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices", F.op, body), 400);
	model[128] = '\0';
	snprintf(body, sizeof(body), "{\"id\":\"m1\",\"model\":\"%s\"}", model);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices", F.op, body), 201);
	for (int i = 0; i < 65; i++) {
		char t[16];

		snprintf(t, sizeof(t), "t%d", i);
		json_array_append_new(tags, json_string(t));
	}
	assert_int_equal(call("POST", "/v1/tenants/acme/devices", F.op,
	                      json_pack("{s:s, s:O}", "id", "m2", "tags", tags), NULL),
	                 400);
	json_array_remove(tags, 0);
	assert_int_equal(call("POST", "/v1/tenants/acme/devices", F.op,
	                      json_pack("{s:s, s:o}", "id", "m2", "tags", tags), NULL),
	                 201);
}

/* ---- lists ------------------------------------------------------------------------------- */

static void test_list_pages(void **state)
{
	const char *seen[8];
	char target[160];
	size_t nseen = 0;
	json_t *o = NULL, *next;

	(void)state;
	enroll("acme", "d1", "\"model\":\"cam-x\",\"firmware\":\"1.0\",\"tags\":[\"lab\"]");
	enroll("acme", "d2", "\"model\":\"cam-x\",\"firmware\":\"2.0\"");
	enroll("acme", "d3", "\"model\":\"plug\",\"tags\":[\"lab\",\"beta\"]");
	enroll("acme", "d4", NULL);
	enroll("acme", "d5", NULL);
	enroll("beta", "zz", NULL);

	snprintf(target, sizeof(target), "/v1/tenants/acme/devices?limit=2");
	for (int page = 0; page < 5; page++) {
		json_t *items;

		assert_int_equal(call("GET", target, F.op, NULL, &o), 200);
		items = json_object_get(o, "items");
		assert_true(json_array_size(items) <= 2);
		for (size_t i = 0; i < json_array_size(items); i++) {
			json_t *d = json_array_get(items, i);

			assert_null(json_object_get(d, "certificates"));
			seen[nseen++] = strdup(str(d, "id"));
		}
		next = json_object_get(o, "next");
		if (json_is_null(next)) {
			json_decref(o);
			break;
		}
		assert_string_equal(json_string_value(next), seen[nseen - 1]);
		snprintf(target, sizeof(target), "/v1/tenants/acme/devices?limit=2&after=%s",
		         json_string_value(next));
		json_decref(o);
	}
	assert_int_equal(nseen, 5); /* every device once, in order, none of beta */
	for (size_t i = 0; i < nseen; i++) {
		char want[24];

		snprintf(want, sizeof(want), "d%zu", i + 1);
		assert_string_equal(seen[i], want);
		free((void *)seen[i]);
	}

	assert_int_equal(call("GET", "/v1/tenants/acme/devices?model=cam-x", F.op, NULL, &o), 200);
	assert_int_equal(json_array_size(json_object_get(o, "items")), 2);
	assert_true(json_is_null(json_object_get(o, "next")));
	json_decref(o);
	assert_int_equal(call("GET", "/v1/tenants/acme/devices?tag=lab", F.op, NULL, &o), 200);
	assert_int_equal(json_array_size(json_object_get(o, "items")), 2);
	json_decref(o);
	assert_int_equal(call("GET", "/v1/tenants/acme/devices?firmware=2.0", F.op, NULL, &o), 200);
	assert_int_equal(json_array_size(json_object_get(o, "items")), 1);
	assert_string_equal(str(json_array_get(json_object_get(o, "items"), 0), "id"), "d2");
	json_decref(o);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices/d4/quarantine", F.op, NULL), 200);
	assert_int_equal(call("GET", "/v1/tenants/acme/devices?state=quarantined", F.op, NULL, &o),
	                 200);
	assert_int_equal(json_array_size(json_object_get(o, "items")), 1);
	assert_string_equal(str(json_array_get(json_object_get(o, "items"), 0), "id"), "d4");
	json_decref(o);
	assert_int_equal(call("GET", "/v1/tenants/acme/devices", F.op, NULL, &o), 200);
	assert_int_equal(json_array_size(json_object_get(o, "items")), 5);
	json_decref(o);

	assert_int_equal(call_s("GET", "/v1/tenants/acme/devices?limit=0", F.op, NULL), 400);
	assert_int_equal(call_s("GET", "/v1/tenants/acme/devices?limit=1001", F.op, NULL), 400);
	assert_int_equal(call_s("GET", "/v1/tenants/acme/devices?limit=ten", F.op, NULL), 400);
	assert_int_equal(call_s("GET", "/v1/tenants/acme/devices?limit=", F.op, NULL), 400);
	assert_int_equal(call_s("GET", "/v1/tenants/acme/devices?state=gone", F.op, NULL), 400);
	assert_int_equal(call_s("GET", "/v1/tenants/acme/devices?after=a%20b", F.op, NULL), 400);
	assert_int_equal(call_s("GET", "/v1/tenants/acme/devices?tag=a%20b", F.op, NULL), 400);
	assert_int_equal(call_s("GET", "/v1/tenants/acme/devices?limit=1000", F.op, NULL), 200);
}

/* ---- changes ----------------------------------------------------------------------------- */

static void test_patch(void **state)
{
	json_t *o = NULL;

	(void)state;
	enroll("acme", "cam", "\"model\":\"a\",\"owner\":\"me\",\"tags\":[\"x\"]");
	assert_int_equal(call_s("PATCH", "/v1/tenants/acme/devices/cam", F.op,
	                        "{\"model\":\"b\",\"owner\":null,\"firmware\":\"v2.1.0-rc.1\","
	                        "\"tags\":[\"y\",\"z\"]}"),
	                 200);
	o = get_device("cam", 200);
	assert_string_equal(str(o, "model"), "b");
	assert_true(json_is_null(json_object_get(o, "owner")));
	assert_string_equal(str(o, "firmware"), "v2.1.0-rc.1");
	assert_int_equal(json_array_size(json_object_get(o, "tags")), 2);
	json_decref(o);
	assert_int_equal(
	        call("PATCH", "/v1/tenants/acme/devices/cam", F.op, json_pack("{s:n}", "tags"), &o),
	        200);
	assert_int_equal(json_array_size(json_object_get(o, "tags")), 0);
	assert_string_equal(str(o, "model"), "b"); /* untouched */
	json_decref(o);

	assert_int_equal(
	        call_s("PATCH", "/v1/tenants/acme/devices/cam", F.op, "{\"firmware\":\"latest\"}"),
	        400);
	assert_int_equal(call_s("PATCH", "/v1/tenants/acme/devices/cam", F.op, "{\"id\":\"new\"}"),
	                 400);
	assert_int_equal(
	        call_s("PATCH", "/v1/tenants/acme/devices/cam", F.op, "{\"state\":\"active\"}"),
	        400);
	assert_int_equal(
	        call_s("PATCH", "/v1/tenants/acme/devices/nope", F.op, "{\"model\":\"b\"}"), 404);
	o = get_device("cam", 200);
	assert_string_equal(str(o, "model"), "b");
	json_decref(o);
}

static const char *state_of(const char *id)
{
	static char buf[32];
	json_t *o = get_device(id, 200);

	snprintf(buf, sizeof(buf), "%s", str(o, "state"));
	json_decref(o);
	return buf;
}

static void test_transitions(void **state)
{
	json_t *o = NULL, *certs;
	unsigned changed;

	(void)state;
	enroll("acme", "cam", NULL);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices/cam/release", F.op, NULL), 200);
	assert_string_equal(state_of("cam"), "active");
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices/cam/quarantine", F.op, NULL),
	                 200);
	assert_string_equal(state_of("cam"), "quarantined");
	changed = F.changed;
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices/cam/quarantine", F.op, NULL),
	                 200);
	assert_int_equal(F.changed, changed); /* nothing to do */
	assert_int_equal(
	        call_s("POST", "/v1/tenants/acme/devices/cam/quarantine", F.op, "{\"why\":1}"),
	        400);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices/cam/release", F.op, NULL), 200);
	assert_string_equal(state_of("cam"), "active");
	assert_int_equal(call("POST", "/v1/tenants/acme/devices/cam/revoke", F.op, NULL, &o), 200);
	assert_string_equal(str(o, "state"), "revoked");
	certs = json_object_get(o, "certificates");
	assert_int_equal(json_array_size(certs), 1);
	assert_true(json_is_string(json_object_get(json_array_get(certs, 0), "revoked_at")));
	json_decref(o);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices/cam/revoke", F.op, NULL), 200);
	assert_int_equal(call("POST", "/v1/tenants/acme/devices/cam/quarantine", F.op, NULL, &o),
	                 409);
	assert_string_equal(str(o, "error"), "conflict");
	json_decref(o);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices/cam/release", F.op, NULL), 409);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices/cam/renew", F.op, NULL), 409);
	assert_string_equal(state_of("cam"), "revoked");
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices/ghost/revoke", F.op, NULL), 404);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices/ghost/quarantine", F.op, NULL),
	                 404);
}

static void test_renew(void **state)
{
	EVP_PKEY *key;
	char *csr = make_csr("cam", &key);
	json_t *o = NULL, *certs;
	X509 *cert;
	const char *first;
	char serial[140];

	(void)state;
	enroll("acme", "cam", NULL);
	o = get_device("cam", 200);
	first = str(json_array_get(json_object_get(o, "certificates"), 0), "serial");
	snprintf(serial, sizeof(serial), "%s", first);
	json_decref(o);

	/* a new certificate for the device's own key; the old one stays valid */
	assert_int_equal(call("POST", "/v1/tenants/acme/devices/cam/renew", F.op,
	                      json_pack("{s:s, s:i}", "csr", csr, "days", 10), &o),
	                 200);
	cert = check_issued(o, "cam");
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(cert), key), 1);
	assert_null(json_object_get(o, "key"));
	certs = json_object_get(o, "certificates");
	assert_int_equal(json_array_size(certs), 2);
	for (size_t i = 0; i < 2; i++)
		assert_true(json_is_null(json_object_get(json_array_get(certs, i), "revoked_at")));
	X509_free(cert);
	json_decref(o);

	/* factory renewal revoking the older ones */
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices/cam/renew", F.op,
	                        "{\"revoke_previous\":true}"),
	                 200);
	o = get_device("cam", 200);
	certs = json_object_get(o, "certificates");
	assert_int_equal(json_array_size(certs), 3);
	{
		size_t live = 0, found_first = 0;

		for (size_t i = 0; i < 3; i++) {
			json_t *ct = json_array_get(certs, i);

			live += json_is_null(json_object_get(ct, "revoked_at"));
			if (strcmp(str(ct, "serial"), serial) == 0) {
				found_first = 1;
				assert_false(json_is_null(json_object_get(ct, "revoked_at")));
			}
		}
		assert_int_equal(live, 1);
		assert_int_equal(found_first, 1);
	}
	assert_string_equal(str(o, "state"), "active");
	json_decref(o);

	assert_int_equal(
	        call_s("POST", "/v1/tenants/acme/devices/cam/renew", F.op, "{\"csr\":\"junk\"}"),
	        400);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices/cam/renew", F.op,
	                        "{\"revoke_previous\":\"yes\"}"),
	                 400);
	free(csr);
	EVP_PKEY_free(key);
}

static void test_delete(void **state)
{
	(void)state;
	enroll("acme", "cam", NULL);
	assert_int_equal(call_s("DELETE", "/v1/tenants/acme/devices/cam", F.op, NULL), 204);
	json_decref(get_device("cam", 404));
	assert_int_equal(call_s("DELETE", "/v1/tenants/acme/devices/cam", F.op, NULL), 404);
	/* the id is free again */
	enroll("acme", "cam", NULL);
}

/* Every change is in the audit log, by the token that made it. */
static void test_audit(void **state)
{
	struct moat_store_audit *a = NULL;
	size_t n = 0;

	(void)state;
	enroll("acme", "cam", NULL);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices/cam/revoke", F.op, NULL), 200);
	assert_int_equal(moat_store_audit_list(F.store, "acme", 0, 10, &a, &n), MOAT_OK);
	assert_true(n >= 2);
	assert_string_equal(a[0].action, "device.revoke");
	assert_string_equal(a[0].object, "acme/cam");
	assert_string_equal(a[1].action, "device.enroll");
	moat_store_audits_free(a, n);
}

/* ---- statistics -------------------------------------------------------------------------- */

static void test_stats_zero(void **state)
{
	json_t *o = NULL;

	(void)state;
	enroll("acme", "cam", NULL);
	assert_int_equal(call("GET", "/v1/tenants/acme/stats", F.op, NULL, &o), 200);
	assert_string_equal(str(o, "tenant"), "acme");
	assert_int_equal(json_integer_value(json_object_get(o, "requests")), 0);
	assert_int_equal(json_integer_value(json_object_get(o, "devices")), 1);
	assert_int_equal(json_integer_value(json_object_get(o, "devices_connected")), 0);
	assert_int_equal(json_integer_value(json_object_get(o, "connections_now")), 0);
	assert_true(json_is_array(json_object_get(o, "rules")));
	json_decref(o);
	assert_int_equal(call("GET", "/v1/tenants/acme/devices/cam/stats", F.op, NULL, &o), 200);
	assert_string_equal(str(o, "device"), "cam");
	assert_int_equal(json_integer_value(json_object_get(o, "bytes_in")), 0);
	assert_true(json_is_null(json_object_get(o, "last_seen")));
	json_decref(o);
	assert_int_equal(call_s("GET", "/v1/tenants/acme/devices/nope/stats", F.op, NULL), 404);
	assert_int_equal(call_s("GET", "/v1/tenants/nope/stats", F.op, NULL), 404);
}

static void test_stats_counted(void **state)
{
	struct moat_counters *t = moat_stats_tenant(F.stats, "acme");
	struct moat_counters *a = moat_stats_device(F.stats, "acme", "cam");
	struct moat_counters *b = moat_stats_device(F.stats, "acme", "cam2");
	json_t *o = NULL;

	(void)state;
	enroll("acme", "cam", NULL);
	enroll("acme", "cam2", NULL);
	enroll("acme", "cam3", NULL);
	moat_count(&t->requests, 12);
	moat_count(&t->blocked, 3);
	moat_count(&t->bytes_in, 500);
	moat_count(&t->bytes_out, 900);
	atomic_store(&t->connected, 2);
	moat_count(&a->requests, 10);
	moat_count(&a->blocked, 1);
	moat_count(&a->bytes_in, 400);
	moat_count(&a->bytes_out, 800);
	atomic_store(&a->connected, 2);
	atomic_store(&a->last_seen_ms, (int64_t)1795457040000); /* 2026-11-23T18:04:00Z */
	atomic_store(&b->connected, 0);

	assert_int_equal(call("GET", "/v1/tenants/acme/stats", F.op, NULL, &o), 200);
	assert_int_equal(json_integer_value(json_object_get(o, "requests")), 12);
	assert_int_equal(json_integer_value(json_object_get(o, "blocked")), 3);
	assert_int_equal(json_integer_value(json_object_get(o, "bytes_in")), 500);
	assert_int_equal(json_integer_value(json_object_get(o, "bytes_out")), 900);
	assert_int_equal(json_integer_value(json_object_get(o, "connections_now")), 2);
	assert_int_equal(json_integer_value(json_object_get(o, "devices")), 3);
	assert_int_equal(json_integer_value(json_object_get(o, "devices_connected")), 1);
	json_decref(o);

	assert_int_equal(call("GET", "/v1/tenants/acme/devices/cam/stats", F.op, NULL, &o), 200);
	assert_int_equal(json_integer_value(json_object_get(o, "requests")), 10);
	assert_int_equal(json_integer_value(json_object_get(o, "blocked")), 1);
	assert_int_equal(json_integer_value(json_object_get(o, "bytes_in")), 400);
	assert_int_equal(json_integer_value(json_object_get(o, "bytes_out")), 800);
	assert_int_equal(json_integer_value(json_object_get(o, "connected_now")), 2);
	assert_string_equal(str(o, "last_seen"), "2026-11-23T18:04:00Z");
	json_decref(o);
	/* a device without counters yet */
	assert_int_equal(call("GET", "/v1/tenants/acme/devices/cam3/stats", F.op, NULL, &o), 200);
	assert_int_equal(json_integer_value(json_object_get(o, "requests")), 0);
	json_decref(o);
}

/* ---- failures and isolation -------------------------------------------------------------- */

static void test_store_failure(void **state)
{
	json_t *o = NULL;

	(void)state;
	enroll("acme", "cam", NULL);
	moat_store_fail(F.store, 1);
	assert_int_equal(
	        call("POST", "/v1/tenants/acme/devices", F.op, json_pack("{s:s}", "id", "new"), &o),
	        500);
	assert_string_equal(str(o, "error"), "internal");
	json_decref(o);
	assert_int_equal(call_s("GET", "/v1/tenants/acme/devices", F.op, NULL), 500);
	assert_int_equal(call_s("GET", "/v1/tenants/acme/devices/cam", F.op, NULL), 500);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/devices/cam/revoke", F.op, NULL), 500);
	assert_int_equal(call_s("GET", "/v1/tenants/acme/stats", F.op, NULL), 500);
	moat_store_fail(F.store, 0);
	json_decref(get_device("new", 404));
	assert_string_equal(state_of("cam"), "active");
}

static void test_isolation(void **state)
{
	static const struct {
		const char *method, *target, *body;
	} calls[] = {
	        {"GET", "/v1/tenants/acme/devices", NULL},
	        {"POST", "/v1/tenants/acme/devices", "{\"id\":\"mine\"}"},
	        {"GET", "/v1/tenants/acme/devices/cam", NULL},
	        {"PATCH", "/v1/tenants/acme/devices/cam", "{\"model\":\"x\"}"},
	        {"POST", "/v1/tenants/acme/devices/cam/quarantine", NULL},
	        {"POST", "/v1/tenants/acme/devices/cam/release", NULL},
	        {"POST", "/v1/tenants/acme/devices/cam/revoke", NULL},
	        {"POST", "/v1/tenants/acme/devices/cam/renew", NULL},
	        {"DELETE", "/v1/tenants/acme/devices/cam", NULL},
	        {"GET", "/v1/tenants/acme/devices/cam/stats", NULL},
	        {"GET", "/v1/tenants/acme/stats", NULL},
	};
	json_t *o;

	(void)state;
	enroll("acme", "cam", NULL);
	for (size_t i = 0; i < MOAT_ARRAY_LEN(calls); i++) {
		o = NULL;
		assert_int_equal(call_s(calls[i].method, calls[i].target, F.beta, calls[i].body),
		                 404);
	}
	o = get_device("cam", 200);
	assert_string_equal(str(o, "state"), "active");
	assert_true(json_is_null(json_object_get(o, "model")));
	json_decref(o);
	json_decref(get_device("mine", 404));
	/* its own tenant works */
	assert_int_equal(call_s("POST", "/v1/tenants/beta/devices", F.beta, "{\"id\":\"mine\"}"),
	                 201);
	assert_int_equal(call_s("GET", "/v1/tenants/beta/devices/mine", F.beta, NULL), 200);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_enroll_csr, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_enroll_factory, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_enroll_refused, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_enroll_limits, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_enroll_more_tenants_than_kept_signers, setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_list_pages, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_patch, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_transitions, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_renew, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_delete, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_audit, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_stats_zero, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_stats_counted, setup_stats, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_store_failure, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_isolation, setup, fixture_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
