/* fault: the counters behind FAULT() (see fault.h); empty unless TS_FAULTS. */
#include "fault.h"

#ifdef TS_FAULTS
#include <stdatomic.h>

static _Atomic uint64_t calls[FAULT_KINDS];
static _Atomic uint64_t fail_at[FAULT_KINDS];
static _Atomic int fired;
static _Thread_local int exempt;
static _Atomic int trace;

/* In the ASan build (the only one with TS_FAULTS), where the failed call was. */
void __sanitizer_print_stack_trace(void);

int fault_hit(enum fault_kind k)
{
	if (exempt)
		return 0;
	uint64_t n = atomic_fetch_add(&calls[k], 1) + 1;
	if (n != atomic_load(&fail_at[k]))
		return 0;
	atomic_store(&fired, 1);
	if (atomic_load(&trace))
		__sanitizer_print_stack_trace();
	return 1;
}

void fault_arm(enum fault_kind k, uint64_t n)
{
	for (int i = 0; i < FAULT_KINDS; i++) {
		atomic_store(&fail_at[i], 0);
		atomic_store(&calls[i], 0);
	}
	atomic_store(&fired, 0);
	atomic_store(&fail_at[k], n);
}

uint64_t fault_count(enum fault_kind k)
{
	return atomic_load(&calls[k]);
}

int fault_fired(void)
{
	return atomic_load(&fired);
}

void fault_trace(int on)
{
	atomic_store(&trace, on);
}

void fault_exempt(int on)
{
	exempt = on;
}

const char *fault_name(enum fault_kind k)
{
	static const char *const names[FAULT_KINDS] = {"alloc", "read", "mmap", "tls", "socket"};
	return k < FAULT_KINDS ? names[k] : "?";
}
#else
typedef int fault_unused; /* ISO C wants a declaration in every file */
#endif
