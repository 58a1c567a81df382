//! Kubernetes' rules for object names, namespaces and labels (issue 12 item 5), as
//! `k8s.io/apimachinery/pkg/util/validation` states them:
//!
//! - object names (every kind ironlb reads is a custom resource, whose names are **DNS-1123 subdomains**): at most
//!   253 characters, lowercase alphanumerics, `-` and `.`, starting and ending with an alphanumeric, each
//!   `.`-separated part non-empty and starting and ending with an alphanumeric;
//! - namespaces: **DNS-1123 labels** (at most 63 characters, lowercase alphanumerics and `-`, alphanumeric at
//!   both ends);
//! - label keys: an optional DNS-1123 subdomain prefix and `/`, then a name of at most 63 characters of
//!   alphanumerics, `-`, `_` and `.`, alphanumeric at both ends;
//! - label values: empty, or like a label key's name.
//!
//! Each check returns why the text is refused; the text itself is quoted with Rust's debug escaping in the
//! message, so a control character in a name never reaches a terminal raw.

/// Longest DNS-1123 subdomain.
pub const MAX_SUBDOMAIN: usize = 253;
/// Longest DNS-1123 label, label name or label value.
pub const MAX_LABEL: usize = 63;

fn alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Why `s` is not a DNS-1123 label, if it is not.
pub fn dns1123_label(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s.len() > MAX_LABEL {
        return Some(format!("{s:?} is longer than {MAX_LABEL} characters"));
    }
    let ok = s.chars().all(|c| alnum_lower(c) || c == '-')
        && s.starts_with(alnum_lower)
        && s.ends_with(alnum_lower);
    (!ok).then(|| {
        format!(
            "{s:?} is not a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit)"
        )
    })
}

/// Why `s` is not a DNS-1123 subdomain, if it is not.
pub fn dns1123_subdomain(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s.len() > MAX_SUBDOMAIN {
        return Some(format!("{s:?} is longer than {MAX_SUBDOMAIN} characters"));
    }
    let ok = s.split('.').all(|part| {
        !part.is_empty()
            && part.chars().all(|c| alnum_lower(c) || c == '-')
            && part.starts_with(alnum_lower)
            && part.ends_with(alnum_lower)
    });
    (!ok).then(|| {
        format!(
            "{s:?} is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)"
        )
    })
}

/// A label key's name part, or a non-empty label value: at most 63 characters of alphanumerics, `-`, `_`, `.`,
/// alphanumeric at both ends.
fn qualified_name_part(s: &str) -> bool {
    let an = |c: char| c.is_ascii_alphanumeric();
    s.len() <= MAX_LABEL
        && s.chars().all(|c| an(c) || matches!(c, '-' | '_' | '.'))
        && s.starts_with(an)
        && s.ends_with(an)
}

/// Why `s` is not a label key (`[prefix/]name`), if it is not.
pub fn label_key(s: &str) -> Option<String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix {
        if let Some(why) = dns1123_subdomain(p) {
            return Some(format!("label key {s:?}: prefix {why}"));
        }
    }
    if name.is_empty() {
        return Some(format!("label key {s:?}: name must not be empty"));
    }
    (!qualified_name_part(name)).then(|| {
        format!(
            "label key {s:?}: name must be at most {MAX_LABEL} characters of letters, digits, '-', '_' and '.', \
             starting and ending with a letter or digit"
        )
    })
}

/// Why `s` is not a label value, if it is not.
pub fn label_value(s: &str) -> Option<String> {
    (!s.is_empty() && !qualified_name_part(s)).then(|| {
        format!(
            "label value {s:?} must be empty or at most {MAX_LABEL} characters of letters, digits, '-', '_' and \
             '.', starting and ending with a letter or digit"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains() {
        for ok in ["a", "lb-1", "a.b-c.d", "0abc", &"a".repeat(253)] {
            assert_eq!(dns1123_subdomain(ok), None, "{ok}");
        }
        for bad in [
            "",
            "A",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a_b",
            "a\u{1b}[2J",
            "a\nb",
            "a\u{202e}b",
            &"a".repeat(254),
        ] {
            assert!(dns1123_subdomain(bad).is_some(), "{bad:?}");
        }
        assert!(dns1123_subdomain("a\u{1b}b").unwrap().contains("\\u{1b}"));
    }

    #[test]
    fn labels_namespaces() {
        assert_eq!(dns1123_label("kube-system"), None);
        assert!(dns1123_label("a.b").is_some());
        assert!(dns1123_label(&"a".repeat(64)).is_some());
        for ok in ["app", "app.kubernetes.io/name", "A_b.c-D", &"a".repeat(63)] {
            assert_eq!(label_key(ok), None, "{ok}");
        }
        for bad in ["", "/a", "a/", "-a", "a b", "Ex.com/a", "a/b/c", &"a".repeat(64)] {
            assert!(label_key(bad).is_some(), "{bad:?}");
        }
        for ok in ["", "v1", "A_b.c-D", &"a".repeat(63)] {
            assert_eq!(label_value(ok), None, "{ok}");
        }
        for bad in ["-", "a b", "a\nb", &"a".repeat(64)] {
            assert!(label_value(bad).is_some(), "{bad:?}");
        }
    }
}
