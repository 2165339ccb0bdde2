//! Equivalence with tiktoken-rs: the embedded tables, the pieces of the pre-tokenizer and
//! the counts, on a generated corpus and on random strings. Exact values throughout.

use std::collections::HashSet;
use std::sync::OnceLock;

use proptest::prelude::*;
use tiktoken_rs::CoreBPE;

use super::encoding::Encoding;
use super::{cl100k, model, o200k};

/// tiktoken-rs's `cl100k_base` pattern (a literal inside `tiktoken_rs::cl100k_base`).
const CL100K_PAT: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

/// One encoding under test and its reference.
struct Pair {
    name: &'static str,
    ours: &'static Encoding,
    reference: &'static CoreBPE,
    pattern: &'static fancy_regex::Regex,
}

fn fancy(
    pat: &'static str,
    cell: &'static OnceLock<fancy_regex::Regex>,
) -> &'static fancy_regex::Regex {
    cell.get_or_init(|| fancy_regex::Regex::new(pat).unwrap())
}

fn pairs() -> [Pair; 2] {
    static O200K_RE: OnceLock<fancy_regex::Regex> = OnceLock::new();
    static CL100K_RE: OnceLock<fancy_regex::Regex> = OnceLock::new();
    [
        Pair {
            name: "o200k_base",
            ours: o200k().unwrap(),
            reference: tiktoken_rs::o200k_base_singleton(),
            pattern: fancy(tiktoken_rs::O200K_BASE_PAT_STR, &O200K_RE),
        },
        Pair {
            name: "cl100k_base",
            ours: cl100k().unwrap(),
            reference: tiktoken_rs::cl100k_base_singleton(),
            pattern: fancy(CL100K_PAT, &CL100K_RE),
        },
    ]
}

/// Asserts equal pieces and equal counts for both encodings.
fn assert_same(text: &str) {
    for p in pairs() {
        let want: Vec<&[u8]> = p
            .pattern
            .find_iter(text)
            .map(|m| m.unwrap().as_str().as_bytes())
            .collect();
        let got = p.ours.pieces(text);
        assert_eq!(got, want, "{}: pieces of {text:?}", p.name);
        assert_eq!(
            p.ours.count(text),
            p.reference.encode_ordinary(text).len(),
            "{}: count of {text:?}",
            p.name
        );
    }
}

#[test]
fn o200k_patterns_are_tiktoken_rs_pattern_in_three_parts() {
    let [main, trimmed, last] = super::pretokenize::O200K_PATTERNS;
    assert_eq!(trimmed, r"\s+\s");
    assert_eq!(
        format!("{main}|\\s+(?!\\S)|{last}"),
        tiktoken_rs::O200K_BASE_PAT_STR
    );
}

#[test]
fn tables_round_trip_the_vocabularies() {
    for (p, want_ranks, want_tokens) in pairs()
        .into_iter()
        .zip([(199_998, 199_998), (100_256, 100_256)])
        .map(|(p, (r, t))| (p, r, t))
    {
        let specials: HashSet<u32> = p
            .reference
            .special_tokens()
            .into_iter()
            .flat_map(|s| p.reference.encode_with_special_tokens(s))
            .collect();
        let vocab = p.ours.vocab();
        assert_eq!(vocab.n_ranks(), want_ranks, "{}", p.name);
        let mut present = 0;
        for rank in 0..vocab.n_ranks() as u32 + 64 {
            let reference = p
                .reference
                .decode_bytes(&[rank])
                .ok()
                .filter(|_| !specials.contains(&rank));
            assert_eq!(
                vocab.token(rank),
                reference.as_deref(),
                "{}: rank {rank}",
                p.name
            );
            if let Some(bytes) = reference {
                assert_eq!(vocab.rank(&bytes), Some(rank), "{}: rank {rank}", p.name);
                present += 1;
            }
        }
        assert_eq!(present, want_tokens, "{}", p.name);
        for special in p.reference.special_tokens() {
            assert_eq!(
                vocab.rank(special.as_bytes()),
                None,
                "{}: {special}",
                p.name
            );
        }
    }
}

#[test]
fn model_names_map_to_the_same_encoding_as_tiktoken_rs() {
    use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};
    let names = [
        "gpt-4",
        "gpt-4-0613",
        "gpt-4-32k",
        "gpt-4-turbo",
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4o-2024-08-06",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.5-preview",
        "gpt-5",
        "gpt-5.2",
        "gpt-3.5-turbo",
        "gpt-3.5-turbo-0125",
        "gpt-3.5",
        "gpt-35-turbo",
        "gpt-35-turbo-16k",
        "o1",
        "o1-mini",
        "o3",
        "o3-mini",
        "o4-mini",
        "o4-mini-high",
        "chatgpt-4o-latest",
        "davinci-002",
        "babbage-002",
        "davinci",
        "text-davinci-003",
        "text-embedding-ada-002",
        "text-embedding-3-small",
        "text-embedding-3-large",
        "gpt2",
        "gpt-oss-20b",
        "codex-mini",
        "ft:gpt-4-0613:org::id",
        "ft:gpt-4o-mini:org::id",
        "ft:davinci-002:x",
        "ft:",
        "claude-3",
        "mock",
        "",
        "GPT-4",
        "gpt-40",
    ];
    for name in names {
        assert_eq!(
            model::is_cl100k(name),
            get_tokenizer(name) == Some(Tokenizer::Cl100kBase),
            "{name}"
        );
    }
}

#[test]
fn count_text_counts_with_the_models_encoding() {
    let long = "Ünïcödé  tokens\r\n\r\n  42,000 THEY'LL 'S ok ".repeat(4);
    let o200k = tiktoken_rs::o200k_base_singleton();
    let cl100k = tiktoken_rs::cl100k_base_singleton();
    for (model, reference) in [
        ("gpt-4o", o200k),
        ("openai/gpt-4o-mini", o200k),
        ("openai/gpt-4", cl100k),
        ("gpt-3.5-turbo-0125", cl100k),
        ("ft:gpt-4-0613:org::id", cl100k),
        ("text-embedding-3-small", cl100k),
        ("davinci", o200k),
        ("anthropic/claude-3-5-sonnet", o200k),
        ("mock", o200k),
    ] {
        for text in ["hello  world!!\n", long.as_str()] {
            let want = reference.encode_ordinary(text).len() as u64;
            // Twice: the second long count comes from the count cache.
            assert_eq!(super::count_text(model, text), want, "{model}: {text:?}");
            assert_eq!(super::count_text(model, text), want, "{model}: {text:?}");
        }
    }
    assert_ne!(
        o200k.encode_ordinary(&long).len(),
        cl100k.encode_ordinary(&long).len()
    );
}

/// Fragments that exercise every branch of both patterns.
const FRAGMENTS: &[&str] = &[
    // prose and contractions in all cases
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you're right; they'll say it's fine, we've done it, he'd agree.",
    "I'M SURE YOU'RE RIGHT; THEY'LL SAY IT'S FINE, WE'VE DONE IT, HE'D AGREE.",
    "iT'S yOu'Re ThEy'Ll We'Ve I'M He'D dOn'T",
    "it’s we’ll they’re don’t ’tis",
    "'s 'S 't 'T 're 'RE 've 'VE 'm 'M 'll 'LL 'd 'D '' ''s 'x ' 'ſ 'ﬅ",
    "O'Neil's rock'n'roll y'all'd've",
    "McDonald's USA's NASA'S iPhone's eBay camelCase PascalCase snake_case SCREAMING_CASE",
    // letters of every case class
    "ǅungla ǈudi ǋ Ǳ ʰʲʷ ªº ß ẞ ĳ Ĳ ﬁ ﬂ Σίσυφος ΣΊΣΥΦΟΣ",
    // digits
    "0 12 345 6789 01234 567890 1234567 12345678 123456789 1234567890 12345678901",
    "3.14159 2,718 1_000_000 0xDEADbeef 1e-10 v1.2.3 2024-05-13T12:00:00Z",
    "٠١٢٣٤٥٦٧٨٩ ०१२३४५ ²³¹ ½¾ ⅫⅣ ① 一二三",
    // whitespace
    "a  b   c    d     e\tf\t\tg \t h",
    "line1\nline2\r\nline3\rline4\n\nline5\r\n\r\nline6",
    "  \n  x",
    "x  \n",
    " \r\n ",
    "\n \n \n",
    "\t\n",
    "x \t \r\n \t y",
    "nbsp\u{a0}x \u{a0}\u{a0}y \u{3000}z\u{2028}w\u{2029}v\u{85}u\u{2009}\u{200a}t",
    "zero\u{200b}width\u{200d}joiner\u{feff}bom",
    // punctuation
    "!!! ??? ... --- *** /// \\\\ ||| ;;; ::: ,,, \"\"\" ''' ``` ~~~ ^^^ %%% $$$ ### @@@",
    "Hello, world! (really?) [yes] {no} <maybe> «guillemets» „quotes“ 「括弧」",
    "a.\nb!\r\nc?/\n/d",
    " -- x --\n\n-- ",
    "...\n\n\n",
    "=>\r\n\r\n",
    "./../x//y\\/z",
    // code
    "fn main() {\n    let x: Vec<u8> = vec![1, 2, 3];\n    println!(\"{x:?}\");\n}\n",
    "def f(a, b=2, *args, **kw):\n\tif a != b:  # comment\n\t\treturn a ** b\n",
    "SELECT id, name FROM users WHERE age >= 21 AND name LIKE '%son';",
    "<div class=\"a b\">&nbsp;&amp;</div><!-- c -->",
    // JSON
    "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\\n\"}],\"n\":1,\"x\":null}",
    "{\n  \"a\": [1, 2.5, -3e8, true, false],\n  \"b\": {\"c\": \"d\\u00e9\"}\n}",
    // URLs and e-mail
    "https://example.com/path/to/page?query=1&x=y#frag http://a.b/c",
    "mailto:someone@example.org ftp://files.example.net:21/pub/",
    // emoji and ZWJ sequences
    "👨‍👩‍👧‍👦 👍🏽 🏳️‍🌈 ❤️ 🇫🇷🇯🇵 😀😃😄 🤷‍♀️ ✌🏿 #️⃣ 1️⃣",
    // CJK, Arabic, Devanagari, others
    "日本語のテキストです。漢字、ひらがな、カタカナ。",
    "中文文本，测试一下。简体字和繁體字。",
    "한국어 텍스트입니다. 안녕하세요!",
    "مرحبا بالعالم! هذا نص عربي، مع أرقام ١٢٣.",
    "नमस्ते दुनिया। यह हिंदी पाठ है।",
    "ภาษาไทยไม่มีช่องว่าง Ελληνικά Русский текст עברית",
    // combining marks
    "e\u{301} a\u{300}\u{301}\u{302} Z\u{351}\u{352}\u{353}a\u{354}l\u{355}g\u{356}o \u{301}\u{302}x",
    "\u{301}start 'e\u{301}s x\u{20dd} Ø̈",
    // odd bytes
    "\u{0}\u{1}\u{7f} \u{fffd}\u{fffe} \u{10ffff} \u{e000}",
];

/// Separators placed between fragments.
const SEPARATORS: &[&str] = &[
    "", " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", " \n", "\n ", "  \r\n  ", "\u{a0}",
    "\u{3000}", "'", "’", ".", "/", "0", "123", "a",
];

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

#[test]
fn every_fragment_alone_and_with_whitespace_around() {
    for f in FRAGMENTS {
        assert_same(f);
        for s in SEPARATORS {
            assert_same(&format!("{s}{f}{s}"));
        }
    }
}

#[test]
fn digit_runs_of_every_length() {
    for n in 0..=40 {
        let digits: String = (0..n)
            .map(|i| char::from(b'0' + (i * 7 % 10) as u8))
            .collect();
        assert_same(&digits);
        assert_same(&format!("x{digits}y {digits} "));
        assert_same(&format!("{digits}.{digits},{digits}"));
    }
}

#[test]
fn whitespace_runs_before_words_and_at_the_end() {
    let units = [" ", "\t", "\n", "\r\n", "\r", "\u{a0}", "\u{3000}"];
    for n in 0..=12 {
        for a in units {
            for b in units {
                let run = format!("{}{}", a.repeat(n), b);
                assert_same(&run);
                assert_same(&format!("word{run}"));
                assert_same(&format!("word{run}word"));
                assert_same(&format!("{run}!x"));
                assert_same(&format!("x{run}1"));
                assert_same(&format!(".{run}'s"));
            }
        }
    }
}

#[test]
fn generated_mixed_texts() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..400 {
        let mut text = String::new();
        for _ in 0..(rng.next() % 8) {
            text.push_str(rng.pick(FRAGMENTS));
            text.push_str(rng.pick(SEPARATORS));
        }
        // Cut at a random character boundary too, so pieces end mid-run.
        let cut = text
            .char_indices()
            .map(|(i, _)| i)
            .nth((rng.next() % (text.chars().count() as u64 + 1)) as usize)
            .unwrap_or(text.len());
        assert_same(&text);
        assert_same(&text[..cut]);
        assert_same(&text[cut..]);
    }
}

#[test]
fn long_texts_and_long_pieces() {
    let mut rng = Rng(42);
    let mut text = String::new();
    while text.len() < 100_000 {
        text.push_str(rng.pick(FRAGMENTS));
        text.push_str(rng.pick(SEPARATORS));
    }
    assert_same(&text);
    // Pieces long enough for the heap-based merge.
    for long in [
        "a".repeat(3000),
        "ab".repeat(700),
        "Zz".repeat(400),
        " ".repeat(5000) + "x",
        " ".repeat(5000),
        "\n".repeat(3000),
        "!".repeat(2000),
        "-=".repeat(1000) + "\n\n",
        "é".repeat(1000),
        "日本".repeat(600),
        "9".repeat(3000),
        "😀".repeat(500),
        "xyzzy".repeat(60) + &"q".repeat(127),
        "e\u{301}".repeat(400),
    ] {
        assert_same(&long);
    }
    // Every length around the small/large switch.
    for n in 120..=136 {
        assert_same(&"abcdefghij".repeat(20)[..n]);
        assert_same(&"!?".repeat(80)[..n]);
    }
}

proptest! {
    // 512 cases each (≈ 1 s in debug); PROPTEST_CASES=N runs more.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_unicode_strings(text in any::<String>()) {
        assert_same(&text);
    }

    #[test]
    fn random_mixes_of_tricky_characters(
        text in "[ \t\r\n\u{a0}\u{3000}a-zA-Z0-9'’.,!?/\\-_ǅʰª\u{301}\u{300}\u{5d0}\u{627}\u{915}\u{93f}\u{4e00}\u{3042}😀\u{200d}\u{fe0f}٣²Ⅻ]{0,48}"
    ) {
        assert_same(&text);
    }
}
