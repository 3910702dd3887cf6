//! Form and query parsing with the RFC 6749 §3.1/§3.2 rule that a parameter
//! appears at most once (`resource` may repeat, RFC 8707 §2).

use std::collections::HashMap;

use super::error::{Error, Kind};

#[derive(Debug, Default, Clone)]
pub struct Form {
    single: HashMap<String, String>,
    pub resource: Vec<String>,
}

impl Form {
    pub fn parse(raw: &[u8]) -> Result<Form, Error> {
        let mut f = Form::default();
        for (k, v) in url::form_urlencoded::parse(raw) {
            if k == "resource" {
                f.resource.push(v.into_owned());
                continue;
            }
            if f.single.insert(k.clone().into_owned(), v.into_owned()).is_some() {
                return Err(Error::new(Kind::InvalidRequest, format!("parameter {k} is repeated")));
            }
        }
        Ok(f)
    }

    /// A parameter; an empty value counts as absent (RFC 6749 §3.1).
    pub fn get(&self, k: &str) -> Option<&str> {
        self.single.get(k).map(String::as_str).filter(|s| !s.is_empty())
    }

    pub fn take(&mut self, k: &str) -> Option<String> {
        self.single.remove(k).filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_refused_except_resource() {
        let f = Form::parse(b"a=1&resource=x&resource=y&b=").unwrap();
        assert_eq!(f.get("a"), Some("1"));
        assert_eq!(f.get("b"), None);
        assert_eq!(f.resource, vec!["x", "y"]);
        assert!(Form::parse(b"a=1&a=2").is_err());
    }
}
