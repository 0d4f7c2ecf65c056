/* tls_mem: the fixed pool that mbedTLS allocates from in `tokenspeed serve`.
 *
 * Owns: one arena taken (mapped and written) at boot, sized for the
 * configured number of TLS sessions, and mbedTLS's calloc/free while it is
 * installed (mbedtls_platform_set_calloc_free; our mbedTLS build enables
 * MBEDTLS_PLATFORM_MEMORY for it, see the Makefile). After tls_mem_init every
 * mbedTLS allocation in the process -- configurations, sessions, handshakes,
 * PSA keys -- comes from the arena, so TLS takes no memory after "ready" and
 * RSS stays flat under any connection pattern. When the arena is spent an
 * allocation fails and mbedTLS reports it: the one handshake fails with
 * -E_NOMEM (tls.h), the others go on.
 * Does not: grow, or give memory back to the system.
 *
 * The arena is carved into blocks of size classes (32 B .. 64 KiB, two per
 * power of two) on first use; a freed block goes to its class's free list and
 * is only ever reused by that class (or by a smaller request when the arena
 * is spent). A class is carved only when all its blocks are live, so n
 * sessions that each hold at most p_c blocks of class c never carve more than
 * n * sum_c(p_c * size_c). TLS_MEM_SESSION_BYTES bounds that sum for one
 * server session, measured by tests/t_tls.c with the client in another
 * process: 85 KB for a mutual-certificate handshake, echo and close, 150 KB
 * when the client sends a chain of 34 certificates filling a whole 16 KiB
 * handshake message (2026-12-08). A chain of still smaller certificates
 * could need more, so each session also has an account (an owner slot, one
 * per session the pool was sized for): tls.c charges what mbedTLS allocates
 * while it works on a session to that session, and an allocation past the
 * quota fails (that handshake ends with -E_NOMEM), so no client can take
 * another's share; a session beyond the number the pool was sized for is
 * refused at tls_session_init. TLS_MEM_BASE_BYTES covers
 * what belongs to no session (the configuration's certificates and key,
 * PSA's key store: 7 KB measured, plus the key store's growth with the
 * number of sessions); tests/t_tlsmem.c checks from the stats `serve` logs
 * at exit that the pool was never spent under its storms.
 *
 * Threads: any; one mutex inside (mbedTLS runs under tls.c's lock anyway,
 * but a session may be freed on another thread). tls_mem_init once, at boot,
 * before any thread uses mbedTLS.
 */
#ifndef TS_TLS_MEM_H
#define TS_TLS_MEM_H

#include "base.h"

#define TLS_MEM_SESSION_BYTES (160u << 10) /* per session: see above */
#define TLS_MEM_BASE_BYTES    (512u << 10) /* configuration and PSA key store */
#define TLS_MEM_MAX_SESSIONS  65536

/* Arena bytes for n_sessions concurrent sessions. */
size_t tls_mem_bytes_for(int n_sessions);

/* Maps and writes bytes, then installs the pool as mbedTLS's allocator, with
 * n_sessions accounts of session_quota bytes each (TLS_MEM_SESSION_BYTES in
 * serve; tests use smaller ones). -E_NOMEM or -E_INVAL (twice, or a zero)
 * with e set. */
int tls_mem_init(size_t bytes, size_t session_quota, int n_sessions, struct ts_err *e);

/* A session's account: *owner = its slot, or -1 when no pool is installed
 * (then nothing is counted); -E_NOMEM when every slot is taken. */
int tls_mem_owner_new(int *owner);
void tls_mem_owner_free(int owner); /* -1: nothing */
/* What this thread allocates from now on counts against owner (-1: none). */
void tls_mem_owner_set(int owner);

struct tls_mem_stats {
	size_t arena_bytes;  /* taken at boot */
	size_t carved_bytes; /* cut into blocks so far (never shrinks) */
	size_t live_bytes;   /* in blocks now allocated */
	size_t peak_bytes;   /* most live_bytes seen */
	size_t class_peak_bytes; /* sum over classes of (most blocks live at once * block size) since the last reset */
	uint64_t allocs, frees, failed;
	uint64_t refused; /* allocations past a session's quota (also in failed), and sessions refused for want of an account */
	int sessions;     /* accounts in use */
};
/* All zero before tls_mem_init. */
void tls_mem_stats(struct tls_mem_stats *st);

/* Restarts class_peak_bytes from what is live now (tests measure a session). */
void tls_mem_reset_peaks(void);

#endif
