//! Text scanners: prompt injection, PII, secrets, safety and dangerous code. Text in, findings out; no I/O.
