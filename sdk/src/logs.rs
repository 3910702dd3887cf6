//! Bounded log lines: refusals are sampled per reason (so a flood of bad
//! tokens cannot flood the log) and counted, and claim values printed in a
//! line are clipped (a token with 331 audiences must not print a 4 KB line).
//!
//! Why not `governor`: the keys are a fixed set of ~20 `&'static str` error
//! names, and the line that ends a quiet period must say how many lines were
//! dropped (`suppressed=`), which a GCRA limiter does not report. A fixed
//! window per reason behind one mutex, touched only on the refusal path, is
//! all this needs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Claim values in log lines are cut to this many bytes (plus a marker).
pub const MAX_LOGGED_CLAIM_BYTES: usize = 200;

/// How many lines per reason a [`LogSampler`] lets through per window, by default.
pub const DEFAULT_LINES_PER_WINDOW: u32 = 10;
/// The window of a [`LogSampler`], in seconds, by default.
pub const DEFAULT_WINDOW_SECS: i64 = 60;

/// Per reason: at most `per_window` lines every `window` seconds; every
/// event is counted whether or not it was logged.
#[derive(Debug)]
pub(crate) struct LogSampler {
    per_window: u32,
    window: i64,
    slots: Mutex<HashMap<&'static str, Slot>>,
}

#[derive(Debug, Default)]
struct Slot {
    window_start: i64,
    emitted: u32,
    /// Dropped since the last line that was let through.
    suppressed: u64,
    total: u64,
}

/// Whether to print this event's line; `suppressed` lines of the same reason
/// were dropped since the previous one and belong in this line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sample {
    Log { suppressed: u64 },
    Skip,
}

impl Default for LogSampler {
    fn default() -> Self {
        Self::new(DEFAULT_LINES_PER_WINDOW, DEFAULT_WINDOW_SECS)
    }
}

impl LogSampler {
    pub(crate) fn new(per_window: u32, window: i64) -> Self {
        LogSampler { per_window, window: window.max(1), slots: Mutex::new(HashMap::new()) }
    }

    /// Counts one event of `reason` at `now` (Unix seconds).
    pub(crate) fn sample(&self, reason: &'static str, now: i64) -> Sample {
        let mut slots = match self.slots.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let slot = slots.entry(reason).or_default();
        slot.total = slot.total.saturating_add(1);
        if now.saturating_sub(slot.window_start) >= self.window {
            slot.window_start = now;
            slot.emitted = 0;
        }
        if slot.emitted < self.per_window {
            slot.emitted += 1;
            let suppressed = std::mem::take(&mut slot.suppressed);
            Sample::Log { suppressed }
        } else {
            slot.suppressed = slot.suppressed.saturating_add(1);
            Sample::Skip
        }
    }

    /// Events per reason since start, logged or not.
    pub(crate) fn counts(&self) -> BTreeMap<String, u64> {
        let slots = match self.slots.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        slots.iter().map(|(k, v)| ((*k).to_owned(), v.total)).collect()
    }
}

/// `s` cut to at most `max` bytes on a char boundary, with a marker saying
/// how much was left out.
pub(crate) fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}...(+{} bytes)", &s[..end], s.len() - end))
}

/// The `aud` field of a log line: the audiences space-separated, clipped.
pub(crate) fn audiences(aud: &[String]) -> String {
    let mut out = String::new();
    for (i, a) in aud.iter().enumerate() {
        if out.len() + a.len() + 1 > MAX_LOGGED_CLAIM_BYTES {
            let rest = aud.len() - i;
            if out.is_empty() {
                out = clip(a, MAX_LOGGED_CLAIM_BYTES).into_owned();
                if rest > 1 {
                    out.push_str(&format!(" ...(+{} more)", rest - 1));
                }
            } else {
                out.push_str(&format!(" ...(+{rest} more)"));
            }
            return out;
        }
        if i > 0 {
            out.push(' ');
        }
        out.push_str(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_per_reason_and_counts_everything() {
        let s = LogSampler::new(2, 60);
        assert_eq!(s.sample("ErrA", 100), Sample::Log { suppressed: 0 });
        assert_eq!(s.sample("ErrA", 100), Sample::Log { suppressed: 0 });
        assert_eq!(s.sample("ErrA", 101), Sample::Skip);
        assert_eq!(s.sample("ErrA", 159), Sample::Skip);
        // Another reason has its own budget.
        assert_eq!(s.sample("ErrB", 101), Sample::Log { suppressed: 0 });
        // A new window: the first line says what was dropped.
        assert_eq!(s.sample("ErrA", 160), Sample::Log { suppressed: 2 });
        assert_eq!(s.sample("ErrA", 160), Sample::Log { suppressed: 0 });
        let counts = s.counts();
        assert_eq!(counts["ErrA"], 6);
        assert_eq!(counts["ErrB"], 1);
    }

    #[test]
    fn long_values_are_clipped() {
        assert_eq!(clip("short", 10), "short");
        let long = "é".repeat(300);
        let c = clip(&long, 201);
        assert!(c.len() < 220, "{}", c.len());
        assert!(c.ends_with("...(+400 bytes)"), "{c}");

        assert_eq!(audiences(&["http://localhost:8080/mcp".into()]), "http://localhost:8080/mcp");
        let many: Vec<String> = (0..331).map(|i| format!("https://aud-{i:03}.example.com/mcp")).collect();
        let line = audiences(&many);
        assert!(line.len() <= MAX_LOGGED_CLAIM_BYTES + 20, "{} bytes: {line}", line.len());
        assert!(line.starts_with("https://aud-000.example.com/mcp https://aud-001"), "{line}");
        assert!(line.ends_with("more)"), "{line}");
        let one_huge = vec!["x".repeat(5000), "y".into()];
        let line = audiences(&one_huge);
        assert!(line.len() < 260 && line.ends_with("(+1 more)"), "{line}");
    }
}
