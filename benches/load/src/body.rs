//! The request bodies of the load runs, assembled here (no fixture files): a system prompt,
//! a user message carrying an e-mail address and a phone number, one tool definition.
//! About 1.3 KB; nothing in it is meant to be blocked (it is redacted: PII).

use serde_json::{Value, json};

const SYSTEM: &str = "You are the order-support assistant of an online bookshop. Answer \
in a friendly, concise tone. Use the lookup_order tool to fetch the status of an order \
before you make any promise about delivery dates. Never invent tracking numbers, prices \
or stock levels; if the tool does not return them, say that you will check with a \
colleague. Keep answers under 120 words, use plain sentences, no tables. If the customer \
asks to change contact details, confirm the new details back to them and note that the \
change applies to future orders only.";

fn user_text() -> String {
    // The PII is within the first 60 characters: the mock echoes them back, so the
    // placeholder restore path runs on the response too.
    let email = format!("{}.{}@{}", "jane", "doe", "example.com");
    let phone = format!("+1 {} {} {}", "415", "555", "0132");
    format!(
        "Mail {email}, tel {phone}. Hello, I ordered two books last Tuesday (order 48213) \
         and the tracking page has not changed since Thursday. Could you check where the \
         parcel is and whether it arrives before the weekend?"
    )
}

fn tool() -> Value {
    json!({
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look up an order by its number and return its status and tracking events.",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "string", "description": "The order number, digits only."},
                    "include_events": {"type": "boolean", "description": "Include tracking events."}
                },
                "required": ["order_id"]
            }
        }
    })
}

/// The non-streamed body. The mock answers it with a call of `lookup_order`
/// (exercising the tool-call firewall and rules on the response).
pub fn chat_body() -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "name": "customer", "content": user_text()}
        ],
        "tools": [tool()],
        "tool_choice": "auto",
        "max_tokens": 256,
        "temperature": 0.2
    })
}

/// The streamed body: the same conversation with `stream: true` and `tool_choice: none`,
/// so the mock streams text (one SSE event per word).
pub fn stream_body() -> Value {
    let mut v = chat_body();
    if let Some(o) = v.as_object_mut() {
        o.insert("stream".to_owned(), Value::Bool(true));
        o.insert("tool_choice".to_owned(), Value::from("none"));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_as_chat_requests_of_the_intended_size() {
        let bytes = serde_json::to_vec(&chat_body()).unwrap();
        assert_eq!(bytes.len(), 1318);
        let req: exchange::ChatRequest = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(req.messages.len(), 2);
        assert_eq!(req.tools.as_ref().map(Vec::len), Some(1));
        assert!(!req.is_stream());
        let s: exchange::ChatRequest =
            serde_json::from_slice(&serde_json::to_vec(&stream_body()).unwrap()).unwrap();
        assert!(s.is_stream());
    }
}
