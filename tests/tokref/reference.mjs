// reference.mjs -- encodes the comparison corpus (text.mjs) with Hugging
// Face's tokenizers library for each tokenizer.json given, writing one line
// per text: the text's UTF-8 bytes in hex, a tab, and the ids (sequence
// tokens included) separated by spaces. tests/stage_tokref.sh compares the
// C tokenizer with these.
//
//   node tests/tokref/reference.mjs OUTDIR tokenizer.json...   (OUTDIR/<name>.ids)
import fs from 'fs';
import path from 'path';
import * as tk from 'tokenizers';
import { corpus } from './text.mjs';

const [outdir, ...files] = process.argv.slice(2);
if (!outdir || !files.length) {
    console.error('usage: node reference.mjs OUTDIR tokenizer.json...');
    process.exit(2);
}
fs.mkdirSync(outdir, { recursive: true });
const texts = corpus();
for (const f of files) {
    const t = tk.Tokenizer.fromFile(f);
    const lines = [];
    for (let i = 0; i < texts.length; i += 1000) {
        const batch = texts.slice(i, i + 1000), enc = await t.encodeBatch(batch);
        enc.forEach((e, k) => lines.push(Buffer.from(batch[k], 'utf8').toString('hex') + '\t' +
                                         e.getIds().join(' ')));
    }
    const out = path.join(outdir, path.basename(f, '.json') + '.ids');
    fs.writeFileSync(out, lines.join('\n') + '\n');
    console.error(`reference: ${texts.length} texts -> ${out}`);
}
