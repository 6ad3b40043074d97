//! `WWW-Authenticate` challenges: which scheme a registry wants, and for Bearer, where
//! to get a token (`realm`) and for which `service`.

use std::collections::HashMap;

/// How a registry wants to be authenticated, learnt from a 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// No 401 seen: send requests without credentials.
    None,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value; the first Basic or Bearer challenge wins.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((header, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let mut params = parse_params(rest);
            let realm = params.remove("realm")?;
            Some(Challenge::Bearer {
                realm,
                service: params.remove("service"),
            })
        }
        _ => None,
    }
}

/// `key="value", key=token, …` with quoted strings that may hold commas and escapes.
fn parse_params(text: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut chars = text.chars().peekable();
    // Bounded by the input: every iteration consumes at least one character.
    while chars.peek().is_some() {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_ascii_whitespace()) {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        while matches!(chars.peek(), Some(c) if c.is_ascii_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
            while matches!(chars.peek(), Some(c) if *c != ',') {
                chars.next();
            }
        } else {
            value = chars
                .by_ref()
                .take_while(|c| *c != ',')
                .collect::<String>()
                .trim()
                .to_string();
        }
        if !key.is_empty() {
            params.insert(key, value);
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_bearer() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
    }

    #[test]
    fn parses_basic_and_odd_spacing() {
        assert_eq!(
            parse_challenge(r#"Basic realm="basic-realm""#),
            Some(Challenge::Basic)
        );
        let c = parse_challenge(r#"bearer  service = "a,b" , realm="h\"x""#);
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "h\"x".into(),
                service: Some("a,b".into())
            })
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }
}
