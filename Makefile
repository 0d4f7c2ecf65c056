# TokenSpeed: the only build entry. `make help` lists the targets.
#
# Third-party C code (inih, mbedTLS) is fetched as Debian source packages,
# pinned by version and sha256, unpacked, patched with Debian's series and
# compiled into build/deps/<libc>/. Nothing third-party is committed.

CC       ?= gcc
MUSLCC   ?= musl-gcc
NVCC     ?= nvcc
B        := build
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CFLAGS   ?= -O2 -g
ALLCFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -pthread -MMD -MP
LDLIBS   := -pthread

# ---------------------------------------------------------------- deps
INIH_VER    := 59-1
INIH_ORIG   := libinih_59.orig.tar.gz
INIH_ORIG_SHA := 062279922805f5e9a369551a08d5ddb506140fe50774183ffdbb7c22bb97e3f4
INIH_DEB    := libinih_59-1.debian.tar.xz
INIH_DEB_SHA := 1271db2900148296fd5b9ea1518947458d26957b737b07042422023b362fc353
MBED_VER    := 3.6.6-0.1~deb13u1
MBED_ORIG   := mbedtls_3.6.6.orig.tar.bz2
MBED_ORIG_SHA := 8fb65fae8dcae5840f793c0a334860a411f884cc537ea290ce1c52bb64ca007a
MBED_DEB    := mbedtls_3.6.6-0.1~deb13u1.debian.tar.xz
MBED_DEB_SHA := 210466c522eeebc85cf2f76bd5aef935b4ebac465559cc0a84f9e73a8ed6601c

D        := $(B)/deps
APT_O     = -o Dir::Etc::SourceList=$(CURDIR)/$(D)/apt/sources.list -o Dir::Etc::SourceParts=/dev/null \
            -o Dir::State::Lists=$(CURDIR)/$(D)/apt/lists -o Dir::Cache=$(CURDIR)/$(D)/apt/cache \
            -o Debug::NoDropPrivs=true -o APT::Sandbox::User=root
DEB_KEYS := /usr/share/keyrings/debian-archive-keyring.gpg

# Fetch the pinned source packages with a private sources.list (deb-src only),
# and verify every file against its checksum.
$(D)/src/.fetched:
	@mkdir -p $(D)/apt/lists/partial $(D)/apt/cache $(D)/src
	@printf '%s\n' \
	  'deb-src [signed-by=$(DEB_KEYS)] http://deb.debian.org/debian trixie main' \
	  'deb-src [signed-by=$(DEB_KEYS)] http://deb.debian.org/debian-security trixie-security main' \
	  'deb-src [signed-by=$(DEB_KEYS)] http://deb.debian.org/debian bookworm main' > $(D)/apt/sources.list
	apt-get $(APT_O) -qq update
	cd $(D)/src && apt-get $(APT_O) -qq source --download-only libinih=$(INIH_VER) mbedtls=$(MBED_VER)
	cd $(D)/src && printf '%s  %s\n' $(INIH_ORIG_SHA) $(INIH_ORIG) $(INIH_DEB_SHA) $(INIH_DEB) \
	  $(MBED_ORIG_SHA) $(MBED_ORIG) $(MBED_DEB_SHA) $(MBED_DEB) | sha256sum -c --quiet
	@touch $@

# Unpack and apply Debian's patch series.
$(D)/src/.unpacked: $(D)/src/.fetched
	rm -rf $(D)/src/inih $(D)/src/mbedtls
	mkdir -p $(D)/src/inih $(D)/src/mbedtls
	tar -C $(D)/src/inih --strip-components=1 -xzf $(D)/src/$(INIH_ORIG)
	tar -C $(D)/src/inih -xJf $(D)/src/$(INIH_DEB)
	tar -C $(D)/src/mbedtls --strip-components=1 -xjf $(D)/src/$(MBED_ORIG)
	tar -C $(D)/src/mbedtls -xJf $(D)/src/$(MBED_DEB)
	for p in inih mbedtls; do \
	  s=$(D)/src/$$p/debian/patches/series; [ -f $$s ] || continue; \
	  for f in $$(grep -v '^#' $$s); do patch -s -p1 -d $(D)/src/$$p < $(D)/src/$$p/debian/patches/$$f || exit 1; done; \
	done
	@touch $@

# Our one change to mbedTLS's configuration (include/mbedtls/mbedtls_config.h),
# made after Debian's patches and seen by mbedTLS and our code alike:
# MBEDTLS_PLATFORM_MEMORY, so that `tokenspeed serve` gives mbedTLS a pool taken
# at boot (src/tls_mem.c). Without the pool mbedTLS calls libc's calloc/free as
# before. Bump the stamp's number when this step changes.
MBED_CONFIG := $(D)/src/.mbed-config-1
$(MBED_CONFIG): $(D)/src/.unpacked
	sed -i 's|^//#define MBEDTLS_PLATFORM_MEMORY$$|#define MBEDTLS_PLATFORM_MEMORY|' $(D)/src/mbedtls/include/mbedtls/mbedtls_config.h
	grep -q '^#define MBEDTLS_PLATFORM_MEMORY$$' $(D)/src/mbedtls/include/mbedtls/mbedtls_config.h
	rm -rf $(D)/glibc/obj/mbedtls $(D)/musl/obj/mbedtls
	@touch $@

INIH_DEFS := -DINI_HANDLER_LINENO=1 -DINI_ALLOW_MULTILINE=0 -DINI_ALLOW_INLINE_COMMENTS=1 \
             -DINI_INLINE_COMMENT_PREFIXES='"\#;"' -DINI_USE_STACK=1 -DINI_MAX_LINE=4096 \
             -DINI_STOP_ON_FIRST_ERROR=1 -DINI_CALL_HANDLER_ON_NEW_SECTION=1
DEP_CFLAGS := -O2 -fPIC -w

# $(1) = libc name (glibc, musl), $(2) = compiler
define deps_for
$(D)/$(1)/lib/libinih.a: $(D)/src/.unpacked
	@mkdir -p $(D)/$(1)/lib $(D)/$(1)/obj/inih $(D)/$(1)/include
	$(2) $(DEP_CFLAGS) $(INIH_DEFS) -c $(D)/src/inih/ini.c -o $(D)/$(1)/obj/inih/ini.o
	cp $(D)/src/inih/ini.h $(D)/$(1)/include/ini.h
	ar rcs $$@ $(D)/$(1)/obj/inih/ini.o

$(D)/$(1)/lib/libmbedtls.a: $(MBED_CONFIG)
	@mkdir -p $(D)/$(1)/lib $(D)/$(1)/obj/mbedtls $(D)/$(1)/include
	$(MAKE) --no-print-directory -f $(CURDIR)/Makefile MBED_CC=$(2) MBED_OBJ=$(D)/$(1)/obj/mbedtls \
	  -j$(JOBS) mbed-objs
	ar rcs $$@ $(D)/$(1)/obj/mbedtls/*.o
	cp -r $(D)/src/mbedtls/include/mbedtls $(D)/src/mbedtls/include/psa $(D)/$(1)/include/
endef
$(eval $(call deps_for,glibc,$(CC)))
$(eval $(call deps_for,musl,$(MUSLCC)))

MBED_SRCS = $(wildcard $(D)/src/mbedtls/library/*.c)
mbed-objs: $(patsubst $(D)/src/mbedtls/library/%.c,$(MBED_OBJ)/%.o,$(MBED_SRCS))
$(MBED_OBJ)/%.o: $(D)/src/mbedtls/library/%.c
	@$(MBED_CC) $(DEP_CFLAGS) -I$(D)/src/mbedtls/include -I$(D)/src/mbedtls/library -c $< -o $@

DEPS_GLIBC := $(D)/glibc/lib/libinih.a $(D)/glibc/lib/libmbedtls.a
DEPS_MUSL  := $(D)/musl/lib/libinih.a $(D)/musl/lib/libmbedtls.a

# musl-gcc comes from Debian's musl-tools; install it when missing (CI runs as root).
$(B)/.musl-tools:
	@command -v $(MUSLCC) >/dev/null 2>&1 || { apt-get -qq update && DEBIAN_FRONTEND=noninteractive apt-get -qq install -y musl-tools; }
	@mkdir -p $(B) && touch $@

# ---------------------------------------------------------------- engine
SRCS     := $(wildcard src/*.c)
BOOTS    := $(filter-out boot/tsctl.c,$(wildcard boot/*.c))
OBJ      := $(SRCS:%.c=$(B)/obj/%.o)
BOOT_OBJ := $(BOOTS:%.c=$(B)/obj/%.o)
INC      := -iquote src -iquote boot -iquote kernels -I$(D)/glibc/include
# src/ never includes boot/: its objects build without boot/ on the include path.
$(B)/obj/src/%.o: INC := -iquote src -iquote kernels -I$(D)/glibc/include
$(B)/musl/obj/src/%.o: MUSL_BOOT_INC :=
MUSL_BOOT_INC ?= -iquote boot

$(B)/obj/%.o: %.c | $(DEPS_GLIBC)
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) $(INC) -c $< -o $@

$(B)/libts.a: $(OBJ)
	ar rcs $@ $^

$(B)/tokenspeed: $(BOOT_OBJ) $(B)/libts.a $(DEPS_GLIBC)
	$(CC) $(ALLCFLAGS) -o $@ $(BOOT_OBJ) $(B)/libts.a -L$(D)/glibc/lib -linih -lmbedtls $(LDLIBS)

# Fully static musl build, CPU backend only: a static binary cannot dlopen the
# driver, so the GPU sources stay out.
MSRCS := $(filter-out src/gpu%.c src/fwd%.c,$(SRCS))
MOBJ := $(MSRCS:%.c=$(B)/musl/obj/%.o) $(BOOTS:%.c=$(B)/musl/obj/%.o)
# musl-gcc sees no kernel headers; boot/init*.c and boot/netcfg.c need
# linux/input.h and linux/rtnetlink.h, so the system's (linux-libc-dev) are
# linked into $(B)/musl/kinc and searched after musl's own.
MUSL_KINC := $(B)/musl/kinc/.linked
$(MUSL_KINC):
	@mkdir -p $(dir $@)
	ln -sfn /usr/include/linux $(dir $@)linux
	ln -sfn /usr/include/asm-generic $(dir $@)asm-generic
	ln -sfn /usr/include/$$(gcc -print-multiarch)/asm $(dir $@)asm
	@touch $@
$(B)/musl/obj/%.o: %.c | $(DEPS_MUSL) $(B)/.musl-tools $(MUSL_KINC)
	@mkdir -p $(dir $@)
	$(MUSLCC) $(ALLCFLAGS) -DTS_CPU_ONLY -iquote src $(MUSL_BOOT_INC) -iquote kernels -I$(D)/musl/include \
	  -idirafter $(B)/musl/kinc -c $< -o $@
$(B)/tokenspeed-static: $(MOBJ) $(DEPS_MUSL)
	$(MUSLCC) $(ALLCFLAGS) -static -o $@ $(MOBJ) -L$(D)/musl/lib -linih -lmbedtls $(LDLIBS)
$(DEPS_MUSL): | $(B)/.musl-tools

# ---------------------------------------------------------------- tsctl
# The protocol client (generate / stats / bench); tsctl-static is fully static musl.
TSCTL_SRCS := src/tsclient.c src/tls.c src/tls_mem.c src/proto.c src/samp.c src/fmath.c src/base.c src/log.c src/cli.c
$(B)/obj/boot/tsctl-main.o: boot/tsctl.c | $(DEPS_GLIBC)
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) -DTSCTL_MAIN $(INC) -c $< -o $@
# libtsclient: src/tsclient.h and this archive (with mbedTLS's) are all a C client needs.
$(B)/libtsclient.a: $(TSCTL_SRCS:%.c=$(B)/obj/%.o)
	ar rcs $@ $^
$(B)/tsctl: $(B)/obj/boot/tsctl-main.o $(B)/libts.a $(DEPS_GLIBC)
	$(CC) $(ALLCFLAGS) -o $@ $< $(B)/libts.a -L$(D)/glibc/lib -lmbedtls $(LDLIBS) -lm
TSCTL_MOBJ := $(TSCTL_SRCS:%.c=$(B)/musl/obj/%.o)
$(B)/musl/obj/boot/tsctl-main.o: boot/tsctl.c | $(DEPS_MUSL) $(B)/.musl-tools
	@mkdir -p $(dir $@)
	$(MUSLCC) $(ALLCFLAGS) -DTS_CPU_ONLY -DTSCTL_MAIN -iquote src -iquote boot -I$(D)/musl/include -c $< -o $@
$(B)/tsctl-static: $(B)/musl/obj/boot/tsctl-main.o $(TSCTL_MOBJ) $(DEPS_MUSL)
	$(MUSLCC) $(ALLCFLAGS) -static -o $@ $< $(TSCTL_MOBJ) -L$(D)/musl/lib -lmbedtls $(LDLIBS) -lm

# ---------------------------------------------------------------- tests
TSRCS  := $(filter-out tests/t_faults.c,$(wildcard tests/t_*.c))
TBINS  := $(TSRCS:tests/%.c=$(B)/tests/%)
TOOLS  := $(B)/tests/gen_ckpt
BENCHES := $(B)/tests/bench_sched $(B)/tests/bench_text
SOAK    := $(B)/tests/soak

$(B)/tests/%: tests/%.c $(B)/libts.a $(DEPS_GLIBC)
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) $(INC) -iquote tests -o $@ $< $(B)/libts.a -L$(D)/glibc/lib -linih -lmbedtls $(LDLIBS) -lm

# The threaded tests again under ThreadSanitizer, as t_<name>_tsan programs
# that tests/run.sh runs beside the others (needs clang and libclang-rt-14-dev,
# which .ci/run installs).
TSAN_TESTS := t_ring
TSAN_BINS  := $(TSAN_TESTS:%=$(B)/tests/%_tsan)
$(B)/tests/%_tsan: tests/%.c src/base.c
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE $(WARN) -O1 -g -fsanitize=thread -pthread -DT_RING_DEFAULT_SCALE=0.25 \
	  -iquote src -iquote tests -o $@ $< src/base.c

-include $(OBJ:.o=.d) $(BOOT_OBJ:.o=.d) $(MOBJ:.o=.d) $(TBINS:=.d) $(TOOLS:=.d) $(SOAK:=.d) $(GBINS:=.d) \
	$(B)/obj/boot/tsctl-main.d $(B)/musl/obj/boot/tsctl-main.d

# ---------------------------------------------------------------- fault injection
# The library again with src/fault.h's FAULT() hooks compiled in (-DTS_FAULTS),
# under ASan and UBSan, in build-faults/ (sharing build/deps); tests/t_faults.c
# fails the Nth allocation, read, mmap, TLS and socket call of each scenario,
# and tests/run.sh runs it beside the others.
FB := build-faults
FAULT_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all -DTS_FAULTS
FAULT_BIN := $(FB)/tests/t_faults
$(FAULT_BIN): tests/t_faults.c $(SRCS) $(BOOTS) $(wildcard src/*.h boot/*.h tests/*.h) $(DEPS_GLIBC) FORCE
	@$(MAKE) --no-print-directory B=$(FB) D=$(D) CFLAGS="$(FAULT_CFLAGS)" $(FB)/libts.a
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(FAULT_CFLAGS) -pthread $(INC) -iquote tests -o $@ tests/t_faults.c \
	  $(FB)/libts.a -L$(D)/glibc/lib -linih -lmbedtls $(LDLIBS) -lm
FORCE:

# ---------------------------------------------------------------- cubins
# kernels/<module>.cu -> cubin/sm_<arch>/<module>.cubin, committed with
# cubin/MANIFEST (sha256 of every kernels/ file, nvcc version, flags), which
# tests/t_cubin.c checks against the tree.
KMODS    := elem gemm attn samp moe
ARCHS    := 90a 100a
NVFLAGS  := -cubin -O3 -std=c++17 -Xptxas -warn-spills -Ikernels -Isrc
CUBINS   := $(foreach a,$(ARCHS),$(foreach m,$(KMODS),cubin/sm_$(a)/$(m).cubin))

cubins: ## compile kernels/*.cu for sm_90a and sm_100a into cubin/ and write the manifest (needs nvcc)
	@for a in $(ARCHS); do mkdir -p cubin/sm_$$a; for m in $(KMODS); do \
	  echo "nvcc $$m sm_$$a"; \
	  $(NVCC) $(NVFLAGS) -gencode=arch=compute_$$a,code=sm_$$a -o cubin/sm_$$a/$$m.cubin kernels/$$m.cu || exit 1; \
	done; done
	@{ echo "# cubin/MANIFEST: what built these cubins (checked by tests/t_cubin.c)"; \
	   echo "nvcc: $$($(NVCC) --version | tail -n 2 | head -n 1)"; \
	   echo "flags: $(NVFLAGS) -gencode=arch=compute_<arch>,code=sm_<arch>"; \
	   echo "archs: $(ARCHS)"; \
	   cd kernels && sha256sum $$(ls *.cu *.h | sort) | sed 's/^/sha256: /'; } > cubin/MANIFEST
	@cat cubin/MANIFEST

$(B)/obj/src/gpu_cubins.o: $(CUBINS)

# Device-only test programs (tests/gpu/*.c), built here and run on a GPU machine.
GSRCS := $(wildcard tests/gpu/*.c)
GBINS := $(GSRCS:tests/gpu/%.c=$(B)/gpu/%)
$(B)/gpu/%: tests/gpu/%.c $(B)/libts.a $(DEPS_GLIBC)
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) $(INC) -iquote kernels -iquote tests -o $@ $< $(B)/libts.a -L$(D)/glibc/lib -linih -lmbedtls $(LDLIBS) -lm

gpu-tests: $(GBINS) $(B)/tokenspeed $(B)/tests/gen_ckpt ## build the device tests (tests/gpu/) here, to run on a GPU machine

# ---------------------------------------------------------------- image
# The appliance image (image/README.md): Debian's kernel and systemd-boot,
# pinned by version and sha256 like inih and mbedTLS, unpacked with dpkg-deb;
# image/mkimage.sh lays out the GPT file with mtools, mkfs.vfat, mkfs.ext4 -d
# and sgdisk (no root mounts, no loop devices).
KVER        := 6.1.0-57-amd64
KPKG_VER    := 6.1.192-3
KPKG        := linux-image-$(KVER)_$(KPKG_VER)_amd64.deb
KPKG_SHA    := 14d219d01e1283261817d961dbb3895cb5b4288d0de10e0ba0632a0d993e15bf
SDBOOT_VER  := 252.39-1~deb12u2
SDBOOT_PKG  := systemd-boot-efi_252.39-1~deb12u2_amd64.deb
SDBOOT_SHA  := 8f2b81bdcfafc466882a0cae460272dbf10d8d97c6a3c1c6ea33038c155a2f5e
IMG_APT_O    = -o Dir::Etc::SourceList=$(CURDIR)/$(D)/image/sources.list -o Dir::Etc::SourceParts=/dev/null \
               -o Dir::State::Lists=$(CURDIR)/$(D)/image/lists -o Dir::Cache=$(CURDIR)/$(D)/image/cache \
               -o Debug::NoDropPrivs=true -o APT::Sandbox::User=root
MODEL       ?= $(B)/models/default
NVIDIA_DIR  ?=
IMAGE       := $(B)/image/tokenspeed.img
IMAGE_TOOLS := $(B)/.image-tools

$(IMAGE_TOOLS):
	@for t in mkfs.vfat mcopy sgdisk mkfs.ext4 cpio objcopy; do command -v $$t >/dev/null 2>&1 || { \
	  apt-get -qq update && DEBIAN_FRONTEND=noninteractive apt-get -qq install -y dosfstools mtools gdisk e2fsprogs cpio binutils \
	  && break; }; done
	@mkdir -p $(B) && touch $@

$(D)/image/.unpacked: | $(IMAGE_TOOLS)
	@mkdir -p $(D)/image/lists/partial $(D)/image/cache $(D)/image/deb
	@printf '%s\n' \
	  'deb [signed-by=$(DEB_KEYS)] http://deb.debian.org/debian bookworm main' \
	  'deb [signed-by=$(DEB_KEYS)] http://deb.debian.org/debian-security bookworm-security main' > $(D)/image/sources.list
	apt-get $(IMG_APT_O) -qq update
	cd $(D)/image/deb && apt-get $(IMG_APT_O) -qq download linux-image-$(KVER)=$(KPKG_VER) systemd-boot-efi=$(SDBOOT_VER)
	cd $(D)/image/deb && printf '%s  %s\n' $(KPKG_SHA) $(KPKG) $(SDBOOT_SHA) $(SDBOOT_PKG) | sha256sum -c --quiet
	rm -rf $(D)/image/kernel $(D)/image/sdboot
	dpkg-deb -x $(D)/image/deb/$(KPKG) $(D)/image/kernel
	dpkg-deb -x $(D)/image/deb/$(SDBOOT_PKG) $(D)/image/sdboot
	@touch $@

# The config partition's files: image/tokenspeed.ini and the certificates make run uses.
$(B)/image/config/tokenspeed.ini: image/tokenspeed.ini $(DEFAULT_CERTS)
	@mkdir -p $(B)/image/config
	rm -rf $(B)/image/config/certs && cp -r $(B)/certs $(B)/image/config/certs
	cp image/tokenspeed.ini $@

image: $(B)/tokenspeed $(DEFAULT_MODEL) $(D)/image/.unpacked $(B)/image/config/tokenspeed.ini ## GPT disk image build/image/tokenspeed.img (MODEL=DIR, default the make run model; NVIDIA_DIR=DIR optional)
	sh image/mkimage.sh $(IMAGE) $(D)/image/kernel $(D)/image/sdboot/usr/lib/systemd/boot/efi/systemd-bootx64.efi \
	  $(B)/tokenspeed $(B)/image/config "$(NVIDIA_DIR)" $(MODEL)

# QEMU and OVMF for image-test (Debian's qemu-system-x86 and ovmf).
$(B)/.qemu:
	@command -v qemu-system-x86_64 >/dev/null 2>&1 && [ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || { \
	  apt-get -qq update && DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends qemu-system-x86 ovmf; }
	@mkdir -p $(B) && touch $@

# make test runs image/test.sh as one more test program, build/tests/t_image (TCG: this
# box's /dev/kvm cannot run OVMF, see image/README.md).
IMAGE_ACCEL ?= tcg
IMAGE_TEST_DEPS := $(B)/tokenspeed $(B)/tsctl $(TOOLS) $(DEFAULT_MODEL) $(D)/image/.unpacked \
		   $(B)/image/config/tokenspeed.ini $(B)/.qemu
$(B)/tests/t_image: image/test.sh image/mkimage.sh | $(IMAGE_TEST_DEPS)
	@mkdir -p $(dir $@)
	printf '#!/bin/sh\nexec sh image/test.sh $(IMAGE_ACCEL)\n' > $@ && chmod +x $@

image-test: $(IMAGE_TEST_DEPS) ## boot the image in QEMU+OVMF (IMAGE_ACCEL=tcg|kvm) and drive it as an operator would
	sh image/test.sh $(IMAGE_ACCEL)

# ---------------------------------------------------------------- fuzz
FUZZ_CC    ?= clang
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -iquote src
FUZZ_TIME  ?= 60

$(B)/fuzz/fuzz_json: tests/fuzz_json.c src/json.c src/base.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^

$(B)/fuzz/fuzz_ckpt: tests/fuzz_ckpt.c src/ckpt.c src/json.c src/base.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^

$(B)/fuzz/fuzz_proto: tests/fuzz_proto.c src/proto.c src/samp.c src/fmath.c src/base.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^

$(B)/fuzz/fuzz_tok: tests/fuzz_tok.c src/tok.c src/tok_chat.c src/tok_unicode.c src/json.c src/base.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^

# ---------------------------------------------------------------- targets
.PHONY: all deps static run test test-faults soak test-asan bench fuzz cubins gpu-tests format clean help mbed-objs image image-test

all: $(B)/tokenspeed $(B)/tsctl $(B)/libtsclient.a ## build build/tokenspeed, build/tsctl and build/libtsclient.a

deps: $(DEPS_GLIBC) ## fetch, verify and build inih and mbedTLS

static: $(B)/tokenspeed-static $(B)/tsctl-static ## fully static musl builds (tokenspeed with the CPU backend only, tsctl)

# The default model that config/tokenspeed.ini names (make run serves it; t_bin checks the shipped config against it).
DEFAULT_MODEL := $(B)/models/default/tokenizer.json
$(DEFAULT_MODEL): | $(TOOLS)
	@[ -f $(B)/models/default/config.json ] || $(B)/tests/gen_ckpt --preset llama3-mini --out $(B)/models/default --tokenizer
	@[ -f $@ ] || $(B)/tests/gen_ckpt --preset llama3-mini --out $(B)/models/default --tokenizer --no-weights

# The development certificates the shipped config names (make run serves with them; t_bin checks the shipped config).
DEFAULT_CERTS := $(B)/certs/ca.crt
$(DEFAULT_CERTS): | $(B)/tokenspeed
	@[ -f $@ ] || $(B)/tokenspeed certs $(B)/certs

run: $(B)/tokenspeed $(B)/tsctl $(TOOLS) $(DEFAULT_MODEL) $(DEFAULT_CERTS) ## run the appliance on the default config and model (serves TLS on 127.0.0.1:7070)
	@echo "client: $(B)/tsctl generate \"Hello\"   or   $(B)/tsctl chat   (defaults: --server 127.0.0.1:7070 --certs $(B)/certs)"
	$(B)/tokenspeed serve --config config/tokenspeed.ini

test: $(B)/tokenspeed $(B)/tokenspeed-static $(B)/tsctl $(B)/tsctl-static $(B)/libtsclient.a $(TBINS) $(TSAN_BINS) $(TOOLS) $(DEFAULT_MODEL) $(DEFAULT_CERTS) $(FAULT_BIN) $(B)/tests/t_image ## build and run every test (fault injection, a 30 s soak (t_soak) and the image in QEMU (t_image) included); ends with "N passed, N failed"
	@sh tests/run.sh $(B)/tests $(FB)/tests

SOAK_S ?= 120
soak: $(B)/tokenspeed $(B)/tests/soak $(TOOLS) ## loopback soak for SOAK_S seconds (default 120): mixed load, sessions, cancels, disconnect storms, 3x overload, idle floods; blocks, slots and RSS compared before and after
	$(B)/tests/soak $(SOAK_S)

test-faults: $(FAULT_BIN) $(TOOLS) ## only the fault-injection runs (build-faults/, ASan): every N-th allocation, read, mmap, TLS and socket call failing
	@sh tests/run.sh $(FB)/tests

fuzz: $(B)/fuzz/fuzz_json $(B)/fuzz/fuzz_ckpt $(B)/fuzz/fuzz_proto $(B)/fuzz/fuzz_tok $(B)/tests/t_fuzz ## run each libFuzzer target FUZZ_TIME s (needs clang, libclang-rt-14-dev)
	$(B)/tests/t_fuzz --write-seeds $(B)/fuzz/corpus
	$(B)/fuzz/fuzz_json -max_total_time=$(FUZZ_TIME) -dict=$(B)/fuzz/corpus/json.dict $(B)/fuzz/corpus/json
	$(B)/fuzz/fuzz_ckpt -max_total_time=$(FUZZ_TIME) -dict=$(B)/fuzz/corpus/json.dict $(B)/fuzz/corpus/ckpt
	$(B)/fuzz/fuzz_proto -max_total_time=$(FUZZ_TIME) $(B)/fuzz/corpus/proto
	$(B)/fuzz/fuzz_tok -max_total_time=$(FUZZ_TIME) -dict=$(B)/fuzz/corpus/tok.dict $(B)/fuzz/corpus/tok

test-asan: $(B)/tokenspeed $(B)/tokenspeed-static $(B)/tests/gen_ckpt ## the unit tests again under AddressSanitizer and UBSan (build-asan/)
	$(MAKE) --no-print-directory B=build-asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all" \
	  $(TSRCS:tests/%.c=build-asan/tests/%)
	@sh tests/run.sh build-asan/tests

bench: $(BENCHES) ## CPU-side benchmarks (the scheduler's step cost); GPU ones: tests/gpu/bench.sh
	$(B)/tests/bench_sched 256
	@[ -d build/tok/llama3 ] || sh tests/tok_setup.sh
	$(B)/tests/bench_text

format: ## apply .clang-format to our sources
	clang-format -i src/*.[ch] boot/*.[ch] tests/*.[ch]

clean: ## remove build outputs (keeps fetched deps)
	rm -rf $(B)/obj $(B)/musl $(B)/tests $(B)/tokenspeed $(B)/tokenspeed-static $(B)/libts.a $(FB)

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'
