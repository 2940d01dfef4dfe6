// gen_tokenizer_json.mjs -- writes a small tokenizer.json (and
// tokenizer_config.json) shaped exactly like a jina-embeddings-v2 model's,
// trained with Hugging Face's own tokenizers library on deterministic
// multilingual text (text.mjs).
//
//   node tests/tokref/gen_tokenizer_json.mjs OUTDIR --kind KIND [--vocab-size N]
//
// KIND:
//   wordpiece        -small-en/-base-en: BertNormalizer (lowercase, accents
//                    stripped, CJK split), BertPreTokenizer, WordPiece "##",
//                    [CLS] $A [SEP]; [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4
//   wordpiece-cased  the same without lowercasing or accent stripping
//   bpe              -base-code/-de/-es: ByteLevel (GPT-2 split, no prefix
//                    space), byte-level BPE, RobertaProcessing <s> … </s>;
//                    <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4, then all 256 bytes
//   bpe-zh           -base-zh style: NFC + Lowercase, Whitespace pre-tokenizer,
//                    BPE on raw characters with <unk>, <s> … </s>; U+0000-U+0002
//                    in the vocabulary after the specials
// --vocab-size N keeps the first N ids (specials, alphabet, then merges in
// training order), so the file fits a model with an N-row embedding table.
// The training is not bit-for-bit repeatable (the library breaks ties in
// hash order): the committed fixtures in tests/data/tokenizers/ are the
// reference, this script is how they were made.
import fs from 'fs';
import os from 'os';
import path from 'path';
import * as tk from 'tokenizers';
import { trainingText } from './text.mjs';

const KINDS = ['wordpiece', 'wordpiece-cased', 'bpe', 'bpe-zh'];

function usage(msg) {
    console.error(`gen_tokenizer_json: ${msg}\nusage: node gen_tokenizer_json.mjs OUTDIR --kind ` +
        `${KINDS.join('|')} [--vocab-size N]`);
    process.exit(2);
}

function train(kind) {
    const wp = kind.startsWith('wordpiece');
    const t = new tk.Tokenizer(wp ? tk.WordPiece.empty() : tk.BPE.empty());
    if (wp) {
        const lower = kind === 'wordpiece';
        t.setNormalizer(tk.bertNormalizer({ cleanText: true, handleChineseChars: true,
                                            stripAccents: lower, lowercase: lower }));
        t.setPreTokenizer(tk.bertPreTokenizer());
    } else if (kind === 'bpe') {
        t.setPreTokenizer(tk.byteLevelPreTokenizer(false, true));
    } else {
        t.setNormalizer(tk.sequenceNormalizer([tk.nfcNormalizer(), tk.lowercase()]));
        t.setPreTokenizer(tk.whitespacePreTokenizer());
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokref-'));
    const txt = path.join(dir, 'train.txt'), out = path.join(dir, 'tokenizer.json');
    fs.writeFileSync(txt, trainingText().join('\n') + '\n');
    const log = console.log;
    t.train([txt]);
    t.save(out);
    const j = JSON.parse(fs.readFileSync(out, 'utf8'));
    fs.rmSync(dir, { recursive: true });
    void log;
    return j;
}

// ids in training order, specials first; the rest shifted after them
function rebuild(j, kind, specials, extra, vocabSize) {
    const old = Object.entries(j.model.vocab).sort((a, b) => a[1] - b[1]).map((e) => e[0]);
    const order = [...specials, ...extra.filter((x) => !old.includes(x)), ...old];
    const vocab = {};
    for (const w of order) if (!(w in vocab) && (vocabSize === 0 || Object.keys(vocab).length < vocabSize))
        vocab[w] = Object.keys(vocab).length;
    j.model.vocab = vocab;
    if (j.model.merges) {
        const pair = (m) => (Array.isArray(m) ? m : m.split(' '));
        j.model.merges = j.model.merges.map(pair).filter(([a, b]) => a in vocab && b in vocab && (a + b) in vocab);
    }
    j.added_tokens = specials.map((s) => ({ id: vocab[s], content: s, single_word: false,
        lstrip: s === '<mask>', rstrip: false, normalized: false, special: true }));
    return j;
}

function shape(j, kind, vocabSize) {
    if (kind.startsWith('wordpiece')) {
        j = rebuild(j, kind, ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'], [], vocabSize);
        j.model.unk_token = '[UNK]';
        j.model.continuing_subword_prefix = '##';
        j.model.max_input_chars_per_word = 100;
        const st = (s) => ({ id: s, ids: [j.model.vocab[s]], tokens: [s] });
        j.post_processor = {
            type: 'TemplateProcessing',
            single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
                     { SpecialToken: { id: '[SEP]', type_id: 0 } }],
            pair: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
                   { SpecialToken: { id: '[SEP]', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } },
                   { SpecialToken: { id: '[SEP]', type_id: 1 } }],
            special_tokens: { '[CLS]': st('[CLS]'), '[SEP]': st('[SEP]') },
        };
        j.decoder = { type: 'WordPiece', prefix: '##', cleanup: true };
    } else {
        // bpe-zh: the first control characters, NUL included, follow the
        // specials (as in -base-zh's vocabulary)
        const bytes = kind === 'bpe' ? tk.byteLevelAlphabet().sort() : ['\u0000', '\u0001', '\u0002'];
        j = rebuild(j, kind, ['<s>', '<pad>', '</s>', '<unk>', '<mask>'], bytes, vocabSize);
        j.model.unk_token = kind === 'bpe' ? null : '<unk>';
        j.post_processor = { type: 'RobertaProcessing', sep: ['</s>', 2], cls: ['<s>', 0],
                             trim_offsets: true, add_prefix_space: false };
        j.decoder = kind === 'bpe' ? { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true,
                                       use_regex: true } : { type: 'BPEDecoder', suffix: '' };
    }
    return j;
}

const args = process.argv.slice(2);
let outdir = null, kind = null, vocabSize = 0;
for (let i = 0; i < args.length; i++) {
    if (args[i] === '--kind') kind = args[++i];
    else if (args[i] === '--vocab-size') vocabSize = Number(args[++i]);
    else if (!outdir) outdir = args[i];
    else usage(`unexpected argument ${args[i]}`);
}
if (!outdir) usage('no OUTDIR');
if (!KINDS.includes(kind)) usage(`--kind must be one of ${KINDS.join(', ')}`);
if (!Number.isInteger(vocabSize) || vocabSize < 0 || (vocabSize > 0 && vocabSize < 300))
    usage('--vocab-size must be at least 300');
const j = shape(train(kind), kind, vocabSize);
fs.mkdirSync(outdir, { recursive: true });
const file = path.join(outdir, 'tokenizer.json');
// through the library once more, so the file is exactly what it writes
fs.writeFileSync(file, JSON.stringify(j));
tk.Tokenizer.fromFile(file).save(file, true);
fs.writeFileSync(path.join(outdir, 'tokenizer_config.json'), JSON.stringify({
    tokenizer_class: kind.startsWith('wordpiece') ? 'BertTokenizer' : 'RobertaTokenizer',
    model_max_length: 8192,
    do_lower_case: kind === 'wordpiece',
}, null, 2) + '\n');
const n = Math.max(...Object.values(JSON.parse(fs.readFileSync(file, 'utf8')).model.vocab)) + 1;
console.error(`gen_tokenizer_json: ${file}: ${kind}, ${n} ids`);
