//! PII: pattern candidates confirmed by validators (Luhn, mod-97, SSN areas, octet ranges).

use std::collections::HashSet;

use crate::engine::{DIGITS, Next, Rule, Table, class, set_back, set_window};
use crate::types::{BuildError, DetectorKind, Finding, Severity};

const EMAIL: usize = 0;
const IPV6: usize = 1;
const IBAN: usize = 2;
const NUMBER: usize = 3;
const PERSON_FIRST: usize = 4;

/// The name part of PERSON rules: 1–3 capitalised words, optionally with one middle initial.
macro_rules! name {
    () => {
        r"(?P<v>\p{Lu}[\p{Ll}'’]+(?:-\p{Lu}\p{Ll}+)?(?:[ \t](?:\p{Lu}\.[ \t])?\p{Lu}[\p{Ll}'’]+(?:-\p{Lu}\p{Ll}+)?){0,2})"
    };
}

fn rules() -> Vec<Rule> {
    let mut v = base_rules();
    set_back(&mut v, "pii.email", &["@"], class::email_local, 64);
    set_back(&mut v, "pii.ip.v6", &[":"], class::hex, 4);
    set_window(&mut v, "pii.iban", DIGITS, 2, 0);
    set_window(&mut v, "pii.number", DIGITS, 2, 0);
    v
}

fn base_rules() -> Vec<Rule> {
    let r = crate::engine::rule;
    vec![
        r(
            "EMAIL_ADDRESS",
            "pii.email",
            r"[A-Za-z0-9](?:[A-Za-z0-9._%+\-]{0,63})@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62})(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24}\b",
            0.95,
            Severity::Medium,
        ),
        r(
            "IP_ADDRESS",
            "pii.ip.v6",
            r"(?:[0-9A-Fa-f]{1,4}:|::)(?:[0-9A-Fa-f]{0,4}:){1,6}[0-9A-Fa-f]{0,4}(?:(?:\.\d{1,3}){3})?",
            0.85,
            Severity::Low,
        ),
        r(
            "IBAN_CODE",
            "pii.iban",
            r"\b[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,3})?\b",
            0.95,
            Severity::High,
        ),
        r(
            "NUMBER",
            "pii.number",
            r"(?:\+ ?)?(?:\(\d{1,5}\) ?\d*|\d+)(?:(?:[ .\-/]|[ .\-]?\([0-9]{1,5}\) ?)\d+)*(?:(?: ?x| ?ext\.? ?)\d{1,5}\b)?",
            0.9,
            Severity::Medium,
        ),
        r(
            "PERSON",
            "pii.person.self_intro",
            concat!(
                r"(?i:\b(?:my name is|my name's|name's|i am called|call me|i'm|i am|this is|it's)[ \t]+)",
                name!()
            ),
            0.7,
            Severity::Medium,
        ),
        r(
            "PERSON",
            "pii.person.salutation",
            concat!(
                r"(?i:\b(?:dear|hi|hello|hey|regards|sincerely|cheers|thanks|thank you|best wishes|yours truly|kind regards|best regards|yours sincerely),?[ \t\n]+)",
                name!()
            ),
            0.65,
            Severity::Medium,
        ),
        r(
            "PERSON",
            "pii.person.title",
            concat!(
                r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Madam|Mme|Mlle|Herr|Frau|Sr|Sra|Señor|Señora)\.?[ \t]+",
                name!()
            ),
            0.8,
            Severity::Medium,
        ),
        r(
            "PERSON",
            "pii.person.field",
            concat!(
                r"(?i:\b(?:name|full name|first name|last name|surname|given name|customer|client|patient|employee|applicant|candidate|contact|author|signed|sender|recipient|attn|attention|passenger|guest|account holder|cardholder|beneficiary)[ \t]*[:=][ \t]*)",
                name!()
            ),
            0.75,
            Severity::Medium,
        ),
        r(
            "PERSON",
            "pii.person.verb",
            concat!(
                r"(?i:\b(?:named|called|contact|ask|meet|met|married|signed by|written by|sent by|according to|spoke with|spoke to|talked to|talk to|speak to|speak with|emailed|assigned to|reported by|approved by|on behalf of|his name is|her name is|their name is|son|daughter|wife|husband|mother|father|brother|sister|friend|colleague|manager|boss|neighbor|neighbour)[ \t]+)",
                name!()
            ),
            0.55,
            Severity::Medium,
        ),
    ]
}

/// First words that are capitalised but are not names.
const NOT_NAMES: &[&str] = &[
    "The",
    "A",
    "An",
    "I",
    "It",
    "This",
    "That",
    "These",
    "Those",
    "There",
    "Here",
    "We",
    "You",
    "He",
    "She",
    "They",
    "My",
    "Your",
    "Our",
    "His",
    "Her",
    "Their",
    "Its",
    "Sorry",
    "Not",
    "Just",
    "So",
    "Very",
    "Also",
    "Please",
    "Thanks",
    "Thank",
    "Hello",
    "Hi",
    "Hey",
    "Dear",
    "Good",
    "Glad",
    "Happy",
    "Sure",
    "Yes",
    "No",
    "Ok",
    "Okay",
    "All",
    "Team",
    "Sir",
    "Madam",
    "Customer",
    "Support",
    "Service",
    "Sales",
    "Admin",
    "Everyone",
    "Everybody",
    "Guys",
    "Folks",
    "Friends",
    "Colleagues",
    "Manager",
    "Mr",
    "Mrs",
    "Ms",
    "Dr",
    "Going",
    "Looking",
    "Writing",
    "Trying",
    "Working",
    "Having",
    "Interested",
    "Currently",
    "Available",
    "Done",
    "New",
    "Not",
    "What",
    "When",
    "Where",
    "Why",
    "How",
    "Who",
    "Which",
    "If",
    "In",
    "On",
    "At",
    "For",
    "From",
    "To",
    "With",
    "By",
    "About",
    "After",
    "Before",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
    "Today",
    "Tomorrow",
    "Yesterday",
    "Best",
    "Regards",
    "Kind",
    "Warm",
    "Cheers",
    "Sincerely",
    "Name",
    "User",
    "Assistant",
    "System",
    "Human",
    "AI",
    "Bot",
    "Agent",
    "Company",
    "Inc",
    "Ltd",
    "LLC",
    "Corp",
    "University",
    "Bank",
    "Hospital",
    "School",
    "Department",
    "Office",
    "Street",
    "Avenue",
    "Road",
    "City",
    "County",
    "State",
    "Country",
    "English",
    "French",
    "German",
    "Spanish",
    "Chinese",
    "Microsoft",
    "Google",
    "Apple",
    "Amazon",
    "Facebook",
    "Meta",
    "OpenAI",
    "Python",
    "Java",
    "Rust",
    "Linux",
    "Windows",
    "Mac",
    "Null",
    "None",
    "True",
    "False",
    "Unknown",
    "Something",
    "Nothing",
    "Anything",
    "Everything",
    "Someone",
    "Anyone",
    "Nobody",
    "World",
    "God",
    "Lord",
    "Jesus",
    "Mom",
    "Dad",
    "Mum",
    "Mother",
    "Father",
    "Brother",
    "Sister",
];

/// Compiled PII detector.
pub(crate) struct Pii {
    pub(crate) table: Table,
    enabled: [bool; 7],
    given: HashSet<&'static str>,
    surnames: HashSet<&'static str>,
}

/// Given names (US Census 1990, see `data/gen_names.py`), lower case, one a line.
const GIVEN_NAMES: &str = include_str!("../data/given_names.txt");
/// Surnames (US Census 1990, see `data/gen_names.py`), lower case, one a line.
const SURNAMES: &str = include_str!("../data/surnames.txt");

/// Words that make a capitalised pair a place or an organisation, not a person.
/// Given names that are just as often places or ordinary words: alone (without a surname or a
/// context cue such as "my name is" or "Dear"), they are not taken as a PERSON.
const AMBIGUOUS_GIVEN: &[&str] = &[
    "Paris",
    "London",
    "Jordan",
    "Georgia",
    "Austin",
    "Dallas",
    "Houston",
    "Phoenix",
    "Sydney",
    "Victoria",
    "Florence",
    "Chelsea",
    "Madison",
    "Charlotte",
    "Savannah",
    "Aurora",
    "Carolina",
    "Virginia",
    "Alexandria",
    "Adelaide",
    "Brooklyn",
    "Devon",
    "Lincoln",
    "Washington",
    "Jackson",
    "Orlando",
    "Denver",
    "Cleveland",
    "Kent",
    "Israel",
    "India",
    "China",
    "Chad",
    "Mercedes",
    "Tesla",
    "Amazon",
    "Apple",
    "Summer",
    "Winter",
    "April",
    "May",
    "June",
    "August",
    "Hope",
    "Grace",
    "Faith",
    "Joy",
    "Art",
    "Bill",
    "Will",
    "Mark",
    "Rose",
    "Ruby",
    "Pearl",
    "Crystal",
    "Storm",
    "Sky",
    "River",
    "Brook",
    "Forest",
    "Dean",
    "Major",
    "Page",
    "Price",
    "Rich",
    "Sage",
];

const PLACE_ORG: &[&str] = &[
    "Street",
    "St",
    "Road",
    "Rd",
    "Avenue",
    "Ave",
    "Lane",
    "Way",
    "Drive",
    "Place",
    "Court",
    "Square",
    "Park",
    "Parks",
    "Terrace",
    "Bypass",
    "Fort",
    "Royal",
    "Union",
    "Hotel",
    "Group",
    "Inc",
    "Ltd",
    "University",
    "College",
    "School",
    "Bank",
    "Foundation",
    "Institute",
    "Associates",
    "Partners",
    "Holdings",
    "Company",
    "Corporation",
    "Corp",
    "Hospital",
    "Center",
    "Centre",
    "Airport",
    "Station",
    "Investments",
    "Orchestra",
    "Bridge",
    "River",
    "Lake",
    "Mountain",
    "County",
    "City",
    "Boulevard",
    "Blvd",
    "Close",
    "Crescent",
    "Gardens",
    "Hill",
    "Heights",
    "Island",
    "Beach",
    "Valley",
    "Church",
    "Museum",
    "Library",
    "Club",
    "Press",
    "Records",
    "Studios",
    "Systems",
    "Solutions",
    "Services",
    "Industries",
    "Enterprises",
    "Technologies",
    "Capital",
    "Labs",
    "Media",
    "Mall",
    "Market",
    "Plaza",
    "Row",
    "Walk",
];

/// A title-case ASCII word at `i` (`Maria`, `O'Neil`, `Smith-Jones`): its end.
fn title_word(b: &[u8], i: usize) -> Option<usize> {
    if i >= b.len() || !b[i].is_ascii_uppercase() || (i > 0 && b[i - 1].is_ascii_alphanumeric()) {
        return None;
    }
    let mut j = i + 1;
    while j < b.len()
        && (b[j].is_ascii_lowercase()
            || (matches!(b[j], b'\'' | b'-') && j + 1 < b.len() && b[j + 1].is_ascii_alphabetic()))
    {
        j += 1;
        if matches!(b[j - 1], b'\'' | b'-') {
            j += 1;
        }
    }
    if j - i < 2 || (j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] >= 0x80)) {
        return None;
    }
    Some(j)
}

/// Whether the ASCII word (lower-cased into a stack buffer) is in `set`.
fn in_set(set: &HashSet<&'static str>, w: &[u8]) -> bool {
    let mut buf = [0u8; 24];
    if w.len() > buf.len() {
        return false;
    }
    for (d, c) in buf.iter_mut().zip(w) {
        *d = c.to_ascii_lowercase();
    }
    std::str::from_utf8(&buf[..w.len()]).is_ok_and(|k| set.contains(k))
}

/// Supported entity names, in [`Pii::enabled`] order.
pub(crate) const ENTITIES: &[&str] = &[
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "PERSON",
];

fn entity_index(kind: &str) -> Option<usize> {
    ENTITIES.iter().position(|e| *e == kind)
}

impl Pii {
    pub fn new(entities: Option<&[String]>) -> Result<Pii, BuildError> {
        let mut enabled = [true; 7];
        if let Some(list) = entities {
            enabled = [false; 7];
            for e in list {
                let i = entity_index(e).ok_or_else(|| BuildError::UnknownPiiEntity(e.clone()))?;
                enabled[i] = true;
            }
        }
        Ok(Pii {
            table: Table::new(DetectorKind::Pii, rules())?,
            enabled,
            given: GIVEN_NAMES.lines().filter(|l| !l.is_empty()).collect(),
            surnames: SURNAMES.lines().filter(|l| !l.is_empty()).collect(),
        })
    }

    fn push(
        &self,
        out: &mut Vec<Finding>,
        kind: &'static str,
        rule: &'static str,
        s: usize,
        e: usize,
        score: f32,
    ) {
        let Some(i) = entity_index(kind) else { return };
        if !self.enabled[i] {
            return;
        }
        let severity = match kind {
            "CREDIT_CARD" | "US_SSN" | "IBAN_CODE" => Severity::High,
            "IP_ADDRESS" => Severity::Low,
            _ => Severity::Medium,
        };
        out.push(Finding {
            detector: DetectorKind::Pii,
            kind,
            rule,
            start: s,
            end: e,
            score,
            severity,
        });
    }

    #[cfg(test)]
    pub fn tables(&self) -> Vec<&Table> {
        vec![&self.table]
    }

    pub fn scan(&self, text: &str, cands: &mut [Vec<(u32, u16)>], out: &mut Vec<Finding>) {
        let first = out.len();
        self.scan_rules(text, cands, out);
        if self.enabled[6] {
            self.lexicon_names(text, first, out);
        }
    }

    fn scan_rules(&self, text: &str, cands: &mut [Vec<(u32, u16)>], out: &mut Vec<Finding>) {
        let b = text.as_bytes();
        self.table.each(text, &mut cands[0], |h| {
            let m = &text[h.start..h.end];
            match h.idx {
                EMAIL if valid_email(m) && !prev_is(b, h.start, |c| c == b'@') => {
                    self.push(out, "EMAIL_ADDRESS", "pii.email", h.start, h.end, 0.95);
                }
                IPV6 => {
                    let before_ok =
                        !prev_is(b, h.start, |c| c.is_ascii_alphanumeric() || c == b':');
                    let after_ok = !next_is(b, h.end, |c| c.is_ascii_alphanumeric() || c == b':');
                    if before_ok && after_ok && valid_ipv6(m) {
                        self.push(out, "IP_ADDRESS", "pii.ip.v6", h.start, h.end, 0.85);
                    }
                }
                IBAN => {
                    if let Some(len) = iban_span(m) {
                        self.push(out, "IBAN_CODE", "pii.iban", h.start, h.start + len, 0.95);
                    }
                }
                NUMBER => {
                    if prev_is(b, h.start, |c| {
                        c.is_ascii_alphanumeric()
                            || c == b'_'
                            || c == b'.'
                            || c == b'-'
                            || c == b'/'
                            || c == b':'
                            || c == b'#'
                    }) || next_is(b, h.end, |c| {
                        c.is_ascii_alphanumeric() || c == b'_' || c == b'/' || c == b':'
                    }) {
                        return Next::Skip;
                    }
                    self.numbers(text, h.start, h.end, out);
                }
                i if i >= PERSON_FIRST => {
                    let first = m.split([' ', '\t', '-']).next().unwrap_or("");
                    if NOT_NAMES.contains(&first) || m.len() < 2 {
                        return Next::Retry;
                    }
                    let rule = self.table.rules[i].rule;
                    // one-word names after a verb are too weak
                    if rule == "pii.person.verb" && !m.contains(' ') {
                        return Next::Retry;
                    }
                    let score = self.table.rules[i].score;
                    // trim trailing words that are not names
                    let mut end = h.end;
                    let mut s = m;
                    while let Some(sp) = s.rfind(' ') {
                        let last = &s[sp + 1..];
                        if NOT_NAMES.contains(&last) {
                            end = h.start + sp;
                            s = &s[..sp];
                        } else {
                            break;
                        }
                    }
                    self.push(out, "PERSON", rule, h.start, end, score);
                }
                _ => {}
            }
            Next::Accept
        });
    }

    /// Lexicon names: a known given name followed by a capitalised word (optionally after a
    /// middle initial), or a known given name followed by a known surname; spans overlapping
    /// an earlier PERSON finding are skipped.
    fn lexicon_names(&self, text: &str, first: usize, out: &mut Vec<Finding>) {
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if !b[i].is_ascii_uppercase() {
                i += 1;
                continue;
            }
            let Some(e1) = title_word(b, i) else {
                i += 1;
                continue;
            };
            let w1 = &text[i..e1];
            if NOT_NAMES.contains(&w1) {
                i = e1;
                continue;
            }
            let known_given = in_set(&self.given, w1.as_bytes());
            // next: optional initial "X. ", then a capitalised word
            let mut j = e1;
            let mut end = e1;
            if j < b.len() && b[j] == b' ' {
                j += 1;
                if j + 2 < b.len()
                    && b[j].is_ascii_uppercase()
                    && b[j + 1] == b'.'
                    && b[j + 2] == b' '
                {
                    j += 3;
                } else if j + 1 < b.len() && b[j].is_ascii_uppercase() && b[j + 1] == b' ' {
                    j += 2;
                }
                if let Some(e2) = title_word(b, j) {
                    let w2 = &text[j..e2];
                    // a third word that names a place/organisation spoils the pair too
                    let third = title_word(b, e2 + 1).map(|e3| &text[e2 + 1..e3]);
                    let place =
                        PLACE_ORG.contains(&w2) || third.is_some_and(|t| PLACE_ORG.contains(&t));
                    let ok = known_given || in_set(&self.surnames, w2.as_bytes());
                    if !NOT_NAMES.contains(&w2) && !place && ok {
                        end = e2;
                    }
                }
            }
            let next_place = e1 < b.len()
                && b[e1] == b' '
                && title_word(b, e1 + 1).is_some_and(|e| PLACE_ORG.contains(&&text[e1 + 1..e]));
            if (!known_given || next_place || AMBIGUOUS_GIVEN.contains(&w1)) && end == e1 {
                i = e1;
                continue;
            }
            let two = end > e1;
            // a lone given name counts when it is not the first word of a sentence
            let sentence_start = text[..i].trim_end().is_empty()
                || text[..i].trim_end().ends_with(['.', '!', '?', ':', '\n']);
            if two || !sentence_start {
                let overlaps = out[first..]
                    .iter()
                    .any(|f| f.kind == "PERSON" && f.start < end && i < f.end);
                if !overlaps {
                    let score = if two { 0.7 } else { 0.5 };
                    let rule = if two {
                        "pii.person.lexicon"
                    } else {
                        "pii.person.lexicon_given"
                    };
                    self.push(out, "PERSON", rule, i, end, score);
                }
            }
            i = end;
        }
    }

    /// Classifies a numeric token (digit groups with separators) into IP / card / SSN / phone.
    fn numbers(&self, text: &str, start: usize, end: usize, out: &mut Vec<Finding>) {
        let tok = &text[start..end];
        // chunks split at spaces that separate digit runs
        let mut chunks: Vec<(usize, usize)> = Vec::new();
        let tb = tok.as_bytes();
        let mut cs = 0;
        for (i, &c) in tb.iter().enumerate() {
            if c == b' '
                && i > 0
                && tb[i - 1].is_ascii_digit()
                && tb.get(i + 1).is_some_and(|n| n.is_ascii_digit())
            {
                chunks.push((cs, i));
                cs = i + 1;
            }
        }
        chunks.push((cs, tb.len()));
        if chunks.len() > 12 {
            return;
        }
        // a card-shaped run that fails validation is a look-alike as a whole
        let all_digits: Vec<u8> = tb.iter().copied().filter(u8::is_ascii_digit).collect();
        let card_shaped = chunks.len() >= 3
            && chunks
                .iter()
                .all(|&(a, b)| b - a == 4 || (b - a >= 3 && b == tb.len()))
            && (13..=19).contains(&all_digits.len());
        if card_shaped && !(luhn(&all_digits) && issuer_ok(&all_digits)) {
            return;
        }
        let mut cb = start.saturating_sub(48);
        while cb < start && !text.is_char_boundary(cb) {
            cb += 1;
        }
        let ctx_before = &text[cb..start];
        let mut i = 0;
        while i < chunks.len() {
            let mut matched = false;
            for j in (i + 1..=chunks.len()).rev() {
                let (ws, we) = (chunks[i].0, chunks[j - 1].1);
                let w = &tok[ws..we];
                if let Some((kind, rule, score)) = classify_number(w, ctx_before, i == 0) {
                    self.push(out, kind, rule, start + ws, start + we, score);
                    i = j;
                    matched = true;
                    break;
                }
            }
            if !matched {
                i += 1;
            }
        }
    }
}

fn prev_is(b: &[u8], i: usize, f: impl Fn(u8) -> bool) -> bool {
    i > 0 && f(b[i - 1])
}

fn next_is(b: &[u8], i: usize, f: impl Fn(u8) -> bool) -> bool {
    i < b.len() && f(b[i])
}

fn valid_email(m: &str) -> bool {
    let Some((local, domain)) = m.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !local.ends_with('.')
        && !local.contains("..")
        && !domain.contains("..")
        && !domain.starts_with('-')
        && domain.contains('.')
}

fn valid_ipv6(m: &str) -> bool {
    let groups = m.split(':').filter(|g| !g.is_empty()).count();
    // require at least 3 non-empty groups unless compressed; avoid times like 12:30:45
    let has_hex_letter = m.bytes().any(|c| c.is_ascii_alphabetic());
    if !m.contains("::") && groups < 8 {
        return false;
    }
    if m.contains("::")
        && !m.starts_with("::")
        && (groups < 2 || !m.split(':').any(|g| g.len() >= 3))
    {
        return false;
    }
    if !has_hex_letter && groups <= 3 && m.contains("::") {
        return false;
    }
    m.parse::<std::net::Ipv6Addr>().is_ok()
}

/// Country → IBAN length.
fn iban_length(cc: &str) -> Option<usize> {
    Some(match cc {
        "NO" => 15,
        "BE" => 16,
        "DK" | "FI" | "FO" | "GL" | "NL" => 18,
        "MK" | "SI" => 19,
        "AT" | "BA" | "EE" | "KZ" | "LT" | "LU" | "XK" => 20,
        "CH" | "CR" | "HR" | "LI" | "LV" => 21,
        "BG" | "BH" | "DE" | "GB" | "GE" | "IE" | "ME" | "RS" | "VA" => 22,
        "AE" | "GI" | "IL" | "TL" => 23,
        "AD" | "CZ" | "ES" | "MD" | "PK" | "RO" | "SA" | "SE" | "SK" | "TN" | "VG" => 24,
        "LY" | "PT" | "ST" => 25,
        "IS" | "TR" => 26,
        "FR" | "GR" | "IT" | "MC" | "MR" | "SM" => 27,
        "AL" | "AZ" | "BY" | "CY" | "DO" | "GT" | "HU" | "LB" | "PL" | "SV" => 28,
        "BR" | "EG" | "PS" | "QA" | "UA" => 29,
        "IQ" | "JO" | "KW" | "MU" => 30,
        "MT" | "SC" => 31,
        "LC" => 32,
        "RU" => 33,
        _ => return None,
    })
}

/// Returns the byte length of the valid IBAN at the start of `m` (spaces allowed every 4).
pub(crate) fn iban_span(m: &str) -> Option<usize> {
    let cc = m.get(..2)?.to_ascii_uppercase();
    let want = iban_length(&cc)?;
    let mut chars = String::with_capacity(want);
    let mut end = 0;
    for (i, c) in m.char_indices() {
        if c == ' ' {
            continue;
        }
        chars.push(c.to_ascii_uppercase());
        if chars.len() == want {
            end = i + 1;
            break;
        }
    }
    if chars.len() != want {
        return None;
    }
    // must end at a group boundary (end of match or a space follows)
    if end < m.len() && m.as_bytes()[end] != b' ' {
        return None;
    }
    let rearranged = format!("{}{}", &chars[4..], &chars[..4]);
    let mut rem: u32 = 0;
    for c in rearranged.chars() {
        let v = c.to_digit(36)?;
        rem = if v < 10 {
            (rem * 10 + v) % 97
        } else {
            (rem * 100 + v) % 97
        };
    }
    (rem == 1).then_some(end)
}

pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

/// Card issuer prefix check for `n` digits.
fn issuer_ok(d: &[u8]) -> bool {
    let n = d.len();
    let p = |k: usize| -> u32 {
        d[..k.min(n)]
            .iter()
            .fold(0, |a, c| a * 10 + u32::from(c - b'0'))
    };
    let p2 = p(2);
    let p3 = p(3);
    let p4 = p(4);
    let p6 = p(6);
    match d[0] {
        b'4' => matches!(n, 13 | 16 | 19), // Visa
        b'5' => {
            (51..=55).contains(&p2) && n == 16 || (50..=59).contains(&p2) && (12..=19).contains(&n)
        } // MC, Maestro
        b'2' => (2221..=2720).contains(&p4) && n == 16 || p4 == 2131 && n == 15, // MC 2-series, JCB
        b'3' => {
            (p2 == 34 || p2 == 37) && n == 15                            // Amex
                || ((300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39) && (14..=19).contains(&n) // Diners
                || (3528..=3589).contains(&p4) && (16..=19).contains(&n) // JCB
        }
        b'6' => {
            (p4 == 6011
                || (644..=649).contains(&p3)
                || (622126..=622925).contains(&p6)
                || (56..=69).contains(&p2))
                && (12..=19).contains(&n)
        }
        b'1' => p4 == 1800 && n == 15,
        _ => false,
    }
}

/// Classifies one window of a numeric token.
fn classify_number(
    w: &str,
    ctx: &str,
    at_start: bool,
) -> Option<(&'static str, &'static str, f32)> {
    let mut digits: Vec<u8> = Vec::with_capacity(w.len());
    let mut groups: Vec<usize> = Vec::new();
    let mut seps: Vec<u8> = Vec::new();
    let mut run = 0;
    let mut ext = false;
    let mut paren = false;
    let plus = w.starts_with('+');
    for &c in w.as_bytes() {
        if c.is_ascii_digit() {
            if !ext {
                digits.push(c);
            }
            run += 1;
        } else {
            if run > 0 {
                if !ext {
                    groups.push(run);
                }
                run = 0;
            }
            match c {
                b'x' | b'e' => ext = true,
                b'(' | b')' => paren = true,
                b' ' | b'-' | b'.' | b'/' if !ext && !groups.is_empty() => seps.push(c),
                _ => {}
            }
        }
    }
    if run > 0 && !ext {
        groups.push(run);
    }
    let nd = digits.len();
    if nd == 0 {
        return None;
    }
    let uniform_sep = seps.windows(2).all(|p| p[0] == p[1]);
    let sep = seps.first().copied();
    // IPv4
    if groups.len() == 4 && seps.iter().all(|&s| s == b'.') && !plus && !paren && !ext {
        let ok = w.split('.').all(|o| {
            o.len() <= 3
                && o.parse::<u16>().is_ok_and(|v| v <= 255)
                && !(o.len() > 1 && o.starts_with('0'))
        });
        return ok.then_some(("IP_ADDRESS", "pii.ip.v4", 0.85));
    }
    if seps.contains(&b'.') && !(groups == [3, 3, 4] && uniform_sep) {
        return None; // decimals, versions
    }
    if seps.contains(&b'/') {
        return None; // dates, fractions
    }
    // credit card
    if !plus && !paren && !ext && (12..=19).contains(&nd) && uniform_sep && sep != Some(b'.') {
        let grouping_ok = groups.len() == 1
            || groups.iter().take(groups.len() - 1).all(|&g| g == 4)
            || groups == [4, 6, 5]
            || groups == [4, 6, 4];
        if grouping_ok && luhn(&digits) && issuer_ok(&digits) {
            return Some(("CREDIT_CARD", "pii.credit_card", 0.9));
        }
    }
    let ctx_l = ctx.to_ascii_lowercase();
    // SSN
    if !plus && !paren && !ext && nd == 9 {
        let shaped = (groups == [3, 2, 4] && uniform_sep && sep != Some(b'.'))
            || (groups == [9] && (ctx_l.contains("ssn") || ctx_l.contains("social security")));
        if shaped {
            let area = (digits[0] - b'0') as u32 * 100
                + (digits[1] - b'0') as u32 * 10
                + (digits[2] - b'0') as u32;
            let group = &digits[3..5];
            let serial = &digits[5..9];
            let ok = area != 0 && area != 666 && area < 900 && group != b"00" && serial != b"0000";
            if ok {
                return Some(("US_SSN", "pii.us_ssn", 0.85));
            }
            return None;
        }
    }
    // phone
    if !(7..=15).contains(&nd) {
        return None;
    }
    if digits.iter().all(|&d| d == digits[0]) {
        return None;
    }
    let phone_ctx = [
        "phone", "tel", "call", "mobile", "cell", "fax", "whatsapp", "sms", "text me", "number",
        "contact", "reach", "dial",
    ]
    .iter()
    .any(|k| ctx_l.contains(k));
    if plus {
        return (nd >= 8).then_some(("PHONE_NUMBER", "pii.phone.e164", 0.9));
    }
    if groups.len() == 1 && !paren {
        if phone_ctx && (nd == 10 || nd == 11) && at_start {
            return Some(("PHONE_NUMBER", "pii.phone.context", 0.6));
        }
        return None;
    }
    // dates like 2024-01-31 or 31-01-2024, and times
    if groups.len() == 3
        && matches!(sep, Some(b'-'))
        && (groups == [4, 2, 2]
            || groups == [2, 2, 4]
            || groups == [1, 2, 4]
            || groups == [2, 1, 4])
    {
        return None;
    }
    if groups.iter().any(|&g| g > 8) {
        return None;
    }
    // two bare groups ("370 3911", "75534-030") are as often house or postal numbers
    if groups.len() == 2 && !paren && !phone_ctx {
        return None;
    }
    let nanp = groups == [3, 3, 4] || groups == [1, 3, 3, 4];
    let score = if nanp || phone_ctx || paren {
        0.85
    } else {
        0.6
    };
    let rule = if nanp {
        "pii.phone.nanp"
    } else {
        "pii.phone.national"
    };
    Some(("PHONE_NUMBER", rule, score))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pii_det() -> &'static Pii {
        static D: std::sync::OnceLock<Pii> = std::sync::OnceLock::new();
        D.get_or_init(|| Pii::new(None).unwrap())
    }

    fn scan(text: &str) -> Vec<(String, &'static str, &'static str)> {
        let p = pii_det();
        let mut out = Vec::new();
        let mut c = crate::engine::test_cands(&p.tables(), text);
        p.scan(text, &mut c, &mut out);
        out.iter()
            .map(|f| (text[f.start..f.end].to_owned(), f.kind, f.rule))
            .collect()
    }

    #[test]
    fn positives() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "write to jane.doe+x@mail.example.co.uk today",
                "jane.doe+x@mail.example.co.uk",
                "EMAIL_ADDRESS",
                "pii.email",
            ),
            (
                "call +1 415 555 2671 now",
                "+1 415 555 2671",
                "PHONE_NUMBER",
                "pii.phone.e164",
            ),
            (
                "call +44 20 7946 0958",
                "+44 20 7946 0958",
                "PHONE_NUMBER",
                "pii.phone.e164",
            ),
            (
                "my number is (415) 555-2671.",
                "(415) 555-2671",
                "PHONE_NUMBER",
                "pii.phone.nanp",
            ),
            (
                "reach me at 415-555-2671x123",
                "415-555-2671x123",
                "PHONE_NUMBER",
                "pii.phone.nanp",
            ),
            (
                "office 020 7946 0958",
                "020 7946 0958",
                "PHONE_NUMBER",
                "pii.phone.national",
            ),
            (
                "card 4111 1111 1111 1111 exp",
                "4111 1111 1111 1111",
                "CREDIT_CARD",
                "pii.credit_card",
            ),
            (
                "card 4111-1111-1111-1111",
                "4111-1111-1111-1111",
                "CREDIT_CARD",
                "pii.credit_card",
            ),
            (
                "amex 378282246310005",
                "378282246310005",
                "CREDIT_CARD",
                "pii.credit_card",
            ),
            (
                "mc 5555555555554444.",
                "5555555555554444",
                "CREDIT_CARD",
                "pii.credit_card",
            ),
            (
                "iban DE89 3704 0044 0532 0130 00 ok",
                "DE89 3704 0044 0532 0130 00",
                "IBAN_CODE",
                "pii.iban",
            ),
            (
                "iban GB82WEST12345698765432",
                "GB82WEST12345698765432",
                "IBAN_CODE",
                "pii.iban",
            ),
            (
                "ssn 078-05-1121 on file",
                "078-05-1121",
                "US_SSN",
                "pii.us_ssn",
            ),
            ("SSN: 078051121", "078051121", "US_SSN", "pii.us_ssn"),
            (
                "from 192.168.10.254 to",
                "192.168.10.254",
                "IP_ADDRESS",
                "pii.ip.v4",
            ),
            (
                "host 2001:db8:85a3::8a2e:370:7334 up",
                "2001:db8:85a3::8a2e:370:7334",
                "IP_ADDRESS",
                "pii.ip.v6",
            ),
            (
                "Hi, my name is Maria Gonzalez and",
                "Maria Gonzalez",
                "PERSON",
                "pii.person.self_intro",
            ),
            (
                "Dear John Smith,",
                "John Smith",
                "PERSON",
                "pii.person.salutation",
            ),
            (
                "ask Dr. Alan Turing",
                "Alan Turing",
                "PERSON",
                "pii.person.title",
            ),
            (
                "Name: Priya Patel\n",
                "Priya Patel",
                "PERSON",
                "pii.person.field",
            ),
            (
                "please contact Lars Nilsson today",
                "Lars Nilsson",
                "PERSON",
                "pii.person.verb",
            ),
            (
                "The report was filed by Jennifer K. Lopez yesterday",
                "Jennifer K. Lopez",
                "PERSON",
                "pii.person.lexicon",
            ),
            (
                "Send it to Tomasz Anderson now",
                "Tomasz Anderson",
                "PERSON",
                "pii.person.lexicon",
            ),
            (
                "I think Margaret will come",
                "Margaret",
                "PERSON",
                "pii.person.lexicon_given",
            ),
        ];
        let mut bad = Vec::new();
        for (text, span, kind, rule) in cases {
            let got = scan(text);
            if !got.contains(&((*span).to_owned(), *kind, *rule)) {
                bad.push(format!("text {text:?}: got {got:?}"));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    #[test]
    fn look_alike_negatives() {
        let cases: &[&str] = &[
            "The capital of France is Paris.",
            "Look up the weather in Paris.",
            "We fly to Sydney in April.",
            "commit 3f786850e387550fdab836ed7e6dc881de23001b merged",
            "id 550e8400-e29b-41d4-a716-446655440000",
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "order #4111111111111112 shipped",
            "tracking 1Z999AA10123456784",
            "digits 4111 1111 1111 1112 fail luhn",
            "ssn 666-12-3456 invalid area",
            "ssn 912-12-3456 invalid area",
            "version 1.2.3.4.5 released",
            "ip 999.1.1.1 is not valid",
            "on 2024-01-31 at 12:30:45",
            "pi is 3.14159265 roughly",
            "price 1234567",
            "see std::vec::Vec and a::b",
            "iban DE00 3704 0044 0532 0130 00 bad check",
            "I am Happy to help",
            "Dear Customer,",
            "user@localhost is not an address",
            "We drove down Gordon Street to the Victoria Station",
            "Margaret is a common name.",
            "Stanley Park is lovely",
        ];
        let bad: Vec<String> = cases
            .iter()
            .filter(|t| !scan(t).is_empty())
            .map(|t| format!("text {t:?}: got {:?}", scan(t)))
            .collect();
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}
