//! Cost accounting: prices, attribution, budgets and rate limits.
