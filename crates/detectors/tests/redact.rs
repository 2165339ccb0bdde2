//! Redaction strategies and placeholder stability.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use detectors::redact::{PlaceholderMap, Strategy, redact};
use detectors::{
    DetectorConfig, DetectorKind, DetectorSet, Finding, ScanContext, Severity, Surface,
};

fn finding(kind: &'static str, start: usize, end: usize, severity: Severity) -> Finding {
    Finding {
        detector: DetectorKind::Pii,
        kind,
        rule: "test",
        start,
        end,
        score: 1.0,
        severity,
    }
}

#[test]
fn placeholders_are_stable_and_restorable() {
    let set = DetectorSet::new(&DetectorConfig::default()).unwrap();
    let mut map = PlaceholderMap::default();
    let t1 = "mail a@example.com or b@example.com";
    let f1 = set.scan(t1, &ScanContext::new(Surface::UserPrompt));
    let r1 = redact(t1, &f1, |_| Strategy::Placeholder, &mut map);
    assert_eq!(r1, "mail <EMAIL_1> or <EMAIL_2>");
    let t2 = "again b@example.com";
    let f2 = set.scan(t2, &ScanContext::new(Surface::UserPrompt));
    assert_eq!(
        redact(t2, &f2, |_| Strategy::Placeholder, &mut map),
        "again <EMAIL_2>"
    );
    assert_eq!(map.len(), 2);
    assert_eq!(
        map.restore("reply to <EMAIL_2> and <EMAIL_9>"),
        "reply to b@example.com and <EMAIL_9>"
    );
    assert_eq!(format!("{map:?}"), "PlaceholderMap { len: 2, .. }");
}

#[test]
fn strategies_table() {
    let text = "card 4111111111111111 end";
    let f = [finding("CREDIT_CARD", 5, 21, Severity::High)];
    let mut map = PlaceholderMap::default();
    let cases = [
        (Strategy::Placeholder, "card <CREDIT_CARD_1> end"),
        (Strategy::Mask, "card ****1111 end"),
        (Strategy::Remove, "card  end"),
    ];
    for (s, want) in cases {
        assert_eq!(redact(text, &f, |_| s, &mut map), want, "{s:?}");
    }
    let hashed = redact(text, &f, |_| Strategy::Hash, &mut map);
    assert!(
        hashed.starts_with("card <CREDIT_CARD:") && hashed.ends_with("> end"),
        "{hashed}"
    );
    assert_eq!(hashed.len(), "card <CREDIT_CARD:> end".len() + 12);
    assert_eq!(Strategy::parse("mask"), Some(Strategy::Mask));
    assert_eq!(Strategy::parse("blur"), None);
}

#[test]
fn overlaps_resolve_longest_then_most_severe() {
    let text = "abcdefghij";
    let f = [
        finding("A", 0, 4, Severity::Low),
        finding("B", 2, 8, Severity::Low),
        finding("C", 8, 10, Severity::Low),
        finding("D", 8, 10, Severity::Critical),
    ];
    let mut map = PlaceholderMap::default();
    assert_eq!(
        redact(text, &f, |_| Strategy::Placeholder, &mut map),
        "ab<B_1><D_1>"
    );
}

#[test]
fn spans_inside_a_char_are_widened() {
    let text = "é@x";
    let f = [finding("X", 1, 2, Severity::Low)];
    let mut map = PlaceholderMap::default();
    assert_eq!(redact(text, &f, |_| Strategy::Remove, &mut map), "@x");
}
