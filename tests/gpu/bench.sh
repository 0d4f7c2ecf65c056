#!/bin/sh
# The decode benchmark on a GPU machine, from the repository root, with the
# binaries of `make gpu-tests`: writes a Llama-3.1-8B-shaped checkpoint with
# random N(0, 0.02) weights (16 GB) using our generator, then runs
# build/gpu/bench on it (floor, boot time, decode table).
#   sh tests/gpu/bench.sh [CKPT_DIR] [MAX_CTX]
set -eu
dir=${1:-/tmp/llama31-8b}
ctx=${2:-4096}
if [ ! -f "$dir/model.safetensors.index.json" ]; then
	t0=$(date +%s)
	build/tests/gen_ckpt --preset llama31-8b --out "$dir"
	echo "checkpoint written in $(( $(date +%s) - t0 )) s"
fi
cat "$dir"/*.safetensors > /dev/null # into the page cache: the boot is timed from there
build/gpu/bench "$dir" "$ctx"
