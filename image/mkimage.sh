#!/bin/sh
# image/mkimage.sh: writes the appliance's GPT disk image without root
# mounts or loop devices (make image calls it; image/README.md explains).
#
#   mkimage.sh OUT.img KERNEL_ROOT SDBOOT_EFI BINARY CONFIG_DIR NVIDIA_DIR|"" MODEL_DIR...
#
# KERNEL_ROOT is linux-image-*.deb unpacked (boot/vmlinuz-*, lib/modules/*),
# SDBOOT_EFI systemd-boot's systemd-bootx64.efi, BINARY build/tokenspeed,
# CONFIG_DIR the files for the config partition (tokenspeed.ini, certs/),
# each MODEL_DIR a checkpoint for the model partition (as /model/<its name>).
# Every timestamp, volume id and GUID is fixed, so two runs over the same
# inputs give the same bytes.
set -eu
out=$1 kroot=$2 sdboot=$3 bin=$4 config=$5 nvidia=$6
shift 6
out=$(realpath -m "$out") # the FAT step cds into each source directory
: "${SOURCE_DATE_EPOCH:=1767225600}" # 2026-01-01T00:00:00Z
export SOURCE_DATE_EPOCH E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH
w=$out.work
rm -rf "$w"
mkdir -p "$w/initrd" "$w/esp"

kver=$(ls "$kroot/lib/modules")
vmlinuz=$kroot/boot/vmlinuz-$kver
mods=$kroot/lib/modules/$kver

# ---- initramfs: /init (the binary), its glibc runtime, the kernel modules
r=$w/initrd
mkdir -p "$r/proc" "$r/sys" "$r/dev" "$r/run" "$r/tmp" "$r/config" "$r/model" "$r/lib/modules" "$r/lib64" \
	"$r/lib/x86_64-linux-gnu"
cp "$bin" "$r/init"
cp -L /lib64/ld-linux-x86-64.so.2 "$r/lib64/"
for lib in $(readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
	cp -L "/lib/x86_64-linux-gnu/$lib" "$r/lib/x86_64-linux-gnu/"
done

# The modules init loads, each after what it depends on (read from the
# module's own .modinfo "depends="), as paths relative to /lib/modules.
want="virtio_pci virtio_blk virtio_scsi virtio_net nvme ahci sd_mod e1000 e1000e igb ixgbe i40e ice mlx5_core
      bnxt_en crc32c_generic crc32c_intel ext4 vfat nls_cp437 nls_utf8 nls_ascii button evdev"
find "$mods/kernel" -name '*.ko' > "$w/all.txt"
file_of() { # module name (with '_') -> its .ko, whose name may use '-' instead
	grep -E "/$(echo "$1" | sed 's/_/[-_]/g')\.ko\$" "$w/all.txt" | head -n 1
}
deps_of() { # module name -> its depends= list
	local f
	f=$(file_of "$1")
	[ -n "$f" ] || return 0
	objcopy -O binary --only-section=.modinfo "$f" /dev/stdout 2>/dev/null | tr '\0' '\n' |
		sed -n 's/^depends=//p' | tr ',' ' '
}
: > "$w/order.txt"
visit() { # depth-first: dependencies first, each module once (local: dash and bash have it)
	local n d
	n=$(echo "$1" | tr '-' '_')
	grep -qx "$n" "$w/order.txt" 2>/dev/null && return 0
	[ -n "$(file_of "$n")" ] || { echo "mkimage: module $n not in $kver (built in, or absent)" >&2; return 0; }
	for d in $(deps_of "$n"); do visit "$d"; done
	echo "$n" >> "$w/order.txt"
}
for m in $want; do visit "$m"; done
{
	echo "# modules for kernel $kver in load order (image/mkimage.sh)"
	while read -r n; do
		f=$(file_of "$n")
		rel=${f#"$mods/"}
		mkdir -p "$r/lib/modules/$(dirname "$rel")"
		cp "$f" "$r/lib/modules/$rel"
		echo "$rel"
	done < "$w/order.txt"
} > "$r/lib/modules/load.list"
if [ -n "$nvidia" ]; then # the operator's NVIDIA modules and user-mode driver (image/README.md)
	mkdir -p "$r/lib/modules/nvidia"
	for m in nvidia nvidia-uvm; do
		[ -f "$nvidia/$m.ko" ] && cp "$nvidia/$m.ko" "$r/lib/modules/nvidia/" && echo "nvidia/$m.ko" >> "$r/lib/modules/load.list"
	done
	cp -a "$nvidia"/lib*.so* "$r/lib/x86_64-linux-gnu/" 2>/dev/null || true
fi
find "$r" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
(cd "$r" && find . | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible --owner=0:0) | gzip -9 -n > "$w/esp/initrd.img"

# ---- EFI system partition: systemd-boot, the kernel, the initramfs
mkdir -p "$w/esp/EFI/BOOT" "$w/esp/loader/entries"
cp "$sdboot" "$w/esp/EFI/BOOT/BOOTX64.EFI"
cp "$vmlinuz" "$w/esp/vmlinuz"
printf 'default tokenspeed.conf\ntimeout 0\n' > "$w/esp/loader/loader.conf"
printf 'title TokenSpeed\nlinux /vmlinuz\ninitrd /initrd.img\noptions console=tty0 console=ttyS0,115200 panic=10 quiet loglevel=4\n' \
	> "$w/esp/loader/entries/tokenspeed.conf"

MIB=1048576
size_mib() { echo $(( ($(du -sk --apparent-size "$1" | cut -f1) * 1024 + MIB - 1) / MIB )); }
esp_mib=$(( $(size_mib "$w/esp") + 32 ))
[ $esp_mib -ge 64 ] || esp_mib=64
cfg_mib=32
mkdir -p "$w/model"
names=
for m in "$@"; do # ext4 model partition: each checkpoint as /<its name>
	mkdir -p "$w/model/$(basename "$m")"
	cp -r "$m/." "$w/model/$(basename "$m")/"
	names="$names $(basename "$m")"
done
model_mib=$(( $(size_mib "$w/model") * 11 / 10 + 32 ))

# FAT images: mkfs.vfat --invariant (fixed volume id and times), files by mtools with their mtimes
fat() { # image label size_mib dir fat_bits
	rm -f "$1"
	mkfs.vfat --invariant -i 54530001 -F "$5" -n "$2" -C "$1" $(( $3 * 1024 )) > /dev/null
	find "$4" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	(cd "$4" && find . -mindepth 1 -type d | LC_ALL=C sort | while read -r d; do MTOOLS_SKIP_CHECK=1 mmd -i "$1" "::${d#./}"; done
	 find . -type f | LC_ALL=C sort | while read -r f; do MTOOLS_SKIP_CHECK=1 mcopy -m -i "$1" "$f" "::${f#./}"; done)
}
fat "$w/esp.fat" TS-ESP $esp_mib "$w/esp" 32
fat "$w/config.fat" TS-CONFIG $cfg_mib "$config" 16

# ext4 with a fixed UUID and hash seed
find "$w/model" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkfs.ext4 -q -F -L TS-MODEL -U 54530000-0000-4000-8000-000000000003 \
	-E hash_seed=54530000-0000-4000-8000-000000000004,root_owner=0:0 -d "$w/model" "$w/model.ext4" "${model_mib}M"
# mkfs.ext4 -d copies each file's ctime, which touch cannot set: fix it afterwards
ts=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S)
(cd "$w/model" && find . | LC_ALL=C sort | while read -r f; do echo "sif \"/${f#./}\" ctime $ts"; done) > "$w/ctime.cmds"
debugfs -w -f "$w/ctime.cmds" "$w/model.ext4" > /dev/null 2>&1

# ---- GPT: 1 MiB alignment, fixed GUIDs
total=$(( 1 + esp_mib + cfg_mib + model_mib + 2 )) # 1 MiB before, the backup GPT after
rm -f "$out"
truncate -s "${total}M" "$out"
sgdisk -q -Z "$out" > /dev/null 2>&1 || true
sgdisk -U 54530000-0000-4000-8000-000000000000 \
	-n 1:1M:+${esp_mib}M -t 1:ef00 -c 1:TS-ESP -u 1:54530000-0000-4000-8000-000000000010 \
	-n 2:0:+${cfg_mib}M -t 2:0700 -c 2:TS-CONFIG -u 2:54530000-0000-4000-8000-000000000011 \
	-n 3:0:+${model_mib}M -t 3:8300 -c 3:TS-MODEL -u 3:54530000-0000-4000-8000-000000000012 "$out" > /dev/null
off() { sgdisk -i "$1" "$out" | sed -n 's/^First sector: \([0-9]*\).*/\1/p'; }
dd if="$w/esp.fat" of="$out" bs=512 seek="$(off 1)" conv=notrunc status=none
dd if="$w/config.fat" of="$out" bs=512 seek="$(off 2)" conv=notrunc status=none
dd if="$w/model.ext4" of="$out" bs=512 seek="$(off 3)" conv=notrunc status=none
echo "mkimage: $out ${total} MiB: ESP ${esp_mib} MiB (systemd-boot, kernel $kver, initramfs $(($(stat -c %s "$w/esp/initrd.img") / 1024)) KiB, $(grep -vc '^#' "$r/lib/modules/load.list") modules), config ${cfg_mib} MiB, model ${model_mib} MiB (${names# })${nvidia:+, NVIDIA from $nvidia}"
rm -rf "$w"
