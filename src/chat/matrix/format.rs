//! Matrix's conventions for Slipway's wording (pure): the HTML body of a
//! plain-text message, and commands written with the configured prefix
//! (`!env create`) where the shared wording says `/env create`.

/// The HTML body of a plain message: escaped, one line per `<br>`, the first
/// line bold (it carries the state: ✅, ⏳, 🕓 …).
pub fn html(text: &str) -> String {
    let mut lines = text.lines().map(escape);
    let mut out = match lines.next() {
        Some(first) => format!("<b>{first}</b>"),
        None => String::new(),
    };
    for line in lines {
        out.push_str("<br>");
        out.push_str(&line.replace("  ", "&nbsp;&nbsp;"));
    }
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The command prefix and the command groups, for [`localize`].
#[derive(Debug, Clone, Default)]
pub struct Words {
    pub prefix: String,
    pub groups: Vec<String>,
}

impl Words {
    /// `text` with commands as Matrix users type them.
    pub fn localize(&self, text: &str) -> String {
        localize(text, &self.prefix, &self.groups)
    }
}

/// Rewrites `/group` (a known command group, at the start of a word) to
/// `PREFIXgroup`, so replies show commands as Matrix users type them.
pub fn localize(text: &str, prefix: &str, groups: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('/') {
        let (before, after) = rest.split_at(pos);
        out.push_str(before);
        let at_word_start = out
            .chars()
            .last()
            .is_none_or(|c| c.is_whitespace() || c == '(' || c == '`');
        let word: String = after[1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        if at_word_start && groups.contains(&word) {
            out.push_str(prefix);
        } else {
            out.push('/');
        }
        rest = &after[1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_and_breaks_lines() {
        assert_eq!(
            html("✅ <shop> ready\n  ✓ create"),
            "<b>✅ &lt;shop&gt; ready</b><br>&nbsp;&nbsp;✓ create"
        );
    }

    #[test]
    fn known_commands_get_the_prefix_and_paths_do_not() {
        let groups = vec!["env".to_string(), "approve".to_string()];
        assert_eq!(
            localize(
                "Try /env list or /approve 3 (not /etc/hosts, a/env)",
                "!",
                &groups
            ),
            "Try !env list or !approve 3 (not /etc/hosts, a/env)"
        );
    }
}
