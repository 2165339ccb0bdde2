//! Text scanners: prompt injection, PII, secrets, safety and dangerous code.
//! Text in, findings out; no I/O.
//!
//! Build a [`DetectorSet`] once (patterns compile in [`DetectorSet::new`]), clone it freely
//! (it is an `Arc` inside), and call [`DetectorSet::scan`] on every text:
//!
//! ```
//! use detectors::{DetectorConfig, DetectorSet, ScanContext, Surface};
//! let set = DetectorSet::new(&DetectorConfig::default()).unwrap();
//! let findings = set.scan("mail me at jane.doe@example.com", &ScanContext::new(Surface::UserPrompt));
//! assert_eq!(findings[0].kind, "EMAIL_ADDRESS");
//! assert_eq!((findings[0].start, findings[0].end), (11, 31));
//! ```

mod code;
mod engine;
mod gate;
mod injection;
mod injection_techniques;
mod normalize;
mod pii;
mod safety;
mod secrets;
mod set;
#[cfg(test)]
mod test_rng;
mod types;

pub mod redact;

pub use set::DetectorSet;
pub use types::{
    BuildError, DetectorConfig, DetectorKind, DetectorMask, Finding, ScanContext, Severity,
    Surface, injection_score,
};
