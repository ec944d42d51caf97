/*
 * TLS listeners: reading and checking the PEM files, the certificate config fetcher gRPC calls
 * before every handshake, and the reload on SIGHUP. The only user of OpenSSL in entd (to check
 * that a key belongs to its certificate and to name the certificate in the log). Which
 * credentials a listener gets is still decided in one place, server.c's add_listener.
 *
 * Threads: ent_rpc_tls_new and ent_rpc_reload_tls run on the main thread; ent_rpc_tls_fetch on any
 * gRPC thread. struct ent_tls (core.h) says what each may touch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc_security.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "rpc/core.h"

static void tls_free_pems(char **cert, char **key, char **ca)
{
	free(*cert);
	if (*key) {
		explicit_bzero(*key, strlen(*key));
		free(*key);
	}
	free(*ca);
	*cert = *key = *ca = NULL;
}

/*
 * Read the listener's PEM files and check that the key belongs to the certificate, so that a
 * bad rotation is refused at SIGHUP with a message naming the file instead of failing every
 * later handshake. \a info receives "subject=... serial=... not_after=..." for the log.
 */
static int tls_read(const struct ent_config_listener *l, char **cert, char **key, char **ca,
		    char *info, size_t info_len, struct ent_err *err)
{
	size_t len;
	*cert = *key = *ca = NULL;
	char k[160];
	snprintf(k, sizeof(k), "listen %s: tls.cert_file", l->address);
	int rc = ent_config_read_file(k, l->cert_file, cert, &len, err);
	if (!rc) {
		snprintf(k, sizeof(k), "listen %s: tls.key_file", l->address);
		rc = ent_config_read_file(k, l->key_file, key, &len, err);
	}
	if (!rc && l->client_ca_file) {
		snprintf(k, sizeof(k), "listen %s: tls.client_ca_file", l->address);
		rc = ent_config_read_file(k, l->client_ca_file, ca, &len, err);
	}
	if (rc) {
		tls_free_pems(cert, key, ca);
		return rc;
	}

	BIO *cb = BIO_new_mem_buf(*cert, -1), *kb = BIO_new_mem_buf(*key, -1);
	X509 *x = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
	EVP_PKEY *pk = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
	if (!x)
		rc = ent_err_set(err, ENT_EINVAL, "listen %s: tls.cert_file '%s': no certificate",
				 l->address, l->cert_file);
	else if (!pk)
		rc = ent_err_set(err, ENT_EINVAL, "listen %s: tls.key_file '%s': no private key",
				 l->address, l->key_file);
	else if (X509_check_private_key(x, pk) != 1)
		rc = ent_err_set(err, ENT_EINVAL,
				 "listen %s: tls.key_file '%s' does not belong to the certificate "
				 "in '%s'",
				 l->address, l->key_file, l->cert_file);
	if (!rc && info) {
		char subj[256] = "", nafter[64] = "";
		char *serial = NULL;
		X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
		BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(x), NULL);
		if (bn) {
			serial = BN_bn2hex(bn);
			BN_free(bn);
		}
		BIO *mb = BIO_new(BIO_s_mem());
		if (mb && ASN1_TIME_print(mb, X509_get0_notAfter(x))) {
			int n = BIO_read(mb, nafter, sizeof(nafter) - 1);
			nafter[n > 0 ? n : 0] = 0;
		}
		BIO_free(mb);
		snprintf(info, info_len, "subject=%s serial=%s not_after=%s", subj,
			 serial ? serial : "?", nafter);
		OPENSSL_free(serial);
	}
	EVP_PKEY_free(pk);
	X509_free(x);
	BIO_free(cb);
	BIO_free(kb);
	ERR_clear_error();
	if (rc)
		tls_free_pems(cert, key, ca);
	return rc;
}

/*
 * gRPC's certificate config fetcher: called at the listener's creation and before every new
 * TLS handshake, on whatever gRPC thread accepts the connection. Established connections keep
 * the handshake they had, so a new certificate never drops a connection.
 */
grpc_ssl_certificate_config_reload_status
ent_rpc_tls_fetch(void *user, grpc_ssl_server_certificate_config **out)
{
	struct ent_tls *t = user;
	if (atomic_load_explicit(&t->gen, memory_order_acquire) ==
	    atomic_load_explicit(&t->served, memory_order_relaxed))
		return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
	pthread_mutex_lock(&t->mu);
	grpc_ssl_pem_key_cert_pair pair = {t->key, t->cert};
	/* The config copies the strings. gRPC asserts that a fetched config has root
	   certificates even when no client certificate is asked for; without a client CA, the
	   server's own chain stands in (nothing is verified against it: the request type says
	   whether client certificates are asked for at all). */
	*out = grpc_ssl_server_certificate_config_create(t->ca ? t->ca : t->cert, &pair, 1);
	atomic_store_explicit(&t->served, atomic_load(&t->gen), memory_order_relaxed);
	pthread_mutex_unlock(&t->mu);
	return *out ? GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW
		    : GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
}

void ent_rpc_tls_free(struct ent_tls *t)
{
	if (!t)
		return;
	tls_free_pems(&t->cert, &t->key, &t->ca);
	pthread_mutex_destroy(&t->mu);
	free(t->address);
	free(t);
}

static grpc_ssl_client_certificate_request_type
client_cert_request(const struct ent_config_listener *l)
{
	if (l->require_client_cert)
		return GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
	if (l->client_ca_file)
		return GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
	return GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
}

int ent_rpc_tls_new(struct ent_rpc *r, const struct ent_config_listener *l, struct ent_tls **out,
		    struct ent_err *err)
{
	struct ent_tls *t = calloc(1, sizeof(*t));
	if (!t || !(t->address = strdup(l->address))) {
		free(t);
		return ent_err_set(err, ENT_ENOMEM, "rpc: out of memory");
	}
	pthread_mutex_init(&t->mu, NULL);
	atomic_init(&t->gen, 1);
	atomic_init(&t->served, 0);
	t->request = client_cert_request(l);
	char info[512];
	int rc = tls_read(l, &t->cert, &t->key, &t->ca, info, sizeof(info), err);
	if (rc) {
		ent_rpc_tls_free(t);
		return rc;
	}
	struct ent_tls **v = realloc(r->tls, (r->n_tls + 1) * sizeof(*v));
	if (!v) {
		ent_rpc_tls_free(t);
		return ent_err_set(err, ENT_ENOMEM, "rpc: out of memory");
	}
	r->tls = v;
	r->tls[r->n_tls++] = t;
	ent_log(ENT_LOG_INFO, "tls certificate loaded", "listen", l->address, "certificate", info,
		"client_certificates",
		t->request == GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
			? "required"
		: t->request == GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY ? "verified"
									       : "no",
		NULL);
	*out = t;
	return 0;
}

int ent_rpc_reload_tls(struct ent_rpc *r, const struct ent_config_listener *ls, size_t n,
		       struct ent_err *err)
{
	if (!r)
		return ent_err_set(err, ENT_EINVAL, "rpc: not running");
	if (!r->n_tls)
		return 0;
	struct pems {
		char *cert, *key, *ca;
		char info[512];
	} *p = calloc(r->n_tls, sizeof(*p));
	if (!p)
		return ent_err_set(err, ENT_ENOMEM, "rpc: out of memory");
	/* Read and check everything first: all listeners change, or none. */
	int rc = 0;
	for (size_t i = 0; i < r->n_tls && !rc; i++) {
		const struct ent_config_listener *l = NULL;
		for (size_t j = 0; j < n && !l; j++)
			if (ls[j].tls && ls[j].address &&
			    !strcmp(ls[j].address, r->tls[i]->address))
				l = &ls[j];
		if (!l) {
			rc = ent_err_set(err, ENT_EINVAL,
					 "listen %s: no longer a TLS listener in the configuration "
					 "(listeners change only with a restart)",
					 r->tls[i]->address);
			break;
		}
		if (client_cert_request(l) != r->tls[i]->request) {
			rc = ent_err_set(err, ENT_EINVAL,
					 "listen %s: client certificate verification changed "
					 "(needs a restart)",
					 l->address);
			break;
		}
		if (!!l->client_ca_file != !!r->tls[i]->ca) {
			rc = ent_err_set(err, ENT_EINVAL,
					 "listen %s: tls.client_ca_file added or removed (needs a "
					 "restart)",
					 l->address);
			break;
		}
		rc = tls_read(l, &p[i].cert, &p[i].key, &p[i].ca, p[i].info, sizeof(p[i].info),
			      err);
	}
	if (rc) {
		for (size_t i = 0; i < r->n_tls; i++)
			tls_free_pems(&p[i].cert, &p[i].key, &p[i].ca);
		free(p);
		return rc;
	}
	int changed = 0;
	for (size_t i = 0; i < r->n_tls; i++) {
		struct ent_tls *t = r->tls[i];
		pthread_mutex_lock(&t->mu);
		bool same = !strcmp(t->cert, p[i].cert) && !strcmp(t->key, p[i].key) &&
			    (!t->ca || !strcmp(t->ca, p[i].ca));
		if (same) {
			/* Nothing to hand to gRPC: handshakes keep the factory they have. */
			pthread_mutex_unlock(&t->mu);
			tls_free_pems(&p[i].cert, &p[i].key, &p[i].ca);
			continue;
		}
		changed++;
		tls_free_pems(&t->cert, &t->key, &t->ca);
		t->cert = p[i].cert;
		t->key = p[i].key;
		t->ca = p[i].ca;
		atomic_fetch_add_explicit(&t->gen, 1, memory_order_release);
		pthread_mutex_unlock(&t->mu);
		ent_log(ENT_LOG_INFO, "tls certificate reloaded", "listen", t->address,
			"certificate", p[i].info, NULL);
	}
	free(p);
	return changed;
}
