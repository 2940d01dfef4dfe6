// text.mjs -- the deterministic texts the tokenizer.json tests use: training
// text for gen_tokenizer_json.mjs and the corpus reference.mjs encodes.
import fs from 'fs';
import path from 'path';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
const data = path.join(here, '..', 'data');

// A small linear congruential generator: the same text on every run.
export function rng(seed) {
    let s = seed >>> 0;
    return () => {
        s = (Math.imul(s, 1103515245) + 12345) >>> 0;
        return s / 4294967296;
    };
}

const WORDS = {
    en: 'the quick brown fox jumps over lazy dog embedding vector search model server token'.split(' '),
    de: 'Straße Größe über schön Mädchen Bäckerei Fußgängerzone Übermut Äpfel Öl Frühstück'.split(' '),
    es: 'niño mañana corazón canción pingüino acción está también árbol último jamás'.split(' '),
    fr: 'élève déjà où garçon français cœur naïve Noël forêt hôpital coïncidence'.split(' '),
    ru: 'Привет мир как дела язык модель вектор поиск сервер Москва ёлка'.split(' '),
    el: 'Καλημέρα κόσμε Αθήνα ΣΟΦΙΑ λέξη γλώσσα ψυχή Ωμέγα'.split(' '),
    zh: '这是 一个 测试 句子 向量 模型 搜索 服务器 中文 分词 你好 世界 北京'.split(' '),
    ja: '日本語 テキスト ひらがな カタカナ 東京 検索 モデル です ます'.split(' '),
    ko: '안녕하세요 세계 한국어 검색 모델 서버 벡터'.split(' '),
    ar: 'مرحبا بالعالم اللغة العربية نموذج بحث'.split(' '),
    he: 'שלום עולם שפה עברית מודל חיפוש'.split(' '),
    hi: 'नमस्ते दुनिया भाषा हिन्दी खोज मॉडल'.split(' '),
    th: 'สวัสดี ภาษาไทย โลก ค้นหา'.split(' '),
    emoji: '🚀 🎉 👍🏽 👨‍👩‍👧 🇩🇪 ❤️ 😀 🤖'.split(' '),
    code: 'for (int i = 0; i < n; i++) { x[i] += y[i]; } def f(a, b): return a**b // 2 && || != == -> => ::'.split(' '),
};

// Generated multilingual lines: words of one or two languages with spaces,
// punctuation, digits and now and then a tab or newline run.
export function multilingual(n, seed) {
    const r = rng(seed), langs = Object.keys(WORDS), out = [];
    for (let i = 0; i < n; i++) {
        const a = WORDS[langs[Math.floor(r() * langs.length)]];
        const b = WORDS[langs[Math.floor(r() * langs.length)]];
        const k = 3 + Math.floor(r() * 12), w = [];
        for (let j = 0; j < k; j++) {
            const src = r() < 0.7 ? a : b;
            let x = src[Math.floor(r() * src.length)];
            const u = r();
            if (u < 0.1) x = x.toUpperCase();
            else if (u < 0.15) x += ['.', ',', '!', '?', ';', ':', '…', '、', '。'][Math.floor(r() * 9)];
            else if (u < 0.2) x += String(Math.floor(r() * 100000));
            w.push(x);
        }
        out.push(w.join(r() < 0.9 ? ' ' : ['  ', '\t', ' \n '][Math.floor(r() * 3)]));
    }
    return out;
}

export function readLines(name) {
    return fs.readFileSync(path.join(data, name), 'utf8').split('\n').filter((l) => l.length);
}

export function trainingText() {
    return [...readLines('corpus.txt'), ...readLines('tokref_seeds.txt'), ...multilingual(3000, 7)];
}

// Unicode edge cases and other hard inputs for the comparison corpus.
export function edgeCases() {
    const long = 'a'.repeat(99) + ' ' + 'b'.repeat(100) + ' ' + 'c'.repeat(101) + ' ' + 'xyz'.repeat(700);
    return [
        '', ' ', '   ', '\t\n\r', 'a\u0000b', '\u0000', 'x\u0001\u0002\u001f\u007fy', 'tab\there',
        'new\nline\r\nend', 'nbsp\u00a0thin\u2009ideo\u3000space', 'zero\u200bwidth\u200cjoin\u200d',
        'e\u0301 e\u0300\u0323 n\u0303 a\u030a \u1e9b\u0323 q\u0307\u0323', 'Å Å Å ﬁ ﬀ ℌ ½ ①',
        'İstanbul IĞDIR ß ẞ Σίσυφος ΣΑΣ ǅ ǈ', 'Ⅻ ⅻ ㈱ ㍿ ｶﾀｶﾅ ＦＵＬＬ', '한국어 ᄒᆞᆫ 각 갂',
        '👨‍👩‍👧‍👦 🏳️‍🌈 👍🏽 🇯🇵🇫🇷 #️⃣ ☺︎ 🫠 🥰', 'עברית (עם) סוגריים، العربية؟ ١٢٣ ۴۵۶',
        '\u202eRTL override\u202c \u200fmark\u200e', 'ﷺ ﷽ ﻼ', 'Ǆemal ǲ',
        "don't I'm we'll they've she'd it's O'REILLY 'quoted'", 'A.B,C;D:E!F?G(H)I[J]K{L}M<N>O',
        '$100 + 20% = #hash @user ^caret `tick` |pipe| ~tilde', '«guillemets» „quotes“ ‘single’ — – - …',
        '3.14159 1,000,000 ٣ ௰ ½ ² 10⁻³', 'CamelCaseWord snake_case_word kebab-case-word',
        'https://example.com/path?q=1&r=2#frag user@example.org',
        'int main(void) {\n    printf("%d\\n", 42);\n    return 0;\n}',
        'def f(x):\n\treturn [i ** 2 for i in range(x) if i % 2 == 0]',
        'SELECT * FROM t WHERE a <> b AND c >= 3;', '   leading and trailing   ', 'multiple     spaces',
        '[CLS] [SEP] [MASK] <s> </s> <mask> <pad> [UNK]', 'x<mask>y x <mask> y [MASK]z', long,
        '\ud800 lone surrogate', '\ufffd replacement', '\uE000 private use \uF8FF', '\u0378 unassigned',
        'Ꙩ ꙮ 𓀀 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛', '丂 𠀀 𪜀 㐀 〇 々 ｱ', 'ॐ नमस्ते क्षत्रिय', 'ไทย ภาษา',
    ];
}

// Random code points from many blocks (combining marks, Hangul jamo,
// controls, symbols, anywhere in the BMP and beyond), mixed with spaces and
// ASCII letters: the character tables and the normalisers, letter by letter.
export function randomUnicode(n, seed) {
    const r = rng(seed);
    const blocks = [[0x0, 0x7f], [0x80, 0x24f], [0x300, 0x36f], [0x370, 0x52f], [0x1100, 0x11ff],
        [0xac00, 0xd7a3], [0x4e00, 0x9fff], [0x2000, 0x206f], [0x20a0, 0x22ff], [0x3000, 0x30ff],
        [0xff00, 0xffef], [0x1f300, 0x1faff], [0x0590, 0x08ff], [0x0900, 0x0dff], [0x1e00, 0x1fff],
        [0xa000, 0xd7ff], [0xe000, 0xfffd], [0x10000, 0x2ffff], [0x0, 0xffff]];
    const out = [];
    for (let i = 0; i < n; i++) {
        let s = '';
        const len = 1 + Math.floor(r() * 40);
        for (let j = 0; j < len; j++) {
            const u = r();
            if (u < 0.15) { s += ' '; continue; }
            if (u < 0.3) { s += 'abcdefghijKLMNOPQRS'[Math.floor(r() * 19)]; continue; }
            const [lo, hi] = blocks[Math.floor(r() * blocks.length)];
            let c = lo + Math.floor(r() * (hi - lo + 1));
            if (c >= 0xd800 && c <= 0xdfff) c = 0x41;
            s += String.fromCodePoint(c);
        }
        out.push(s);
    }
    return out;
}

// Every code point of planes 0-2 and some of the others (surrogates
// excepted), each as "ab?cd", 16 to a line: the character classes one by one.
export function codePoints() {
    const cps = [];
    const add = (lo, hi) => { for (let c = lo; c <= hi; c++) if (c < 0xd800 || c > 0xdfff) cps.push(c); };
    add(0, 0x31fff);
    add(0xe0000, 0xe01ff);
    add(0xf0000, 0xf00ff);
    add(0x10ff00, 0x10fffd);
    const out = [];
    for (let i = 0; i < cps.length; i += 16)
        out.push(cps.slice(i, i + 16).map((c) => 'ab' + String.fromCodePoint(c) + 'cd').join(' '));
    return out;
}

export function corpus() {
    const seeds = readLines('tokref_seeds.txt');
    return [...edgeCases(), ...seeds, ...readLines('corpus.txt').slice(0, 100), ...multilingual(400, 99),
            ...randomUnicode(600, 5), seeds.join(' '), ...codePoints()];
}
