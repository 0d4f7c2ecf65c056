#!/bin/sh
# Tensor parallelism on a multi-GPU machine, from the repository root, with the
# binaries of `make gpu-tests` (they travel with the tree):
#   sh tests/gpu/tp.sh [OUTDIR] [BIG_CKPT_DIR]
#
# 1. The CPU twin first (build/tests/t_tp): TP = 2, 3, 4 against TP = 1 on
#    every tiny preset, the same test `make test` runs.
# 2. NCCL: libnccl.so.2 loads and its version (tokenspeed's own loader, through
#    a gpus list of two on a tiny model: the boot's one line says what it found).
# 3. Correctness on the GPUs: for each tiny preset and each TP in 1 2 4 8 that
#    the machine has GPUs for, `tokenspeed generate` with [device] gpus = the
#    first TP ordinals, four greedy prompts; every TP's tokens must equal
#    TP = 1's on the same card (bf16 near-ties may flip a token: the table
#    prints how many of the 4 x 32 tokens differ, 0 is the pass).
# 4. Scaling: the Llama-3.1-8B-shaped checkpoint (written by gen_ckpt, 16 GB)
#    at TP 1, 2, 4, 8: decode tokens/s at batch 1 and batch 32, and the
#    speed-up over TP = 1.
# Ends with "N passed, N failed". Until the GPU backend shards (issue 12), a
# gpus list of more than one is refused at boot with one line saying so: the
# correctness rows then read "refused" and count as failed, by design.
set -u
out=${1:-build/gpu-out/tp}
big=${2:-/tmp/llama31-8b}
mkdir -p "$out"
pass=0
fail=0
ngpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader | tee "$out/gpus.txt"
echo "GPUs: $ngpu"

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

# 1. the CPU twin
if build/tests/t_tp > "$out/t_tp.log" 2>&1; then ok; else bad "t_tp (see $out/t_tp.log)"; fi
grep -E "worst|t_tp:" "$out/t_tp.log"

# gpus list of the first n ordinals: 0,1,...,n-1
gpus_of() { seq -s, 0 $(($1 - 1)); }

ini() { # ini DIR TP MAXSEQ > file
	printf '[model]\npath = %s\n[engine]\nmax_seq_len = %s\nmax_running = 32\nmax_batch_tokens = 2048\nkv_tokens = %s\n[device]\nbackend = gpu\ngpus = %s\n[log]\nlevel = warn\n' \
		"$1" "$3" $((32 * $3)) "$(gpus_of "$2")"
}

# 2. NCCL through the boot's own loader
if [ "$ngpu" -ge 2 ]; then
	ini "$(pwd)/build/tests/ckpt/llama2-mini" 2 256 > "$out/nccl.ini"
	build/tokenspeed generate --config "$out/nccl.ini" --prompt-ids 1,2,3 --max-tokens 2 > "$out/nccl.log" 2>&1
	grep -E "nccl|NCCL|gpus" "$out/nccl.log" | head -n 3
fi

# 3. correctness against TP = 1
prompts="--prompt-ids 1,2,3,4,5,6,7,8,9 --prompt-ids 5,6,7 --prompt-ids 11,12,13,14,15,16,17,18,19,20,21,22,23,24 --prompt-ids 3"
printf '\n| preset | tp | tokens differing from tp=1 (of 128) | result |\n| --- | --- | --- | --- |\n'
for p in $(build/tests/gen_ckpt --list | awk '/-mini /{print $1}'); do
	dir=$(pwd)/build/tests/ckpt/$p
	[ -f "$dir/config.json" ] || build/tests/gen_ckpt --preset "$p" --out "$dir" > /dev/null
	for tp in 1 2 4 8; do
		[ "$tp" -le "$ngpu" ] || continue
		ini "$dir" "$tp" 256 > "$out/$p-tp$tp.ini"
		if ! build/tokenspeed generate --config "$out/$p-tp$tp.ini" $prompts --max-tokens 32 --ignore-eos \
			> "$out/$p-tp$tp.log" 2>&1; then
			printf '| %s | %s | - | refused: %s |\n' "$p" "$tp" "$(tail -n 1 "$out/$p-tp$tp.log" | cut -c1-120)"
			bad "$p tp=$tp"
			continue
		fi
		grep '^out\[' "$out/$p-tp$tp.log" | sed 's/ finish=.*//' > "$out/$p-tp$tp.ids"
		[ "$tp" -eq 1 ] && { ok; continue; }
		d=$(paste -d'\n' "$out/$p-tp1.ids" "$out/$p-tp$tp.ids" | awk 'NR % 2 == 1 { split($0, a, " "); next }
			{ n = split($0, b, " "); for (i = 2; i <= n; i++) if (a[i] != b[i]) c++ } END { print c + 0 }')
		if [ "$d" -eq 0 ]; then ok; r=pass; else bad "$p tp=$tp: $d tokens differ"; r=FAIL; fi
		printf '| %s | %s | %s | %s |\n' "$p" "$tp" "$d" "$r"
	done
done

# 4. scaling on the 8B-shaped checkpoint
if [ ! -f "$big/model.safetensors.index.json" ]; then
	build/tests/gen_ckpt --preset llama31-8b --out "$big" > /dev/null
fi
cat "$big"/*.safetensors > /dev/null
one=""
for i in $(seq 1 32); do one="$one --prompt-ids $i,$((i + 1)),$((i + 2)),$((i + 3))"; done
printf '\n| tp | GPUs | batch 1 tok/s | batch 32 tok/s | speed-up b1 | speed-up b32 |\n| --- | --- | --- | --- | --- | --- |\n'
b1_1=""; b32_1=""
for tp in 1 2 4 8; do
	[ "$tp" -le "$ngpu" ] || continue
	ini "$big" "$tp" 1024 > "$out/big-tp$tp.ini"
	r1=$(build/tokenspeed generate --config "$out/big-tp$tp.ini" --prompt-ids 1,2,3,4 --max-tokens 256 --ignore-eos 2>&1 |
		sed -n 's/.*decode: .*(\([0-9.]*\) tok\/s).*/\1/p')
	r32=$(build/tokenspeed generate --config "$out/big-tp$tp.ini" $one --max-tokens 256 --ignore-eos 2>&1 |
		sed -n 's/.*decode: .*(\([0-9.]*\) tok\/s).*/\1/p')
	[ -n "$r1" ] || r1=0
	[ -n "$r32" ] || r32=0
	[ "$tp" -eq 1 ] && { b1_1=$r1; b32_1=$r32; }
	s1=$(awk -v a="$r1" -v b="$b1_1" 'BEGIN { printf "%.2f", b > 0 ? a / b : 0 }')
	s32=$(awk -v a="$r32" -v b="$b32_1" 'BEGIN { printf "%.2f", b > 0 ? a / b : 0 }')
	printf '| %s | %s | %s | %s | %s | %s |\n' "$tp" "$(gpus_of "$tp")" "$r1" "$r32" "$s1" "$s32"
	if [ "$r1" = 0 ]; then bad "scaling tp=$tp did not run"; else ok; fi
done
echo "$pass passed, $fail failed"
