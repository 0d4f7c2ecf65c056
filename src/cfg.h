/* cfg: the ini file (inih) -> struct cfg.
 *
 * Owns: one table of every key (section, name, type, default, range, help)
 * from which parsing, validation, --print-config and the README section are
 * all derived. Does not: touch the model or any device.
 * Threads: boot thread only; the loaded struct is read-only afterwards.
 *
 * Errors name the file, the line, the key and the accepted values:
 *   config/x.ini:7: [engine] max_seq_len = "12": out of range (accepted 16..1048576)
 * An unknown section or key, a malformed value, a value out of range, a
 * duplicate key and a missing required key are all errors.
 * Relative paths ([model] path, [server] tls_*) are resolved against the
 * directory of the ini file. [net] is read by everyone and applied only by
 * the appliance's PID 1 (boot/init.c).
 */
#ifndef TS_CFG_H
#define TS_CFG_H

#include <stdio.h>

#include "base.h"

#define CFG_PATH_MAX 4096

enum cfg_backend { CFG_BACKEND_AUTO, CFG_BACKEND_CPU, CFG_BACKEND_GPU };
enum cfg_dtype { CFG_DTYPE_AUTO, CFG_DTYPE_BF16, CFG_DTYPE_F16, CFG_DTYPE_F32 };

struct cfg {
	char file[CFG_PATH_MAX];            /* the ini file this came from ("" = defaults) */
	struct {
		char path[CFG_PATH_MAX];    /* HF checkpoint directory (required) */
		enum cfg_dtype dtype;       /* device weights/activations dtype; auto = checkpoint's */
		int chat_format;            /* 0 auto, else 1 + enum tok_chat */
	} model;
	struct {
		int max_seq_len;            /* longest sequence, prompt + output, in tokens */
		int max_batch_tokens;       /* tokens forwarded per step (prefill chunks + decodes) */
		int max_running;            /* sequences in one step */
		int kv_block_tokens;        /* tokens per KV block, power of two */
		int64_t kv_tokens;          /* KV pool size in tokens; 0 = from kv_mem_fraction */
		double kv_mem_fraction;     /* share of memory left after weights and workspace */
		int max_queue;              /* requests waiting beyond the running set */
	} engine;
	struct {
		enum cfg_backend backend;
		char gpus[256];             /* comma-separated device ordinals, e.g. "0" or "0,1" */
		int cpu_threads;            /* 0 = one per online core */
		int tp;                     /* tensor-parallel ranks; 0 = 1 (cpu) or the GPUs listed (gpu) */
	} device;
	struct {
		char listen[256];           /* host:port */
		char tls_cert[CFG_PATH_MAX];
		char tls_key[CFG_PATH_MAX];
		char tls_ca[CFG_PATH_MAX];
		char tls_psk_identity[256];  /* PSK mode when set (with tls_psk_file) */
		char tls_psk_file[CFG_PATH_MAX];
		int max_connections;        /* connections open at once */
		int max_conns_per_peer;     /* of those, from one client address */
		int max_requests;           /* live requests per connection */
		int max_frame_bytes;        /* largest frame accepted */
		int initial_credit;         /* tokens per request before the first CREDIT */
		int credit_timeout_ms;      /* throttled this long: ERROR STALLED */
		int output_limit_bytes;     /* unsent output beyond which a connection is throttled */
		int handshake_timeout_ms;   /* accept to TLS handshake done */
		int hello_timeout_ms;       /* TLS handshake done to HELLO */
		int ping_interval_ms;       /* silence before the server PINGs */
		int idle_timeout_ms;        /* silence before the server closes */
	} server;
	struct {
		int level;                  /* enum log_level */
	} log;
	struct cfg_net {                    /* applied by PID 1 only (boot/netcfg.c) */
		char hostname[64];
		char interface[16];         /* a name, or "auto" */
		char address[64];           /* "a.b.c.d/prefix" or "" */
		char gateway[64];           /* IPv4 default route or "" */
		char address6[64];          /* "x::y/prefix" or "" */
		char gateway6[64];          /* IPv6 default route or "" */
		int mtu;                    /* 0 = leave the interface's */
		int link_wait_ms;           /* auto: how long to wait for a carrier */
	} net;
};

void cfg_defaults(struct cfg *c);

/* Loads and validates path over the defaults. -E_* with e set on failure. */
int cfg_load(struct cfg *c, const char *path, struct ts_err *e);

/* The effective config as a commented ini that cfg_load accepts. */
void cfg_print(const struct cfg *c, FILE *f);

/* Markdown table of every key (section, key, type, default, range, help), for
 * README and `tokenspeed --print-config-doc`. */
void cfg_print_doc(FILE *f);

#endif
