/* init: PID-1 duties when the binary is the image's /init, and the engine's
 * supervisor (see init.h for what it owns and how tests run it).
 *
 * Reading order: the ini choice (operator's, last good, none), the engine
 * child and its ready pipe, the supervisor loop (signals, reaping, backoff,
 * drain), the power button, then the PID-1 boot sequence. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "boot.h"
#include "cfg.h"
#include "init.h"
#include "log.h"
#include "netcfg.h"

/* ------------------------------------------------------------ small pieces */

int init_backoff_ms(int n_fail, int base_ms, int max_ms)
{
	long long d = base_ms;
	for (int i = 1; i < n_fail && d < max_ms; i++)
		d *= 2;
	return (int)(d < max_ms ? d : max_ms);
}

static const char *sig_name(int sig)
{
	static const char *const names[] = {[SIGHUP] = "SIGHUP", [SIGINT] = "SIGINT", [SIGQUIT] = "SIGQUIT",
					    [SIGILL] = "SIGILL", [SIGTRAP] = "SIGTRAP", [SIGABRT] = "SIGABRT",
					    [SIGBUS] = "SIGBUS", [SIGFPE] = "SIGFPE", [SIGKILL] = "SIGKILL",
					    [SIGUSR1] = "SIGUSR1", [SIGSEGV] = "SIGSEGV", [SIGUSR2] = "SIGUSR2",
					    [SIGPIPE] = "SIGPIPE", [SIGALRM] = "SIGALRM", [SIGTERM] = "SIGTERM"};
	return sig > 0 && sig < (int)TS_ARRAY_LEN(names) && names[sig] ? names[sig] : "signal";
}

const char *init_exit_reason(int st, char *buf, size_t n)
{
	if (WIFEXITED(st))
		snprintf(buf, n, "exit status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, n, "killed by signal %d (%s)%s", WTERMSIG(st), sig_name(WTERMSIG(st)),
			 WCOREDUMP(st) ? ", core dumped" : "");
	else
		snprintf(buf, n, "wait status 0x%x", st);
	return buf;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------ the ini */

/* What --check-config checks, without weights. 0 or -E_* with e set. */
static int ini_validate(const char *path, struct cfg *c, struct ts_err *e)
{
	char note[1024];
	cfg_defaults(c);
	if (cfg_load(c, path, e) < 0)
		return -e->code;
	if (engine_check_server(c, 1, note, sizeof(note), e) < 0)
		return -e->code;
	if (engine_check_model(c, note, sizeof(note), e) < 0)
		return -e->code;
	return 0;
}

enum init_cfg_pick init_cfg_pick(const char *dir, char *ini, size_t ini_n, char *why, size_t why_n)
{
	static struct cfg c;
	struct ts_err e = {0};
	enum log_level lv = log_get_level();
	log_set_level(LOG_WARN); /* the checks' own info lines are not the boot's story */
	snprintf(ini, ini_n, "%s/%s", dir, INIT_INI);
	why[0] = 0;
	int rc = ini_validate(ini, &c, &e);
	if (rc == 0) {
		log_set_level(lv);
		return INIT_CFG_OK;
	}
	snprintf(why, why_n, "%s", e.msg);
	snprintf(ini, ini_n, "%s/%s", dir, INIT_LAST_GOOD);
	struct ts_err e2 = {0};
	rc = access(ini, R_OK) == 0 ? ini_validate(ini, &c, &e2) : -E_IO;
	log_set_level(lv);
	if (rc == 0)
		return INIT_CFG_FALLBACK;
	if (access(ini, R_OK) == 0)
		log_error("init: %s does not validate either: %s", ini, e2.msg);
	ini[0] = 0;
	return INIT_CFG_NONE;
}

/* Whole small file into buf (NUL-terminated); its length or -1. */
static long slurp(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t n = 0;
	ssize_t r;
	while (n < cap - 1 && (r = read(fd, buf + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	close(fd);
	buf[n] = 0;
	return n < cap - 1 ? (long)n : -1;
}

int init_save_last_good(const char *dir)
{
	static char a[1 << 16], b[1 << 16];
	char src[4096], dst[4096], tmp[4096];
	snprintf(src, sizeof(src), "%s/%s", dir, INIT_INI);
	snprintf(dst, sizeof(dst), "%s/%s", dir, INIT_LAST_GOOD);
	snprintf(tmp, sizeof(tmp), "%s/%s.tmp", dir, INIT_LAST_GOOD);
	long na = slurp(src, a, sizeof(a));
	if (na < 0)
		return -E_IO;
	long nb = slurp(dst, b, sizeof(b));
	if (nb == na && memcmp(a, b, (size_t)na) == 0)
		return 0;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -E_IO;
	int ok = write(fd, a, (size_t)na) == na && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, dst) < 0) {
		unlink(tmp);
		return -E_IO;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 1;
}

/* ------------------------------------------------------------ supervisor */

static int init_shutdown_cmd = RB_POWER_OFF; /* what PID 1 ends with: set by init_run */

struct sup {
	const struct init_opts *o;
	enum init_cfg_pick pick;
	char ini[4096], why[1024];
	int sfd;                      /* signalfd: SIGCHLD, SIGTERM, SIGINT */
	pid_t engine;                 /* 0 = not running */
	int ready_fd;                 /* read end of the engine's ready pipe, -1 = none */
	int n_fail;                   /* engine exits in a row without reaching ready */
	double spawn_at, kill_at;     /* monotonic seconds */
	int shutting;                 /* 0, or the reboot(2) command to end with */
	int clean;                    /* the engine's last exit was a clean drain */
	int power_fd[16], n_power;
};

static void engine_spawn(struct sup *s)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		log_error("init: pipe: %s", strerror(errno));
		p[0] = p[1] = -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		log_error("init: fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		s->spawn_at = now_s() + 1;
		return;
	}
	if (pid == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL); /* the mask survives exec */
		if (p[1] >= 0 && dup2(p[1], 3) == 3) /* dup2 leaves fd 3 without CLOEXEC */
			setenv("TS_READY_FD", "3", 1);
		if (s->pick == INIT_CFG_FALLBACK)
			setenv("TS_CONFIG_FALLBACK", s->why, 1);
		if (s->pick == INIT_CFG_NONE)
			execl(s->o->self, "tokenspeed", "maintenance", "--config-dir", s->o->config_dir, "--why", s->why,
			      (char *)NULL);
		else
			execl(s->o->self, "tokenspeed", "serve", "--config", s->ini, (char *)NULL);
		fprintf(stderr, "init: exec %s: %s\n", s->o->self, strerror(errno));
		_exit(127);
	}
	close(p[1]);
	s->engine = pid;
	s->ready_fd = p[0];
	if (s->pick == INIT_CFG_NONE)
		log_info("init: maintenance server started pid=%d", (int)pid);
	else
		log_info("init: engine started pid=%d config=%s%s", (int)pid, s->ini,
			 s->pick == INIT_CFG_FALLBACK ? " (last good)" : "");
}

static void on_ready(struct sup *s)
{
	char b[64];
	ssize_t r = read(s->ready_fd, b, sizeof(b) - 1);
	if (r > 0) {
		b[r] = 0;
		if (!strncmp(b, "ready", 5)) {
			s->n_fail = 0;
			log_info("init: engine ready pid=%d", (int)s->engine);
			if (s->pick == INIT_CFG_OK) {
				int rw = s->o->pid1 && mount(NULL, s->o->config_dir, NULL, MS_REMOUNT, NULL) == 0;
				int rc = init_save_last_good(s->o->config_dir);
				if (rw)
					mount(NULL, s->o->config_dir, NULL, MS_REMOUNT | MS_RDONLY, NULL);
				if (rc < 0)
					log_error("init: cannot save %s/%s: %s", s->o->config_dir, INIT_LAST_GOOD,
						  ts_code_name(rc));
				else if (rc > 0)
					log_info("init: saved %s/%s", s->o->config_dir, INIT_LAST_GOOD);
			}
		}
		return;
	}
	close(s->ready_fd);
	s->ready_fd = -1;
}

static void shutdown_begin(struct sup *s, int cmd, const char *why)
{
	if (s->shutting)
		return;
	s->shutting = cmd;
	log_info("init: %s: %s", why, s->engine ? "draining the engine" : "no engine running");
	if (s->engine) {
		kill(s->engine, SIGTERM);
		s->kill_at = now_s() + s->o->drain_ms / 1e3;
	}
}

static void reap(struct sup *s)
{
	int st;
	pid_t pid;
	char why[96];
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		if (pid != s->engine) {
			log_debug("init: reaped pid=%d (%s)", (int)pid, init_exit_reason(st, why, sizeof(why)));
			continue;
		}
		s->engine = 0;
		s->clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
		if (s->ready_fd >= 0) {
			close(s->ready_fd);
			s->ready_fd = -1;
		}
		init_exit_reason(st, why, sizeof(why));
		if (s->shutting) {
			log_info("init: engine exited pid=%d (%s)", (int)pid, why);
			continue;
		}
		s->n_fail++;
		int ms = init_backoff_ms(s->n_fail, s->o->backoff_base_ms, s->o->backoff_max_ms);
		log_error("init: engine exited pid=%d (%s); restart %d in %d ms", (int)pid, why, s->n_fail, ms);
		s->spawn_at = now_s() + ms / 1e3;
	}
}

/* Power-button devices under dir: evdev nodes that report KEY_POWER. */
static void power_open(struct sup *s, const char *dir)
{
	DIR *d = dir ? opendir(dir) : NULL;
	if (!d)
		return;
	struct dirent *de;
	char p[512];
	while ((de = readdir(d)) && s->n_power < (int)TS_ARRAY_LEN(s->power_fd)) {
		if (strncmp(de->d_name, "event", 5))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		int fd = open(p, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			continue;
		unsigned long bits[KEY_MAX / (8 * sizeof(long)) + 1] = {0};
		if (ioctl(fd, EVIOCGBIT(EV_KEY, sizeof(bits)), bits) >= 0 &&
		    (bits[KEY_POWER / (8 * sizeof(long))] >> (KEY_POWER % (8 * sizeof(long))) & 1)) {
			s->power_fd[s->n_power++] = fd;
			log_info("init: power button %s", p);
		} else {
			close(fd);
		}
	}
	closedir(d);
}

static int power_pressed(int fd)
{
	struct input_event ev[16];
	ssize_t r = read(fd, ev, sizeof(ev));
	for (ssize_t i = 0; i + 1 <= r / (ssize_t)sizeof(ev[0]); i++)
		if (ev[i].type == EV_KEY && ev[i].code == KEY_POWER && ev[i].value == 1)
			return 1;
	return 0;
}

int init_run(const struct init_opts *o)
{
	static struct sup s;
	memset(&s, 0, sizeof(s));
	s.o = o;
	s.ready_fd = -1;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	s.sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (s.sfd < 0) {
		log_error("init: signalfd: %s", strerror(errno));
		return 1;
	}
	if (!o->pid1)
		prctl(PR_SET_CHILD_SUBREAPER, 1); /* orphans come to us, as to PID 1 */
	power_open(&s, o->input_dir);

	s.pick = init_cfg_pick(o->config_dir, s.ini, sizeof(s.ini), s.why, sizeof(s.why));
	switch (s.pick) {
	case INIT_CFG_OK:
		log_info("init: config %s", s.ini);
		break;
	case INIT_CFG_FALLBACK:
		log_error("init: CONFIG FALLBACK: %s/%s is not valid: %s; booting the last configuration that reached "
			  "ready, %s",
			  o->config_dir, INIT_INI, s.why, s.ini);
		break;
	case INIT_CFG_NONE:
		log_error("init: MAINTENANCE: %s/%s is not valid and there is no valid %s: %s; fix the ini on the "
			  "config partition and reboot (every HELLO is answered with this)",
			  o->config_dir, INIT_INI, INIT_LAST_GOOD, s.why);
		break;
	}
	s.spawn_at = now_s(); /* the engine, or in maintenance the server that says why */

	for (;;) {
		double t = now_s();
		if (!s.shutting && !s.engine && t >= s.spawn_at)
			engine_spawn(&s);
		if (s.shutting && !s.engine)
			break;
		if (s.shutting && t >= s.kill_at) {
			log_error("init: engine pid=%d still running after %d ms: SIGKILL", (int)s.engine, o->drain_ms);
			kill(s.engine, SIGKILL);
			s.kill_at = t + 3600;
		}
		int timeout = -1;
		double until = s.shutting ? s.kill_at : !s.engine ? s.spawn_at : -1;
		if (until >= 0)
			timeout = until > t ? (int)((until - t) * 1e3) + 1 : 0;
		struct pollfd pf[18];
		int n = 0;
		pf[n++] = (struct pollfd){.fd = s.sfd, .events = POLLIN};
		int i_ready = s.ready_fd >= 0 ? n : -1;
		if (i_ready >= 0)
			pf[n++] = (struct pollfd){.fd = s.ready_fd, .events = POLLIN};
		int i_power = n;
		for (int i = 0; i < s.n_power; i++)
			pf[n++] = (struct pollfd){.fd = s.power_fd[i], .events = POLLIN};
		if (poll(pf, (nfds_t)n, timeout) < 0) {
			if (errno != EINTR)
				log_error("init: poll: %s", strerror(errno));
			continue;
		}
		if (pf[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(s.sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				if (si.ssi_signo == SIGCHLD)
					reap(&s);
				else if (si.ssi_signo == SIGTERM)
					shutdown_begin(&s, RB_POWER_OFF, "SIGTERM");
				else if (si.ssi_signo == SIGINT)
					shutdown_begin(&s, RB_AUTOBOOT, "SIGINT (ctrl-alt-del)");
			}
		}
		if (i_ready >= 0 && pf[i_ready].revents & (POLLIN | POLLHUP) && s.ready_fd >= 0)
			on_ready(&s);
		for (int i = 0; i < s.n_power; i++)
			if (pf[i_power + i].revents & POLLIN && power_pressed(s.power_fd[i]))
				shutdown_begin(&s, RB_POWER_OFF, "power button");
	}
	reap(&s); /* anything else that ended meanwhile */
	init_shutdown_cmd = s.shutting;
	log_info("init: %s", s.shutting == RB_AUTOBOOT ? "rebooting" : "powering off");
	return s.clean ? 0 : 1;
}

/* ------------------------------------------------------------ tests' entry */

/* tokenspeed init --config-dir DIR [--input-dir DIR] [--backoff-ms N] [--drain-ms N] */
int init_cmd(int argc, char **argv)
{
	struct init_opts o = {.self = "/proc/self/exe", .backoff_base_ms = 1000, .backoff_max_ms = 60000,
			      .drain_ms = 35000};
	char self[4096];
	ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (l > 0) {
		self[l] = 0;
		o.self = self;
	}
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--config-dir"))
			o.config_dir = argv[i + 1];
		else if (!strcmp(argv[i], "--input-dir"))
			o.input_dir = argv[i + 1];
		else if (!strcmp(argv[i], "--backoff-ms"))
			o.backoff_base_ms = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--drain-ms"))
			o.drain_ms = atoi(argv[i + 1]);
		else
			break;
	}
	if (!o.config_dir || o.backoff_base_ms < 1 || o.drain_ms < 1 || argc % 2) {
		fprintf(stderr, "usage: tokenspeed init --config-dir DIR [--input-dir DIR] [--backoff-ms N] [--drain-ms N]\n");
		return 2;
	}
	if (o.backoff_max_ms < o.backoff_base_ms)
		o.backoff_max_ms = o.backoff_base_ms;
	return init_run(&o);
}

/* ------------------------------------------------------------ PID 1 */

#define INIT_CONFIG_MNT "/config"
#define INIT_MODEL_MNT "/model"
#define INIT_LABEL_WAIT_MS 10000

static void mounts(void)
{
	static const struct {
		const char *src, *dir, *type, *opts;
		unsigned long flags;
	} m[] = {
		{"proc", "/proc", "proc", NULL, MS_NOSUID | MS_NODEV | MS_NOEXEC},
		{"sysfs", "/sys", "sysfs", NULL, MS_NOSUID | MS_NODEV | MS_NOEXEC},
		{"devtmpfs", "/dev", "devtmpfs", "mode=0755", MS_NOSUID},
		{"devpts", "/dev/pts", "devpts", "mode=0620,ptmxmode=0666", MS_NOSUID | MS_NOEXEC},
		{"tmpfs", "/run", "tmpfs", "mode=0755", MS_NOSUID | MS_NODEV},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777", MS_NOSUID | MS_NODEV},
	};
	for (size_t i = 0; i < TS_ARRAY_LEN(m); i++) {
		mkdir(m[i].dir, 0755);
		if (mount(m[i].src, m[i].dir, m[i].type, m[i].flags, m[i].opts) < 0 && errno != EBUSY)
			log_error("init: mount %s: %s", m[i].dir, strerror(errno));
	}
}

/* Mounts the partition labelled label read-only on dir, waiting for the
 * kernel to find it (virtio and NVMe probe after the modules load). */
static int mount_label(const char *label, const char *dir)
{
	char dev[512], type[16];
	double t0 = now_s();
	while (init_find_label("/sys/class/block", "/dev", label, dev, sizeof(dev), type, sizeof(type)) < 0) {
		if ((now_s() - t0) * 1e3 > INIT_LABEL_WAIT_MS) {
			char seen[1024] = "";
			size_t o = 0;
			DIR *d = opendir("/sys/class/block");
			struct dirent *de;
			while (d && (de = readdir(d)) && o < sizeof(seen) - 64) {
				char p[300], ty[16] = "", lb[64] = "";
				if (de->d_name[0] == '.')
					continue;
				snprintf(p, sizeof(p), "/dev/%s", de->d_name);
				int r = init_fs_label(p, ty, sizeof(ty), lb, sizeof(lb));
				o += (size_t)snprintf(seen + o, sizeof(seen) - o, " %s=%s", de->d_name,
						      r < 0 ? (r == -E_IO ? "unreadable" : "no-fs") : lb);
			}
			if (d)
				closedir(d);
			log_error("init: no filesystem labelled %s after %d ms (block devices:%s)", label,
				  INIT_LABEL_WAIT_MS, seen[0] ? seen : " none");
			return -E_IO;
		}
		usleep(50000);
	}
	mkdir(dir, 0755);
	const char *opts = !strcmp(type, "vfat") ? "utf8,shortname=mixed" : NULL;
	if (mount(dev, dir, type, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) < 0) {
		log_error("init: mount %s (%s, %s) on %s: %s", dev, label, type, dir, strerror(errno));
		return -E_IO;
	}
	log_info("init: mounted %s label=%s type=%s on %s ro ms=%.0f", dev, label, type, dir, (now_s() - t0) * 1e3);
	return 0;
}

/* out = in's [net] section alone (and the one required key), for cfg_load. */
static int net_section_only(const char *in, const char *out)
{
	FILE *f = fopen(in, "re"), *o = f ? fopen(out, "we") : NULL;
	if (!o) {
		if (f)
			fclose(f);
		return -E_IO;
	}
	char line[4096];
	int in_net = 0;
	fprintf(o, "[model]\npath = /\n[net]\n");
	while (fgets(line, sizeof(line), f)) {
		const char *s = line + strspn(line, " \t");
		if (*s == '[')
			in_net = !strncmp(s, "[net]", 5);
		else if (in_net)
			fputs(line, o);
	}
	fclose(f);
	return fclose(o) == 0 ? 0 : -E_IO;
}

void init_pid1_main(char **argv)
{
	mounts();
	int fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd >= 0) { /* every log line and the engine's go to the console */
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		close(fd);
	}
	log_info("init: tokenspeed is PID 1");
	if (reboot(RB_DISABLE_CAD) < 0) /* ctrl-alt-del becomes SIGINT to us */
		log_warn("init: reboot(RB_DISABLE_CAD): %s", strerror(errno));
	/* SysRq: Debian's default functions (438) plus signalling processes
	 * (64), so alt-sysrq-i on the console kills the engine and we restart it */
	int sfd = open("/proc/sys/kernel/sysrq", O_WRONLY | O_CLOEXEC);
	if (sfd < 0 || write(sfd, "502\n", 4) != 4)
		log_warn("init: /proc/sys/kernel/sysrq: %s", strerror(errno));
	if (sfd >= 0)
		close(sfd);
	init_modules_load("/lib/modules/load.list", "/lib/modules");
	init_nvidia_nodes("/proc/devices", "/proc/driver/nvidia/gpus", "/dev");
	mount_label(INIT_LABEL_CONFIG, INIT_CONFIG_MNT);
	mount_label(INIT_LABEL_MODEL, INIT_MODEL_MNT);

	/* hostname and network from the ini that will boot (defaults in
	 * maintenance: loopback only, so the console is the way in) */
	char ini[4096], why[1024], ifname[32];
	static struct cfg c;
	struct ts_err e = {0};
	cfg_defaults(&c);
	if (init_cfg_pick(INIT_CONFIG_MNT, ini, sizeof(ini), why, sizeof(why)) == INIT_CFG_NONE) {
		/* maintenance must still be reachable: the broken ini's [net] alone, when that part is valid */
		snprintf(ini, sizeof(ini), "%s/%s", INIT_CONFIG_MNT, INIT_INI);
		if (net_section_only(ini, "/run/net.ini") < 0 || cfg_load(&c, "/run/net.ini", &e) < 0) {
			log_error("init: the network stays down (loopback only): no usable [net] in %s", ini);
			cfg_defaults(&c);
		}
	} else if (cfg_load(&c, ini, &e) < 0) {
		cfg_defaults(&c);
	}
	if (sethostname(c.net.hostname, strlen(c.net.hostname)) < 0)
		log_error("init: sethostname %s: %s", c.net.hostname, strerror(errno));
	double t0 = now_s();
	if (netcfg_apply(&c, ifname, sizeof(ifname), &e) < 0)
		log_error("init: network: %s (booting on without it)", e.msg);
	else
		log_info("init: network ready interface=%s ms=%.0f", ifname[0] ? ifname : "lo", (now_s() - t0) * 1e3);

	struct init_opts o = {.pid1 = 1, .self = "/init", .config_dir = INIT_CONFIG_MNT, .input_dir = "/dev/input",
			      .backoff_base_ms = 1000, .backoff_max_ms = 60000, .drain_ms = 35000};
	if (argv && argv[0] && argv[0][0] == '/')
		o.self = argv[0];
	init_run(&o); /* returns only at shutdown, having logged which */
	sync();
	umount2(INIT_MODEL_MNT, MNT_DETACH);
	umount2(INIT_CONFIG_MNT, MNT_DETACH);
	sync();
	reboot(init_shutdown_cmd);
	for (;;)
		pause();
}
