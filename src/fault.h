/* fault: fault injection for the error paths (SQLite's habit).
 *
 * Owns: one counter per kind of call that can fail at run time -- an
 * allocation (ts_alloc, ts_realloc), a file read, an mmap, a TLS call, a
 * socket call -- and the number of the call of each kind that must fail.
 * The hooks sit at the few choke points (base.c, ckpt.c, tok.c, tls.c,
 * conn.c, net.c) as FAULT(kind), which is the constant 0 unless the build
 * defines TS_FAULTS (`make test-faults`): the product never carries them.
 * Does not: decide what a failure means; each choke point fails as the real
 * call would (NULL, -1 with errno, an mbedTLS error).
 * Threads: any; counters are atomic. A test's own client thread may exempt
 * itself (fault_exempt), so only the server's calls count and fail.
 */
#ifndef TS_FAULT_H
#define TS_FAULT_H

#include <errno.h>
#include <stdint.h>

enum fault_kind { FAULT_ALLOC, FAULT_READ, FAULT_MMAP, FAULT_TLS, FAULT_SOCK, FAULT_KINDS };

#ifdef TS_FAULTS
/* Counts a call of kind k; 1 when it is the one armed to fail. */
int fault_hit(enum fault_kind k);
/* From now on count calls of every kind from 0, and fail call number n
 * (1-based) of kind k; n = 0 fails none (only counts). */
void fault_arm(enum fault_kind k, uint64_t n);
uint64_t fault_count(enum fault_kind k); /* calls of k since fault_arm */
int fault_fired(void);                   /* whether the armed call happened */
void fault_exempt(int on);               /* this thread's calls neither count nor fail */
void fault_trace(int on);                /* print the stack of the call that fails (ASan) */
const char *fault_name(enum fault_kind k);
#define FAULT(k) fault_hit(k)
#else
#define FAULT(k) 0
#endif
/* FAULT that also sets errno, for hooks that stand in for a system call. */
#define FAULT_ERRNO(k, err) (FAULT(k) && (errno = (err), 1))

#endif
