//! The small HTML page the user's browser shows after the OP redirected it to the
//! gateway's callback: what happened, where to go back to, the binding message. Every
//! value is HTML-escaped; the page carries no token, code or id, loads nothing, and runs
//! no script (the caller sends it with a CSP that forbids both).

/// What the page says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Tokens issued: the user can go back to the client's application.
    Done,
    /// The user cancelled or the OP refused.
    Cancelled,
    /// A link that is not (or no longer) valid: replayed, forged, or expired.
    Invalid,
    /// The gateway could not finish with the OP.
    Failed,
}

/// The page's text.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// What happened.
    pub kind: Kind,
    /// The name of the application to return to (`bridge.return_to`).
    pub return_to: &'a str,
    /// The request's `binding_message`, when it had one.
    pub binding_message: Option<&'a str>,
}

/// Headers every callback page is sent with: no caching, no sniffing, no framing, no
/// script, style only inline, no referrer (the callback URL carried the code).
pub const HEADERS: [(&str, &str); 6] = [
    ("content-type", "text/html; charset=utf-8"),
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
];

/// The page's HTTP status.
pub fn status(kind: Kind) -> u16 {
    match kind {
        Kind::Done | Kind::Cancelled => 200,
        Kind::Invalid => 400,
        Kind::Failed => 502,
    }
}

/// Renders the page.
pub fn render(p: Page<'_>) -> String {
    let back = escape(p.return_to);
    let (title, body) = match p.kind {
        Kind::Done => (
            "You are signed in".to_string(),
            format!("You can close this page and return to {back}."),
        ),
        Kind::Cancelled => (
            "Sign-in cancelled".to_string(),
            format!("Nothing was shared. You can close this page and return to {back}."),
        ),
        Kind::Invalid => (
            "This link is not valid".to_string(),
            format!(
                "It was already used, has expired, or was not issued here. Nothing changed. \
                 Return to {back} and start again."
            ),
        ),
        Kind::Failed => (
            "Sign-in could not be completed".to_string(),
            format!("Please return to {back} and try again."),
        ),
    };
    let binding = p
        .binding_message
        .filter(|m| !m.is_empty() && p.kind == Kind::Done)
        .map(|m| {
            format!(
                "<p>Check that {back} shows the same code:</p>\n<p class=\"code\" aria-label=\"binding message\">{}</p>\n",
                escape(m)
            )
        })
        .unwrap_or_default();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<meta name=\"referrer\" content=\"no-referrer\">\n<title>{title}</title>\n\
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;\
line-height:1.5;color:#1a1a1a;background:#fff}}h1{{font-size:1.5rem}}\
.code{{font-size:1.4rem;font-weight:bold;letter-spacing:.05em;border:2px solid #1a1a1a;\
padding:.5rem 1rem;display:inline-block}}</style>\n</head>\n<body>\n<main>\n\
<h1>{title}</h1>\n<p role=\"status\">{body}</p>\n{binding}</main>\n</body>\n</html>\n"
    )
}

/// HTML-escapes text for element content and attribute values.
pub fn escape(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let html = render(Page {
            kind: Kind::Done,
            return_to: "<b>Bank</b>",
            binding_message: Some("<script>alert('x')</script>&\""),
        });
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<b>Bank"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
        assert!(html.contains("return to &lt;b&gt;Bank&lt;/b&gt;"));
        assert!(html.starts_with("<!DOCTYPE html>"));
    }

    #[test]
    fn the_binding_message_shows_only_on_success() {
        for kind in [Kind::Cancelled, Kind::Invalid, Kind::Failed] {
            let html = render(Page {
                kind,
                return_to: "app",
                binding_message: Some("ABC-123"),
            });
            assert!(!html.contains("ABC-123"), "{kind:?}");
        }
        assert_eq!(status(Kind::Invalid), 400);
    }
}
