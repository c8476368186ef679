//! Plugin-supplied text made safe to show: what the host prints, logs or serves from a plugin
//! (metadata, log lines, error messages) cannot steer a terminal or reorder what sits next to it.

/// Characters that change how a terminal or a page shows the text around them: controls
/// (escape sequences, carriage returns), bidirectional overrides and invisible formatting.
fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{115f}'
                | '\u{1160}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{3164}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{e0000}'..='\u{e0fff}'
        )
}

/// `text` cut to at most `max` bytes on a character boundary, with `…` where it was cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Plugin-supplied text as the host shows it anywhere (CLI, dashboard, admin API): every
/// deceptive character written out as `\u{..}`, so metadata cannot hide or reorder what an
/// operator reads next to it (the permission list).
pub fn printable(text: &str) -> String {
    if !text.chars().any(is_deceptive) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| if is_deceptive(c) { c.escape_unicode().to_string() } else { c.to_string() })
        .collect()
}
