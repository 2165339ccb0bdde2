//! Token estimates with tiktoken's `o200k_base` / `cl100k_base` encodings, for providers
//! that report no usage and for budget reservations before the upstream call.
//!
//! Non-OpenAI models are counted with `o200k_base` too: an estimate, recorded as such.
//!
//! Only the number of tokens is ever needed, so this is a counter rather than a tokenizer:
//! tiktoken's pre-tokenizer patterns on `regex-automata` (`pretokenize.rs`), its byte-pair
//! merge (`merge.rs`) and the vocabularies as compact tables that `build.rs` derives from
//! `tiktoken-rs` and embeds (`table.rs`, `vocab.rs`): opening one reads it in place
//! (a few MB of static data, no hash maps of 200k keys, no parsing), and every count equals
//! `tiktoken_rs::{o200k_base, cl100k_base}().encode_ordinary(text).len()`.

mod encoding;
mod merge;
mod model;
mod pretokenize;
mod table;
mod vocab;

#[cfg(test)]
mod equivalence;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;

use parking_lot::Mutex;

use exchange::{ChatRequest, ChatResponse};

use encoding::Encoding;

/// Tokens the chat format adds per message (OpenAI's published counting recipe).
const TOKENS_PER_MESSAGE: u64 = 3;
/// Tokens a `name` field adds.
const TOKENS_PER_NAME: u64 = 1;
/// Tokens that prime the assistant's reply.
const REPLY_PRIMING: u64 = 3;

fn load(open: fn() -> Result<Encoding, vocab::TableError>) -> Option<Encoding> {
    open()
        .inspect_err(|e| tracing::error!(error = %e, "token counts fall back to bytes / 4"))
        .ok()
}

fn o200k() -> Option<&'static Encoding> {
    static BPE: OnceLock<Option<Encoding>> = OnceLock::new();
    BPE.get_or_init(|| load(Encoding::o200k)).as_ref()
}

fn cl100k() -> Option<&'static Encoding> {
    static BPE: OnceLock<Option<Encoding>> = OnceLock::new();
    BPE.get_or_init(|| load(Encoding::cl100k)).as_ref()
}

fn bpe_for(model: &str) -> Option<&'static Encoding> {
    let base = model.rsplit('/').next().unwrap_or(model);
    if model::is_cl100k(base) {
        cl100k()
    } else {
        o200k()
    }
}

/// Loads the default encoding so the first request does not pay for it.
pub fn warm_up() {
    let _ = o200k();
}

/// Texts shorter than this are counted directly (cheaper than a cache lookup).
const CACHE_MIN_BYTES: usize = 64;
/// Counts kept; the cache is emptied when it is full (a turn's messages come back at once).
const CACHE_ENTRIES: usize = 8192;

/// Token counts of recent texts, by a keyed hash of (encoding, text). Multi-agent clients
/// resend the whole conversation on every turn, so each message would otherwise be
/// re-counted on every later turn.
/// The key is a 64-bit SipHash with a per-process random key: a collision (vanishingly
/// rare, and not steerable from outside) would only skew an estimate.
struct CountCache {
    hasher: RandomState,
    counts: Mutex<HashMap<u64, u64>>,
}

fn count_cache() -> &'static CountCache {
    static CACHE: OnceLock<CountCache> = OnceLock::new();
    CACHE.get_or_init(|| CountCache {
        hasher: RandomState::new(),
        counts: Mutex::new(HashMap::with_capacity(CACHE_ENTRIES)),
    })
}

/// Tokens in `text` for `model` (a byte-length heuristic only if the encoding failed to load).
pub fn count_text(model: &str, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    let Some(bpe) = bpe_for(model) else {
        return (text.len() as u64).div_ceil(4);
    };
    if text.len() < CACHE_MIN_BYTES {
        return bpe.count(text) as u64;
    }
    let cache = count_cache();
    let key = cache
        .hasher
        .hash_one((std::ptr::from_ref(bpe) as usize, text));
    if let Some(&n) = cache.counts.lock().get(&key) {
        return n;
    }
    let n = bpe.count(text) as u64;
    let mut counts = cache.counts.lock();
    if counts.len() >= CACHE_ENTRIES {
        counts.clear();
    }
    counts.insert(key, n);
    n
}

/// Estimated prompt tokens of a request: messages (role, content, name, tool calls), tools
/// and the chat-format overhead.
pub fn estimate_prompt_tokens(req: &ChatRequest) -> u64 {
    let model = req.model.as_str();
    let mut n = REPLY_PRIMING;
    for m in &req.messages {
        n += TOKENS_PER_MESSAGE;
        n += count_text(model, m.role.as_str());
        n += count_text(model, &m.text());
        if let Some(name) = &m.name {
            n += TOKENS_PER_NAME + count_text(model, name);
        }
        for call in m.tool_calls.iter().flatten() {
            n += count_text(model, &call.function.name);
            n += count_text(model, &call.function.arguments);
        }
    }
    if let Some(tools) = &req.tools
        && let Ok(json) = serde_json::to_string(tools)
    {
        n += count_text(model, &json);
    }
    n
}

/// The text of a completion that counts as output: contents, tool names and arguments.
pub fn completion_text(resp: &ChatResponse) -> String {
    let mut text = String::new();
    for choice in &resp.choices {
        text.push_str(&choice.message.text());
        for call in choice.message.tool_calls.iter().flatten() {
            text.push_str(&call.function.name);
            text.push_str(&call.function.arguments);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_counts_equal_fresh_counts_per_encoding() {
        let text =
            "The quarterly numbers are in: revenue grew 4.2% and churn stayed flat. ".repeat(3);
        let fresh_o200k = o200k().unwrap().count(&text) as u64;
        let fresh_cl100k = cl100k().unwrap().count(&text) as u64;
        for _ in 0..2 {
            assert_eq!(count_text("gpt-4o", &text), fresh_o200k);
            assert_eq!(count_text("gpt-4", &text), fresh_cl100k);
        }
        assert_ne!(fresh_o200k, 0);
    }

    #[test]
    fn counts_with_the_real_encoding() {
        assert_eq!(count_text("gpt-4o", "hello world"), 2);
        assert_eq!(count_text("gpt-4", "hello world"), 2);
        assert_eq!(count_text("gpt-4o", ""), 0);
    }

    #[test]
    fn prompt_estimate_adds_chat_overhead() {
        let req: ChatRequest = serde_json::from_str(
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello world"}]}"#,
        )
        .unwrap();
        // 3 (priming) + 3 (message) + 1 ("user") + 2 ("hello world")
        assert_eq!(estimate_prompt_tokens(&req), 9);
    }
}
