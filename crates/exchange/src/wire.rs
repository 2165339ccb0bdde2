//! OpenAI chat-completions wire types. Fields Palisade does not interpret are kept in
//! `extra` so that a request or response round-trips without loss.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/chat/completions` request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model name; picks the provider.
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// Streaming (SSE) response requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Stream options (`include_usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Tool choice, passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Legacy output limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Output limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    /// Response format (`json_object`, `json_schema`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// Every other parameter (temperature, seed, …), passed through untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// The output token limit the client set, if any.
    pub fn output_limit(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }
}

/// `stream_options`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StreamOptions {
    /// Ask for a final usage chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// Other options, passed through.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Message role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// System prompt.
    System,
    /// Developer prompt (newer OpenAI models).
    Developer,
    /// End user (or, in AutoGen, another agent's message relayed as user).
    User,
    /// Model output.
    Assistant,
    /// Tool result.
    Tool,
    /// Legacy function result.
    Function,
}

impl Role {
    /// Lower-case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Function => "function",
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Text or parts; `null` for assistant messages that only call tools.
    #[serde(default)]
    pub content: Option<Content>,
    /// Sender name (AutoGen sets the speaking agent's name here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls made by the assistant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// For `tool` messages: the call answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Everything else (refusal, audio, …), passed through.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Message {
    /// A message with plain text content.
    pub fn text_message(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            content: Some(Content::Text(text.into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
            extra: Map::new(),
        }
    }

    /// The text content (parts joined with `\n`); empty when there is none.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match &self.content {
            None => std::borrow::Cow::Borrowed(""),
            Some(c) => c.text(),
        }
    }
}

/// Message content: a string or a list of parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Multi-part content (text, images, …).
    Parts(Vec<ContentPart>),
}

/// A string or a list of parts, decided by the JSON type (not `untagged`, which buffers the
/// value and tries each variant: that cost ≈ 7 k instructions per replayed turn, and its
/// error said only that no variant matched).
impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Content, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Content;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a list of content parts")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Content, E> {
                Ok(Content::Text(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Content, E> {
                Ok(Content::Text(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Content, A::Error> {
                Vec::<ContentPart>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(Content::Parts)
            }
        }
        d.deserialize_any(V)
    }
}

impl Content {
    /// Text of the content; parts' texts joined with `\n`.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Content::Text(s) => std::borrow::Cow::Borrowed(s.as_str()),
            Content::Parts(parts) => {
                let texts: Vec<&str> = parts.iter().filter_map(|p| p.text.as_deref()).collect();
                if texts.len() == 1 {
                    std::borrow::Cow::Borrowed(texts[0])
                } else {
                    std::borrow::Cow::Owned(texts.join("\n"))
                }
            }
        }
    }
}

/// One content part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    /// `text`, `image_url`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Everything else, passed through.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A tool definition in the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// `function`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function.
    pub function: FunctionDef,
}

fn function_type() -> String {
    "function".to_owned()
}

/// A function tool definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    /// Tool name.
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// `strict` and anything else, passed through.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A tool call made by the assistant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Call id.
    pub id: String,
    /// `function`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// Name and JSON-encoded arguments.
    pub function: FunctionCall,
}

/// Function name and arguments (a JSON string, as on the wire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// Tool name.
    pub name: String,
    /// JSON-encoded arguments.
    #[serde(default)]
    pub arguments: String,
}

/// Token usage as reported by the provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Usage {
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Completion tokens.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Total tokens.
    #[serde(default)]
    pub total_tokens: u64,
    /// Cached prompt tokens, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<UsageDetails>,
    /// Other fields, passed through.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `prompt_tokens_details`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct UsageDetails {
    /// Cached prompt tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `chat.completion` response body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// Completion id.
    pub id: String,
    /// `chat.completion`.
    #[serde(default = "completion_object")]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// Model that answered.
    #[serde(default)]
    pub model: String,
    /// Choices.
    pub choices: Vec<Choice>,
    /// Usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Everything else (system_fingerprint, service_tier, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn completion_object() -> String {
    "chat.completion".to_owned()
}

/// One choice of a completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Index.
    #[serde(default)]
    pub index: u32,
    /// The assistant message.
    pub message: Message,
    /// `stop`, `length`, `tool_calls`, `content_filter`.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// logprobs etc.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One `chat.completion.chunk` of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    /// Completion id.
    pub id: String,
    /// `chat.completion.chunk`.
    #[serde(default = "chunk_object")]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// Model.
    #[serde(default)]
    pub model: String,
    /// Choice deltas (empty in the final usage chunk).
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    /// Usage, in the final chunk when `include_usage` was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn chunk_object() -> String {
    "chat.completion.chunk".to_owned()
}

/// One choice delta of a chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// Index.
    #[serde(default)]
    pub index: u32,
    /// The delta.
    #[serde(default)]
    pub delta: Delta,
    /// Set in the last chunk of the choice.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// logprobs etc.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A streamed delta.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Delta {
    /// Role, in the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Content fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Tool-call fragments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    /// Everything else (refusal, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A tool-call fragment, assembled per `index`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ToolCallDelta {
    /// Which tool call this fragment belongs to.
    pub index: u32,
    /// Call id (first fragment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function` (first fragment).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name and argument fragments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
}

/// Function name / argument fragment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FunctionCallDelta {
    /// Name (first fragment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Argument fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_text_or_parts_by_its_json_type() {
        let m: Message = serde_json::from_str(r#"{"role":"user","content":"a \"b\""}"#).unwrap();
        assert_eq!(m.content, Some(Content::Text("a \"b\"".to_owned())));
        let m: Message = serde_json::from_str(
            r#"{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"u"}}]}"#,
        )
        .unwrap();
        let Some(Content::Parts(parts)) = &m.content else {
            panic!("{m:?}")
        };
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].text.as_deref(), Some("hi"));
        assert_eq!(parts[1].extra["image_url"]["url"], "u");
        let m: Message = serde_json::from_str(r#"{"role":"user","content":null}"#).unwrap();
        assert_eq!(m.content, None);
        // Round trip: text stays a string, parts stay a list.
        for c in [r#""x""#, r#"[{"type":"text","text":"y"}]"#] {
            let parsed: Content = serde_json::from_str(c).unwrap();
            assert_eq!(serde_json::to_string(&parsed).unwrap(), c);
        }
        let err = serde_json::from_str::<Message>(r#"{"role":"user","content":5}"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected a string or a list of content parts"),
            "{err}"
        );
        // A bad part names what is wrong with it.
        let err = serde_json::from_str::<Content>(r#"[{"text":"no type"}]"#).unwrap_err();
        assert!(err.to_string().contains("missing field `type`"), "{err}");
    }

    #[test]
    fn request_round_trips_unknown_parameters() {
        let raw = r#"{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}}]}],"temperature":0.2,"seed":7}"#;
        let req: ChatRequest = serde_json::from_str(raw).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(req.extra["temperature"], 0.2);
        assert_eq!(req.messages[0].text(), "a");
        let back: Value = serde_json::to_value(&req).unwrap_or_default();
        let orig: Value = serde_json::from_str(raw).unwrap_or_default();
        assert_eq!(
            back["messages"][0]["content"],
            orig["messages"][0]["content"]
        );
        assert_eq!(back["seed"], 7);
    }

    #[test]
    fn assistant_tool_call_message_parses_with_null_content() {
        let raw = r#"{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]}"#;
        let m: Message = serde_json::from_str(raw).unwrap_or_else(|e| unreachable!("{e}"));
        assert!(m.content.is_none());
        assert_eq!(m.tool_calls.as_ref().map(Vec::len), Some(1));
    }
}
