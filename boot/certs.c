/* certs: `tokenspeed certs DIR [--days N] [--cn NAME]`, certificates for
 * development and for a private network without a PKI of its own.
 *
 * Writes into DIR (created 0700):
 *   ca.crt, ca.key          a CA (basicConstraints CA:TRUE, pathlen 0;
 *                           keyUsage keyCertSign, cRLSign) that signs the two below
 *   server.crt, server.key  CN=NAME; subjectAltName NAME, localhost, 127.0.0.1, ::1;
 *                           extendedKeyUsage serverAuth
 *   client.crt, client.key  CN=NAME-client; extendedKeyUsage clientAuth
 * All keys ECDSA P-256, signatures ECDSA with SHA-256, serial numbers 128
 * random bits, validity from an hour ago (clock skew between machines) to N
 * days from now. Keys are written 0600, certificates 0644. An existing file is
 * never overwritten: the command refuses before writing anything, naming it.
 *
 * The server's ini then says tls_cert = DIR/server.crt, tls_key =
 * DIR/server.key, tls_ca = DIR/ca.crt; a client gets ca.crt, client.crt and
 * client.key. Randomness: PSA's generator, seeded from the OS by
 * psa_crypto_init().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ecp.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/psa_util.h>
#include <mbedtls/x509_crt.h>
#include <psa/crypto.h>

#include "base.h"

#define CERTS_DAYS_DEFAULT 365
#define CERTS_DAYS_MAX     36500
#define CERTS_CN_DEFAULT   "tokenspeed"
#define CERTS_CN_MAX       63   /* one DNS label's worth; also keeps the CN short in logs */
#define CERTS_PEM_BYTES    4096 /* one P-256 certificate or key in PEM, with room */
#define CERTS_SKEW_S       3600 /* notBefore this far in the past */

int certs_make(const char *dir, int days, const char *cn, struct ts_err *e);
int certs_cmd(int argc, char **argv);

/* Knobs beyond the command line, for tests (a server certificate for another
 * name only). */
struct certs_opts {
	int days;        /* validity after now */
	const char *cn;  /* server CN and first subjectAltName */
	int local_names; /* also localhost, 127.0.0.1 and ::1 in the server's subjectAltName */
};

static const unsigned char ip4_lo[4] = {127, 0, 0, 1};
static const unsigned char ip6_lo[16] = {[15] = 1};

static const char *const certs_files[] = {"ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key"};

static int mbed_err(struct ts_err *e, int ret, const char *what)
{
	char why[160];
	mbedtls_strerror(ret, why, sizeof(why));
	return ts_errf(e, E_INTERNAL, "certs: %s: %s (-0x%04x)", what, why, (unsigned)-ret);
}

/* ------------------------------------------------------------ keys and certificates */

static int certs_key_new(mbedtls_pk_context *k, struct ts_err *e)
{
	int ret = mbedtls_pk_setup(k, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
	if (ret == 0)
		ret = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*k), mbedtls_psa_get_random,
		                          MBEDTLS_PSA_RANDOM_STATE);
	return ret ? mbed_err(e, ret, "generating a P-256 key") : 0;
}

/* What one certificate says; the issuer's name and key sign it. */
struct cert_spec {
	const char *subject; /* "CN=...,O=TokenSpeed" */
	const char *issuer;  /* the CA's subject (the subject itself for the CA) */
	mbedtls_pk_context *subject_key;
	mbedtls_pk_context *issuer_key;
	int is_ca;
	const char *eku_oid; /* extendedKeyUsage of a leaf: MBEDTLS_OID_SERVER_AUTH / _CLIENT_AUTH */
	size_t eku_len;
	const mbedtls_x509_san_list *san; /* may be NULL */
	time_t not_before, not_after;
};

static void x509_time(time_t t, char out[16])
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 16, "%Y%m%d%H%M%S", &tm);
}

/* PEM of the certificate into buf (NUL-terminated). */
static int certs_cert_pem(const struct cert_spec *c, unsigned char *buf, size_t cap, struct ts_err *e)
{
	mbedtls_x509write_cert w;
	unsigned char serial[16];
	char nb[16], na[16];
	int ret;

	mbedtls_x509write_crt_init(&w);
	mbedtls_x509write_crt_set_version(&w, MBEDTLS_X509_CRT_VERSION_3);
	mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
	mbedtls_x509write_crt_set_subject_key(&w, c->subject_key);
	mbedtls_x509write_crt_set_issuer_key(&w, c->issuer_key);
	/* Positive (top bit clear) and exactly 16 bytes long (first byte non-zero). */
	if ((ret = mbedtls_psa_get_random(MBEDTLS_PSA_RANDOM_STATE, serial, sizeof(serial))) != 0)
		goto out;
	serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x40);
	x509_time(c->not_before, nb);
	x509_time(c->not_after, na);
	if ((ret = mbedtls_x509write_crt_set_serial_raw(&w, serial, sizeof(serial))) != 0 ||
	    (ret = mbedtls_x509write_crt_set_validity(&w, nb, na)) != 0 ||
	    (ret = mbedtls_x509write_crt_set_subject_name(&w, c->subject)) != 0 ||
	    (ret = mbedtls_x509write_crt_set_issuer_name(&w, c->issuer)) != 0 ||
	    (ret = mbedtls_x509write_crt_set_basic_constraints(&w, c->is_ca, c->is_ca ? 0 : -1)) != 0 ||
	    (ret = mbedtls_x509write_crt_set_subject_key_identifier(&w)) != 0 ||
	    (ret = mbedtls_x509write_crt_set_authority_key_identifier(&w)) != 0)
		goto out;
	if (c->is_ca) {
		ret = mbedtls_x509write_crt_set_key_usage(&w, MBEDTLS_X509_KU_KEY_CERT_SIGN | MBEDTLS_X509_KU_CRL_SIGN);
	} else {
		mbedtls_asn1_sequence eku = {
		    .buf = {.tag = MBEDTLS_ASN1_OID, .len = c->eku_len, .p = (unsigned char *)c->eku_oid},
		};
		if ((ret = mbedtls_x509write_crt_set_key_usage(&w, MBEDTLS_X509_KU_DIGITAL_SIGNATURE)) == 0)
			ret = mbedtls_x509write_crt_set_ext_key_usage(&w, &eku);
	}
	if (ret == 0 && c->san)
		ret = mbedtls_x509write_crt_set_subject_alternative_name(&w, c->san);
	if (ret == 0)
		ret = mbedtls_x509write_crt_pem(&w, buf, cap, mbedtls_psa_get_random, MBEDTLS_PSA_RANDOM_STATE);
out:
	mbedtls_x509write_crt_free(&w);
	return ret ? mbed_err(e, ret, c->subject) : 0;
}

/* ------------------------------------------------------------ files */

/* Creates dir/name with exactly mode; never replaces an existing file. */
static int certs_file_new(const char *dir, const char *name, const void *data, size_t len, mode_t mode,
                          struct ts_err *e)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0 && errno == EEXIST)
		return ts_errf(e, E_IO, "%s exists; certs never overwrites: move it away or choose another directory",
		               path);
	if (fd < 0)
		return ts_errf(e, E_IO, "%s: cannot create: %s", path, strerror(errno));
	const char *p = data;
	size_t done = 0;
	int err = fchmod(fd, mode) < 0 ? errno : 0; /* exactly mode, whatever the umask */
	while (!err && done < len) {
		ssize_t w = write(fd, p + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			err = w < 0 ? errno : EIO;
		else
			done += (size_t)w;
	}
	if (!err && fsync(fd) < 0)
		err = errno;
	if (close(fd) < 0 && !err)
		err = errno;
	if (err) {
		unlink(path);
		return ts_errf(e, E_IO, "%s: cannot write: %s", path, strerror(err));
	}
	return 0;
}

static int certs_write_key(const char *dir, const char *name, const mbedtls_pk_context *k, struct ts_err *e)
{
	unsigned char pem[CERTS_PEM_BYTES];
	int ret = mbedtls_pk_write_key_pem(k, pem, sizeof(pem));
	if (ret != 0)
		return mbed_err(e, ret, "writing a key as PEM");
	int rc = certs_file_new(dir, name, pem, strlen((char *)pem), 0600, e);
	mbedtls_platform_zeroize(pem, sizeof(pem));
	return rc;
}

/* ------------------------------------------------------------ certs_make */

/* A DNS name, or an IPv4/IPv6 address (then *ip gets its bytes). */
static int certs_check_cn(const char *cn, unsigned char ip[16], size_t *ip_len, struct ts_err *e)
{
	size_t n = strlen(cn);
	*ip_len = 0;
	if (inet_pton(AF_INET, cn, ip) == 1) {
		*ip_len = 4;
		return 0;
	}
	if (inet_pton(AF_INET6, cn, ip) == 1) {
		*ip_len = 16;
		return 0;
	}
	int ok = n >= 1 && n <= CERTS_CN_MAX && cn[0] != '-' && cn[0] != '.';
	for (size_t i = 0; ok && i < n; i++)
		ok = (cn[i] >= 'a' && cn[i] <= 'z') || (cn[i] >= 'A' && cn[i] <= 'Z') ||
		     (cn[i] >= '0' && cn[i] <= '9') || cn[i] == '-' || cn[i] == '.';
	if (!ok)
		return ts_errf(e, E_INVAL,
		               "--cn \"%s\": give the server's DNS name (letters, digits, '-', '.', at most %d "
		               "characters) or its IP address",
		               cn, CERTS_CN_MAX);
	return 0;
}

static int certs_make_opts(const char *dir, const struct certs_opts *o, struct ts_err *e)
{
	unsigned char cn_ip[16], pem[CERTS_PEM_BYTES];
	size_t cn_ip_len;
	char ca_dn[128], srv_dn[128], cli_dn[128];
	mbedtls_pk_context ca_key, srv_key, cli_key;
	struct stat st;
	int rc;

	if (o->days < 1 || o->days > CERTS_DAYS_MAX)
		return ts_errf(e, E_RANGE, "--days %d: give 1..%d", o->days, CERTS_DAYS_MAX);
	if ((rc = certs_check_cn(o->cn, cn_ip, &cn_ip_len, e)) < 0)
		return rc;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return ts_errf(e, E_IO, "%s: cannot create the directory: %s", dir, strerror(errno));
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return ts_errf(e, E_IO, "%s: not a directory; give a new or existing directory", dir);
	/* Refuse before writing anything; O_EXCL below closes the race. */
	for (size_t i = 0; i < TS_ARRAY_LEN(certs_files); i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, certs_files[i]);
		if (lstat(path, &st) == 0)
			return ts_errf(e, E_IO,
			               "%s exists; certs never overwrites: move it away or choose another directory",
			               path);
	}
	if (psa_crypto_init() != PSA_SUCCESS)
		return ts_errf(e, E_INTERNAL, "certs: psa_crypto_init failed: no entropy source?");

	snprintf(ca_dn, sizeof(ca_dn), "CN=%s-ca,O=TokenSpeed", o->cn);
	snprintf(srv_dn, sizeof(srv_dn), "CN=%s,O=TokenSpeed", o->cn);
	snprintf(cli_dn, sizeof(cli_dn), "CN=%s-client,O=TokenSpeed", o->cn);

	/* subjectAltName of the server: NAME first, then the loopback names. */
	mbedtls_x509_san_list san[4];
	int n_san = 0;
	memset(san, 0, sizeof(san));
	san[n_san].node.type = cn_ip_len ? MBEDTLS_X509_SAN_IP_ADDRESS : MBEDTLS_X509_SAN_DNS_NAME;
	san[n_san].node.san.unstructured_name.p = cn_ip_len ? cn_ip : (unsigned char *)o->cn;
	san[n_san++].node.san.unstructured_name.len = cn_ip_len ? cn_ip_len : strlen(o->cn);
	if (o->local_names) {
		if (strcmp(o->cn, "localhost") != 0) {
			san[n_san].node.type = MBEDTLS_X509_SAN_DNS_NAME;
			san[n_san].node.san.unstructured_name.p = (unsigned char *)"localhost";
			san[n_san++].node.san.unstructured_name.len = 9;
		}
		if (cn_ip_len != 4 || memcmp(cn_ip, ip4_lo, 4) != 0) {
			san[n_san].node.type = MBEDTLS_X509_SAN_IP_ADDRESS;
			san[n_san].node.san.unstructured_name.p = (unsigned char *)ip4_lo;
			san[n_san++].node.san.unstructured_name.len = 4;
		}
		if (cn_ip_len != 16 || memcmp(cn_ip, ip6_lo, 16) != 0) {
			san[n_san].node.type = MBEDTLS_X509_SAN_IP_ADDRESS;
			san[n_san].node.san.unstructured_name.p = (unsigned char *)ip6_lo;
			san[n_san++].node.san.unstructured_name.len = 16;
		}
	}
	/* mbedTLS writes the list back to front: link it reversed so the
	 * certificate lists NAME first. */
	for (int i = 1; i < n_san; i++)
		san[i].next = &san[i - 1];

	time_t now = time(NULL), from = now - CERTS_SKEW_S, to = now + (time_t)o->days * 86400;
	struct cert_spec ca = {
	    .subject = ca_dn,
	    .issuer = ca_dn,
	    .subject_key = &ca_key,
	    .issuer_key = &ca_key,
	    .is_ca = 1,
	    .not_before = from,
	    .not_after = to,
	};
	struct cert_spec srv = {
	    .subject = srv_dn,
	    .issuer = ca_dn,
	    .subject_key = &srv_key,
	    .issuer_key = &ca_key,
	    .eku_oid = MBEDTLS_OID_SERVER_AUTH,
	    .eku_len = MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH),
	    .san = &san[n_san - 1],
	    .not_before = from,
	    .not_after = to,
	};
	struct cert_spec cli = {
	    .subject = cli_dn,
	    .issuer = ca_dn,
	    .subject_key = &cli_key,
	    .issuer_key = &ca_key,
	    .eku_oid = MBEDTLS_OID_CLIENT_AUTH,
	    .eku_len = MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH),
	    .not_before = from,
	    .not_after = to,
	};

	mbedtls_pk_init(&ca_key);
	mbedtls_pk_init(&srv_key);
	mbedtls_pk_init(&cli_key);
	if ((rc = certs_key_new(&ca_key, e)) < 0 || (rc = certs_key_new(&srv_key, e)) < 0 ||
	    (rc = certs_key_new(&cli_key, e)) < 0)
		goto out_free_keys;
	/* Keys first: a certificate on disk without its key would be useless. */
	const struct {
		const char *crt, *key;
		const struct cert_spec *spec;
	} todo[] = {{"ca.crt", "ca.key", &ca}, {"server.crt", "server.key", &srv}, {"client.crt", "client.key", &cli}};
	for (size_t i = 0; i < TS_ARRAY_LEN(todo); i++) {
		if ((rc = certs_write_key(dir, todo[i].key, todo[i].spec->subject_key, e)) < 0 ||
		    (rc = certs_cert_pem(todo[i].spec, pem, sizeof(pem), e)) < 0 ||
		    (rc = certs_file_new(dir, todo[i].crt, pem, strlen((char *)pem), 0644, e)) < 0)
			goto out_free_keys;
	}
	rc = 0;
out_free_keys:
	mbedtls_pk_free(&ca_key);
	mbedtls_pk_free(&srv_key);
	mbedtls_pk_free(&cli_key);
	return rc;
}

int certs_make(const char *dir, int days, const char *cn, struct ts_err *e)
{
	struct certs_opts o = {.days = days, .cn = cn ? cn : CERTS_CN_DEFAULT, .local_names = 1};
	return certs_make_opts(dir, &o, e);
}

/* ------------------------------------------------------------ command */

int certs_cmd(int argc, char **argv)
{
	const char *dir = NULL, *cn = CERTS_CN_DEFAULT;
	int days = CERTS_DAYS_DEFAULT;
	struct ts_err e = {0};

	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--days") || !strcmp(a, "--cn")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "tokenspeed: certs: %s needs a value\n", a);
				return 2;
			}
			const char *v = argv[++i];
			if (!strcmp(a, "--cn")) {
				cn = v;
				continue;
			}
			char *end;
			errno = 0;
			long d = strtol(v, &end, 10);
			if (end == v || *end || errno || d < 1 || d > CERTS_DAYS_MAX) {
				fprintf(stderr,
				        "tokenspeed: certs: --days \"%s\": give a whole number of days, 1..%d\n", v,
				        CERTS_DAYS_MAX);
				return 2;
			}
			days = (int)d;
		} else if (a[0] == '-' || dir) {
			fprintf(stderr,
			        "tokenspeed: certs: unexpected \"%s\"; usage: tokenspeed certs DIR [--days N] "
			        "[--cn NAME]\n",
			        a);
			return 2;
		} else {
			dir = a;
		}
	}
	if (!dir) {
		fprintf(stderr, "tokenspeed: certs: usage: tokenspeed certs DIR [--days N] [--cn NAME]\n");
		return 2;
	}
	if (certs_make(dir, days, cn, &e) < 0) {
		fprintf(stderr, "tokenspeed: certs: %s\n", e.msg);
		return 1;
	}
	unsigned char ip[16];
	int is_lo4 = inet_pton(AF_INET, cn, ip) == 1 && !memcmp(ip, ip4_lo, 4);
	int is_lo6 = inet_pton(AF_INET6, cn, ip) == 1 && !memcmp(ip, ip6_lo, 16);
	printf("%s: ca.crt ca.key server.crt server.key client.crt client.key (ECDSA P-256, %d days; server names "
	       "%s%s%s%s)\n",
	       dir, days, cn, strcmp(cn, "localhost") ? ", localhost" : "", is_lo4 ? "" : ", 127.0.0.1",
	       is_lo6 ? "" : ", ::1");
	printf("server ini [server]: tls_cert = %s/server.crt, tls_key = %s/server.key, tls_ca = %s/ca.crt\n", dir, dir,
	       dir);
	printf("clients: %s/ca.crt, %s/client.crt, %s/client.key (keys are 0600: copy them with care)\n", dir, dir,
	       dir);
	return 0;
}
