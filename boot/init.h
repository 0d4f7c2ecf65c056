/* init: the appliance's userland when the binary is the image's /init (PID 1).
 *
 * Owns: mounts, console, hostname, kernel modules, NVIDIA device nodes, the
 * config and model partitions (found by filesystem label), the network
 * ([net], boot/netcfg.c), choosing the ini (the operator's, else the last one
 * that reached ready, else maintenance), and supervising the engine: a child
 * `tokenspeed serve`, restarted with exponential backoff when it dies, drained
 * on SIGTERM, on the ACPI power button and on ctrl-alt-del (SIGINT), then sync
 * and power off (reboot for ctrl-alt-del). Does not: load a model or serve.
 *
 * Tests run the same code without being PID 1: `tokenspeed init --root DIR`
 * (struct init_opts with pid1 = 0) takes DIR/config as the config partition,
 * skips mounts, modules, hostname, network and the final power-off, makes
 * itself a child subreaper so it still reaps, and returns when the engine has
 * drained. Threads: one; everything here runs before or beside the engine
 * process, never inside it.
 */
#ifndef TS_INIT_H
#define TS_INIT_H

#include <stddef.h>

#define INIT_INI "tokenspeed.ini"
#define INIT_LAST_GOOD "last-good.ini" /* beside INIT_INI: the last ini that reached ready */
#define INIT_LABEL_CONFIG "TS-CONFIG"  /* FAT, the operator edits it */
#define INIT_LABEL_MODEL "TS-MODEL"    /* ext4, the checkpoint(s) */

struct init_opts {
	int pid1;                 /* do the PID-1 duties (mounts, modules, net, power off) */
	const char *self;         /* this binary, exec'd as the engine child */
	const char *config_dir;   /* where tokenspeed.ini lives (the config partition's mount point) */
	const char *input_dir;    /* evdev devices watched for KEY_POWER; NULL = none */
	int backoff_base_ms;      /* first restart delay; doubles per failure in a row */
	int backoff_max_ms;       /* cap of the restart delay */
	int drain_ms;             /* SIGTERM to the engine, then this long before SIGKILL */
};

/* Runs the appliance until shutdown. PID 1 never returns (it powers off or
 * reboots); a test run returns 0 after a clean drain, else 1. */
int init_run(const struct init_opts *o);

/* `tokenspeed init ...` (tests) and the PID-1 entry from main(). */
int init_cmd(int argc, char **argv);
int init_maint_cmd(int argc, char **argv); /* boot/init_maint.c: tokenspeed maintenance ... */
void init_pid1_main(char **argv) __attribute__((noreturn));

/* ---- pieces, public for tests/t_init.c ---- */

/* Delay before restart number n_fail (1 = the first failure): base * 2^(n-1), capped. */
int init_backoff_ms(int n_fail, int base_ms, int max_ms);

/* "exit status 1", "killed by signal 9 (SIGKILL)", "killed by signal 11 (SIGSEGV), core dumped". */
const char *init_exit_reason(int wstatus, char *buf, size_t n);

/* Label and type ("ext4", "vfat") of the filesystem on a block device or
 * image file, read from its superblock. 0, or -E_* when neither is found. */
int init_fs_label(const char *dev, char *type, size_t type_n, char *label, size_t label_n);

/* The device whose filesystem has this label: each entry NAME of block_dir
 * (/sys/class/block) is tried as dev_dir/NAME. 0 with out and type set, or -E_IO when none has it. */
int init_find_label(const char *block_dir, const char *dev_dir, const char *label, char *out, size_t n,
		    char *type, size_t type_n);

/* NVIDIA nodes from proc_devices (/proc/devices) into dev_dir: nvidiactl,
 * nvidia0..N-1 (N = entries of gpus_dir, /proc/driver/nvidia/gpus),
 * nvidia-uvm and nvidia-uvm-tools. Returns the nodes made (0 without the
 * driver) or -E_*. */
int init_nvidia_nodes(const char *proc_devices, const char *gpus_dir, const char *dev_dir);

/* Loads each module named in list (one path per line, relative to mod_dir,
 * in dependency order; '#' comments) with finit_module. A missing or failing
 * module is logged by name and the rest still load. Returns the number loaded. */
int init_modules_load(const char *list, const char *mod_dir);

enum init_cfg_pick { INIT_CFG_OK, INIT_CFG_FALLBACK, INIT_CFG_NONE };

/* Which ini to boot from dir: tokenspeed.ini when it validates (cfg_load and
 * the checks --check-config makes), else last-good.ini when that validates,
 * else none. why says what was wrong with tokenspeed.ini (file:line: ...). */
enum init_cfg_pick init_cfg_pick(const char *dir, char *ini, size_t ini_n, char *why, size_t why_n);

/* Copies dir/tokenspeed.ini to dir/last-good.ini (through a temporary file
 * and rename, fsync'd) unless it is already identical. 1 copied, 0 same, -E_* error. */
int init_save_last_good(const char *dir);

#endif
