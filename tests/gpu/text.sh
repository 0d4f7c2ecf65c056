#!/bin/sh
# Text in, text out on the GPU backend, on a GPU machine from the repository
# root with the binaries built here (build/tokenspeed, build/tsctl,
# build/tests/gen_ckpt): tokenspeed serve on llama3-mini with its tokenizer
# (gen_ckpt --tokenizer), then tsctl generate "TEXT" (greedy) on the GPU and
# on the CPU backend, a stop sequence taken from that text, and a two-turn
# tsctl chat whose second turn must find the first in the KV cache. Ends
# with "N passed, N failed".
#   sh tests/gpu/text.sh [PORT]
set -u
port=${1:-17080}
work=$(mktemp -d)
pass=0; fail=0
check() { if [ "$1" = 0 ]; then pass=$((pass + 1)); echo "ok   $2"; else fail=$((fail + 1)); echo "FAIL $2"; fi; }
build/tests/gen_ckpt --preset llama3-mini --out "$work/m" --tokenizer > /dev/null || exit 1
build/tokenspeed certs "$work/certs" > /dev/null || exit 1
serve() { # $1 backend, $2 port
	printf '[model]\npath = %s/m\n[engine]\nmax_seq_len = 1024\nmax_running = 8\nmax_batch_tokens = 256\nkv_tokens = 8192\n[device]\nbackend = %s\n[server]\nlisten = 127.0.0.1:%s\ntls_cert = %s/certs/server.crt\ntls_key = %s/certs/server.key\ntls_ca = %s/certs/ca.crt\n' \
		"$work" "$1" "$2" "$work" "$work" "$work" > "$work/$1.ini"
	build/tokenspeed serve --config "$work/$1.ini" > "$work/$1.log" 2>&1 &
	echo $! > "$work/$1.pid"
	for i in $(seq 1 120); do grep -q "serving on port" "$work/$1.log" && return 0; sleep 0.5; done
	return 1
}
serve gpu "$port"; check $? "gpu serve boots"
grep -E "stage=(backend|tokenizer)" "$work/gpu.log" | cut -c1-160
serve cpu $((port + 1)); check $? "cpu serve boots"
gen() { # $1 port, rest: args
	p=$1; shift
	build/tsctl generate --server 127.0.0.1:$p --certs "$work/certs" --server-name localhost "$@" 2>&1
}
gen "$port" "The quick brown fox" --max-tokens 32 --temperature 0 --ignore-eos > "$work/g.txt"; check $? "gpu generate text"
gen $((port + 1)) "The quick brown fox" --max-tokens 32 --temperature 0 --ignore-eos > "$work/c.txt"; check $? "cpu generate text"
echo "gpu: $(head -c 120 "$work/g.txt" | head -n 1)"
echo "cpu: $(head -c 120 "$work/c.txt" | head -n 1)"
pc=$(grep -o "prompt=[0-9]*" "$work/c.txt"); pg=$(grep -o "prompt=[0-9]*" "$work/g.txt")
grep -q "finish=LENGTH .* generated=32" "$work/g.txt" && [ -n "$pg" ] && [ "$pg" = "$pc" ]
check $? "gpu: 32 tokens, the text prompt tokenized as on the cpu server ($pg, $pc)"
# the text is the first line(s) before "done:"; GPU (bf16) and CPU (fp32) may part ways where the
# CPU's top two logits are close, so the comparison is reported, not required
t_g=$(sed '/^done: /,$d' "$work/g.txt"); t_c=$(sed '/^done: /,$d' "$work/c.txt")
[ "$t_g" = "$t_c" ] && echo "gpu text = cpu text" || echo "gpu text != cpu text (bf16 vs fp32; see above)"
stop=$(printf '%s' "$t_g" | head -c 24 | tail -c 4)
gen "$port" "The quick brown fox" --max-tokens 32 --temperature 0 --ignore-eos --stop "$stop" > "$work/s.txt"
grep -q "finish=STOP" "$work/s.txt"; check $? "gpu: stop sequence \"$stop\" ends the request STOP"
printf 'Hello!\nAnd once more.\n' | build/tsctl chat --server 127.0.0.1:$port --certs "$work/certs" --server-name localhost \
	--max-tokens 16 --temperature 0 -v > "$work/chat.txt" 2>&1
check $? "gpu chat exits 0"
c2=$(grep -o "cached=[0-9]*" "$work/chat.txt" | sed -n 2p | cut -d= -f2)
[ -n "$c2" ] && [ "$c2" -gt 0 ]; check $? "gpu chat: second turn cached=$c2 tokens"
for b in gpu cpu; do kill -TERM "$(cat "$work/$b.pid")"; wait "$(cat "$work/$b.pid")"; check $? "$b serve drains and exits 0"; done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
