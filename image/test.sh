#!/bin/sh
# image/test.sh ACCEL (tcg or kvm): make image-test. Builds an image with two
# models (the make run one as /model/default, a qwen3-mini as /model/second),
# boots it in QEMU under OVMF (UEFI, systemd-boot) and drives it from outside
# as an operator would: serial console to a file, the server through a
# user-mode port forward, the config partition edited with mtools between
# boots, the ACPI power button and ctrl-alt-del from QEMU's monitor. Ends
# "N passed, N failed".
set -u
accel=${1:-tcg}
B=build
T=$B/image-test
OVMF=/usr/share/OVMF
rm -rf "$T"
mkdir -p "$T"
pass=0
fail=0
check() { # name, then a command that must succeed
	name=$1
	shift
	if "$@" > "$T/check.out" 2>&1; then
		pass=$((pass + 1))
		echo "ok   $name"
	else
		fail=$((fail + 1))
		echo "FAIL $name"
		sed 's/^/  /' "$T/check.out" | tail -n 5
	fi
}
has() { grep -q -- "$2" "$1"; }

$B/tests/gen_ckpt --preset qwen3-mini --out "$T/second" --tokenizer > /dev/null || exit 1
cp -r $B/image/config "$T/config"
t0=$(date +%s)
sh image/mkimage.sh "$T/t.img" $B/deps/image/kernel $B/deps/image/sdboot/usr/lib/systemd/boot/efi/systemd-bootx64.efi \
	$B/tokenspeed "$T/config" "" $B/models/default "$T/second" || exit 1
echo "#> image built in $(( $(date +%s) - t0 )) s: $(ls -s --block-size=M "$T/t.img" | cut -d' ' -f1)"
cfg_img="$T/t.img@@$(( $(sgdisk -i 2 "$T/t.img" | sed -n 's/^First sector: \([0-9]*\).*/\1/p') * 512 ))"
export MTOOLS_SKIP_CHECK=1
port=$((17000 + $$ % 2000))
srv="--server 127.0.0.1:$port --certs $B/certs"

case $accel in
kvm) acc="-accel kvm -cpu host" ;;
*) acc="-accel tcg -cpu max" ;;
esac

# boot NAME: starts the VM in the background, its serial console in $T/NAME.log
boot() {
	log=$T/$1.log
	cp $OVMF/OVMF_VARS_4M.fd "$T/vars.fd"
	rm -f "$T/mon.in" "$T/mon.out"
	mkfifo "$T/mon.in" "$T/mon.out"
	qemu-system-x86_64 $acc -m 1536 -smp 2 -machine q35 \
		-drive if=pflash,format=raw,readonly=on,file=$OVMF/OVMF_CODE_4M.fd -drive if=pflash,format=raw,file="$T/vars.fd" \
		-drive if=virtio,format=raw,file="$T/t.img" \
		-netdev user,id=n0,hostfwd=tcp:127.0.0.1:$port-:7070 -device virtio-net-pci,netdev=n0 \
		-display none -serial file:"$log" -monitor pipe:"$T/mon" -no-reboot &
	qpid=$!
	cat "$T/mon.out" > /dev/null &
	booted=$(date +%s)
}
# wait_for PATTERN SECONDS: until the console log shows it
wait_for() {
	i=0
	while [ $i -lt $(($2 * 5)) ]; do
		grep -q -- "$1" "$log" 2>/dev/null && return 0
		kill -0 $qpid 2>/dev/null || return 1
		sleep 0.2
		i=$((i + 1))
	done
	return 1
}
# power_button: ACPI power button, then the VM must power off within 60 s
power_button() {
	echo system_powerdown > "$T/mon.in"
	vm_gone
}
# ctrl_alt_del: the keyboard's ctrl-alt-del; init reboots, which -no-reboot turns into QEMU's exit
ctrl_alt_del() {
	echo "sendkey ctrl-alt-delete" > "$T/mon.in"
	vm_gone
}
vm_gone() {
	i=0
	while kill -0 $qpid 2>/dev/null && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
	if kill -0 $qpid 2>/dev/null; then
		kill $qpid
		return 1
	fi
	wait $qpid
	return 0
}

# 1. boot to ready, generate through the port forward
boot boot1
check "boot 1 reaches ready" wait_for "init: engine ready" 240
echo "#> boot to ready ($accel): $(( $(date +%s) - booted )) s from QEMU start; $(grep -o 'ready boot_ms=[0-9.]*' "$log")"
check "generate over TLS through the port forward" $B/tsctl generate $srv "Once upon a time" --max-tokens 8
check "last-good.ini saved" has "$log" "init: saved /config/last-good.ini"
# 4. the engine killed from the console (alt-sysrq-i: SIGKILL to all but init): restarted
echo "sendkey alt-sysrq-i" > "$T/mon.in"
check "engine death logged with its reason" wait_for "(killed by signal 9 (SIGKILL)); restart 1 in 1000 ms" 60
i=0
while [ "$(grep -c 'init: engine ready' "$log")" -lt 2 ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
check "ready a second time" [ "$(grep -c 'init: engine ready' "$log")" -ge 2 ]
check "generate after the restart" $B/tsctl generate $srv "Once upon a time" --max-tokens 8
# 5. power button: drain, sync, power off
check "power button powers off" power_button
check "power button drains the engine" has "$log" "init: power button: draining the engine"
check "engine drained" has "$log" 'serve: exit status=0 reason="SIGTERM, drained"'
check "init powers off" has "$log" "init: powering off"

# 2. edit the ini on the config partition to name the second model; reboot
mcopy -i "$cfg_img" ::tokenspeed.ini "$T/ini.orig"
sed 's|^path = /model/default|path = /model/second|' "$T/ini.orig" > "$T/ini.second"
mcopy -o -i "$cfg_img" "$T/ini.second" ::tokenspeed.ini
boot boot2
check "boot 2 reaches ready" wait_for "init: engine ready" 240
$B/tsctl stats $srv > "$T/stats2" 2>&1
check "WELCOME names the second model" has "$T/stats2" "model: second"
check "... a Qwen3" has "$T/stats2" "arch: Qwen3ForCausalLM"
check "generate from the second model" $B/tsctl generate $srv "Hello" --max-tokens 4
check "ctrl-alt-del ends the VM" ctrl_alt_del
check "ctrl-alt-del drains the engine" has "$log" "init: SIGINT (ctrl-alt-del): draining the engine"
check "... and reboots" has "$log" "init: rebooting"

# 3. a broken ini: the last good one (the second model's) boots and says why
sed 's|^listen = .*|&\nmax_requests = 0|' "$T/ini.second" > "$T/ini.broken"
mcopy -o -i "$cfg_img" "$T/ini.broken" ::tokenspeed.ini
boot boot3
check "boot 3 (broken ini) reaches ready" wait_for "init: engine ready" 240
$B/tsctl stats $srv > "$T/stats3" 2>&1
check "WELCOME says CONFIG FALLBACK with file:line" has "$T/stats3" "CONFIG FALLBACK to the last good ini: /config/tokenspeed.ini:2[0-9]: \[server\] max_requests"
check "console says CONFIG FALLBACK" has "$log" "init: CONFIG FALLBACK"
check "power off 3" power_button

# 3b. no last good one either: maintenance answers HELLO with the ini problem
mdel -i "$cfg_img" ::last-good.ini
boot boot4
check "boot 4 reaches maintenance" wait_for "maintenance: listening" 240
$B/tsctl stats $srv > "$T/stats4" 2>&1
check "HELLO answered with ERROR naming the ini line" has "$T/stats4" "maintenance: /config/tokenspeed.ini is not valid"
check "power off 4 (maintenance)" power_button
cat "$T/stats4" | head -n 2 | sed 's/^/#> /'
echo "$pass passed, $fail failed"
echo "# t_image: pass=$pass fail=$fail" # tests/run.sh's summary line (make test runs this as build/tests/t_image)
[ "$fail" -eq 0 ]
