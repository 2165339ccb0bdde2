//! Token estimates with a real tokenizer (tiktoken's `o200k_base` / `cl100k_base` encodings,
//! embedded in the `tiktoken-rs` crate: no network, no files at run time), for providers that
//! report no usage and for budget reservations before the upstream call.
//!
//! Non-OpenAI models are counted with `o200k_base` too: an estimate, recorded as such.

use std::sync::OnceLock;

use exchange::{ChatRequest, ChatResponse};
use tiktoken_rs::CoreBPE;
use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};

/// Tokens the chat format adds per message (OpenAI's published counting recipe).
const TOKENS_PER_MESSAGE: u64 = 3;
/// Tokens a `name` field adds.
const TOKENS_PER_NAME: u64 = 1;
/// Tokens that prime the assistant's reply.
const REPLY_PRIMING: u64 = 3;

fn o200k() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

fn cl100k() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::cl100k_base().ok()).as_ref()
}

fn bpe_for(model: &str) -> Option<&'static CoreBPE> {
    let base = model.rsplit('/').next().unwrap_or(model);
    match get_tokenizer(base) {
        Some(Tokenizer::Cl100kBase) => cl100k(),
        _ => o200k(),
    }
}

/// Loads the default encoding so the first request does not pay for it.
pub fn warm_up() {
    let _ = o200k();
}

/// Tokens in `text` for `model` (a byte-length heuristic only if the encoding failed to load).
pub fn count_text(model: &str, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    match bpe_for(model) {
        Some(bpe) => bpe.encode_ordinary(text).len() as u64,
        None => (text.len() as u64).div_ceil(4),
    }
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
