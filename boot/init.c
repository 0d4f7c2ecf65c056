/* init: PID-1 duties when the binary is the image's /init.
 *
 * The kernel starts us with nothing mounted. Mount what the engine reads
 * (/proc for meminfo, /sys for devices, /dev for the GPU nodes). The image
 * issue adds networking and power-off on exit; until then this is the
 * whole of it. */
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>

void init_pid1(void);

void init_pid1(void)
{
	static const struct {
		const char *src, *dir, *type;
	} m[] = {{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"}};
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		mkdir(m[i].dir, 0755);
		if (mount(m[i].src, m[i].dir, m[i].type, 0, NULL) < 0)
			perror(m[i].dir);
	}
}
