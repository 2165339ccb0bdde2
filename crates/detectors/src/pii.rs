//! PII: pattern candidates confirmed by validators (Luhn, mod-97, SSN areas, octet ranges).

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::engine::{DIGITS, Next, Rule, Table, class, set_back, set_window};
use crate::types::{BuildError, DetectorKind, Finding, Severity};

const EMAIL: usize = 0;
const IPV6: usize = 1;
const IBAN: usize = 2;
const NUMBER: usize = 3;
const PERSON_FIRST: usize = 4;

/// The name part of PERSON rules: 1–3 capitalised words (`O'Brien`, `McCray`, `Smith-Jones`),
/// each optionally preceded by a middle initial (`K.` or `K`) and up to two surname particles
/// (`van der`, `de la`), then an optional generational or degree suffix (`Jr.`, `III`, `MD`).
macro_rules! name {
    () => {
        concat!(
            r"(?P<v>",
            name!(word),
            r"(?:[ \t](?:\p{Lu}\.?[ \t])?",
            r"(?:(?:van|von|der|den|de|del|della|di|da|dos|das|du|la|le|ten|ter|bin|ibn|al|el|y)[ \t]){0,2}",
            name!(word),
            r"){0,2}",
            r"(?:[ \t](?:(?:Jr|Sr)\.?|(?:II|III|IV|MD|DDS|PhD|DVM|Esq)\b))?)"
        )
    };
    (word) => {
        r"\p{Lu}(?:['’]\p{Lu})?\p{Ll}+(?:\p{Lu}\p{Ll}+)?(?:-\p{Lu}\p{Ll}+)?"
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
                r"(?i:\b(?:my name is|my name's|name's|(?:his|her|their|maiden|last|first|full|middle|family|real|legal) name is|i am called|i'm called|call me|calls me|i'm|i am|this is|it's)[ \t]+)",
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
                r"\b(?:(?i:mr|mrs|ms|mx|dr|prof)\.|Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Mister|Doctor|Professor|Sir|Madam|Dame|Lady|Mme|Mlle|Madame|Monsieur|Herr|Frau|Sr|Sra|Srta|Señor|Señora|Signor|Signora|Captain|Judge|Senator|Officer|Detective|Uncle|Aunt)\.?[ \t]+",
                name!()
            ),
            0.8,
            Severity::Medium,
        ),
        r(
            "PERSON",
            "pii.person.field",
            concat!(
                r"(?i:\b(?:name|full name|first name|last name|surname|given name|maiden name|customer|client|patient|employee|applicant|candidate|contact|author|signed|signed by|sender|recipient|attn|attention|passenger|guest|account holder|cardholder|card holder|beneficiary|directed by|written by|owner|tenant|student|witness|spouse|assignee|reporter|requester|reviewer|speaker)[ \t]*[:=][ \t]*|\b(?:from|to|cc|bcc|by):[ \t]*)",
                name!()
            ),
            0.75,
            Severity::Medium,
        ),
        r(
            "PERSON",
            "pii.person.name_question",
            concat!(
                r"(?i:\b(?:full |first |last |middle |maiden |family |given )?name\?[ \t]+)",
                name!()
            ),
            0.7,
            Severity::Medium,
        ),
        r(
            "PERSON",
            "pii.person.verb",
            concat!(
                r"(?i:\b(?:named|called|contact|ask|meet|met|married|signed by|written by|sent by|directed by|produced by|performed by|sung by|starring|according to|spoke with|spoke to|talked to|talk to|speak to|speak with|emailed|assigned to|assistant to|reported by|approved by|on behalf of|son|daughter|wife|husband|mother|father|brother|sister|kid|child|baby|cousin|uncle|aunt|nephew|niece|grandson|granddaughter|grandmother|grandfather|partner|fianc[eé]e?|boyfriend|girlfriend|friend|colleague|manager|boss|neighbor|neighbour)[ \t]+)",
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
    "Alexa",
    "Siri",
    "Cortana",
    "Claude",
    "Gemini",
    "Copilot",
    "Bard",
    "Grok",
    "Llama",
    "Mistral",
    "Me",
    "Him",
    "Them",
    "Us",
    "And",
    "Or",
    "But",
    "Of",
    "Is",
    "Are",
    "Was",
    "Were",
    "Be",
    "Do",
    "Does",
    "Did",
    "Can",
    "Could",
    "Would",
    "Should",
    "Shall",
    "Must",
    "Let",
    "Get",
    "Got",
    "Make",
    "Back",
    "Up",
    "Down",
    "Out",
    "Over",
    "Into",
    "Then",
    "Than",
    "Now",
    "Still",
    "Even",
    "Only",
    "Some",
    "Any",
    "Each",
    "Every",
    "Both",
    "Either",
    "Neither",
    "Maybe",
    "Perhaps",
    "Note",
    "Re",
    "Fwd",
    "Subject",
    "Dept",
    "Southern",
    "Northern",
    "Eastern",
    "Western",
    "North",
    "South",
    "East",
    "West",
    "Central",
    "Upper",
    "Lower",
    "Greater",
    "Saint",
    "Prince",
    "Princess",
    "Queen",
    "Duke",
    "Duchess",
    "Emperor",
    "Pope",
    "President",
    "Chairman",
    "Chair",
    "Director",
    "Producer",
    "Editor",
    "Professor",
    "Doctor",
    "Officer",
    "Captain",
    "Coach",
    "Judge",
    "Senator",
    "Governor",
    "Mayor",
    "Minister",
    "Secretary",
    "Chief",
    "General",
    "Sergeant",
    "Detective",
    "Host",
    "Chef",
    "Pastor",
    "Uncle",
    "Aunt",
    "Grandma",
    "Grandpa",
    "Baby",
    "Big",
    "Old",
    "Attn",
    "Apt",
    "Suite",
    "Unit",
    "Floor",
    "Room",
    "Box",
    "Building",
    "Block",
    "Flat",
];

/// Compiled PII detector.
pub(crate) struct Pii {
    pub(crate) table: Table,
    enabled: [bool; 7],
    names: NameSets,
}

/// Given names (US Census 1990, see `data/gen_names.py`), lower case, one a line.
const GIVEN_NAMES: &str = include_str!("../data/given_names.txt");
/// Surnames (US Census 1990, see `data/gen_names.py`), lower case, one a line.
const SURNAMES: &str = include_str!("../data/surnames.txt");

/// Words that make a capitalised pair a place or an organisation, not a person.
/// Given names that are just as often places or ordinary words: alone (without a surname or a
/// context cue such as "my name is" or "Dear"), they are not taken as a PERSON.
const AMBIGUOUS_GIVEN: &[&str] = &[
    "Julia",
    "Ada",
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
    "Day",
    "Eve",
    "Creek",
    "Cliffs",
    "Cliff",
    "Flat",
    "Flats",
    "Vue",
    "Bay",
    "Harbour",
    "Harbor",
    "Port",
    "Point",
    "Springs",
    "Falls",
    "Ridge",
    "Grove",
    "Meadows",
    "Woods",
    "Village",
    "Town",
    "Township",
    "Estate",
    "Estates",
    "Manor",
    "Castle",
    "Palace",
    "Tower",
    "Towers",
    "Stadium",
    "Arena",
    "Theatre",
    "Theater",
    "Cathedral",
    "Chapel",
    "Abbey",
    "Temple",
    "Airlines",
    "Airways",
    "Motors",
    "Pharmaceuticals",
    "Insurance",
    "Trust",
    "Fund",
    "Finance",
    "Financial",
    "Energy",
    "Power",
    "Electric",
    "Foods",
    "Brands",
    "Stores",
    "Consulting",
    "Software",
    "Networks",
    "Communications",
    "Health",
    "Healthcare",
    "Clinic",
    "Pharmacy",
    "Medical",
    "Agency",
    "Ministry",
    "Council",
    "Committee",
    "Commission",
    "Authority",
    "Board",
    "Police",
    "Army",
    "Navy",
    "Party",
    "Society",
    "Association",
    "Federation",
    "League",
    "Award",
    "Prize",
    "Cup",
    "Festival",
    "Conference",
    "Movers",
    "Apartments",
    "Tunnel",
    "Canal",
    "Highway",
    "Motorway",
    "Pass",
    "Peak",
    "Reserve",
    "Zoo",
    "Gallery",
    "Cafe",
    "Restaurant",
    "Bar",
    "Pub",
    "Inn",
    "Lodge",
    "Resort",
    "Shop",
    "Store",
    "Bakery",
    "Brewery",
    "Farm",
    "Farms",
    "Ranch",
    "Mill",
    "Mills",
    "Works",
    "Factory",
    "Cemetery",
    "Prison",
    "Poland",
    "Canada",
    "France",
    "Germany",
    "Spain",
    "Italy",
    "Portugal",
    "Brazil",
    "Mexico",
    "Argentina",
    "Chile",
    "Peru",
    "Colombia",
    "Uruguay",
    "Russia",
    "Ukraine",
    "Sweden",
    "Norway",
    "Denmark",
    "Finland",
    "Iceland",
    "Ireland",
    "England",
    "Scotland",
    "Wales",
    "Britain",
    "Kingdom",
    "States",
    "America",
    "Australia",
    "Zealand",
    "Japan",
    "Korea",
    "Vietnam",
    "Thailand",
    "Indonesia",
    "Malaysia",
    "Philippines",
    "Pakistan",
    "Egypt",
    "Nigeria",
    "Kenya",
    "Africa",
    "Tunisia",
    "Morocco",
    "Turkey",
    "Greece",
    "Cyprus",
    "Austria",
    "Switzerland",
    "Belgium",
    "Netherlands",
    "Hungary",
    "Czechia",
    "Slovakia",
    "Slovenia",
    "Croatia",
    "Serbia",
    "Romania",
    "Bulgaria",
    "Europe",
    "Asia",
    "Post",
    "Times",
    "Journal",
    "Herald",
    "Tribune",
    "Gazette",
    "News",
    "Daily",
    "Weekly",
    "Magazine",
    "Review",
    "Brand",
    "Plan",
    "Act",
    "Treaty",
    "Doctrine",
    "Medal",
    "Trophy",
    "Fellowship",
    "Scholarship",
    "Lecture",
    "Memorial",
];

/// Lower-case words that join the parts of a surname (`van der Berg`, `de la Cruz`).
const PARTICLES: &[&str] = &[
    "van", "von", "der", "den", "de", "del", "della", "di", "da", "dos", "das", "du", "la", "le",
    "ten", "ter", "bin", "ibn", "al", "el", "y",
];

/// Length of the longest of the [`PARTICLES`].
const PARTICLE_MAX: usize = {
    let mut m = 0;
    let mut i = 0;
    while i < PARTICLES.len() {
        if PARTICLES[i].len() > m {
            m = PARTICLES[i].len();
        }
        i += 1;
    }
    m
};

/// Words before a capitalised word that make it a street or a place (`Rua`, `Via`, `ul.`),
/// lower case.
const STREET_WORDS: &[&str] = &[
    "rua",
    "via",
    "viale",
    "avenida",
    "av",
    "avda",
    "rue",
    "calle",
    "carrer",
    "camino",
    "paseo",
    "plaza",
    "praca",
    "largo",
    "travessa",
    "alameda",
    "rambla",
    "strada",
    "piazza",
    "corso",
    "vicolo",
    "chemin",
    "allee",
    "impasse",
    "boulevard",
    "avenue",
    "street",
    "road",
    "ul",
    "ulica",
    "jalan",
    "cite",
    "quai",
    "san",
    "santa",
    "santo",
    "sao",
    "st",
    "saint",
    "ste",
    "lake",
    "mount",
    "mt",
    "port",
    "fort",
    "cape",
    "isla",
    "villa",
    "porto",
    "puerto",
];

/// Generational and degree suffixes kept at the end of a name (`Jr.`, `III`, `MD`).
const NAME_SUFFIXES: &[&str] = &[
    "Jr", "Sr", "II", "III", "IV", "MD", "DDS", "PhD", "DVM", "Esq",
];

/// Prefixes after which a surname has a second capital (`McCray`, `MacLeod`, `DeAndre`).
const INNER_CAP_PREFIXES: &[&str] = &[
    "Mc", "Mac", "Fitz", "De", "Di", "Da", "Du", "La", "Le", "Van", "Von",
];

/// Endings that make a capitalised word a surname in many languages (`-ová`, `-ski`,
/// `-sson`, `-dóttir`, `-ović`, `-enko`, `-shvili`; accents are folded before the scan).
/// Each entry is `(ending, minimum word length in bytes)`.
const SURNAME_ENDINGS: &[(&str, usize)] = &[
    ("ova", 6),
    ("ová", 6),
    ("ović", 7),
    ("vić", 6),
    ("vič", 6),
    ("dóttir", 9),
    ("eva", 6),
    ("ov", 5),
    ("ev", 5),
    ("ski", 5),
    ("ska", 5),
    ("sky", 5),
    ("cki", 5),
    ("cka", 5),
    ("wicz", 6),
    ("vich", 6),
    ("vic", 6),
    ("ovna", 6),
    ("enko", 6),
    ("escu", 6),
    ("oglu", 6),
    ("sson", 6),
    ("dottir", 8),
    ("shvili", 8),
    ("dze", 6),
    ("poulos", 8),
    ("akis", 6),
    ("lainen", 8),
    ("inen", 7),
    ("czyk", 6),
    ("yan", 6),
];

/// Verbs after a name that speak of a person (`Sofia lives in …`, `Omar shouted`). A given
/// name at the start of a sentence counts when one of them follows.
const PERSON_VERBS: &[&str] = &[
    "said",
    "says",
    "lives",
    "lived",
    "spent",
    "works",
    "worked",
    "shouted",
    "told",
    "asked",
    "wrote",
    "went",
    "came",
    "thinks",
    "thought",
    "wants",
    "wanted",
    "loves",
    "loved",
    "likes",
    "liked",
    "knows",
    "knew",
    "died",
    "married",
    "smiled",
    "laughed",
    "replied",
    "answered",
    "joined",
    "left",
    "began",
    "started",
    "whispered",
    "cried",
    "agreed",
    "explained",
];

/// Verbs strong enough to make two unknown capitalised words a person (`Ana Kowal lives at`).
const STRONG_PERSON_VERBS: &[&str] = &[
    "said",
    "says",
    "told",
    "asked",
    "replied",
    "lives",
    "lived",
    "was born",
    "died",
    "married",
    "smiled",
    "laughed",
    "cried",
    "whispered",
    "shouted",
    "wrote to",
];

/// Word classes used by the lexicon pass.
const GIVEN: u8 = 1;
const SURNAME: u8 = 2;
const SHAPED: u8 = 4;
const AMBIG: u8 = 8;
const PLACE: u8 = 16;
const NOT: u8 = 32;

/// A street or place word (`Rua`, `Via`, `San`, `Lake`).
const STREET: u8 = 64;

/// FNV-1a: a fast hash for the short words of the name lexicon.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// The word lexicon of the PERSON logic, built once: lower-case word → class bits
/// ([`GIVEN`], [`SURNAME`], [`AMBIG`], [`PLACE`], [`NOT`], [`STREET`]); one lookup per word,
/// no allocation. A flat open-addressing table (linear probing, at most half full) over
/// the FNV-1a hash of the lower-case word's bytes; the words themselves sit in one arena.
struct NameSets {
    /// Slots: (high half of the hash, arena offset, word length, class bits); an empty
    /// slot has length 0 (no word is empty).
    slots: Vec<(u32, u32, u16, u8)>,
    /// `slots.len() - 1` (the length is a power of two).
    mask: usize,
    /// The words' bytes, concatenated.
    arena: Vec<u8>,
    /// Class bits of the empty word, if a list holds it.
    empty: Option<u8>,
}

/// FNV-1a of `bytes` (the lexicon's hash).
#[inline]
fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl NameSets {
    fn new() -> NameSets {
        let mut words: HashMap<Cow<'static, [u8]>, u8, BuildHasherDefault<Fnv>> =
            HashMap::default();
        let mut add = |w: Cow<'static, [u8]>, bit: u8| *words.entry(w).or_insert(0) |= bit;
        for w in GIVEN_NAMES.lines().filter(|l| !l.is_empty()) {
            add(Cow::Borrowed(w.as_bytes()), GIVEN);
        }
        for w in SURNAMES.lines().filter(|l| !l.is_empty()) {
            add(Cow::Borrowed(w.as_bytes()), SURNAME);
        }
        for w in STREET_WORDS {
            add(Cow::Borrowed(w.as_bytes()), STREET);
        }
        // the word lists are title case, and so are name words: lower-case forms are the keys
        for (list, bit) in [
            (NOT_NAMES, NOT),
            (AMBIGUOUS_GIVEN, AMBIG),
            (PLACE_ORG, PLACE),
        ] {
            for w in list {
                add(Cow::Owned(w.to_lowercase().into_bytes()), bit);
            }
        }
        let n = words.len().max(1).next_power_of_two() * 2;
        let mut slots = vec![(0u32, 0u32, 0u16, 0u8); n];
        let mut arena = Vec::new();
        let mask = n - 1;
        let mut empty = None;
        // sorted, so the table does not depend on the map's iteration order
        let mut entries: Vec<(&Cow<'static, [u8]>, &u8)> = words.iter().collect();
        entries.sort();
        for (w, &class) in entries {
            let (Ok(len), Ok(off)) = (u16::try_from(w.len()), u32::try_from(arena.len())) else {
                continue;
            };
            if len == 0 {
                empty = Some(class);
                continue;
            }
            let h = fnv(w);
            let mut i = h as usize & mask;
            while slots[i].2 != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = ((h >> 32) as u32, off, len, class);
            arena.extend_from_slice(w);
        }
        NameSets {
            slots,
            mask,
            arena,
            empty,
        }
    }

    /// The class bits of a lower-case word, if it is in the lexicon.
    #[inline]
    fn get(&self, l: &[u8]) -> Option<u8> {
        if l.is_empty() {
            return self.empty;
        }
        self.probe(fnv(l), l.len(), |k| k == l)
    }

    /// The class bits of the word with hash `h` and length `n` for which `eq` holds on its
    /// stored bytes.
    #[inline]
    fn probe(&self, h: u64, n: usize, eq: impl Fn(&[u8]) -> bool) -> Option<u8> {
        let hi = (h >> 32) as u32;
        let mut i = h as usize & self.mask;
        loop {
            let &(sh, off, len, class) = self.slots.get(i)?;
            if len == 0 {
                return None;
            }
            if sh == hi && usize::from(len) == n {
                let off = off as usize;
                if self.arena.get(off..off + n).is_some_and(&eq) {
                    return Some(class);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The class bits of one capitalised word.
    fn class(&self, w: &str) -> u8 {
        let b = w.as_bytes();
        if b.len() <= 48 && b.is_ascii() {
            // ASCII: hash and compare the lower-case form without copying it first
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for &c in b {
                h = (h ^ u64::from(c.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3);
            }
            let found = if b.is_empty() {
                self.empty
            } else {
                self.probe(h, b.len(), |k| {
                    k.iter().zip(b).all(|(&x, &y)| x == y.to_ascii_lowercase())
                })
            };
            if let Some(c) = found {
                return c;
            }
            // not listed: surname shaped or nothing (most words end in a byte no ending has)
            let last_ok = b
                .last()
                .is_some_and(|&c| SURNAME_LAST[usize::from(c.to_ascii_lowercase())]);
            if !last_ok {
                return 0;
            }
            let mut buf = [0u8; 48];
            let Some(dst) = buf.get_mut(..b.len()) else {
                return 0;
            };
            for (d, c) in dst.iter_mut().zip(b) {
                *d = c.to_ascii_lowercase();
            }
            return if surname_shaped(dst) { SHAPED } else { 0 };
        }
        self.class_general(w)
    }

    /// The class of `w` by the general path (lower-case copy, lookup, surname shape); the
    /// ASCII path above gives the same answer without the copy.
    fn class_general(&self, w: &str) -> u8 {
        let mut buf = [0u8; 48];
        let Some(l) = lower_into(w, &mut buf) else {
            return 0;
        };
        match self.get(l) {
            Some(c) => c,
            None if surname_shaped(l) => SHAPED,
            None => 0,
        }
    }

    /// Whether the word before byte `i` (skipping one space) is a street word or a number,
    /// which makes the capitalised words at `i` part of an address.
    fn address_before(&self, text: &str, i: usize) -> bool {
        let before = text[..i].trim_end_matches([' ', '\t']);
        if before.len() == i {
            return false;
        }
        let before = before.trim_end_matches('.');
        let start = before
            .char_indices()
            .rev()
            .find(|&(_, c)| !c.is_alphanumeric())
            .map_or(0, |(k, c)| k + c.len_utf8());
        let w = &before[start..];
        if w.is_empty() {
            return false;
        }
        if w.bytes().all(|c| c.is_ascii_digit()) {
            return true;
        }
        // street words count capitalised (`Via Roma`), not as English words (`via Anna`)
        if !w.starts_with(char::is_uppercase) && w != "ul" {
            return false;
        }
        self.is_street_word(w)
    }

    /// Whether `w` is a street or place word (`Rua`, `San`, `Lake`), any case.
    fn is_street_word(&self, w: &str) -> bool {
        self.class(w) & STREET != 0
    }
}

/// Lower-cases `w` into `buf` (UTF-8 bytes); `None` when it does not fit.
fn lower_into<'a>(w: &str, buf: &'a mut [u8; 48]) -> Option<&'a [u8]> {
    if w.is_ascii() {
        let dst = buf.get_mut(..w.len())?;
        for (d, c) in dst.iter_mut().zip(w.bytes()) {
            *d = c.to_ascii_lowercase();
        }
        return Some(dst);
    }
    let mut n = 0;
    for ch in w.chars() {
        for lc in ch.to_lowercase() {
            let l = lc.len_utf8();
            if n + l > buf.len() {
                return None;
            }
            lc.encode_utf8(&mut buf[n..n + l]);
            n += l;
        }
    }
    buf.get(..n)
}

/// Last bytes of the [`SURNAME_ENDINGS`]: a word ending in another byte is not surname
/// shaped (one lookup instead of comparing every ending).
const SURNAME_LAST: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < SURNAME_ENDINGS.len() {
        let e = SURNAME_ENDINGS[i].0.as_bytes();
        if let Some(&last) = e.last() {
            t[last as usize] = true;
        }
        i += 1;
    }
    t
};

/// Whether the lower-case word (UTF-8 bytes) ends like a surname (see [`SURNAME_ENDINGS`]).
fn surname_shaped(b: &[u8]) -> bool {
    let Some(&last) = b.last() else {
        return false;
    };
    SURNAME_LAST[usize::from(last)]
        && ENDINGS_BY_LAST[usize::from(last)].iter().any(|&k| {
            SURNAME_ENDINGS
                .get(usize::from(k))
                .is_some_and(|&(e, min)| b.len() >= min && b.ends_with(e.as_bytes()))
        })
}

/// Most [`SURNAME_ENDINGS`] sharing a last byte.
const ENDINGS_PER_BYTE: usize = 8;

/// For each last byte, the indices in [`SURNAME_ENDINGS`] of the endings ending in it
/// (padded with an index past the list), so a word is compared with those only.
const ENDINGS_BY_LAST: [[u8; ENDINGS_PER_BYTE]; 256] = {
    let mut t = [[u8::MAX; ENDINGS_PER_BYTE]; 256];
    let mut n = [0usize; 256];
    let mut i = 0;
    while i < SURNAME_ENDINGS.len() {
        let e = SURNAME_ENDINGS[i].0.as_bytes();
        if let Some(&last) = e.last() {
            let k = last as usize;
            // a full row would silently drop an ending: fail the build instead
            assert!(n[k] < ENDINGS_PER_BYTE && i < u8::MAX as usize);
            t[k][n[k]] = i as u8;
            n[k] += 1;
        }
        i += 1;
    }
    t
};

fn char_at(text: &str, i: usize) -> Option<char> {
    text.get(i..).and_then(|s| s.chars().next())
}

/// A capitalised name-shaped word at byte `i` (`Maria`, `Østrem`, `O'Neil`, `McCray`,
/// `Smith-Jones`): its end, and whether a possessive `'s` follows it. Words glued to a letter,
/// digit or `-`/`_`/`@`/`/`/`.` before them, CamelCase words (`PayPal`) and contractions are
/// not name words.
fn name_word(text: &str, i: usize) -> Option<(usize, bool)> {
    match name_word_ascii(text, i) {
        Some(r) => r,
        None => name_word_chars(text, i),
    }
}

/// [`name_word`] decided on ASCII bytes alone (the common case): `None` when a byte it
/// needs is not ASCII, so the general path decides.
#[inline]
fn name_word_ascii(text: &str, i: usize) -> Option<Option<(usize, bool)>> {
    let b = text.as_bytes();
    let &c0 = b.get(i)?;
    if !c0.is_ascii() {
        return None;
    }
    if !c0.is_ascii_uppercase() {
        return Some(None);
    }
    if let Some(&p) = i.checked_sub(1).and_then(|k| b.get(k)) {
        if !p.is_ascii() {
            return None;
        }
        if p.is_ascii_alphanumeric()
            || matches!(p, b'-' | b'_' | b'@' | b'/' | b'\\' | b'.' | b'\'')
        {
            return Some(None);
        }
    }
    let mut j = i + 1;
    let mut letters = 1;
    let mut inner_cap = false;
    while let Some(&c) = b.get(j) {
        if !c.is_ascii() {
            return None;
        }
        if c.is_ascii_lowercase() {
            j += 1;
            letters += 1;
        } else if c == b'\'' {
            let k = j + 1;
            match b.get(k) {
                Some(n) if !n.is_ascii() => return None,
                Some(b's') => match b.get(k + 1) {
                    Some(n) if !n.is_ascii() => return None,
                    Some(n) if n.is_ascii_alphanumeric() => return Some(None),
                    _ => return Some((letters >= 2).then_some((j, true))),
                },
                Some(u) if u.is_ascii_uppercase() && letters == 1 && !inner_cap => {
                    j = k + 1;
                    letters += 1;
                    inner_cap = true;
                }
                Some(l) if l.is_ascii_alphanumeric() => return Some(None),
                _ => break,
            }
        } else if c == b'-' {
            match b.get(j + 1) {
                Some(n) if !n.is_ascii() => return None,
                Some(u) if u.is_ascii_uppercase() => {
                    j += 2;
                    letters += 1;
                }
                Some(l) if l.is_ascii_alphanumeric() => return Some(None),
                _ => break,
            }
        } else if c.is_ascii_uppercase() {
            if inner_cap || !INNER_CAP_PREFIXES.contains(&text.get(i..j)?) {
                return Some(None);
            }
            inner_cap = true;
            j += 1;
        } else if c.is_ascii_alphanumeric() {
            return Some(None);
        } else {
            break;
        }
    }
    let last_upper = j
        .checked_sub(1)
        .and_then(|k| b.get(k))
        .is_some_and(u8::is_ascii_uppercase);
    Some((letters >= 2 && !last_upper).then_some((j, false)))
}

/// [`name_word`] on characters (any script).
fn name_word_chars(text: &str, i: usize) -> Option<(usize, bool)> {
    let c0 = char_at(text, i)?;
    if !c0.is_uppercase() {
        return None;
    }
    if let Some(p) = text.get(..i).and_then(|s| s.chars().next_back()) {
        if p.is_alphanumeric() || matches!(p, '-' | '_' | '@' | '/' | '\\' | '.' | '\'' | '’') {
            return None;
        }
    }
    let mut j = i + c0.len_utf8();
    let mut letters = 1;
    let mut inner_cap = false;
    while let Some(c) = char_at(text, j) {
        if c.is_lowercase() {
            j += c.len_utf8();
            letters += 1;
        } else if c == '\'' || c == '’' {
            let k = j + c.len_utf8();
            match char_at(text, k) {
                Some('s') if !char_at(text, k + 1).is_some_and(char::is_alphanumeric) => {
                    return (letters >= 2).then_some((j, true));
                }
                Some(u) if u.is_uppercase() && letters == 1 && !inner_cap => {
                    j = k + u.len_utf8();
                    letters += 1;
                    inner_cap = true;
                }
                Some(l) if l.is_alphanumeric() => return None,
                _ => break,
            }
        } else if c == '-' {
            match char_at(text, j + 1) {
                Some(u) if u.is_uppercase() => {
                    j += 1 + u.len_utf8();
                    letters += 1;
                }
                Some(l) if l.is_alphanumeric() => return None,
                _ => break,
            }
        } else if c.is_uppercase() {
            if inner_cap || !INNER_CAP_PREFIXES.contains(&&text[i..j]) {
                return None;
            }
            inner_cap = true;
            j += c.len_utf8();
        } else if c.is_alphanumeric() {
            return None;
        } else {
            break;
        }
    }
    (letters >= 2 && !text[..j].ends_with(char::is_uppercase)).then_some((j, false))
}

/// A middle initial at `j` (`K. ` or `K `) followed by a name word: the position after it.
fn initial_at(text: &str, j: usize) -> Option<usize> {
    let c = char_at(text, j)?;
    if !c.is_uppercase() {
        return None;
    }
    let mut k = j + c.len_utf8();
    if char_at(text, k) == Some('.') {
        k += 1;
    }
    if char_at(text, k) != Some(' ') {
        return None;
    }
    name_word(text, k + 1).map(|_| k + 1)
}

/// Surname particles at `j` (`van der `) followed by a name word: the position after them.
fn particles_at(text: &str, j: usize) -> Option<usize> {
    let mut k = j;
    for _ in 0..2 {
        let rest = text.get(k..)?;
        // a particle is at most `PARTICLE_MAX` bytes: look for its space no further
        let head = rest
            .as_bytes()
            .get(..=PARTICLE_MAX)
            .unwrap_or(rest.as_bytes());
        let w_end = head.iter().position(|&c| c == b' ')?;
        if !PARTICLES.contains(&&rest[..w_end]) {
            break;
        }
        k += w_end + 1;
        if name_word(text, k).is_some() {
            return Some(k);
        }
    }
    None
}

/// A name suffix (` Jr.`, ` III`, ` MD`) at `e`: the end including it.
fn suffix_at(text: &str, e: usize) -> usize {
    let Some(rest) = text.get(e..).and_then(|r| r.strip_prefix(' ')) else {
        return e;
    };
    for s in NAME_SUFFIXES {
        if let Some(after) = rest.strip_prefix(s) {
            if after.starts_with(char::is_alphanumeric) {
                continue;
            }
            let dot = usize::from(matches!(*s, "Jr" | "Sr") && after.starts_with('.'));
            return e + 1 + s.len() + dot;
        }
    }
    e
}

/// Whether `text[e..]` continues with ` <verb>` from `verbs`, then a non-letter.
fn verb_follows(text: &str, e: usize, verbs: &[&str]) -> bool {
    let Some(rest) = text.get(e..).and_then(|r| r.strip_prefix(' ')) else {
        return false;
    };
    verbs.iter().any(|v| {
        rest.strip_prefix(v)
            .is_some_and(|a| !a.starts_with(char::is_alphanumeric))
    })
}

/// Whether a short house number follows `e` (` 12`, ` 2906,` but not a phone ` 555-1234`).
fn house_number_follows(text: &str, e: usize) -> bool {
    let Some(rest) = text.get(e..).and_then(|r| r.strip_prefix(' ')) else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let after = rest.as_bytes().get(digits).copied();
    let next_digit = rest
        .as_bytes()
        .get(digits + 1)
        .is_some_and(u8::is_ascii_digit);
    (1..=5).contains(&digits)
        && !matches!(after, Some(b'-' | b'/' | b':'))
        && !(matches!(after, Some(b'.' | b' ')) && next_digit)
}

/// The first byte at or after `i` that may start a capitalised word (an ASCII capital or
/// the lead byte of a multi-byte character, `>= 0xC0`), or `b.len()`. Eight bytes at a time.
fn next_capital(b: &[u8], mut i: usize) -> usize {
    const LO7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const HI: u64 = 0x8080_8080_8080_8080;
    // bit 7 of each byte set where it is an ASCII capital or a lead byte >= 0xC0
    let marks = |chunk: &[u8]| -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(chunk);
        let x = u64::from_le_bytes(a);
        let h = x & LO7;
        let ge_a = h.wrapping_add(0x3F3F_3F3F_3F3F_3F3F); // bit 7 set where the low 7 bits >= b'A'
        let gt_z = h.wrapping_add(0x2525_2525_2525_2525); // bit 7 set where they are > b'Z'
        let upper = ge_a & !gt_z & !x & HI;
        let lead = x & (x << 1) & HI; // top two bits set: >= 0xC0
        upper | lead
    };
    // sixteen bytes per turn, then eight
    while let Some(chunk) = b.get(i..i + 16) {
        let (lo, hi) = chunk.split_at(8);
        let m = marks(lo);
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        let m = marks(hi);
        if m != 0 {
            return i + 8 + (m.trailing_zeros() / 8) as usize;
        }
        i += 16;
    }
    while let Some(chunk) = b.get(i..i + 8) {
        let m = marks(chunk);
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && !(b[i].is_ascii_uppercase() || b[i] >= 0xC0) {
        i += 1;
    }
    i
}

/// Whether byte `i` starts a sentence or a line.
fn sentence_start(text: &str, i: usize) -> bool {
    let before = text[..i].trim_end_matches([' ', '\t', '"', '\'', '“', '(', '>', '|', '*', '-']);
    before.is_empty() || before.ends_with(['.', '!', '?', ':', '\n'])
}

/// Word k of a [`Run`] follows a middle initial.
const BY_INITIAL: u8 = 1;
/// Word k of a [`Run`] follows surname particles.
const BY_PARTICLE: u8 = 2;

/// A run of capitalised name words: the words (start, end, class), at most four.
#[derive(Clone, Copy, Default)]
struct Run {
    words: [(usize, usize, u8); 4],
    n: usize,
    /// What joins word k to the word before: 0 a space, [`BY_INITIAL`] or [`BY_PARTICLE`].
    joined: [u8; 4],
    /// The run ends in a possessive `'s`.
    possessive: bool,
}

impl Run {
    /// Collects the run starting with the name word `i..e0`.
    fn collect(sets: &NameSets, text: &str, i: usize, e0: usize, poss0: bool) -> Run {
        let mut r = Run::default();
        r.words[0] = (i, e0, sets.class(&text[i..e0]));
        r.n = 1;
        r.possessive = poss0;
        let mut e = e0;
        while r.n < 4 && !r.possessive && char_at(text, e) == Some(' ') {
            let j = e + 1;
            let (k, joined) = match initial_at(text, j) {
                Some(k) => (k, BY_INITIAL),
                None => particles_at(text, j).map_or((j, 0), |k| (k, BY_PARTICLE)),
            };
            let Some((e2, poss)) = name_word(text, k) else {
                break;
            };
            r.words[r.n] = (k, e2, sets.class(&text[k..e2]));
            r.joined[r.n] = joined;
            r.n += 1;
            r.possessive = poss;
            e = e2;
        }
        r
    }

    fn class(&self, k: usize) -> u8 {
        self.words[k].2
    }
}

/// Prepositions after which a lone given name is more often a place (`from Florence`).
const LOCATIVE: &[&str] = &["in", "from", "at", "near", "visit", "visiting"];

/// Cue words after which a name needs lexicon support (`I'm Canadian`, `by Google`).
const WEAK_CUES: &[&str] = &["i'm", "am", "is", "it's", "from", "to", "cc", "bcc", "by"];

/// Words before a capitalised run that make it a person (`says Bergsson`, `by Ana Kowal`),
/// checked in the lexicon pass: one word needs the lexicon or a surname shape, two words
/// after `says` / `said` need nothing more.
const CUE_WORDS: &[&str] = &["by", "says", "said", "under"];

/// Words that make a following `by` a strong cue (`directed by`, `written by`).
const STRONG_BY: &[&str] = &["directed", "written", "produced", "signed", "sent", "sung"];

/// Well-known companies named after people: not PERSON.
const EPONYMOUS_FIRMS: &[&str] = &[
    "Morgan Stanley",
    "Goldman Sachs",
    "Berkshire Hathaway",
    "Merrill Lynch",
    "Wells Fargo",
    "Charles Schwab",
    "Lehman Brothers",
    "Reed Elsevier",
    "Dow Jones",
    "Harley Davidson",
    "Rolls Royce",
    "Louis Vuitton",
    "Calvin Klein",
    "Ralph Lauren",
    "Tommy Hilfiger",
    "Estee Lauder",
    "Hugo Boss",
    "Marks Spencer",
    "Dolce Gabbana",
    "Johnson Controls",
    "Allen Overy",
    "Ernst Young",
    "Arthur Andersen",
    "Booz Allen",
    "Warner Bros",
    "Walt Disney",
    "Jack Daniels",
    "John Deere",
    "Mercedes Benz",
    "Aston Martin",
];

/// The outcome of [`Pii::pick`].
enum Pick {
    /// A name: span, rule id, score.
    Name(usize, usize, &'static str, f32),
    /// Part of an address or a company: skip the whole run.
    Address,
    /// No name here: go on after the run's first word.
    Nothing,
}

/// The last whitespace-separated word of `s`.
fn prev_word(s: &str) -> &str {
    s.trim_end().rsplit([' ', '\t', '\n']).next().unwrap_or("")
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
            names: NameSets::new(),
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
                    let rule = self.table.rules[i].rule;
                    let Some(end) = self.context_name(text, h.start, h.end, rule) else {
                        return Next::Retry;
                    };
                    let score = self.table.rules[i].score;
                    self.push(out, "PERSON", rule, h.start, end, score);
                }
                _ => {}
            }
            Next::Accept
        });
    }

    /// Lexicon names. A run of up to four capitalised words (with middle initials and
    /// surname particles between them) is a name when: its first word is a known given name
    /// (`Jennifer K. Lopez`); its second word is a known or surname-shaped surname
    /// (`Tomasz Anderson`, `Ana Kowalska`); a middle initial joins two words
    /// (`Faina D. Yefremova`); or two unknown words are followed by a verb only people do
    /// (`Ana Kowal lives at`) or come after `says` / `said`. One known or surname-shaped word
    /// counts after `by`, `says`, `said`, `under` (`says Bergsson`). A lone known given name
    /// counts inside a sentence, or at its start before a verb, a comma or a colon
    /// (`Scott said`, `Nicole: …`), but not after a place preposition (`from Dolores`) nor in
    /// a list with surnames (`Lopez, Santos and Coleman`). Runs in addresses
    /// (after a number or a street word, before a house number), runs that contain a place or
    /// organisation word, and spans overlapping an earlier PERSON finding are skipped.
    fn lexicon_names(&self, text: &str, first: usize, out: &mut Vec<Finding>) {
        let b = text.as_bytes();
        // The earlier findings a name must not overlap: those of the rule pass. Names found
        // here start at or after the end of the one before (`i = e` below), so they never
        // overlap a later one. The rule pass reports its hits left to right, so the checks
        // walk the earlier findings once (the text's length, not findings times names);
        // were they not sorted by start, every check would look at all of them.
        let prior = out.len();
        let sorted = out
            .get(first..prior)
            .is_some_and(|p| p.windows(2).all(|w| w[0].start <= w[1].start));
        let mut from = first;
        let mut i = 0;
        while i < b.len() {
            i = next_capital(b, i);
            if i >= b.len() {
                break;
            }
            let Some((e0, poss0)) = name_word(text, i) else {
                i += 1;
                continue;
            };
            let run = Run::collect(&self.names, text, i, e0, poss0);
            match self.pick(text, &run) {
                Pick::Name(s, e, rule, score) => {
                    // (the starts of the names checked only grow)
                    let overlaps = if sorted {
                        while from < prior && out[from].end <= s {
                            from += 1;
                        }
                        out[from..prior]
                            .iter()
                            .take_while(|f| f.start < e)
                            .any(|f| f.kind == "PERSON" && s < f.end)
                    } else {
                        out[first..prior]
                            .iter()
                            .any(|f| f.kind == "PERSON" && f.start < e && s < f.end)
                    };
                    if !overlaps {
                        self.push(out, "PERSON", rule, s, e, score);
                    }
                    i = e;
                }
                Pick::Address => i = run.words[run.n - 1].1,
                Pick::Nothing => i = e0,
            }
        }
    }

    /// Decides which part of a run of capitalised words is a name.
    fn pick(&self, text: &str, run: &Run) -> Pick {
        // Fast path (most capitalised words of prose): a lone word the lexicon does not
        // support can only end as `Nothing` or `Address`, and for a one-word run both
        // resume the search after that word.
        if run.n == 1 && run.class(0) & (GIVEN | SURNAME | SHAPED) == 0 {
            return Pick::Nothing;
        }
        let mut a = 0;
        while a < run.n && run.class(a) & NOT != 0 {
            a += 1;
        }
        if a == run.n {
            return Pick::Nothing;
        }
        let mut n = run.n;
        if let Some(k) = (a + 1..run.n).find(|&k| run.class(k) & NOT != 0) {
            n = k;
        }
        if (a..run.n).any(|k| run.class(k) & PLACE != 0) {
            return Pick::Nothing;
        }
        if self
            .names
            .is_street_word(&text[run.words[a].0..run.words[a].1])
        {
            return Pick::Address;
        }
        if self.names.address_before(text, run.words[a].0)
            || house_number_follows(text, run.words[n - 1].1)
        {
            return Pick::Address;
        }
        if self.org_name(text, run, a, n) {
            return Pick::Address;
        }
        let c0 = run.class(a);
        let cue = prev_word(&text[..run.words[a].0]);
        let cue = CUE_WORDS.iter().find(|w| cue.eq_ignore_ascii_case(w));
        if n - a == 1 {
            let (s, e, _) = run.words[a];
            if cue.is_some() && c0 & (GIVEN | SURNAME | SHAPED) != 0 && c0 & AMBIG == 0 {
                return Pick::Name(s, e, "pii.person.cue_word", 0.55);
            }
            let lone_ok = c0 & GIVEN != 0 && c0 & AMBIG == 0;
            if !lone_ok {
                return Pick::Nothing;
            }
            let after = char_at(text, e);
            let cue_after = !run.possessive
                && (verb_follows(text, e, PERSON_VERBS) || matches!(after, Some(',' | ':')));
            if sentence_start(text, s) && !cue_after {
                return Pick::Nothing;
            }
            // "from Dolores", "in Florence": a lone given name after a place preposition
            let prep = prev_word(&text[..s]);
            if LOCATIVE.iter().any(|p| prep.eq_ignore_ascii_case(p)) {
                return Pick::Nothing;
            }
            // "Lopez, Santos and Coleman": a word that is also a surname, listed with surnames
            if c0 & SURNAME != 0 && self.listed_with_surnames(text, s, e) {
                return Pick::Nothing;
            }
            return Pick::Name(s, e, "pii.person.lexicon_given", 0.5);
        }
        // a capitalised word before "given name + more" is not part of the name
        let support = GIVEN | SURNAME | SHAPED;
        if c0 & support == 0
            && run.joined[a + 1] == 0
            && run.class(a + 1) & GIVEN != 0
            && n - a >= 3
        {
            a += 1;
        }
        let c0 = run.class(a);
        let c1 = run.class(a + 1);
        let given_first = c0 & GIVEN != 0 && c0 & AMBIG == 0;
        let (rule, score) = if given_first || c1 & SURNAME != 0 || run.joined[a + 1] == BY_INITIAL {
            ("pii.person.lexicon", 0.7)
        } else if c1 & SHAPED != 0 {
            ("pii.person.surname_shape", 0.6)
        } else if verb_follows(text, run.words[n - 1].1, STRONG_PERSON_VERBS) {
            ("pii.person.verb_after", 0.55)
        } else if cue.is_some_and(|c| *c == "says" || *c == "said") {
            ("pii.person.cue_word", 0.55)
        } else {
            return Pick::Nothing;
        };
        let mut last = a + 1;
        while last + 1 < n && (run.class(last + 1) & support != 0 || run.joined[last + 1] != 0) {
            last += 1;
        }
        let e = suffix_at(text, run.words[last].1);
        Pick::Name(run.words[a].0, e, rule, score)
    }

    /// Whether the word `s..e` is an item of a list (`A, B and C`, `A & B`) in which another
    /// item is a surname that is not also a given name (a firm or a list of surnames).
    fn listed_with_surnames(&self, text: &str, s: usize, e: usize) -> bool {
        let surname_only = |w: &str| {
            let c = self.names.class(w);
            c & SURNAME != 0 && c & GIVEN == 0
        };
        let joiners = [", ", " and ", " & "];
        // items after the word
        let mut k = e;
        for _ in 0..3 {
            let Some(j) = joiners.iter().find_map(|j| text[k..].strip_prefix(j)) else {
                break;
            };
            let ws = text.len() - j.len();
            let Some((we, _)) = name_word(text, ws) else {
                break;
            };
            if surname_only(&text[ws..we]) {
                return true;
            }
            k = we;
        }
        // items before it
        let mut k = s;
        for _ in 0..3 {
            let Some(h) = joiners.iter().find_map(|j| text[..k].strip_suffix(j)) else {
                break;
            };
            let h = h.trim_end();
            let w = prev_word(h);
            if !w.starts_with(char::is_uppercase) {
                break;
            }
            if surname_only(w) {
                return true;
            }
            k = h.len() - w.len();
        }
        false
    }

    /// Whether words `a..n` of the run are a well-known company named after people
    /// (`Morgan Stanley`, `Goldman Sachs`).
    fn org_name(&self, text: &str, run: &Run, a: usize, n: usize) -> bool {
        n - a >= 2 && {
            let (s, _, _) = run.words[a];
            let (_, e, _) = run.words[a + 1];
            EPONYMOUS_FIRMS.contains(&&text[s..e])
        }
    }

    /// Checks a name found after a context cue (`text[s..e]`, rule `rule`) and returns its
    /// end: trailing words that are not names (`Apt`, `Street`, `Today`) are cut; a first word
    /// that is not a name rejects it; after weak cues (`I'm`, `this is`, `by`, `says`, `To:`)
    /// one word must be a known or surname-shaped name; `Dr` after a capitalised word is a
    /// street (`Elm Dr Smith…`), not a title.
    fn context_name(&self, text: &str, s: usize, e: usize, rule: &str) -> Option<usize> {
        let m = &text[s..e];
        let mut words = [(0usize, 0usize, 0u8); 8];
        let mut n = 0;
        let mut pos = 0;
        for w in m.split([' ', '\t']) {
            if n < words.len() && !w.is_empty() {
                words[n] = (s + pos, s + pos + w.len(), self.names.class(w));
                n += 1;
            }
            pos += w.len() + 1;
        }
        if n == 0 {
            return None;
        }
        let first = m.split([' ', '\t', '-']).next().unwrap_or("");
        if words[0].2 & (NOT | PLACE) != 0 || self.names.class(first) & NOT != 0 {
            return None;
        }
        // cut trailing words that are not names, and initials or particles left dangling
        while n > 1 {
            let (ws, we, c) = words[n - 1];
            let w = &text[ws..we];
            let dangling =
                w.len() <= 2 && w.starts_with(char::is_uppercase) && !NAME_SUFFIXES.contains(&w)
                    || PARTICLES.contains(&w);
            if c & PLACE != 0 {
                // `Aunt Bertha Inc`, `Mr Smith Street`: a company or a place
                return None;
            }
            if c & NOT != 0 || dangling {
                n -= 1;
            } else {
                break;
            }
        }
        let end = words[n - 1].1;
        let support = (0..n).any(|k| words[k].2 & (GIVEN | SURNAME | SHAPED) != 0);
        let unambiguous = n > 1 || words[0].2 & AMBIG == 0;
        let before = text[..s].trim_end();
        let raw_cue = prev_word(before);
        let cue = raw_cue.trim_end_matches([':', '=']);
        let prev = prev_word(&before[..before.len() - raw_cue.len()]);
        let weak = WEAK_CUES.iter().any(|w| cue.eq_ignore_ascii_case(w))
            && !prev.eq_ignore_ascii_case("name")
            && !STRONG_BY.iter().any(|w| prev.eq_ignore_ascii_case(w));
        match rule {
            // one word after a verb needs the lexicon (`named Timmie`, `says Hartvigsson`)
            "pii.person.verb" if n < 2 && !(support && unambiguous) => return None,
            "pii.person.title"
                if (cue == "Dr" || cue == "St") && prev.starts_with(char::is_uppercase) =>
            {
                return None;
            }
            _ => {}
        }
        if weak && !(support && unambiguous) {
            return None;
        }
        if rule != "pii.person.field" && house_number_follows(text, end) {
            return None;
        }
        Some(end)
    }

    /// Classifies a numeric token (digit groups with separators) into IP / card / SSN / phone.
    fn numbers(&self, text: &str, start: usize, end: usize, out: &mut Vec<Finding>) {
        let tok = &text[start..end];
        // chunks split at spaces that separate digit runs (at most 12)
        let mut chunks = [(0usize, 0usize); 12];
        let mut nc = 0;
        let tb = tok.as_bytes();
        let mut cs = 0;
        for (i, &c) in tb.iter().enumerate() {
            if c == b' '
                && i > 0
                && tb[i - 1].is_ascii_digit()
                && tb.get(i + 1).is_some_and(|n| n.is_ascii_digit())
            {
                let Some(slot) = chunks.get_mut(nc) else {
                    return;
                };
                *slot = (cs, i);
                nc += 1;
                cs = i + 1;
            }
        }
        let Some(slot) = chunks.get_mut(nc) else {
            return;
        };
        *slot = (cs, tb.len());
        nc += 1;
        let chunks = &chunks[..nc];
        // a card-shaped run that fails validation is a look-alike as a whole
        let n_digits = tb.iter().filter(|c| c.is_ascii_digit()).count();
        let card_shaped = chunks.len() >= 3
            && chunks
                .iter()
                .all(|&(a, b)| b - a == 4 || (b - a >= 3 && b == tb.len()))
            && (13..=19).contains(&n_digits);
        if card_shaped {
            let mut all_digits = [0u8; 19];
            for (d, &c) in all_digits
                .iter_mut()
                .zip(tb.iter().filter(|c| c.is_ascii_digit()))
            {
                *d = c;
            }
            let all_digits = &all_digits[..n_digits];
            if !(luhn(all_digits) && issuer_ok(all_digits)) {
                return;
            }
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
    let b = m.as_bytes();
    let Some(at) = b.iter().position(|&c| c == b'@') else {
        return false;
    };
    let (local, domain) = (&b[..at], &b[at + 1..]);
    let double_dot = |s: &[u8]| s.windows(2).any(|w| w == b"..");
    !local.is_empty()
        && !local.ends_with(b".")
        && !double_dot(local)
        && !double_dot(domain)
        && !domain.starts_with(b"-")
        && domain.contains(&b'.')
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
    let b = m.as_bytes();
    let cc = [
        b.first()?.to_ascii_uppercase(),
        b.get(1)?.to_ascii_uppercase(),
    ];
    let want = iban_length(std::str::from_utf8(&cc).ok()?)?;
    let mut chars = [0u8; 40];
    let mut n = 0;
    let mut end = 0;
    for (i, &c) in b.iter().enumerate() {
        if c == b' ' {
            continue;
        }
        if !c.is_ascii_alphanumeric() {
            return None; // not a base-36 digit: the checksum cannot be computed
        }
        *chars.get_mut(n)? = c.to_ascii_uppercase();
        n += 1;
        if n == want {
            end = i + 1;
            break;
        }
    }
    if n != want {
        return None;
    }
    // must end at a group boundary (end of match or a space follows)
    if end < m.len() && b[end] != b' ' {
        return None;
    }
    let chars = &chars[..n];
    let mut rem: u32 = 0;
    for &c in chars[4..].iter().chain(&chars[..4]) {
        let v = char::from(c).to_digit(36)?;
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

/// Whether `needle` occurs in `hay` (bytes).
fn has(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Most digit groups [`classify_number`] keeps (more only matter as a count).
const MAX_GROUPS: usize = 24;

/// Classifies one window of a numeric token. No allocation: digits, group lengths and
/// separators are summarised on the stack.
fn classify_number(
    w: &str,
    ctx: &str,
    at_start: bool,
) -> Option<(&'static str, &'static str, f32)> {
    // the first 19 digits (all that any check reads), and the digit count
    let mut digit_buf = [0u8; 19];
    let mut nd = 0usize;
    let mut same_digits = true;
    let mut group_buf = [0usize; MAX_GROUPS];
    let mut ng = 0usize;
    let mut group_over_8 = false;
    // separators: first one, whether all equal, which kinds occur
    let mut sep: Option<u8> = None;
    let mut uniform_sep = true;
    let mut all_dots = true;
    let mut has_dot = false;
    let mut has_slash = false;
    let mut run = 0;
    let mut ext = false;
    let mut paren = false;
    let plus = w.starts_with('+');
    let mut push_group = |run: usize, ng: &mut usize| {
        if let Some(g) = group_buf.get_mut(*ng) {
            *g = run;
        }
        *ng += 1;
        group_over_8 |= run > 8;
    };
    for &c in w.as_bytes() {
        if c.is_ascii_digit() {
            if !ext {
                if let Some(d) = digit_buf.get_mut(nd) {
                    *d = c;
                }
                same_digits &= nd == 0 || c == digit_buf[0];
                nd += 1;
            }
            run += 1;
        } else {
            if run > 0 {
                if !ext {
                    push_group(run, &mut ng);
                }
                run = 0;
            }
            match c {
                b'x' | b'e' => ext = true,
                b'(' | b')' => paren = true,
                b' ' | b'-' | b'.' | b'/' if !ext && ng > 0 => {
                    match sep {
                        None => sep = Some(c),
                        Some(f) => uniform_sep &= f == c,
                    }
                    all_dots &= c == b'.';
                    has_dot |= c == b'.';
                    has_slash |= c == b'/';
                }
                _ => {}
            }
        }
    }
    if run > 0 && !ext {
        push_group(run, &mut ng);
    }
    if nd == 0 {
        return None;
    }
    let digits = &digit_buf[..nd.min(digit_buf.len())];
    // group lengths as a slice when they all fit (else it equals no short pattern below)
    let groups: &[usize] = if ng <= MAX_GROUPS {
        &group_buf[..ng]
    } else {
        &[]
    };
    // IPv4
    if ng == 4 && all_dots && !plus && !paren && !ext {
        let ok = w.split('.').all(|o| {
            o.len() <= 3
                && o.parse::<u16>().is_ok_and(|v| v <= 255)
                && !(o.len() > 1 && o.starts_with('0'))
        });
        return ok.then_some(("IP_ADDRESS", "pii.ip.v4", 0.85));
    }
    if has_dot && !(groups == [3, 3, 4] && uniform_sep) {
        return None; // decimals, versions
    }
    if has_slash {
        return None; // dates, fractions
    }
    // credit card
    if !plus && !paren && !ext && (12..=19).contains(&nd) && uniform_sep && sep != Some(b'.') {
        let grouping_ok = ng == 1
            || groups.iter().take(ng - 1).all(|&g| g == 4)
            || groups == [4, 6, 5]
            || groups == [4, 6, 4];
        if grouping_ok && luhn(digits) && issuer_ok(digits) {
            return Some(("CREDIT_CARD", "pii.credit_card", 0.9));
        }
    }
    let mut ctx_buf = [0u8; 64];
    let ctx_l: &[u8] = match ctx_buf.get_mut(..ctx.len()) {
        Some(dst) => {
            for (d, c) in dst.iter_mut().zip(ctx.bytes()) {
                *d = c.to_ascii_lowercase();
            }
            dst
        }
        None => &[],
    };
    // SSN
    if !plus && !paren && !ext && nd == 9 {
        let shaped = (groups == [3, 2, 4] && uniform_sep && sep != Some(b'.'))
            || (groups == [9] && (has(ctx_l, b"ssn") || has(ctx_l, b"social security")));
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
    if same_digits {
        return None;
    }
    let phone_ctx = [
        "phone", "tel", "call", "mobile", "cell", "fax", "whatsapp", "sms", "text me", "number",
        "contact", "reach", "dial",
    ]
    .iter()
    .any(|k| has(ctx_l, k.as_bytes()));
    if plus {
        return (nd >= 8).then_some(("PHONE_NUMBER", "pii.phone.e164", 0.9));
    }
    if ng == 1 && !paren {
        if phone_ctx && (nd == 10 || nd == 11) && at_start {
            return Some(("PHONE_NUMBER", "pii.phone.context", 0.6));
        }
        return None;
    }
    // dates like 2024-01-31 or 31-01-2024, and times
    if ng == 3
        && matches!(sep, Some(b'-'))
        && (groups == [4, 2, 2]
            || groups == [2, 2, 4]
            || groups == [1, 2, 4]
            || groups == [2, 1, 4])
    {
        return None;
    }
    if group_over_8 {
        return None;
    }
    // two bare groups ("370 3911", "75534-030") are as often house or postal numbers
    if ng == 2 && !paren && !phone_ctx {
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

    /// Lexicon names skip spans of earlier PERSON findings, whether those arrive sorted by
    /// start (the rule pass: one walk over them) or not (every check looks at all of them).
    #[test]
    fn lexicon_names_skip_earlier_person_findings_in_any_order() {
        let p = pii_det();
        let text = "We met Margaret Atwood and later Laura T Sanchez in Lisbon";
        let span = |name: &str| {
            let s = text.find(name).unwrap();
            (s, s + name.len())
        };
        let (m, l) = (span("Margaret Atwood"), span("Laura T Sanchez"));
        let earlier = |spans: &[(usize, usize)]| {
            let mut out = Vec::new();
            for &(s, e) in spans {
                p.push(&mut out, "PERSON", "pii.person.self_intro", s, e, 0.9);
            }
            out
        };
        let names = |mut out: Vec<Finding>| {
            let first = 0;
            let before = out.len();
            p.lexicon_names(text, first, &mut out);
            out[before..]
                .iter()
                .map(|f| (f.start, f.end))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(earlier(&[])), vec![m, l]);
        assert_eq!(names(earlier(&[m])), vec![l]);
        assert_eq!(names(earlier(&[l])), vec![m]);
        assert_eq!(names(earlier(&[m, l])), vec![]);
        assert_eq!(names(earlier(&[l, m])), vec![]);
        // a finding inside a name's span hides it too
        let inner = (m.0 + 2, m.0 + 5);
        assert_eq!(names(earlier(&[l, inner])), vec![]);
        assert_eq!(names(earlier(&[inner])), vec![l]);
    }

    #[test]
    fn next_capital_agrees_with_a_byte_loop() {
        let alphabet: Vec<char> = "aAzZ@[`{ 09é’ÉĀ\u{80}".chars().collect();
        let mut x = 0x9B05_688C_2B3E_6C1Fu64;
        for _ in 0..2000 {
            let t = crate::test_rng::random_text(&mut x, &alphabet, 48);
            let b = t.as_bytes();
            for i in 0..=b.len() {
                let want = (i..b.len())
                    .find(|&k| b[k].is_ascii_uppercase() || b[k] >= 0xC0)
                    .unwrap_or(b.len());
                assert_eq!(next_capital(b, i), want, "{t:?} {i}");
            }
        }
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
    /// PERSON boundaries and techniques: `(text, exact span, rule)`.
    #[test]
    fn person_spans() {
        let cases: &[(&str, &str, &str)] = &[
            // possessive `'s` is not part of the name
            (
                "We discussed Margaret Atwood's new novel",
                "Margaret Atwood",
                "pii.person.lexicon",
            ),
            ("I'm Lucy's father", "Lucy", "pii.person.self_intro"),
            // middle initial with and without a dot
            (
                "The claim was filed by Laura T Sanchez today",
                "Laura T Sanchez",
                "pii.person.lexicon",
            ),
            (
                "The award goes to Bartek Z. Wnuk this year",
                "Bartek Z. Wnuk",
                "pii.person.lexicon",
            ),
            // apostrophes and inner capitals
            (
                "Please forward it to Patrick O'Brien tomorrow",
                "Patrick O'Brien",
                "pii.person.lexicon",
            ),
            (
                "Dr. Fiona McAllister will see you",
                "Fiona McAllister",
                "pii.person.title",
            ),
            (
                "ask ms. Ingrid Holm about it",
                "Ingrid Holm",
                "pii.person.title",
            ),
            // surname particles and suffixes
            (
                "The paintings of Peter van der Linden are here",
                "Peter van der Linden",
                "pii.person.lexicon",
            ),
            (
                "Dear Samuel Lee III, welcome",
                "Samuel Lee III",
                "pii.person.salutation",
            ),
            (
                "Robert Downey Jr. starred in it",
                "Robert Downey Jr.",
                "pii.person.lexicon",
            ),
            // address words after a title are cut
            (
                "Mrs. Daniela Novak Apt. 4, Brno",
                "Daniela Novak",
                "pii.person.title",
            ),
            // surname shapes from many languages (accents folded or not)
            (
                "Tickets were booked for Tomasz Wierzbicki and family",
                "Tomasz Wierzbicki",
                "pii.person.surname_shape",
            ),
            (
                "Our guide was Zdravko Petrović last week",
                "Zdravko Petrović",
                "pii.person.surname_shape",
            ),
            (
                "Notes from Halla Jonsdottir were attached",
                "Halla Jonsdottir",
                "pii.person.surname_shape",
            ),
            // a role word before the name is not part of it
            (
                "Director Samuel Ortiz approved it",
                "Samuel Ortiz",
                "pii.person.lexicon",
            ),
            // a given name at a sentence start before a verb, comma or colon
            (
                "Rebecca said the build is green.",
                "Rebecca",
                "pii.person.lexicon_given",
            ),
            (
                "Olivia: can you check the logs?",
                "Olivia",
                "pii.person.lexicon_given",
            ),
            (
                "Thomas, could you review this?",
                "Thomas",
                "pii.person.lexicon_given",
            ),
            // questions, family words, reported speech, personal cues
            (
                "What is your full name? Teodor Wasilewski",
                "Teodor Wasilewski",
                "pii.person.name_question",
            ),
            (
                "I need to add my kid Rafael to the plan",
                "Rafael",
                "pii.person.verb",
            ),
            (
                "\"We ship on Friday,\" says Bergsson.",
                "Bergsson",
                "pii.person.cue_word",
            ),
            (
                "\"It works,\" said Ikaika Kahananui",
                "Ikaika Kahananui",
                "pii.person.cue_word",
            ),
            (
                "I'm Oskar Petersson, the new analyst",
                "Oskar Petersson",
                "pii.person.self_intro",
            ),
            (
                "the booking is under Nadia Okafor",
                "Nadia Okafor",
                "pii.person.lexicon",
            ),
            (
                "Her maiden name is Lindqvist",
                "Lindqvist",
                "pii.person.self_intro",
            ),
            (
                "From: Helen Carter\nSubject: invoice",
                "Helen Carter",
                "pii.person.field",
            ),
            // two unknown words before a verb only people do
            (
                "Kwame Mensah lives in Accra now",
                "Kwame Mensah",
                "pii.person.verb_after",
            ),
        ];
        let mut bad = Vec::new();
        for (text, span, rule) in cases {
            let got = scan(text);
            let persons: Vec<_> = got.iter().filter(|g| g.1 == "PERSON").collect();
            if persons != [&((*span).to_owned(), "PERSON", *rule)] {
                bad.push(format!("text {text:?}: got {got:?}"));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    /// Capitalised words that are not people: no PERSON finding.
    #[test]
    fn person_look_alikes() {
        let cases: &[&str] = &[
            // addresses: after a number or a street word, before a house number
            "The shop is at Rua Augusta 120 in Lisbon",
            "Send it to 48 Victor Hugo, Lyon",
            "He lives on Joaquin Suarez 2906.",
            "Meet me at Via Garibaldi 12, Milano",
            // places named like people, and places after prepositions
            "We stayed in Florence and Lucca",
            "I'm flying from Austin to Denver",
            "She grew up in Dolores, near the coast",
            "the hotel is in Villafranca del Bierzo",
            "Alice Springs is hot in summer",
            // firms named after people, and surname lists
            "Lopez, Santos and Coleman is a law firm",
            "I interned at Morgan Stanley last year",
            "I work for Aunt Bertha Inc these days",
            // assistants, products and teams
            "Thanks Claude, that helped",
            "Hey Alexa, play some jazz",
            "To: Marketing Team",
            "Posted by Google Cloud Tools",
            "this is Visual Studio Code",
            "I'm Super Excited about this",
            // capitalised sentence starts, months, song titles
            "Frank feedback helps everyone.",
            "May we start now?",
            "The Princess Royal arrived today",
            "Carry Me Back To Virginia is an old song",
            "Southern Poland is lovely in June",
            "We met on Labor Day",
            // street "Dr" is not a title
            "Ship to 12 Elm Dr Westfield Heights",
            "a file called Report",
            "I use Julia and Python for this",
        ];
        let bad: Vec<String> = cases
            .iter()
            .filter_map(|t| {
                let got = scan(t);
                got.iter()
                    .any(|g| g.1 == "PERSON")
                    .then(|| format!("text {t:?}: got {got:?}"))
            })
            .collect();
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    #[test]
    fn name_word_shapes() {
        let cases: &[(&str, Option<(usize, bool)>)] = &[
            ("Maria", Some((5, false))),
            ("O'Neil x", Some((6, false))),
            ("McCray", Some((6, false))),
            ("Smith-Jones", Some((11, false))),
            ("Østrem", Some((7, false))),
            ("Amanda's", Some((6, true))),
            ("Amanda’s", Some((6, true))),
            ("PayPal", None),
            ("USA", None),
            ("Don't", None),
            ("Mp3", None),
            ("A", None),
        ];
        for (w, want) in cases {
            assert_eq!(name_word(w, 0), *want, "{w:?}");
        }
        // glued to a letter or a hyphen before it
        assert_eq!(name_word("ex-Zombie", 3), None);
        assert_eq!(name_word("xMaria", 1), None);
    }
}

/// The fast paths of the name lexicon agree with the general ones.
#[cfg(test)]
mod fast_path_tests {
    use super::*;

    #[test]
    fn ascii_class_agrees_with_the_general_lookup() {
        let sets = NameSets::new();
        let mut words: Vec<String> = GIVEN_NAMES
            .lines()
            .chain(SURNAMES.lines())
            .take(4000)
            .map(str::to_owned)
            .collect();
        words.extend(
            [
                "",
                "The",
                "PARIS",
                "mcDonald",
                "Kowalska",
                "Ivanova",
                "Petrov",
                "Jonsson",
                "Smithski",
                "x",
                "Zzzz",
                "Hello",
                "Nguyen",
                "Andersson",
                "Jovanović",
            ]
            .map(str::to_owned),
        );
        words.push("A".repeat(48));
        words.push("Abcdefghijklmnopqrstuvwxyz".repeat(2));
        for w in &words {
            for v in [w.clone(), w.to_uppercase(), w.to_lowercase()] {
                assert_eq!(sets.class(&v), sets.class_general(&v), "word {v:?}");
            }
        }
    }

    #[test]
    fn ascii_name_word_agrees_with_the_character_path() {
        let texts = [
            "Maria said",
            "McCray's",
            "O'Brien-Smith went",
            "PayPal",
            "DeLuca",
            "MacDonald",
            "Fitz",
            "a Maria",
            "x.Maria",
            "-Anna",
            "Anna-",
            "Anna-Lena",
            "Anna-lena",
            "Ann's",
            "Ann'sx",
            "Ann'S",
            "O'Neil",
            "I'm",
            "AB",
            "A",
            "Ab1",
            "Ab_",
            "Ab'",
            "L'Oreal",
            "Jean-Luc Picard",
            "ÉMILE",
            "Zoë",
            "Ana’s",
            "Élodie said",
            "van der Berg",
            "the Smiths",
            "(Maria)",
            "\"Maria\"",
            "Maria@",
            "Ma",
            "Mc",
            "McC",
            "Ab'Cd",
        ];
        for t in texts {
            for i in 0..=t.len() {
                if let Some(r) = name_word_ascii(t, i) {
                    assert_eq!(r, name_word_chars(t, i), "text {t:?} at {i}");
                }
                assert_eq!(name_word(t, i), name_word_chars(t, i), "text {t:?} at {i}");
            }
        }
    }

    #[test]
    fn surname_endings_by_last_byte_agree_with_the_list() {
        let words = [
            "kowalska",
            "ivanova",
            "petrov",
            "jovanović",
            "jónsdóttir",
            "nowicki",
            "andersson",
            "smith",
            "shevchenko",
            "beridze",
            "ov",
            "ova",
            "papadopoulos",
            "virtanen",
            "ski",
        ];
        for w in words {
            let b = w.as_bytes();
            let want = b.last().is_some_and(|&last| {
                SURNAME_ENDINGS.iter().any(|&(e, min)| {
                    b.len() >= min
                        && e.as_bytes().last() == Some(&last)
                        && b.ends_with(e.as_bytes())
                })
            });
            assert_eq!(surname_shaped(b), want, "word {w:?}");
        }
    }
}
