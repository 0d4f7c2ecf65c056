/* t_cubin: the committed cubins belong to the committed kernels. No GPU
 * needed: cubin/MANIFEST lists the sha256 of every kernels/ file they were
 * built from, every kernel of the host's table is a symbol of every cubin of
 * its module, and the bytes embedded in the binary are the committed files. */
#include <stdlib.h>

#include "gpu.h"
#include "t.h"

static char buf[1 << 16];

int main(void)
{
	static char manifest[1 << 16], line[512];
	FILE *f = fopen("cubin/MANIFEST", "r");
	T_CHECK(f != NULL, "cubin/MANIFEST is missing: run make cubins");
	if (!f)
		return T_DONE();
	size_t n = fread(manifest, 1, sizeof(manifest) - 1, f);
	manifest[n] = 0;
	fclose(f);
	T_HAS(manifest, "nvcc: ");
	T_HAS(manifest, "archs: 90a 100a");

	/* every kernels/ source and header, with its current hash, is in the manifest ... */
	T_CHECK(t_run("cd kernels && sha256sum $(ls *.cu *.h | sort)", buf, sizeof(buf)) == 0, "sha256sum failed");
	int n_files = 0;
	for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n")) {
		snprintf(line, sizeof(line), "sha256: %s\n", l);
		T_CHECK(strstr(manifest, line) != NULL, "kernels/ changed since make cubins: %s (rebuild the cubins and commit them)", l);
		n_files++;
	}
	/* ... and nothing else is */
	int n_listed = 0;
	for (char *p = manifest; (p = strstr(p, "\nsha256: ")); p++)
		n_listed++;
	T_CHECK(n_listed == n_files, "manifest lists %d files, kernels/ has %d", n_listed, n_files);

	static const char *const archs[] = {"90a", "100a"};
	for (size_t a = 0; a < 2; a++) {
		for (int m = 0; m < GPU_M_N; m++) {
			char path[256], cmd[400];
			snprintf(path, sizeof(path), "cubin/sm_%s/%s.cubin", archs[a], gpu_module_name((enum gpu_module)m));
			/* the kernels of the table */
			snprintf(cmd, sizeof(cmd), "readelf -sW %s 2>&1", path);
			t_run(cmd, buf, sizeof(buf));
			for (int k = 0; k < GPU_K_N; k++) {
				if (gpu_kernel_module((enum gpu_kernel)k) != (enum gpu_module)m)
					continue;
				snprintf(line, sizeof(line), " %s\n", gpu_kernel_name((enum gpu_kernel)k));
				T_CHECK(strstr(buf, line) != NULL, "%s lacks kernel %s", path, gpu_kernel_name((enum gpu_kernel)k));
			}
			/* the embedded copy is this file */
			size_t bytes = 0;
			const void *img = gpu_cubin((enum gpu_module)m, archs[a], &bytes);
			FILE *c = fopen(path, "rb");
			T_CHECK(img && c, "%s: missing (embedded %p)", path, img);
			if (!img || !c) {
				if (c)
					fclose(c);
				continue;
			}
			fseek(c, 0, SEEK_END);
			long sz = ftell(c);
			fseek(c, 0, SEEK_SET);
			unsigned char *disk = malloc((size_t)sz);
			T_CHECK(disk && fread(disk, 1, (size_t)sz, c) == (size_t)sz, "read %s", path);
			fclose(c);
			T_CHECK((size_t)sz == bytes && !memcmp(disk, img, bytes), "%s: embedded copy (%zu bytes) differs from the file (%ld bytes): rebuild", path,
				bytes, sz);
			free(disk);
		}
	}
	return T_DONE();
}
