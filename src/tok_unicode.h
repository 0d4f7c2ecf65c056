/* tok_unicode: code point range tables for the tokenizer's pre-tokenizer and
 * normalizer checks, generated from the Unicode Character Database by
 * tests/gen_tok_unicode.js (see src/tok_unicode.c). Each table is sorted,
 * non-overlapping inclusive [first, last] ranges. Read-only; any thread. */
#ifndef TS_TOK_UNICODE_H
#define TS_TOK_UNICODE_H

#include <stdint.h>

extern const uint32_t tok_uc_letter[][2]; /* \p{L} */
extern const int tok_uc_letter_n;
extern const uint32_t tok_uc_number[][2]; /* \p{N} */
extern const int tok_uc_number_n;
extern const uint32_t tok_uc_mark[][2]; /* \p{M} */
extern const int tok_uc_mark_n;
extern const uint32_t tok_uc_punct[][2]; /* \p{P} */
extern const int tok_uc_punct_n;
extern const uint32_t tok_uc_symbol[][2]; /* \p{S} */
extern const int tok_uc_symbol_n;
extern const uint32_t tok_uc_nfc_unstable[][2]; /* may change under NFC */
extern const int tok_uc_nfc_unstable_n;
extern const uint32_t tok_uc_assigned[][2]; /* not Cn in this UCD version */
extern const int tok_uc_assigned_n;
extern const uint32_t tok_uc_ccc[][3]; /* {first, last, ccc != 0} */
extern const int tok_uc_ccc_n;
extern const uint32_t tok_uc_decomp[][3]; /* {cp, a, b or 0}: canonical, one step */
extern const int tok_uc_decomp_n;
extern const uint32_t tok_uc_comp[][3]; /* {a, b, composite}: primary composites */
extern const int tok_uc_comp_n;
extern const char tok_uc_version[]; /* "15.0.0" */

#endif
