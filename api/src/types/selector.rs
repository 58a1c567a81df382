//! Kubernetes `metav1.LabelSelector` with its matching semantics.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A label selector: all `matchLabels` and all `matchExpressions` must hold (AND). An empty selector matches every
/// object, as in Kubernetes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// `key: value` pairs that must all be present.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements that must all hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSelectorRequirement {
    /// Label key.
    pub key: String,
    /// Operator.
    pub operator: SelectorOperator,
    /// Values (non-empty for `In`/`NotIn`, empty for `Exists`/`DoesNotExist`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A `matchExpressions` operator. Unknown operators are kept and rejected by validation; they match nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum SelectorOperator {
    /// The label is present and its value is one of `values`.
    In,
    /// The label is absent, or its value is none of `values`.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
    /// Anything else, as written.
    Unknown(String),
}

impl From<String> for SelectorOperator {
    fn from(s: String) -> Self {
        match s.as_str() {
            "In" => SelectorOperator::In,
            "NotIn" => SelectorOperator::NotIn,
            "Exists" => SelectorOperator::Exists,
            "DoesNotExist" => SelectorOperator::DoesNotExist,
            _ => SelectorOperator::Unknown(s),
        }
    }
}

impl From<SelectorOperator> for String {
    fn from(o: SelectorOperator) -> Self {
        o.to_string()
    }
}

impl fmt::Display for SelectorOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SelectorOperator::In => "In",
            SelectorOperator::NotIn => "NotIn",
            SelectorOperator::Exists => "Exists",
            SelectorOperator::DoesNotExist => "DoesNotExist",
            SelectorOperator::Unknown(s) => s,
        })
    }
}

impl LabelSelectorRequirement {
    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match &self.operator {
            SelectorOperator::In => value.is_some_and(|v| self.values.contains(v)),
            SelectorOperator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
            SelectorOperator::Unknown(_) => false,
        }
    }

    /// Why the requirement is malformed, as (field relative to the requirement, message), if it is.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        match &self.operator {
            SelectorOperator::In | SelectorOperator::NotIn if self.values.is_empty() => Some((
                "values",
                format!("must not be empty for operator {}", self.operator),
            )),
            SelectorOperator::Exists | SelectorOperator::DoesNotExist if !self.values.is_empty() => {
                Some(("values", format!("must be empty for operator {}", self.operator)))
            }
            SelectorOperator::Unknown(s) => Some((
                "operator",
                format!("unknown operator {s:?} (expected In, NotIn, Exists or DoesNotExist)"),
            )),
            _ if self.key.is_empty() => Some(("key", "must not be empty".to_string())),
            _ => None,
        }
    }
}

impl LabelSelector {
    /// Whether `labels` satisfy every `matchLabels` pair and every `matchExpressions` requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: SelectorOperator::from(op.to_string()),
            values: values.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = LabelSelector::default();
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn match_labels_all_required() {
        let s = LabelSelector {
            match_labels: labels(&[("key", "db"), ("foo", "bar")]),
            ..Default::default()
        };
        assert!(s.matches(&labels(&[("key", "db"), ("foo", "bar"), ("x", "y")])));
        assert!(!s.matches(&labels(&[("key", "db")])));
        assert!(!s.matches(&labels(&[("key", "db"), ("foo", "baz")])));
    }

    #[test]
    fn operators() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(req("app", "In", &["web", "api"]).matches(&l));
        assert!(!req("app", "In", &["api"]).matches(&l));
        assert!(!req("missing", "In", &["web"]).matches(&l));
        assert!(req("app", "NotIn", &["api"]).matches(&l));
        assert!(!req("app", "NotIn", &["web"]).matches(&l));
        assert!(req("missing", "NotIn", &["web"]).matches(&l));
        assert!(req("tier", "Exists", &[]).matches(&l));
        assert!(!req("missing", "Exists", &[]).matches(&l));
        assert!(req("missing", "DoesNotExist", &[]).matches(&l));
        assert!(!req("app", "DoesNotExist", &[]).matches(&l));
        assert!(!req("app", "Bogus", &[]).matches(&l));
    }

    #[test]
    fn labels_and_expressions_combine() {
        let s = LabelSelector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: vec![req("env", "NotIn", &["dev"]), req("canary", "DoesNotExist", &[])],
        };
        assert!(s.matches(&labels(&[("app", "web"), ("env", "prod")])));
        assert!(s.matches(&labels(&[("app", "web")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "dev")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("canary", "1")])));
        assert!(!s.matches(&labels(&[("env", "prod")])));
    }

    #[test]
    fn problems() {
        assert!(req("a", "In", &[]).problem().is_some());
        assert!(req("a", "Exists", &["x"]).problem().is_some());
        assert!(req("a", "Nope", &[]).problem().is_some());
        assert!(req("a", "NotIn", &["x"]).problem().is_none());
    }
}
