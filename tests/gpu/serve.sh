#!/bin/sh
# Serving on the GPU backend, on a GPU machine from the repository root with
# the binaries built here: tokenspeed serve on a checkpoint, tsctl bench
# against it, STATS, then SIGTERM.
#   sh tests/gpu/serve.sh CKPT_DIR CONCURRENCY REQUESTS INPUT_LEN OUTPUT_LEN [PORT]
set -u
dir=$1; conc=$2; nreq=$3; inlen=$4; outlen=$5; port=${6:-17070}
work=$(mktemp -d)
build/tokenspeed certs "$work/certs" > /dev/null || exit 1
printf '[model]\npath = %s\n[engine]\nmax_seq_len = 4096\nmax_running = 64\nmax_batch_tokens = 4096\n[device]\nbackend = gpu\n[server]\nlisten = 127.0.0.1:%s\ntls_cert = %s/certs/server.crt\ntls_key = %s/certs/server.key\ntls_ca = %s/certs/ca.crt\n[log]\nlevel = info\n' \
	"$dir" "$port" "$work" "$work" "$work" > "$work/serve.ini"
build/tokenspeed serve --config "$work/serve.ini" > "$work/serve.log" 2>&1 &
pid=$!
for i in $(seq 1 120); do grep -q "serving on port" "$work/serve.log" && break; sleep 0.5; done
grep -E "stage=(backend|selftest)|ready" "$work/serve.log" | cut -c1-160
build/tsctl bench --server 127.0.0.1:$port --certs "$work/certs" --concurrency "$conc" --requests "$nreq" \
	--input-len "$inlen" --output-len "$outlen" --session-reuse 0.5
build/tsctl stats --server 127.0.0.1:$port --certs "$work/certs" | grep -E "REQUESTS_(DONE|FAILED|CANCELLED)|PROTOCOL_ERRORS|KV_BLOCKS|PREEMPTIONS"
kill -TERM $pid; wait $pid; echo "serve exit=$?"
