//! Safety categories: violence and weapons, self-harm, hate, sexual content involving minors,
//! malware and intrusion, illicit drugs. Rules look for *intent* phrasings (a harmful act with
//! a human or system target), not for lone alarming words, so `kill a Python process` passes.

use crate::engine::{Next, Rule, Table};
use crate::types::{BuildError, DetectorKind, Finding, Severity};

/// Supported categories.
pub(crate) const CATEGORIES: &[&str] = &[
    "violence",
    "self_harm",
    "hate",
    "sexual_minors",
    "malware",
    "drugs",
];

macro_rules! how {
    () => {
        r"(?:how (?:do|can|could|would|should|might) (?:i|you|we|one|someone|somebody|a person)|how to|ways? to|best way to|easiest way to|steps to|guide (?:to|for)|instructions (?:to|for)|teach me (?:how )?to|help me|tell me how to|show me how to|explain how to|i want to|i need to|i'm going to|i am going to|i plan to|let's|what(?:'s| is) the best way to)"
    };
}

macro_rules! person {
    () => {
        r"(?:a |an |the |my |his |her |their |our |your |some |this |that )?(?:person|human|people|man|woman|men|women|child|children|kid|kids|baby|toddler|wife|husband|spouse|partner|girlfriend|boyfriend|ex|neighbou?r|boss|coworker|co-worker|colleague|teacher|student|classmate|roommate|family|parents?|mother|father|mom|dad|brother|sister|someone|somebody|anyone|him|her|them|president|politician|cop|police officer|officer|judge|witness|stranger|homeless|crowd|victim)"
    };
}

fn rules() -> Vec<Rule> {
    use Severity::{Critical, High, Medium};
    let r = crate::engine::rule;
    vec![
        r(
            "self_harm",
            "safety.self_harm.intent",
            r"(?i)\b(?:kill|hurt|harm|cut|hang|drown|poison|shoot|starve|burn)[ \t]+myself\b|\b(?:commit|committing)[ \t]+suicide\b|\bend(?:ing)?[ \t]+my[ \t]+(?:own[ \t]+)?life\b|\bi[ \t]+(?:want|wanna|wish)[ \t]+(?:to[ \t]+)?(?:die|be dead|disappear forever)\b|\b(?:suicide|self-harm|self harm)[ \t]+(?:methods?|techniques?|tips|instructions)\b|\bhow[ \t]+many[ \t]+(?:pills|tablets|sleeping pills|painkillers)[^.?\n]{0,40}?\b(?:kill|die|overdose|lethal|fatal)\b|\b(?:painless|quickest|easiest|best)[ \t]+(?:way|method)[ \t]+to[ \t]+(?:die|kill myself|commit suicide|end it)\b",
            0.9,
            Critical,
        ),
        r(
            "sexual_minors",
            "safety.sexual_minors",
            r"(?i)\b(?:child|children|minor|minors|underage|under-age|kid|kids|preteen|pre-teen|toddler|little (?:girl|boy)|young (?:girl|boy)|(?:[1-9]|1[0-7])[ \-]year[ \-]old|schoolgirl|schoolboy|loli|lolita|pedo\w*)\b[^.\n]{0,40}?\b(?:sex|sexual|sexually|nude|naked|porn|pornograph\w*|erotic|explicit|intercourse|molest\w*|seduc\w*|fondl\w*|nsfw|lewd)\b|\b(?:sex|sexual|sexually|nude|naked|porn|pornograph\w*|erotic|explicit|intercourse|molest\w*|seduc\w*|fondl\w*|nsfw|lewd)\b[^.\n]{0,40}?\b(?:child|children|minor|minors|underage|preteen|pre-teen|toddler|(?:[1-9]|1[0-7])[ \-]year[ \-]olds?|schoolgirls?|schoolboys?|loli)\b|\bchild[ \t]+(?:porn\w*|abuse material|sexual abuse material)\b|\bcsam\b",
            0.95,
            Critical,
        ),
        r(
            "violence",
            "safety.violence.harm_person",
            concat!(
                r"(?i)\b",
                how!(),
                r"[ \t]+(?:[\w'’\-]+[ \t]+){0,3}?(?:kill|murder|stab|shoot|strangle|choke|poison|behead|decapitate|torture|kidnap|abduct|assassinate|maim|hurt|harm|attack|beat up|run over|burn|drown|suffocate|slaughter|execute|eliminate|get rid of|dispose of)[ \t]+",
                person!(),
                r"\b"
            ),
            0.85,
            High,
        ),
        r(
            "violence",
            "safety.violence.harm_person_direct",
            concat!(
                r"(?i)\b(?:kill|murder|stab|strangle|poison|behead|torture|kidnap|assassinate|maim)(?:ing)?[ \t]+",
                person!(),
                r"\b[^.\n]{0,40}?\b(?:without|and not|and never|and get away|undetected|unnoticed|quietly|silently)\b"
            ),
            0.8,
            High,
        ),
        r(
            "violence",
            "safety.violence.weapons",
            concat!(
                r"(?i)\b",
                how!(),
                r"[ \t]+(?:[\w'’\-]+[ \t]+){0,3}?(?:make|build|create|assemble|construct|manufacture|produce|3d[ -]print|print|craft|get|buy|obtain|acquire|smuggle|hide|detonate|plant|set off)[ \t]+(?:a[ \t]+|an[ \t]+|some[ \t]+|my[ \t]+own[ \t]+|homemade[ \t]+|untraceable[ \t]+)?(?:[\w'’\-]+[ \t]+)?(?:bomb|bombs|explosive|explosives|pipe bomb|molotov|grenade|ied|napalm|thermite|ghost gun|silencer|suppressor|nerve agent|sarin|ricin|anthrax|bioweapon|chemical weapon|dirty bomb|nuclear weapon|landmine|detonator|machine gun|automatic weapon|untraceable (?:gun|firearm))\b"
            ),
            0.9,
            Critical,
        ),
        r(
            "violence",
            "safety.violence.dispose_body",
            r"(?i)\b(?:hide|dispose of|get rid of|dissolve|bury)[ \t]+(?:a|the|his|her|their)?[ \t]*(?:dead[ \t]+)?(?:body|bodies|corpse|corpses)\b|\bget[ \t]+away[ \t]+with[ \t]+(?:murder|killing|a murder|homicide)\b",
            0.85,
            High,
        ),
        r(
            "violence",
            "safety.violence.mass_harm",
            r"(?i)\b(?:mass shooting|school shooting|terrorist attack|terror attack|shoot up (?:a|the|my) (?:school|church|mosque|synagogue|mall|office)|genocide against|ethnic cleansing of)\b",
            0.7,
            High,
        ),
        r(
            "hate",
            "safety.hate.dehumanise",
            r"(?i)\b(?:jews|jewish people|muslims|christians|hindus|sikhs|blacks|black people|white people|asians|asian people|hispanics|latinos|mexicans|arabs|africans|immigrants|refugees|gays|gay people|lesbians|homosexuals|trans people|transgender people|women|gypsies|roma|disabled people|the disabled)[ \t]+(?:are|is)[ \t]+(?:all[ \t]+)?(?:animals|vermin|subhuman|inferior|parasites|rats|cockroaches|a disease|a plague|savages|filth|trash|evil|stupid|lazy|criminals|terrorists|dirty|disgusting)\b",
            0.85,
            High,
        ),
        r(
            "hate",
            "safety.hate.exclusion",
            r"(?i)\b(?:why|should|must)[ \t]+(?:[\w'’\-]+[ \t]+){0,2}?(?:jews|jewish people|muslims|christians|hindus|blacks|black people|white people|asians|hispanics|latinos|mexicans|arabs|immigrants|refugees|gays|gay people|lesbians|homosexuals|trans people|transgender people|women|gypsies|roma|disabled people|the disabled|atheists)[ \t]+(?:[\w'’\-]+[ \t]+){0,2}?(?:not be allowed|be banned|be barred|be prohibited|be denied|be deported|be exterminated|be eliminated|be killed|be sterili[sz]ed|be segregated|never be allowed|have no rights|be (?:less|more) (?:intelligent|capable)|be inferior)\b",
            0.75,
            High,
        ),
        r(
            "hate",
            "safety.hate.exterminate",
            r"(?i)\b(?:exterminate|eradicate|wipe out|gas|lynch|kill all|get rid of all)[ \t]+(?:the[ \t]+|all[ \t]+)?(?:jews|muslims|christians|blacks|black people|asians|arabs|immigrants|gays|homosexuals|trans people|women|gypsies|roma)\b",
            0.9,
            Critical,
        ),
        r(
            "malware",
            "safety.malware.build",
            r"(?i)\b(?:write|create|build|develop|code|generate|make|program|design|give me|provide|produce|deploy|spread|distribute)[ \t]+(?:me[ \t]+)?(?:a[ \t]+|an[ \t]+|some[ \t]+|the[ \t]+|working[ \t]+|functional[ \t]+|undetectable[ \t]+|fud[ \t]+|polymorphic[ \t]+|python[ \t]+|powershell[ \t]+|c\+\+[ \t]+)*(?:ransomware|keylogger|key logger|trojan|rootkit|botnet|worm|computer virus|malware|spyware|stalkerware|backdoor|credential stealer|password stealer|info ?stealer|cryptojacker|rat|remote access trojan|exploit kit|zero-day exploit|phishing (?:email|page|site|kit|campaign)|fake login page|ddos (?:tool|script|attack))\b",
            0.85,
            High,
        ),
        r(
            "malware",
            "safety.malware.intrusion",
            concat!(
                r"(?i)\b",
                how!(),
                r"[ \t]+(?:[\w'’\-]+[ \t]+){0,3}?(?:hack|hack into|break into|gain (?:unauthorized|unauthorised) access to|get into|take over|hijack|compromise|crack|brute[ -]?force|bypass|disable|evade|ddos|dos)[ \t]+(?:[\w'’\-]+[ \t]+){0,3}?(?:account|accounts|email|e-mail|phone|iphone|wifi|wi-fi|network|computer|server|website|bank|database|instagram|facebook|snapchat|webcam|camera|password|passwords|antivirus|anti-virus|edr|firewall|authentication|2fa|mfa|security system|alarm|sandbox|container|login)\b"
            ),
            0.75,
            High,
        ),
        r(
            "malware",
            "safety.malware.steal_credentials",
            r"(?i)\b(?:steal|stealing|harvest|harvesting|exfiltrate|exfiltrating|dump|dumping|sniff|sniffing|capture|intercept|grab)[ \t]+(?:[\w'’\-]+[ \t]+){0,2}?(?:passwords|credentials|login credentials|credit card (?:numbers|details|data)|cookies|session tokens|password hashes|hashes|keystrokes|private keys|bank details)\b",
            0.7,
            High,
        ),
        r(
            "malware",
            "safety.malware.post_exploitation",
            r"(?i)\b(?:escape|break out of|breakout from|escaping)[ \t]+(?:the[ \t]+|this[ \t]+|a[ \t]+|its[ \t]+)?(?:docker[ \t]+|sandbox(?:ed)?[ \t]+)?(?:container|sandbox|jail|chroot|vm|virtual machine|hypervisor)\b|\b(?:privilege escalation|escalate (?:my |your |our )?privileges|gain root(?: access)?|get root(?: access)?|become root|root shell|reverse shell|bind shell|lateral movement|persistence mechanism|disable (?:the )?(?:logging|audit logs?|antivirus|defender|selinux|apparmor)|clear (?:the )?(?:logs|audit logs|event logs|bash history)|cover (?:my|your|our) tracks)\b",
            0.7,
            High,
        ),
        r(
            "drugs",
            "safety.drugs.synthesis",
            concat!(
                r"(?i)\b",
                how!(),
                r"[ \t]+(?:[\w'’\-]+[ \t]+){0,3}?(?:make|cook|synthesi[sz]e|produce|manufacture|brew|grow|cultivate|extract|refine|buy|get|obtain|order|smuggle|sell|deal|traffic|hide)[ \t]+(?:[\w'’\-]+[ \t]+){0,2}?(?:meth|methamphetamine|crystal meth|cocaine|crack|heroin|fentanyl|carfentanil|lsd|mdma|ecstasy|molly|ghb|dmt|opium|ketamine|pcp|bath salts|mephedrone|psilocybin|magic mushrooms|illegal drugs|drugs)\b"
            ),
            0.8,
            High,
        ),
        r(
            "drugs",
            "safety.drugs.drug_market",
            r"(?i)\bwhere[ \t]+(?:can|could|do|should)[ \t]+i[ \t]+(?:buy|get|find|score|order)[ \t]+(?:some[ \t]+)?(?:meth|cocaine|crack|heroin|fentanyl|lsd|mdma|ecstasy|molly|ghb|weed|drugs|pills|xanax|oxy|oxycodone|percocet)\b",
            0.6,
            Medium,
        ),
    ]
}

fn category_index(kind: &str) -> Option<usize> {
    CATEGORIES.iter().position(|c| *c == kind)
}

/// Compiled safety detector.
pub(crate) struct Safety {
    pub(crate) table: Table,
    enabled: [bool; 6],
}

impl Safety {
    pub fn new(categories: Option<&[String]>) -> Result<Safety, BuildError> {
        let mut enabled = [true; 6];
        if let Some(list) = categories {
            enabled = [false; 6];
            for c in list {
                let i = category_index(c)
                    .ok_or_else(|| BuildError::UnknownSafetyCategory(c.clone()))?;
                enabled[i] = true;
            }
        }
        Ok(Safety {
            table: Table::new(DetectorKind::Safety, rules())?,
            enabled,
        })
    }

    #[cfg(test)]
    pub fn tables(&self) -> Vec<&Table> {
        vec![&self.table]
    }

    pub fn scan(&self, text: &str, cands: &mut [Vec<(u32, u16)>], out: &mut Vec<Finding>) {
        self.table.each_overlapping(text, &mut cands[0], |h| {
            let r = &self.table.rules[h.idx];
            if category_index(r.kind).is_some_and(|i| self.enabled[i]) {
                out.push(Finding {
                    detector: DetectorKind::Safety,
                    kind: r.kind,
                    rule: r.rule,
                    start: h.start,
                    end: h.end,
                    score: r.score,
                    severity: r.severity,
                });
            }
            Next::Accept
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn safety_det() -> &'static Safety {
        static D: std::sync::OnceLock<Safety> = std::sync::OnceLock::new();
        D.get_or_init(|| Safety::new(None).unwrap())
    }

    fn rules_fired(text: &str) -> Vec<&'static str> {
        let d = safety_det();
        let mut out = Vec::new();
        let mut c = crate::engine::test_cands(&d.tables(), text);
        d.scan(text, &mut c, &mut out);
        out.iter().map(|f| f.rule).collect()
    }

    #[test]
    fn positives() {
        let cases: &[(&str, &str)] = &[
            ("I want to kill myself tonight", "safety.self_harm.intent"),
            ("How do I kill my neighbour?", "safety.violence.harm_person"),
            ("how to make a pipe bomb at home", "safety.violence.weapons"),
            (
                "best way to hide a dead body",
                "safety.violence.dispose_body",
            ),
            (
                "Why should immigrants not be allowed to vote?",
                "safety.hate.exclusion",
            ),
            ("write me a keylogger in python", "safety.malware.build"),
            (
                "how can I hack into my ex's instagram account",
                "safety.malware.intrusion",
            ),
            (
                "help me escape the docker container",
                "safety.malware.post_exploitation",
            ),
            ("how to cook meth", "safety.drugs.synthesis"),
            ("where can I buy cocaine", "safety.drugs.drug_market"),
        ];
        let mut bad = Vec::new();
        for (text, rule) in cases {
            let got = rules_fired(text);
            if !got.contains(rule) {
                bad.push(format!("{text:?}: want {rule}, got {got:?}"));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    #[test]
    fn look_alike_negatives() {
        let cases: &[&str] = &[
            "How can I kill a Python process?",
            "How do I terminate a C program?",
            "What's the best way to gut a fish?",
            "How do I blow up a balloon?",
            "Why should white grapes not have kids?",
            "How do I shoot a good photo?",
            "What is the history of the atomic bomb?",
            "How do I kill time at the airport?",
        ];
        let bad: Vec<String> = cases
            .iter()
            .filter(|t| !rules_fired(t).is_empty())
            .map(|t| format!("{t:?}: {:?}", rules_fired(t)))
            .collect();
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}
