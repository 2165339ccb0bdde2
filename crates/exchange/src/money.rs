use serde::{Deserialize, Serialize};

/// An exact amount of US dollars, held as an integer number of picodollars (10⁻¹² USD).
///
/// A price "per 1M tokens" in micro-dollars is exactly a price per token in picodollars, so
/// cost arithmetic is integer multiplication: no float drift, no rounding per event.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UsdAmount {
    /// Picodollars.
    pub picodollars: u128,
}

/// Why a decimal string is not a valid USD amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsdParseError {
    /// Not a plain non-negative decimal number.
    #[error("`{0}` is not a non-negative decimal amount of USD")]
    Invalid(String),
    /// More than 12 digits after the decimal point.
    #[error("`{0}` has more than 12 decimal places")]
    TooPrecise(String),
    /// Too large.
    #[error("`{0}` is too large")]
    TooLarge(String),
}

const PICO: u128 = 1_000_000_000_000;

impl UsdAmount {
    /// Zero dollars.
    pub const ZERO: UsdAmount = UsdAmount { picodollars: 0 };

    /// From picodollars.
    pub const fn from_picodollars(p: u128) -> Self {
        UsdAmount { picodollars: p }
    }

    /// Parses `"5"`, `"0.50"`, `"2.5e-3"` is not accepted: plain decimals only.
    pub fn parse(s: &str) -> Result<Self, UsdParseError> {
        let t = s.trim();
        let (int, frac) = match t.split_once('.') {
            Some((i, f)) => (i, f),
            None => (t, ""),
        };
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(UsdParseError::Invalid(s.to_owned()));
        }
        if frac.len() > 12 {
            return Err(UsdParseError::TooPrecise(s.to_owned()));
        }
        let int_v: u128 = if int.is_empty() {
            0
        } else {
            int.parse()
                .map_err(|_| UsdParseError::TooLarge(s.to_owned()))?
        };
        let mut frac_v: u128 = 0;
        for (i, b) in frac.bytes().enumerate() {
            frac_v += u128::from(b - b'0') * 10u128.pow(11 - i as u32);
        }
        int_v
            .checked_mul(PICO)
            .and_then(|v| v.checked_add(frac_v))
            .map(UsdAmount::from_picodollars)
            .ok_or_else(|| UsdParseError::TooLarge(s.to_owned()))
    }

    /// Saturating addition.
    pub fn saturating_add(self, other: UsdAmount) -> UsdAmount {
        UsdAmount::from_picodollars(self.picodollars.saturating_add(other.picodollars))
    }

    /// Saturating subtraction.
    pub fn saturating_sub(self, other: UsdAmount) -> UsdAmount {
        UsdAmount::from_picodollars(self.picodollars.saturating_sub(other.picodollars))
    }
}

impl std::fmt::Display for UsdAmount {
    /// Exact decimal with trailing zeros trimmed to at least 2 places: `0.000125`, `5.00`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let int = self.picodollars / PICO;
        let frac = self.picodollars % PICO;
        let mut s = format!("{frac:012}");
        while s.len() > 2 && s.ends_with('0') {
            s.pop();
        }
        write!(f, "{int}.{s}")
    }
}

impl std::str::FromStr for UsdAmount {
    type Err = UsdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UsdAmount::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exactly() {
        let cases = [
            ("5", "5.00"),
            ("0.5", "0.50"),
            ("0.000125", "0.000125"),
            ("2.50", "2.50"),
            (".75", "0.75"),
        ];
        for (input, shown) in cases {
            let v = UsdAmount::parse(input).unwrap_or_else(|e| unreachable!("{e}"));
            assert_eq!(v.to_string(), shown, "{input}");
        }
        assert_eq!(
            UsdAmount::parse("0.000000000001").map(|v| v.picodollars),
            Ok(1)
        );
    }

    #[test]
    fn rejects_bad_amounts() {
        for bad in ["", "-1", "1e3", "abc", "1.2.3", "."] {
            assert!(UsdAmount::parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            UsdAmount::parse("0.0000000000001"),
            Err(UsdParseError::TooPrecise(_))
        ));
    }
}
