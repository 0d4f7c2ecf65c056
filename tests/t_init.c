/* t_init: the PID-1 supervisor without being PID 1 (boot/init.h).
 * Pieces: the restart backoff, exit reasons, filesystem labels read from
 * superblocks that mkfs.ext4 and mkfs.vfat wrote, /dev/nvidia* from a
 * /proc/devices text, module loading that goes on past missing and broken
 * modules, the choice between tokenspeed.ini, last-good.ini and
 * maintenance. Then the real `tokenspeed init --config-dir DIR`: the engine
 * reaches ready, the ini is saved as last good, a SIGKILLed engine is
 * restarted after the backoff, a broken ini boots the last good one, no
 * last good one gives maintenance, SIGTERM drains and ends "powering off",
 * SIGINT (ctrl-alt-del) ends "rebooting". */
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../boot/init.c"
#include "../boot/init_dev.c"
#include "../boot/netcfg.c"
#include "../boot/init_maint.c"
#include "t.h"
#include "tsclient.h"
#include "tutil.h"

#define W "build/tests/init"

static char logbuf[1 << 16];
static void sink(const char *line, void *ctx)
{
	(void)ctx;
	strncat(logbuf, line, sizeof(logbuf) - strlen(logbuf) - 1);
}

static void t_pieces(void)
{
	T_CHECK(init_backoff_ms(1, 1000, 60000) == 1000, "first");
	T_CHECK(init_backoff_ms(2, 1000, 60000) == 2000, "second");
	T_CHECK(init_backoff_ms(4, 1000, 60000) == 8000, "fourth");
	T_CHECK(init_backoff_ms(7, 1000, 60000) == 60000, "capped");
	T_CHECK(init_backoff_ms(1000, 1000, 60000) == 60000, "no overflow");

	char why[96];
	int st;
	pid_t p = fork();
	if (p == 0)
		_exit(3);
	waitpid(p, &st, 0);
	T_HAS(init_exit_reason(st, why, sizeof(why)), "exit status 3");
	p = fork();
	if (p == 0) {
		pause();
		_exit(0);
	}
	kill(p, SIGKILL);
	waitpid(p, &st, 0);
	T_HAS(init_exit_reason(st, why, sizeof(why)), "killed by signal 9 (SIGKILL)");
}

static void t_labels(void)
{
	char type[16], label[64], dev[512];
	T_CHECK(system("rm -rf " W "/blk && mkdir -p " W "/blk/sys " W "/blk/dev && cd " W "/blk && "
		       "touch sys/vda1 sys/vda2 sys/vda3 sys/vdb && "
		       "truncate -s 4M dev/vda2 && mkfs.ext4 -q -F -L TS-MODEL dev/vda2 && "
		       "truncate -s 40M dev/vda1 && mkfs.vfat -F 32 -n TS-CONFIG dev/vda1 >/dev/null && "
		       "truncate -s 20M dev/vda3 && mkfs.vfat -F 16 -n ESP dev/vda3 >/dev/null && "
		       "head -c 4096 /dev/zero > dev/vdb") == 0,
		"mkfs (needs e2fsprogs and dosfstools)");
	T_CHECK(init_fs_label(W "/blk/dev/vda2", type, sizeof(type), label, sizeof(label)) == 0, "ext4");
	T_CHECK(!strcmp(type, "ext4") && !strcmp(label, "TS-MODEL"), "%s %s", type, label);
	T_CHECK(init_fs_label(W "/blk/dev/vda1", type, sizeof(type), label, sizeof(label)) == 0, "fat32");
	T_CHECK(!strcmp(type, "vfat") && !strcmp(label, "TS-CONFIG"), "%s %s", type, label);
	T_CHECK(init_fs_label(W "/blk/dev/vda3", type, sizeof(type), label, sizeof(label)) == 0, "fat16");
	T_CHECK(!strcmp(type, "vfat") && !strcmp(label, "ESP"), "%s %s", type, label);
	T_CHECK(init_fs_label(W "/blk/dev/vdb", type, sizeof(type), label, sizeof(label)) < 0, "zeros");
	T_CHECK(init_fs_label(W "/blk/dev/none", type, sizeof(type), label, sizeof(label)) < 0, "missing");
	T_CHECK(init_find_label(W "/blk/sys", W "/blk/dev", "TS-CONFIG", dev, sizeof(dev), type, sizeof(type)) == 0,
		"find config");
	T_CHECK(!strcmp(dev, W "/blk/dev/vda1") && !strcmp(type, "vfat"), "%s %s", dev, type);
	T_CHECK(init_find_label(W "/blk/sys", W "/blk/dev", "TS-MODEL", dev, sizeof(dev), type, sizeof(type)) == 0,
		"find model");
	T_CHECK(!strcmp(dev, W "/blk/dev/vda2"), "%s", dev);
	T_CHECK(init_find_label(W "/blk/sys", W "/blk/dev", "TS-NONE", dev, sizeof(dev), type, sizeof(type)) < 0,
		"absent label");
}

static void t_nvidia(void)
{
	T_CHECK(system("rm -rf " W "/nv && mkdir -p " W "/nv/dev " W "/nv/gpus/0000:01:00.0 " W
		       "/nv/gpus/0000:02:00.0 && printf 'Character devices:\\n  1 mem\\n195 nvidia-frontend\\n"
		       "234 nvidia-nvswitch\\n508 nvidia-uvm\\n\\nBlock devices:\\n  7 nvidia-uvm\\n' > " W
		       "/nv/devices && printf 'Character devices:\\n  1 mem\\n\\nBlock devices:\\n259 blkext\\n' > " W
		       "/nv/none") == 0,
		"setup");
	T_CHECK(init_nvidia_nodes(W "/nv/none", W "/nv/gpus", W "/nv/dev") == 0, "no driver: no nodes");
	if (geteuid() != 0) {
		printf("#> t_init: not root: mknod of the NVIDIA nodes not tried\n");
		return;
	}
	T_CHECK(init_nvidia_nodes(W "/nv/devices", W "/nv/gpus", W "/nv/dev") == 5, "nodes");
	static const struct {
		const char *name;
		unsigned maj, min;
	} want[] = {{"nvidiactl", 195, 255}, {"nvidia0", 195, 0}, {"nvidia1", 195, 1}, {"nvidia-uvm", 508, 0},
		    {"nvidia-uvm-tools", 508, 1}};
	for (size_t i = 0; i < TS_ARRAY_LEN(want); i++) {
		char p[256];
		struct stat sb;
		snprintf(p, sizeof(p), W "/nv/dev/%s", want[i].name);
		T_CHECK(stat(p, &sb) == 0 && S_ISCHR(sb.st_mode) && major(sb.st_rdev) == want[i].maj &&
				minor(sb.st_rdev) == want[i].min,
			"%s", p);
	}
	struct stat sb;
	T_CHECK(stat(W "/nv/dev/nvidia2", &sb) < 0, "only the two GPUs listed");
}

static void t_modules(void)
{
	T_CHECK(system("rm -rf " W "/mod && mkdir -p " W "/mod/kernel && head -c 256 /dev/urandom > " W
		       "/mod/kernel/junk.ko && printf '# order\\nkernel/missing.ko\\n\\nkernel/junk.ko\\n' > " W
		       "/mod/load.list") == 0,
		"setup");
	logbuf[0] = 0;
	log_set_sink(sink, NULL);
	int n = init_modules_load(W "/mod/load.list", W "/mod");
	int n2 = init_modules_load(W "/mod/absent.list", W "/mod");
	log_set_sink(NULL, NULL);
	T_CHECK(n == 0 && n2 == 0, "loaded %d %d", n, n2);
	T_HAS(logbuf, "module kernel/missing.ko: No such file or directory (going on without it)");
	T_HAS(logbuf, "module kernel/junk.ko: finit_module:");
	T_HAS(logbuf, "modules loaded=0 failed=2");
}

/* An ini for the CPU backend on port, with paths relative to its directory. */
static void write_ini(const char *dir, const char *model, int port, const char *extra)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/" INIT_INI, dir);
	FILE *f = fopen(p, "w");
	fprintf(f,
		"[model]\npath = %s\n[engine]\nmax_seq_len = 256\nmax_running = 4\nmax_batch_tokens = 64\n"
		"[device]\nbackend = cpu\ncpu_threads = 1\n[server]\nlisten = 127.0.0.1:%d\n"
		"tls_cert = certs/server.crt\ntls_key = certs/server.key\ntls_ca = certs/ca.crt\n%s[log]\nlevel = info\n",
		model, port, extra);
	fclose(f);
}

static void t_pick(const char *model)
{
	char ini[4096], why[1024];
	T_CHECK(system("rm -rf " W "/cfg && mkdir -p " W "/cfg && build/tokenspeed certs " W "/cfg/certs >/dev/null") ==
			0,
		"certs");
	write_ini(W "/cfg", model, 7999, "");
	T_CHECK(init_cfg_pick(W "/cfg", ini, sizeof(ini), why, sizeof(why)) == INIT_CFG_OK, "%s", why);
	T_CHECK(!strcmp(ini, W "/cfg/" INIT_INI), "%s", ini);
	T_CHECK(init_save_last_good(W "/cfg") == 1, "saved");
	T_CHECK(init_save_last_good(W "/cfg") == 0, "same: not rewritten");
	write_ini(W "/cfg", model, 7999, "max_requests = 0\n");
	T_CHECK(init_cfg_pick(W "/cfg", ini, sizeof(ini), why, sizeof(why)) == INIT_CFG_FALLBACK, "fallback");
	T_CHECK(!strcmp(ini, W "/cfg/" INIT_LAST_GOOD), "%s", ini);
	T_HAS(why, "tokenspeed.ini:15: [server] max_requests = \"0\": out of range");
	write_ini(W "/cfg", "nowhere", 7999, "");
	T_CHECK(init_cfg_pick(W "/cfg", ini, sizeof(ini), why, sizeof(why)) == INIT_CFG_FALLBACK, "bad model");
	T_HAS(why, "nowhere");
	unlink(W "/cfg/" INIT_LAST_GOOD);
	T_CHECK(init_cfg_pick(W "/cfg", ini, sizeof(ini), why, sizeof(why)) == INIT_CFG_NONE, "none");
	T_CHECK(!ini[0], "no ini");
}

/* ---- the real binary ---- */

static pid_t init_pid;

static void start_init(const char *log)
{
	char lp[256];
	snprintf(lp, sizeof(lp), W "/%s", log);
	unlink(lp); /* wait_log must not read a previous run's */
	init_pid = fork();
	if (init_pid == 0) {
		int fd = open(lp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		execl("build/tokenspeed", "tokenspeed", "init", "--config-dir", W "/cfg", "--backoff-ms", "200",
		      "--drain-ms", "5000", (char *)NULL);
		_exit(127);
	}
}

/* Waits up to ms for the n-th occurrence of needle in the log; the text after it. */
static const char *wait_log(const char *log, const char *needle, int nth, int ms)
{
	static char buf[1 << 17];
	char lp[256];
	snprintf(lp, sizeof(lp), W "/%s", log);
	for (int t = 0; t <= ms; t += 20) {
		FILE *f = fopen(lp, "r");
		size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
		if (f)
			fclose(f);
		buf[n] = 0;
		const char *p = buf;
		int k = 0;
		while ((p = strstr(p, needle))) {
			p += strlen(needle);
			if (++k == nth)
				return p;
		}
		usleep(20000);
	}
	return NULL;
}

static int wait_exit(pid_t pid, int ms)
{
	int st;
	for (int t = 0; t <= ms; t += 20) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		usleep(20000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

/* Connects (TLS, HELLO, WELCOME); 1 with WELCOME's server name in srv. */
static int connects_srv(int port, char *srv, size_t srv_n)
{
	struct tsc c;
	struct ts_err e = {0};
	struct tsc_tls tls = {W "/cfg/certs/ca.crt", W "/cfg/certs/client.crt", W "/cfg/certs/client.key", "localhost",
			      NULL, NULL};
	char hp[64];
	snprintf(hp, sizeof(hp), "127.0.0.1:%d", port);
	if (tsc_connect(&c, hp, &tls, &e) < 0)
		return 0;
	snprintf(srv, srv_n, "%s", c.server);
	tsc_close(&c);
	return 1;
}

static int connects(int port)
{
	char srv[300];
	return connects_srv(port, srv, sizeof(srv));
}

static void t_supervise(const char *model)
{
	int port = t_free_port();
	T_CHECK(system("rm -rf " W "/cfg && mkdir -p " W "/cfg && build/tokenspeed certs " W "/cfg/certs >/dev/null") ==
			0,
		"certs");
	write_ini(W "/cfg", model, port, "");

	/* 1. boot to ready, the ini saved as last good */
	start_init("a.log");
	const char *p = wait_log("a.log", "engine started pid=", 1, 10000);
	int pid1 = p ? atoi(p) : 0;
	T_CHECK(wait_log("a.log", "init: engine ready", 1, 20000) != NULL, "ready");
	T_CHECK(wait_log("a.log", "saved " W "/cfg/" INIT_LAST_GOOD, 1, 2000) != NULL, "last good saved");
	char srv0[300] = "";
	T_CHECK(connects_srv(port, srv0, sizeof(srv0)), "serves");
	T_CHECK(!strcmp(srv0, "tokenspeed 0.1"), "no note: \"%s\"", srv0);

	/* 2. the engine dies: logged with its reason, restarted after the backoff */
	T_CHECK(pid1 > 0 && kill(pid1, SIGKILL) == 0, "kill engine %d", pid1);
	T_CHECK(wait_log("a.log", "(killed by signal 9 (SIGKILL)); restart 1 in 200 ms", 1, 5000) != NULL, "restart");
	p = wait_log("a.log", "engine started pid=", 2, 5000);
	int pid2 = p ? atoi(p) : 0;
	T_CHECK(pid2 > 0 && pid2 != pid1, "new engine %d", pid2);
	T_CHECK(wait_log("a.log", "init: engine ready", 2, 20000) != NULL, "ready again");
	T_CHECK(connects(port), "serves again");

	/* 3. SIGTERM: drain, clean exit, "powering off" */
	kill(init_pid, SIGTERM);
	T_CHECK(wait_exit(init_pid, 15000) == 0, "init exits 0");
	T_CHECK(wait_log("a.log", "init: SIGTERM: draining the engine", 1, 0) != NULL, "drain");
	T_CHECK(wait_log("a.log", "serve: exit status=0 reason=\"SIGTERM, drained\"", 1, 0) != NULL, "drained");
	T_CHECK(wait_log("a.log", "init: powering off", 1, 0) != NULL, "power off");
	T_CHECK(kill(pid2, 0) < 0, "engine gone");

	/* 4. a broken ini: the last good one boots, loudly */
	write_ini(W "/cfg", model, port, "max_requests = 0\n");
	start_init("b.log");
	T_CHECK(wait_log("b.log", "CONFIG FALLBACK: " W "/cfg/tokenspeed.ini is not valid: " W
				  "/cfg/tokenspeed.ini:15: [server] max_requests = \"0\"",
			 1, 10000) != NULL,
		"fallback logged with file:line");
	T_CHECK(wait_log("b.log", "config=" W "/cfg/" INIT_LAST_GOOD " (last good)", 1, 5000) != NULL, "last good");
	T_CHECK(wait_log("b.log", "init: engine ready", 1, 20000) != NULL, "ready on last good");
	char srv[300] = "";
	T_CHECK(connects_srv(port, srv, sizeof(srv)), "serves from last good");
	T_HAS(srv, "tokenspeed 0.1; CONFIG FALLBACK to the last good ini: " W "/cfg/tokenspeed.ini:15: [server] "
		   "max_requests = \"0\": out of range");
	T_CHECK(wait_log("b.log", "saved", 1, 0) == NULL, "a fallback does not overwrite the last good");
	kill(init_pid, SIGINT); /* ctrl-alt-del */
	T_CHECK(wait_exit(init_pid, 15000) == 0, "init exits 0");
	T_CHECK(wait_log("b.log", "init: rebooting", 1, 0) != NULL, "reboot");

	/* 5. no last good: maintenance, no engine; every HELLO gets an ERROR
	 * naming the ini problem; still stops on SIGTERM */
	unlink(W "/cfg/" INIT_LAST_GOOD);
	start_init("c.log");
	T_CHECK(wait_log("c.log", "MAINTENANCE: " W "/cfg/tokenspeed.ini is not valid and there is no valid "
				  "last-good.ini: " W "/cfg/tokenspeed.ini:15:",
			 1, 10000) != NULL,
		"maintenance");
	T_CHECK(wait_log("c.log", "maintenance: listening on port", 1, 10000) != NULL, "maintenance server");
	T_CHECK(wait_log("c.log", "engine started", 1, 0) == NULL, "no engine");
	for (int i = 0; i < 2; i++) { /* every HELLO, not only the first */
		struct tsc cl;
		struct ts_err ce = {0};
		struct tsc_tls tls = {W "/cfg/certs/ca.crt", W "/cfg/certs/client.crt", W "/cfg/certs/client.key",
				      "localhost", NULL, NULL};
		char hp[64];
		snprintf(hp, sizeof(hp), "127.0.0.1:%d", port);
		T_CHECK(tsc_connect(&cl, hp, &tls, &ce) < 0, "maintenance must refuse HELLO");
		T_HAS(ce.msg, "ERROR UNSUPPORTED: maintenance: " W "/cfg/tokenspeed.ini is not valid and there is "
			      "no valid last-good.ini: " W "/cfg/tokenspeed.ini:15: [server] max_requests = \"0\": out of range");
	}
	kill(init_pid, SIGTERM);
	T_CHECK(wait_exit(init_pid, 5000) == 0, "init exits");
	T_CHECK(wait_log("c.log", "init: SIGTERM: draining the engine", 1, 0) != NULL, "stop");
	T_CHECK(wait_log("c.log", "maintenance: stopped", 1, 0) != NULL, "maintenance server stopped");
}

int main(void)
{
	char model[512];
	T_CHECK(system("mkdir -p " W) == 0, "mkdir");
	T_CHECK(realpath(t_ckpt("llama3-mini"), model) != NULL, "model");
	t_pieces();
	t_labels();
	t_nvidia();
	t_modules();
	t_pick(model);
	t_supervise(model);
	return T_DONE();
}
