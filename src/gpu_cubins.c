/* gpu_cubins: the kernels, compiled by `make cubins` into cubin/sm_<arch>/
 * <module>.cubin and embedded here with .incbin, so nothing is read from disk
 * at run time. The Makefile makes this object depend on every cubin. */
#include "gpu.h"

#define INCBIN(sym, path)                                         \
	__asm__(".section .rodata\n"                              \
		".balign 64\n"                                    \
		".globl " #sym "\n" #sym ":\n"                   \
		".incbin \"" path "\"\n"                         \
		".globl " #sym "_end\n" #sym "_end:\n"           \
		".byte 0\n"                                       \
		".previous\n");                                   \
	extern const unsigned char sym[], sym##_end[];

#define EMBED(mod)                                                    \
	INCBIN(ts_cubin_sm90a_##mod, "cubin/sm_90a/" #mod ".cubin")   \
	INCBIN(ts_cubin_sm100a_##mod, "cubin/sm_100a/" #mod ".cubin")
GPU_MODULES(EMBED)
#undef EMBED

const void *gpu_cubin(enum gpu_module m, const char *arch, size_t *bytes)
{
	int a = !strcmp(arch, "90a") ? 0 : !strcmp(arch, "100a") ? 1 : -1;
#define CASE(mod)                                                                                   \
	case GPU_M_##mod:                                                                           \
		if (a == 0) {                                                                       \
			*bytes = (size_t)(ts_cubin_sm90a_##mod##_end - ts_cubin_sm90a_##mod);       \
			return ts_cubin_sm90a_##mod;                                                \
		}                                                                                   \
		if (a == 1) {                                                                       \
			*bytes = (size_t)(ts_cubin_sm100a_##mod##_end - ts_cubin_sm100a_##mod);     \
			return ts_cubin_sm100a_##mod;                                               \
		}                                                                                   \
		break;
	switch (m) {
		GPU_MODULES(CASE)
	case GPU_M_N:
		break;
	}
#undef CASE
	return NULL;
}

