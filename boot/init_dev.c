/* init_dev: what PID 1 finds on the machine: filesystems by label, the
 * NVIDIA device nodes, kernel modules. See init.h. Each function takes its
 * directories as arguments so tests run it on files under a temp dir. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "base.h"
#include "init.h"
#include "log.h"

/* ------------------------------------------------------------ labels */

/* Copies a fixed-width, blank-padded label, trimmed. */
static void label_copy(char *out, size_t n, const uint8_t *p, size_t w)
{
	while (w > 0 && (p[w - 1] == ' ' || p[w - 1] == 0))
		w--;
	snprintf(out, n, "%.*s", (int)w, (const char *)p);
}

/* The superblocks we read: ext2/3/4 (magic 0xEF53 at 1024+56, label at
 * 1024+120, 16 bytes) and FAT12/16/32 (0x55AA at 510; the type string at 54
 * or 82 says where the 11-byte label is: 43 or 71). */
int init_fs_label(const char *dev, char *type, size_t type_n, char *label, size_t label_n)
{
	uint8_t b[2048];
	int fd = open(dev, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -E_IO;
	ssize_t r = pread(fd, b, sizeof(b), 0);
	close(fd);
	if (r < 512)
		return -E_IO;
	if (r >= 1024 + 136 && b[1024 + 56] == 0x53 && b[1024 + 57] == 0xEF) {
		snprintf(type, type_n, "ext4");
		label_copy(label, label_n, b + 1024 + 120, 16);
		return 0;
	}
	if (b[510] == 0x55 && b[511] == 0xAA) {
		if (memcmp(b + 82, "FAT32   ", 8) == 0) {
			snprintf(type, type_n, "vfat");
			label_copy(label, label_n, b + 71, 11);
			return 0;
		}
		if (memcmp(b + 54, "FAT", 3) == 0) {
			snprintf(type, type_n, "vfat");
			label_copy(label, label_n, b + 43, 11);
			return 0;
		}
	}
	return -E_FORMAT;
}

int init_find_label(const char *block_dir, const char *dev_dir, const char *label, char *out, size_t n,
		    char *type, size_t type_n)
{
	DIR *d = opendir(block_dir);
	if (!d)
		return -E_IO;
	struct dirent *de;
	int rc = -E_IO;
	char path[512], lab[64], ty[16];
	/* readdir's order is the kernel's; take the lowest name that matches so
	 * two runs on one machine pick the same device */
	char best[256] = "";
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dev_dir, de->d_name);
		if (init_fs_label(path, ty, sizeof(ty), lab, sizeof(lab)) < 0 || strcmp(lab, label))
			continue;
		if (best[0] && strcmp(de->d_name, best) > 0)
			continue;
		snprintf(best, sizeof(best), "%s", de->d_name);
		snprintf(out, n, "%s", path);
		snprintf(type, type_n, "%s", ty);
		rc = 0;
	}
	closedir(d);
	return rc;
}

/* ------------------------------------------------------------ NVIDIA */

/* The major number of a character device named name in /proc/devices, or -1. */
static int char_major(const char *proc_devices, const char *name)
{
	FILE *f = fopen(proc_devices, "re");
	if (!f)
		return -1;
	char line[256];
	int in_char = 0, major = -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "Character devices:", 18)) {
			in_char = 1;
			continue;
		}
		if (!strncmp(line, "Block devices:", 14))
			break;
		char nm[128];
		int m;
		if (in_char && sscanf(line, "%d %127s", &m, nm) == 2 && !strcmp(nm, name)) {
			major = m;
			break;
		}
	}
	fclose(f);
	return major;
}

static int node(const char *dev_dir, const char *name, int major, int minor)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dev_dir, name);
	unlink(p); /* a stale node from a previous driver would point at the wrong major */
	if (mknod(p, S_IFCHR | 0666, makedev((unsigned)major, (unsigned)minor)) < 0) {
		log_error("init: mknod %s (%d:%d): %s", p, major, minor, strerror(errno));
		return -E_IO;
	}
	return 0;
}

int init_nvidia_nodes(const char *proc_devices, const char *gpus_dir, const char *dev_dir)
{
	int major = char_major(proc_devices, "nvidia-frontend");
	if (major < 0)
		major = char_major(proc_devices, "nvidia");
	if (major < 0)
		return 0; /* no driver loaded */
	int n_gpus = 0, made = 0;
	DIR *d = opendir(gpus_dir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)))
			n_gpus += de->d_name[0] != '.';
		closedir(d);
	}
	char name[64];
	if (node(dev_dir, "nvidiactl", major, 255) < 0)
		return -E_IO;
	made++;
	for (int i = 0; i < n_gpus; i++) {
		snprintf(name, sizeof(name), "nvidia%d", i);
		if (node(dev_dir, name, major, i) < 0)
			return -E_IO;
		made++;
	}
	int uvm = char_major(proc_devices, "nvidia-uvm");
	if (uvm >= 0) {
		if (node(dev_dir, "nvidia-uvm", uvm, 0) < 0 || node(dev_dir, "nvidia-uvm-tools", uvm, 1) < 0)
			return -E_IO;
		made += 2;
	}
	log_info("init: nvidia nodes=%d gpus=%d major=%d uvm_major=%d", made, n_gpus, major, uvm);
	return made;
}

/* ------------------------------------------------------------ modules */

int init_modules_load(const char *list, const char *mod_dir)
{
	FILE *f = fopen(list, "re");
	if (!f) {
		log_info("init: modules: no list %s: none loaded", list);
		return 0;
	}
	char line[512], path[1024];
	int loaded = 0, failed = 0;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = 0;
		char *s = line + strspn(line, " \t");
		if (!*s || *s == '#')
			continue;
		snprintf(path, sizeof(path), "%s/%s", mod_dir, s);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			log_warn("init: module %s: %s (going on without it)", s, strerror(errno));
			failed++;
			continue;
		}
		/* flags 0: the image's modules match its kernel; compressed ones
		 * (MODULE_INIT_COMPRESSED_FILE) are unpacked at image build time */
		long r = syscall(SYS_finit_module, fd, "", 0);
		int err = errno;
		close(fd);
		if (r < 0 && err != EEXIST) {
			log_warn("init: module %s: finit_module: %s (going on without it)", s, strerror(err));
			failed++;
			continue;
		}
		loaded++;
	}
	fclose(f);
	log_info("init: modules loaded=%d failed=%d", loaded, failed);
	return loaded;
}
