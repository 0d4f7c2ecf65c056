/* boot: process start to "ready", as ordered, timed stages.
 *
 * Owns: the order in which the engine (src/engine.h) comes up: config -> checkpoint -> model ->
 * backend (weights, workspace) -> KV pool -> self-test -> ready. Each stage is
 * logged with its duration; the log states weights, workspace and KV sizes
 * and the KV capacity in tokens. The engine ends BOOTING for READY here.
 * Does not: serve (the server sits on top of a ready engine).
 * Threads: the boot thread, which becomes the engine thread.
 */
#ifndef TS_BOOT_H
#define TS_BOOT_H

#include "engine.h"

/* Brings the engine up on a loaded config. Fails fast, with e naming the
 * file, key, tensor or device and what to do. */
int engine_boot(struct engine *en, const struct cfg *cfg, struct ts_err *e);

/* Fills limits the way engine_boot does (exposed for tests). */
int engine_pick_backend(const struct cfg *cfg, const struct backend_ops **ops, struct ts_err *e);

/* --check-config's model half: opens the checkpoint cfg names, reads its
 * config.json and binds every tensor (no weight is read), then asks the
 * backends whether they run it: the CPU backend always, the GPU backend's
 * refusal is an error with backend = gpu and a note with auto. note gets a
 * one-line summary. 0 or -E_* with e naming the file, key, tensor or dim. */
int engine_check_model(const struct cfg *cfg, char *note, size_t note_len, struct ts_err *e);

/* --check-config's and serve's server half, before any weight is read: the
 * PSK file (exists, hex, 16..48 bytes) and identity, or the TLS files (PEM,
 * the key matches the certificate, the certificate chains to tls_ca and is
 * in its validity period, tls_ca is a valid CA). With none of them set: an
 * error when required (serve), else a note. note gets a one-line summary. 0
 * or -E_* with e naming the ini key and file and what to do. */
int engine_check_server(const struct cfg *cfg, int required, char *note, size_t note_len, struct ts_err *e);

#endif
