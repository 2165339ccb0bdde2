use exchange::{ExchangeHandle, TokenUsage, Usage};

use crate::engine::Admission;
use crate::tokens;

/// What the response showed about usage.
pub(crate) struct Observed {
    /// The upstream answered successfully (so there is spend to charge).
    pub(crate) ok: bool,
    /// Usage reported in the body or the stream.
    pub(crate) usage: Option<Usage>,
    /// The completion text seen (for an estimate).
    pub(crate) text: Option<String>,
}

fn token_usage(u: &Usage) -> TokenUsage {
    TokenUsage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        cached_tokens: u
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0),
        estimated: false,
    }
}

/// Settles one admission exactly once: at the end of the body, when it is dropped, when the
/// inner call fails, or when the response future is dropped before an answer.
pub(crate) struct Settlement {
    admission: Option<Admission>,
    handle: ExchangeHandle,
}

impl Settlement {
    /// Whether an inner layer (the output policy) already parsed the JSON response into the
    /// exchange: then the body need not be collected and parsed a second time.
    pub(crate) fn response_known(&self) -> bool {
        self.handle.lock().response.is_some()
    }

    pub(crate) fn new(admission: Admission, handle: ExchangeHandle) -> Self {
        Settlement {
            admission: Some(admission),
            handle,
        }
    }

    /// Releases without charge (the inner service failed).
    pub(crate) fn release(mut self) {
        if let Some(a) = self.admission.take() {
            a.release();
        }
    }

    /// Charges usage from (in order) the exchange's response, `obs.usage`, or an estimate of
    /// the prompt and `obs.text`; releases without charge when the upstream did not answer
    /// successfully and reported no usage.
    pub(crate) fn finish(&mut self, obs: Observed) {
        let Some(adm) = self.admission.take() else {
            return;
        };
        let usage = {
            let ex = self.handle.lock();
            if let Some(u) = ex.response.as_ref().and_then(|r| r.usage.as_ref()) {
                Some(token_usage(u))
            } else if let Some(u) = &obs.usage {
                Some(token_usage(u))
            } else if obs.ok {
                let prompt = adm
                    .prompt_estimate()
                    .unwrap_or_else(|| tokens::estimate_prompt_tokens(&ex.request));
                let text = match &ex.response {
                    Some(r) => tokens::completion_text(r),
                    None => obs.text.unwrap_or_default(),
                };
                Some(TokenUsage {
                    prompt_tokens: prompt,
                    completion_tokens: tokens::count_text(&ex.request.model, &text),
                    cached_tokens: 0,
                    estimated: true,
                })
            } else {
                None
            }
        };
        let Some(usage) = usage else {
            adm.release();
            return;
        };
        let cost = adm.settle(usage);
        let mut ex = self.handle.lock();
        ex.usage = Some(usage);
        ex.cost_usd = cost.map(|c| c.to_string());
        ex.cost_unknown = cost.is_none();
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        if self.admission.is_some() {
            // The caller went away before an answer: the upstream may have billed the prompt.
            self.finish(Observed {
                ok: true,
                usage: None,
                text: None,
            });
        }
    }
}
