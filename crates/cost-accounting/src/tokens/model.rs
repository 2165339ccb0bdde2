//! Which encoding a model name uses: tiktoken-rs 0.12's `get_tokenizer`
//! (`tiktoken_rs::tokenizer`), reduced to "is it `cl100k_base`" (the other encodings it
//! names are counted with `o200k_base` here, as before).

/// Exact names (checked first). `true` = `cl100k_base`.
const MODEL_TO_CL100K: &[(&str, bool)] = &[
    ("o1", false),
    ("o3", false),
    ("o4-mini", false),
    ("gpt-5", false),
    ("gpt-4.1", false),
    ("gpt-4o", false),
    ("gpt-4", true),
    ("gpt-3.5-turbo", true),
    ("gpt-3.5", true),
    ("gpt-35-turbo", true),
    ("davinci-002", true),
    ("babbage-002", true),
    ("text-embedding-ada-002", true),
    ("text-embedding-3-small", true),
    ("text-embedding-3-large", true),
    ("text-davinci-003", false),
    ("text-davinci-002", false),
    ("text-davinci-001", false),
    ("text-curie-001", false),
    ("text-babbage-001", false),
    ("text-ada-001", false),
    ("davinci", false),
    ("curie", false),
    ("babbage", false),
    ("ada", false),
    ("code-davinci-002", false),
    ("code-davinci-001", false),
    ("code-cushman-002", false),
    ("code-cushman-001", false),
    ("davinci-codex", false),
    ("cushman-codex", false),
    ("text-davinci-edit-001", false),
    ("code-davinci-edit-001", false),
    ("text-similarity-davinci-001", false),
    ("text-similarity-curie-001", false),
    ("text-similarity-babbage-001", false),
    ("text-similarity-ada-001", false),
    ("text-search-davinci-doc-001", false),
    ("text-search-curie-doc-001", false),
    ("text-search-babbage-doc-001", false),
    ("text-search-ada-doc-001", false),
    ("code-search-babbage-code-001", false),
    ("code-search-ada-code-001", false),
    ("gpt2", false),
    ("gpt-2", false),
];

/// Prefixes, first match wins (after the exact names).
const PREFIX_TO_CL100K: &[(&str, bool)] = &[
    ("o1-", false),
    ("o3-", false),
    ("o4-mini-", false),
    ("gpt-5", false),
    ("gpt-4.5-", false),
    ("gpt-4.1-", false),
    ("chatgpt-4o-", false),
    ("gpt-4o-", false),
    ("gpt-4-", true),
    ("gpt-3.5-turbo-", true),
    ("gpt-35-turbo-", true),
    ("gpt-oss-", false),
];

/// Whether `model` (without a provider prefix) uses `cl100k_base`.
pub(crate) fn is_cl100k(model: &str) -> bool {
    if let Some(rest) = model.strip_prefix("ft:") {
        return is_cl100k(rest.split(':').next().unwrap_or(rest));
    }
    MODEL_TO_CL100K
        .iter()
        .find(|(name, _)| *name == model)
        .or_else(|| {
            PREFIX_TO_CL100K
                .iter()
                .find(|(prefix, _)| model.starts_with(prefix))
        })
        .is_some_and(|&(_, cl100k)| cl100k)
}
