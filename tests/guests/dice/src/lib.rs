//! Rolls: reads the wall clock and secure random, counts in kv, publishes the roll. Replaying a
//! recorded roll must give the same time, id and count.

const TAG: &str = "v1";
const ASKS_FIRST: bool = false;

include!("roll.rs");
