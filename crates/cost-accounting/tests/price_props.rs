#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cost_accounting::{Price, PriceTable};
use exchange::{TokenUsage, UsdAmount};
use proptest::prelude::*;

fn usage(prompt: u64, cached: u64, completion: u64) -> TokenUsage {
    TokenUsage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        cached_tokens: cached,
        estimated: false,
    }
}

fn price() -> impl Strategy<Value = Price> {
    // Up to 1000 USD per 1M tokens, cached never above input (as in every real table).
    (0u128..=1_000_000_000, 0u128..=1_000_000_000, 0u128..=1_000).prop_map(
        |(input, output, pct)| Price {
            input,
            output,
            cached_input: input * (pct % 101) / 100,
        },
    )
}

proptest! {
    #[test]
    fn cost_is_monotonic_in_every_kind_of_token(
        p in price(),
        prompt in 0u64..10_000_000,
        cached_frac in 0u64..=100,
        completion in 0u64..10_000_000,
        more_prompt in 0u64..1_000_000,
        more_completion in 0u64..1_000_000,
    ) {
        let cached = prompt * cached_frac / 100;
        let base = p.cost(&usage(prompt, cached, completion));
        prop_assert!(p.cost(&usage(prompt + more_prompt, cached, completion)) >= base);
        prop_assert!(p.cost(&usage(prompt, cached, completion + more_completion)) >= base);
        // Fewer of the prompt tokens cached never makes it cheaper.
        prop_assert!(p.cost(&usage(prompt, cached / 2, completion)) >= base);
    }

    #[test]
    fn cost_never_overflows(
        input in any::<u64>(), output in any::<u64>(), cached_input in any::<u64>(),
        prompt in any::<u64>(), cached in any::<u64>(), completion in any::<u64>(),
    ) {
        let p = Price { input: input.into(), output: output.into(), cached_input: cached_input.into() };
        let c = p.cost(&usage(prompt, cached, completion));
        let uncached = prompt - cached.min(prompt);
        prop_assert!(c.picodollars >= u128::from(completion) * u128::from(output));
        prop_assert!(c.picodollars >= u128::from(uncached) * u128::from(input));
    }

    #[test]
    fn summed_event_costs_equal_the_cost_of_summed_usage(
        p in price(),
        events in proptest::collection::vec((0u64..100_000, 0u64..=100, 0u64..100_000), 1..200),
    ) {
        let mut total = UsdAmount::ZERO;
        let (mut uncached, mut cached_sum, mut completion) = (0u128, 0u128, 0u128);
        for (prompt, frac, out) in &events {
            let cached = prompt * frac / 100;
            total = total.saturating_add(p.cost(&usage(*prompt, cached, *out)));
            uncached += u128::from(prompt - cached);
            cached_sum += u128::from(cached);
            completion += u128::from(*out);
        }
        let expected = uncached * p.input + cached_sum * p.cached_input + completion * p.output;
        prop_assert_eq!(total.picodollars, expected);
    }
}

#[test]
fn a_million_events_do_not_drift() {
    let table = PriceTable::bundled().unwrap();
    let p = table.lookup("gpt-4o-mini").unwrap().price;
    let one = p.cost(&usage(1234, 100, 567));
    // 1134 × 0.15e-6 + 100 × 0.075e-6 + 567 × 0.6e-6 = 0.0001701 + 0.0000075 + 0.0003402
    assert_eq!(one.to_string(), "0.0005178");
    let mut total = UsdAmount::ZERO;
    for _ in 0..1_000_000 {
        total = total.saturating_add(p.cost(&usage(1234, 100, 567)));
    }
    assert_eq!(total.to_string(), "517.80");
    // A float accumulator drifts on the same sum; the exact one does not.
    let mut f = 0.0f64;
    for _ in 0..1_000_000 {
        f += 0.0005178;
    }
    assert_ne!(f, 517.8);
}
