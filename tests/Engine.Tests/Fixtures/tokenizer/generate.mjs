// Writes expected.json: the ids Hugging Face's fast BertTokenizer gives for cases.json, computed with
// tokenizers.js (npm @huggingface/tokenizers 0.2.0, a port of the Rust tokenizers) on a tokenizer.json
// built from vocab.txt exactly as transformers' BertTokenizerFast writes one (uncased).
// Usage: node generate.mjs VOCAB_TXT PATH_TO_TOKENIZERS_PACKAGE
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
const [vocabPath, packagePath] = process.argv.slice(2);
const { Tokenizer } = createRequire(import.meta.url)(`${packagePath}/dist/tokenizers.cjs`);
const tokens = readFileSync(vocabPath, "utf8").split("\n");
if (tokens.at(-1) === "") tokens.pop();
const vocab = Object.fromEntries(tokens.map((t, i) => [t, i]));
const special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
const cls = { SpecialToken: { id: "[CLS]", type_id: 0 } };
const sep = (type_id) => ({ SpecialToken: { id: "[SEP]", type_id } });
const tokenizerJson = {
  version: "1.0", truncation: null, padding: null,
  added_tokens: special.map((content) => ({ id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
  normalizer: { type: "BertNormalizer", clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
  pre_tokenizer: { type: "BertPreTokenizer" },
  post_processor: {
    type: "TemplateProcessing",
    single: [cls, { Sequence: { id: "A", type_id: 0 } }, sep(0)],
    pair: [cls, { Sequence: { id: "A", type_id: 0 } }, sep(0), { Sequence: { id: "B", type_id: 1 } }, sep(1)],
    special_tokens: { "[CLS]": { id: "[CLS]", ids: [vocab["[CLS]"]], tokens: ["[CLS]"] }, "[SEP]": { id: "[SEP]", ids: [vocab["[SEP]"]], tokens: ["[SEP]"] } },
  },
  decoder: { type: "WordPiece", prefix: "##", cleanup: true },
  model: { type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##", max_input_chars_per_word: 100, vocab },
};
const tokenizer = new Tokenizer(tokenizerJson, { do_lower_case: true, model_max_length: 512 });
const cases = JSON.parse(readFileSync(new URL("./cases.json", import.meta.url), "utf8"));
const expected = cases.map((c) => {
  const e = tokenizer.encode(c.text, { text_pair: c.pair ?? null, add_special_tokens: true, return_token_type_ids: true });
  return { ...c, input_ids: e.ids, token_type_ids: e.token_type_ids };
});
writeFileSync(new URL("./expected.json", import.meta.url), "[\n" + expected.map((e) => " " + JSON.stringify(e)).join(",\n") + "\n]\n");
