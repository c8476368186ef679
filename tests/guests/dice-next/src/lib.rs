//! The dice guest's next build: another tag, and a `kv.get` before it publishes, so a replay of
//! a roll recorded with `dice` shows where the two builds part.

const TAG: &str = "v2";
const ASKS_FIRST: bool = true;

include!("../../dice/src/roll.rs");
