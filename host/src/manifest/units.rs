//! Human units: durations ("500ms", "1m 30s") and sizes ("64KiB", "16MiB").

use std::time::Duration;

/// The largest memory limit: a 32-bit wasm memory holds at most 4 GiB.
pub(super) const MAX_MEMORY: usize = 4 << 30;

/// The longest duration a manifest may give: longer ones are refused, not clamped,
/// so a typo does not silently mean "never".
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// "500ms", "5s", "1m 30s"; at most [`MAX_DURATION`].
pub(super) fn duration(text: &str) -> Result<Duration, String> {
    let d =
        humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration ({e})"))?;
    if d > MAX_DURATION {
        return Err(format!("{text:?} is longer than the longest allowed, 365 days"));
    }
    Ok(d)
}

/// A size in the manifest's units, for command lines that take one: "64KiB",
/// "16MiB", "1GiB", "1000" (bytes).
///
/// # Errors
/// What is wrong with `text`, naming it.
pub fn size(text: &str) -> Result<usize, String> {
    bytes(text)
}

/// "64KiB", "16MiB", "1GiB", "1000" (bytes).
pub(super) fn bytes(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("{text:?}: unknown unit {other:?} (use B, KiB, MiB or GiB)")),
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{text:?} is not a size"))
}
