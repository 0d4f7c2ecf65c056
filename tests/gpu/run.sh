#!/bin/sh
# Device checks, run on a GPU machine from the repository root with the
# binaries that `make gpu-tests` built (they travel with the tree):
#   sh tests/gpu/run.sh [OUTDIR]
# Runs every kernel test, the end-to-end test on the tiny checkpoints and a
# compute-sanitizer memcheck of one whole generation; writes logs to OUTDIR
# and ends with "N passed, N failed".
set -u
out=${1:-build/gpu-out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
pass=0
fail=0
summary=""
for t in build/gpu/k_gemm build/gpu/k_attn build/gpu/k_elem build/gpu/k_moe build/gpu/e2e; do
	name=$(basename "$t")
	[ -x "$t" ] || { summary="$summary\nMISSING $name"; fail=$((fail + 1)); continue; }
	"$t" > "$out/$name.log" 2>&1
	rc=$?
	line=$(grep "^# $name: pass=" "$out/$name.log" | tail -n 1)
	p=$(echo "$line" | sed -n 's/.*pass=\([0-9]*\).*/\1/p')
	f=$(echo "$line" | sed -n 's/.*fail=\([0-9]*\).*/\1/p')
	[ -n "$p" ] || { p=0; f=1; }
	[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
	pass=$((pass + p))
	fail=$((fail + f))
	summary="$summary\n$name: pass=$p fail=$f rc=$rc"
	grep -E "^\|" "$out/$name.log"
	grep -E "FAIL" "$out/$name.log" | head -n 20
done

# compute-sanitizer memcheck over one whole tiny-model generation
cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
printf '[model]\npath = %s/build/tests/ckpt/qwen3-mini\n[engine]\nmax_seq_len = 256\nmax_running = 4\nmax_batch_tokens = 64\nkv_tokens = 1024\n[device]\nbackend = gpu\n[log]\nlevel = warn\n' "$(pwd)" > "$out/cs.ini"
if [ -n "$cs" ]; then
	"$cs" --tool memcheck --leak-check full --error-exitcode 3 build/tokenspeed generate --config "$out/cs.ini" \
		--prompt-ids 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20 --prompt-ids 5,6,7 --max-tokens 12 \
		--temperature 0.8 --seed 3 --ignore-eos > "$out/memcheck.log" 2>&1
	rc=$?
	tail -n 3 "$out/memcheck.log"
	if [ "$rc" -eq 0 ] && grep -q "ERROR SUMMARY: 0 errors" "$out/memcheck.log"; then
		pass=$((pass + 1)); summary="$summary\nmemcheck: clean"
	else
		fail=$((fail + 1)); summary="$summary\nmemcheck: rc=$rc (see memcheck.log)"
	fi
else
	fail=$((fail + 1)); summary="$summary\nmemcheck: compute-sanitizer not found"
fi
printf "$summary\n"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
